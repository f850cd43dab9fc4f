/**
 * Timestep embeddings of the UNet: the sinusoidal projection and its MLP.
 * Ports diffusers v0.23.0 src/diffusers/models/embeddings.py (`get_timestep_embedding`, `Timesteps`,
 * `TimestepEmbedding`): https://github.com/huggingface/diffusers/blob/v0.23.0/src/diffusers/models/embeddings.py
 * (The activation table, diffusers' `get_activation`, lives in resnet.ts.)
 */
import type { Value } from "../onnx/graph_builder.js";
import type { ModelBuilder } from "../onnx/model_builder.js";
import { Linear } from "../onnx/nn.js";
import * as op from "../onnx/ops.js";
import type { Scope } from "../onnx/params.js";
import { getActivation } from "./resnet.js";

export interface TimestepEmbeddingOptions {
  flipSinToCos?: boolean;
  downscaleFreqShift?: number;
  scale?: number;
  maxPeriod?: number;
}

/**
 * The frequency table of `get_timestep_embedding`, in torch's float32 order:
 * `exp((-ln(max_period) * arange(half, float32)) / (half - shift))`, each step rounded to float32.
 */
export function timestepFrequencies(
  embeddingDim: number,
  downscaleFreqShift = 1,
  maxPeriod = 10000,
): Float32Array {
  const half = Math.floor(embeddingDim / 2);
  const f = Math.fround;
  const negLog = f(-Math.log(maxPeriod));
  const denom = f(half - downscaleFreqShift);
  const out = new Float32Array(half);
  for (let i = 0; i < half; i++) out[i] = f(Math.exp(f(f(negLog * i) / denom)));
  return out;
}

/**
 * Sinusoidal timestep embedding of a float32 vector `timesteps` [N] → [N, embeddingDim]:
 * `cat(sin(t·freq·scale), cos(t·freq·scale))`, halves swapped when `flipSinToCos`, zero-padded to an odd dim.
 */
export function getTimestepEmbedding(
  b: ModelBuilder,
  timesteps: Value,
  embeddingDim: number,
  options: TimestepEmbeddingOptions = {},
): Value {
  const { flipSinToCos = false, downscaleFreqShift = 1, scale = 1, maxPeriod = 10000 } = options;
  const half = Math.floor(embeddingDim / 2);
  const freqs = b.constFloat(timestepFrequencies(embeddingDim, downscaleFreqShift, maxPeriod), [1, half]);
  let emb = op.mul(op.unsqueeze(timesteps, [1]), freqs);
  if (scale !== 1) emb = op.mul(emb, Math.fround(scale));
  const sin = op.sin(emb);
  const cos = op.cos(emb);
  emb = op.concat(flipSinToCos ? [cos, sin] : [sin, cos], -1);
  if (embeddingDim % 2 === 1) emb = op.pad(emb, [0, 0, 0, 1]);
  return emb;
}

/** diffusers `Timesteps`: a parameter-free sinusoidal projection of float32 timesteps [N]. */
export class Timesteps {
  constructor(
    readonly numChannels: number,
    readonly flipSinToCos: boolean,
    readonly downscaleFreqShift: number,
  ) {}

  forward(b: ModelBuilder, timesteps: Value): Value {
    return getTimestepEmbedding(b, timesteps, this.numChannels, {
      flipSinToCos: this.flipSinToCos,
      downscaleFreqShift: this.downscaleFreqShift,
    });
  }
}

export interface TimestepEmbeddingConfig {
  actFn?: string;
  outDim?: number;
  postActFn?: string | null;
  condProjDim?: number | null;
}

/** diffusers `TimestepEmbedding`: linear_1 → act → linear_2 (→ post_act), optional `cond_proj`. */
export class TimestepEmbedding {
  readonly linear1: Linear;
  readonly linear2: Linear;
  readonly condProj: Linear | undefined;
  private readonly act: (x: Value) => Value;
  private readonly postAct: ((x: Value) => Value) | undefined;

  constructor(s: Scope, inChannels: number, timeEmbedDim: number, config: TimestepEmbeddingConfig = {}) {
    this.linear1 = new Linear(s.pp("linear_1"), inChannels, timeEmbedDim);
    this.condProj =
      config.condProjDim != null
        ? new Linear(s.pp("cond_proj"), config.condProjDim, inChannels, false)
        : undefined;
    this.act = getActivation(config.actFn ?? "silu", `${s.prefix}: act_fn`);
    this.linear2 = new Linear(s.pp("linear_2"), timeEmbedDim, config.outDim ?? timeEmbedDim);
    this.postAct =
      config.postActFn != null ? getActivation(config.postActFn, `${s.prefix}: post_act_fn`) : undefined;
  }

  forward(b: ModelBuilder, sample: Value, condition?: Value): Value {
    let x = sample;
    if (condition) {
      if (!this.condProj)
        throw new Error("TimestepEmbedding: a condition needs cond_proj (time_cond_proj_dim)");
      x = op.add(x, this.condProj.forward(b, condition));
    }
    x = this.act(this.linear1.forward(b, x));
    x = this.linear2.forward(b, x);
    return this.postAct ? this.postAct(x) : x;
  }
}
