/**
 * DDIMScheduler — diffusers 0.23.0 `scheduling_ddim.py` (Song et al., "Denoising Diffusion Implicit Models").
 *
 * Numerics follow the reference dtypes: the beta / alpha tables are float32 exactly as torch builds them
 * (float32 linspace, cumprod with a double accumulator), timesteps are numpy int64 values, and every per-step scalar
 * (alpha_prod_t ** 0.5, ...) is a float32 0-dim tensor in diffusers, so it is rounded to float32 here too.
 * Elementwise ops are float32 ops in torch (each rounded), reproduced with Math.fround.
 */
import type { Generator } from "../random/generator.js";
import {
  checkFinite,
  checkNumInferenceSteps,
  configNumber,
  configOneOf,
  mergeConfig,
  type Scheduler,
  type SchedulerConfig,
  SchedulerConfigError,
  type SchedulerOutput,
  type SchedulerStepOptions,
} from "./scheduler_utils.js";

const NAME = "DDIMScheduler";
const f32 = Math.fround;

export type DDIMBetaSchedule = "linear" | "scaled_linear" | "squaredcos_cap_v2";
export type DDIMPredictionType = "epsilon" | "sample" | "v_prediction";
export type DDIMTimestepSpacing = "leading" | "trailing" | "linspace";

/** diffusers 0.23.0 `DDIMScheduler.__init__` defaults. */
export const DDIM_DEFAULT_CONFIG = {
  num_train_timesteps: 1000,
  beta_start: 0.0001,
  beta_end: 0.02,
  beta_schedule: "linear" as string,
  trained_betas: null as number[] | null,
  clip_sample: true,
  set_alpha_to_one: true,
  steps_offset: 0,
  prediction_type: "epsilon" as string,
  thresholding: false,
  dynamic_thresholding_ratio: 0.995,
  clip_sample_range: 1.0,
  sample_max_value: 1.0,
  timestep_spacing: "leading" as string,
  rescale_betas_zero_snr: false,
};

export type DDIMConfig = typeof DDIM_DEFAULT_CONFIG & SchedulerConfig;

export interface DDIMStepOptions extends SchedulerStepOptions {
  /** Recompute the epsilon from the clipped x0 (diffusers `use_clipped_model_output`). */
  useClippedModelOutput?: boolean;
  /** Noise for eta > 0 instead of drawing it from `generator` (diffusers `variance_noise`). */
  varianceNoise?: Float32Array;
  /** Batch size of the flat sample; only dynamic thresholding needs it (per-sample quantile). Default 1. */
  batchSize?: number;
}

export interface DDIMSchedulerOutput extends SchedulerOutput {
  predOriginalSample: Float32Array;
}

// ---------------------------------------------------------------- config checks

function configBool(key: string, v: unknown): boolean {
  if (typeof v === "boolean") return v;
  throw new SchedulerConfigError(NAME, key, `must be a boolean, got ${JSON.stringify(v)}`);
}

function configInt(key: string, v: unknown, min: number): number {
  const n = configNumber(NAME, key, v);
  if (!Number.isSafeInteger(n) || n < min) {
    throw new SchedulerConfigError(NAME, key, `must be an integer >= ${min}, got ${JSON.stringify(v)}`);
  }
  return n;
}

function configFinite(key: string, v: unknown): number {
  const n = configNumber(NAME, key, v);
  if (!Number.isFinite(n)) throw new SchedulerConfigError(NAME, key, `must be a finite number, got ${v}`);
  return n;
}

// ---------------------------------------------------------------- float32 tables (torch semantics)

/**
 * torch.linspace(start, end, steps, dtype=float32) as torch 1.13's CPU kernel computes it: float32 step; the
 * first half counts up from `start`, the second half down from `end`; blocks of 8 (the AVX2 vector path, whole
 * 16-element chunks only) start at `start + step*idx` (contracted to one FMA by the compiler) and add `k*step`;
 * the tail is scalar. This reproduces the recorded float32 tables bit for bit.
 */
function torchLinspaceF32(start: number, end: number, steps: number): Float32Array {
  const out = new Float32Array(steps);
  const s = f32(start);
  const e = f32(end);
  if (steps === 1) {
    out[0] = s;
    return out;
  }
  const step = f32(f32(e - s) / (steps - 1));
  const halfway = Math.floor(steps / 2);
  // fma(a, b, c) for float32 a, b and an integer b < 2^29: the product is exact in double.
  const at = (idx: number) => (idx < halfway ? f32(s + step * idx) : f32(e - step * (steps - idx - 1)));
  const vecEnd = steps - (steps % 16);
  for (let i = 0; i < steps; i++) {
    if (i < vecEnd) {
      const k = i % 8;
      out[i] = f32(at(i - k) + f32(k * step));
    } else out[i] = at(i);
  }
  return out;
}

/** diffusers `betas_for_alpha_bar` (cosine), computed in float64, returned as float32. */
function betasForAlphaBar(n: number, maxBeta = 0.999): Float32Array {
  const alphaBar = (t: number) => {
    const c = Math.cos((((t + 0.008) / 1.008) * Math.PI) / 2);
    return c * c;
  };
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    out[i] = Math.min(1 - alphaBar((i + 1) / n) / alphaBar(i / n), maxBeta);
  }
  return out;
}

/** torch.cumprod on a float32 CPU tensor: the running product is kept in double (acc_type), each output rounded. */
function cumprodF32(a: Float32Array): Float32Array {
  const out = new Float32Array(a.length);
  let p = 1;
  for (let i = 0; i < a.length; i++) {
    p *= a[i] as number;
    out[i] = p;
  }
  return out;
}

/** diffusers `rescale_zero_terminal_snr` (arXiv 2305.08891, Algorithm 1), float32 tensor ops. */
function rescaleZeroTerminalSnr(betas: Float32Array): Float32Array {
  const n = betas.length;
  const alphas = new Float32Array(n);
  for (let i = 0; i < n; i++) alphas[i] = f32(1 - (betas[i] as number));
  const sq = cumprodF32(alphas).map((v) => f32(Math.sqrt(v)));
  const s0 = sq[0] as number;
  const sT = sq[n - 1] as number;
  const scale = f32(s0 / f32(s0 - sT));
  const bar = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const v = f32(f32((sq[i] as number) - sT) * scale);
    bar[i] = f32(v * v);
  }
  const out = new Float32Array(n);
  out[0] = f32(1 - (bar[0] as number));
  for (let i = 1; i < n; i++) out[i] = f32(1 - f32((bar[i] as number) / (bar[i - 1] as number)));
  return out;
}

// ---------------------------------------------------------------- numpy helpers (float64)

/** numpy round-half-to-even (np.round / rint). */
function rint(x: number): number {
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** np.linspace(start, stop, num) in float64, numpy's formula (i*step + start, last element = stop). */
function npLinspace(start: number, stop: number, num: number): number[] {
  const div = num - 1;
  const delta = stop - start;
  const out: number[] = [];
  const step = div > 0 ? delta / div : Number.NaN;
  for (let i = 0; i < num; i++) {
    if (div > 0) out.push(step === 0 ? (i / div) * delta + start : i * step + start);
    else out.push(i * delta + start);
  }
  if (num > 1) out[num - 1] = stop;
  return out;
}

/** np.arange(start, stop, step) for floats: length ceil((stop-start)/step), a[i] = start + i*(a[1]-a[0]). */
function npArange(start: number, stop: number, step: number): number[] {
  const len = Math.max(0, Math.ceil((stop - start) / step));
  const delta = start + step - start;
  const out: number[] = [];
  for (let i = 0; i < len; i++) out.push(i === 0 ? start : i === 1 ? start + step : start + i * delta);
  return out;
}

// ---------------------------------------------------------------- dynamic thresholding

/** torch.quantile(abs(x_row), ratio) per batch row (linear interpolation, float32), then clamp and scale. */
function thresholdSample(x: Float32Array, batchSize: number, ratio: number, maxValue: number): Float32Array {
  if (!Number.isInteger(batchSize) || batchSize < 1 || x.length % batchSize !== 0) {
    throw new RangeError(
      `${NAME}.step: batchSize ${batchSize} does not divide the sample length ${x.length}`,
    );
  }
  const rowLen = x.length / batchSize;
  const out = new Float32Array(x.length);
  const q = f32(ratio);
  const rank = f32(q * (rowLen - 1));
  const below = Math.trunc(rank);
  const above = Math.ceil(rank);
  const w = f32(rank - below);
  for (let b = 0; b < batchSize; b++) {
    const row = x.subarray(b * rowLen, (b + 1) * rowLen);
    const sorted = Float32Array.from(row, Math.abs).sort();
    const lo = sorted[below] as number;
    const hi = sorted[above] as number;
    let s = Math.abs(w) < 0.5 ? f32(lo + f32(w * f32(hi - lo))) : f32(hi - f32(f32(hi - lo) * f32(1 - w)));
    if (Number.isNaN(lo) || Number.isNaN(hi)) s = Number.NaN;
    s = Math.min(Math.max(s, 1), f32(maxValue));
    for (let i = 0; i < rowLen; i++) {
      const v = row[i] as number;
      out[b * rowLen + i] = f32(Math.min(Math.max(v, -s), s) / s);
    }
  }
  return out;
}

// ---------------------------------------------------------------- scheduler

export class DDIMScheduler implements Scheduler {
  readonly config: Readonly<DDIMConfig>;
  readonly order = 1;
  readonly initNoiseSigma = 1.0;
  readonly betas: Float32Array;
  readonly alphas: Float32Array;
  readonly alphasCumprod: Float32Array;
  readonly finalAlphaCumprod: number;
  private _timesteps: number[];
  private _numInferenceSteps: number | undefined = undefined;

  private readonly numTrainTimesteps: number;
  private readonly predictionType: DDIMPredictionType;
  private readonly timestepSpacing: DDIMTimestepSpacing;
  private readonly stepsOffset: number;
  private readonly clipSample: boolean;
  private readonly clipSampleRange: number;
  private readonly thresholding: boolean;
  private readonly dynamicThresholdingRatio: number;
  private readonly sampleMaxValue: number;

  static fromConfig(config?: SchedulerConfig): DDIMScheduler {
    return new DDIMScheduler(config);
  }

  constructor(config?: SchedulerConfig) {
    const c = mergeConfig(DDIM_DEFAULT_CONFIG as DDIMConfig, config);
    this.config = Object.freeze(c);
    const n = configInt("num_train_timesteps", c.num_train_timesteps, 1);
    this.numTrainTimesteps = n;
    const betaStart = configFinite("beta_start", c.beta_start);
    const betaEnd = configFinite("beta_end", c.beta_end);
    this.predictionType = configOneOf(NAME, "prediction_type", c.prediction_type, [
      "epsilon",
      "sample",
      "v_prediction",
    ] as const);
    this.timestepSpacing = configOneOf(NAME, "timestep_spacing", c.timestep_spacing, [
      "leading",
      "trailing",
      "linspace",
    ] as const);
    this.stepsOffset = configInt("steps_offset", c.steps_offset, 0);
    this.clipSample = configBool("clip_sample", c.clip_sample);
    this.clipSampleRange = configFinite("clip_sample_range", c.clip_sample_range);
    this.thresholding = configBool("thresholding", c.thresholding);
    this.dynamicThresholdingRatio = configFinite("dynamic_thresholding_ratio", c.dynamic_thresholding_ratio);
    if (this.dynamicThresholdingRatio < 0 || this.dynamicThresholdingRatio > 1) {
      throw new SchedulerConfigError(NAME, "dynamic_thresholding_ratio", "must be in [0, 1]");
    }
    this.sampleMaxValue = configFinite("sample_max_value", c.sample_max_value);
    const setAlphaToOne = configBool("set_alpha_to_one", c.set_alpha_to_one);
    const rescale = configBool("rescale_betas_zero_snr", c.rescale_betas_zero_snr);

    let betas: Float32Array;
    if (c.trained_betas !== null && c.trained_betas !== undefined) {
      const tb = c.trained_betas as unknown;
      if (
        !Array.isArray(tb) ||
        tb.length !== n ||
        !tb.every((v) => typeof v === "number" && Number.isFinite(v))
      ) {
        throw new SchedulerConfigError(NAME, "trained_betas", `must be null or ${n} finite numbers`);
      }
      betas = Float32Array.from(tb as number[]);
    } else {
      const schedule = configOneOf(NAME, "beta_schedule", c.beta_schedule, [
        "linear",
        "scaled_linear",
        "squaredcos_cap_v2",
      ] as const);
      if (schedule === "linear") betas = torchLinspaceF32(betaStart, betaEnd, n);
      else if (schedule === "scaled_linear") {
        betas = torchLinspaceF32(betaStart ** 0.5, betaEnd ** 0.5, n).map((b) => f32(b * b));
      } else betas = betasForAlphaBar(n);
    }
    if (rescale) betas = rescaleZeroTerminalSnr(betas);
    this.betas = betas;
    this.alphas = betas.map((b) => f32(1 - b));
    this.alphasCumprod = cumprodF32(this.alphas);
    this.finalAlphaCumprod = setAlphaToOne ? 1.0 : (this.alphasCumprod[0] as number);
    this._timesteps = Array.from({ length: n }, (_, i) => n - 1 - i);
  }

  get timesteps(): number[] {
    return this._timesteps;
  }

  get numInferenceSteps(): number | undefined {
    return this._numInferenceSteps;
  }

  scaleModelInput(sample: Float32Array, _timestep?: number): Float32Array {
    return sample;
  }

  setTimesteps(numInferenceSteps: number): void {
    const N = this.numTrainTimesteps;
    checkNumInferenceSteps(NAME, numInferenceSteps, N);
    const n = numInferenceSteps;
    this._numInferenceSteps = n;
    let ts: number[];
    if (this.timestepSpacing === "linspace") {
      ts = npLinspace(0, N - 1, n)
        .map(rint)
        .reverse();
    } else if (this.timestepSpacing === "leading") {
      const ratio = Math.floor(N / n);
      ts = Array.from({ length: n }, (_, i) => (n - 1 - i) * ratio + this.stepsOffset);
    } else {
      ts = npArange(N, 0, -N / n).map((t) => rint(t) - 1);
    }
    this._timesteps = ts;
  }

  private alphaAt(t: number): number {
    const v = this.alphasCumprod[t];
    if (v === undefined)
      throw new RangeError(`${NAME}: timestep ${t} is outside 0..${this.numTrainTimesteps - 1}`);
    return v;
  }

  /** diffusers `_get_variance` (float32 scalars). */
  private getVariance(timestep: number, prevTimestep: number): number {
    const a = this.alphaAt(timestep);
    const ap = prevTimestep >= 0 ? this.alphaAt(prevTimestep) : this.finalAlphaCumprod;
    const b = f32(1 - a);
    const bp = f32(1 - ap);
    return f32(f32(bp / b) * f32(1 - f32(a / ap)));
  }

  step(
    modelOutput: Float32Array,
    timestep: number,
    sample: Float32Array,
    options: DDIMStepOptions = {},
  ): DDIMSchedulerOutput {
    const n = this._numInferenceSteps;
    if (n === undefined) {
      throw new Error(`${NAME}.step: numInferenceSteps is not set; call setTimesteps() before step()`);
    }
    if (!this._timesteps.includes(timestep)) {
      throw new RangeError(
        `${NAME}.step: timestep ${timestep} is not in the schedule (${this._timesteps.join(", ")})`,
      );
    }
    if (modelOutput.length !== sample.length) {
      throw new RangeError(
        `${NAME}.step: modelOutput length ${modelOutput.length} != sample length ${sample.length}`,
      );
    }
    checkFinite(NAME, "modelOutput", modelOutput);
    const eta = options.eta ?? 0;
    if (!Number.isFinite(eta) || eta < 0) throw new RangeError(`${NAME}.step: eta must be >= 0, got ${eta}`);

    const prevTimestep = timestep - Math.floor(this.numTrainTimesteps / n);
    const a = this.alphaAt(timestep);
    const ap = prevTimestep >= 0 ? this.alphaAt(prevTimestep) : this.finalAlphaCumprod;
    const b = f32(1 - a);
    const sa = f32(Math.sqrt(a));
    const sb = f32(Math.sqrt(b));
    const len = sample.length;

    let x0: Float32Array = new Float32Array(len);
    let epsPred = new Float32Array(len);
    for (let i = 0; i < len; i++) {
      const m = modelOutput[i] as number;
      const x = sample[i] as number;
      if (this.predictionType === "epsilon") {
        x0[i] = f32(f32(x - f32(sb * m)) / sa);
        epsPred[i] = m;
      } else if (this.predictionType === "sample") {
        x0[i] = m;
        epsPred[i] = f32(f32(x - f32(sa * m)) / sb);
      } else {
        x0[i] = f32(f32(sa * x) - f32(sb * m));
        epsPred[i] = f32(f32(sa * m) + f32(sb * x));
      }
    }

    if (this.thresholding) {
      x0 = thresholdSample(x0, options.batchSize ?? 1, this.dynamicThresholdingRatio, this.sampleMaxValue);
    } else if (this.clipSample) {
      const r = f32(this.clipSampleRange);
      for (let i = 0; i < len; i++) x0[i] = Math.min(Math.max(x0[i] as number, -r), r);
    }

    const variance = this.getVariance(timestep, prevTimestep);
    const std = f32(f32(eta) * f32(Math.sqrt(variance)));

    if (options.useClippedModelOutput) {
      epsPred = new Float32Array(len);
      for (let i = 0; i < len; i++) {
        epsPred[i] = f32(f32((sample[i] as number) - f32(sa * (x0[i] as number))) / sb);
      }
    }

    const dirCoeff = f32(Math.sqrt(f32(f32(1 - ap) - f32(std * std))));
    const sap = f32(Math.sqrt(ap));
    const prev = new Float32Array(len);
    for (let i = 0; i < len; i++) {
      prev[i] = f32(f32(sap * (x0[i] as number)) + f32(dirCoeff * (epsPred[i] as number)));
    }

    if (eta > 0) {
      let noise = options.varianceNoise;
      if (noise !== undefined && options.generator !== undefined) {
        throw new Error(`${NAME}.step: pass either generator or varianceNoise, not both`);
      }
      if (noise === undefined) noise = drawNoise(options.generator, len);
      if (noise.length !== len) {
        throw new RangeError(`${NAME}.step: varianceNoise length ${noise.length} != sample length ${len}`);
      }
      for (let i = 0; i < len; i++) prev[i] = f32((prev[i] as number) + f32(std * (noise[i] as number)));
    }
    return { prevSample: prev, predOriginalSample: x0 };
  }

  addNoise(originalSamples: Float32Array, noise: Float32Array, timesteps: readonly number[]): Float32Array {
    return addNoiseRows(this.alphasCumprod, originalSamples, noise, timesteps);
  }

  /** diffusers `get_velocity`: sqrt(a_t) * noise - sqrt(1 - a_t) * sample, per-row timesteps. */
  getVelocity(sample: Float32Array, noise: Float32Array, timesteps: readonly number[]): Float32Array {
    const [sa, sb, rowLen] = rowCoefficients(this.alphasCumprod, sample, noise, timesteps, "getVelocity");
    const out = new Float32Array(sample.length);
    for (let i = 0; i < sample.length; i++) {
      const r = Math.floor(i / rowLen);
      out[i] = f32(
        f32((sa[r] as number) * (noise[i] as number)) - f32((sb[r] as number) * (sample[i] as number)),
      );
    }
    return out;
  }
}

function drawNoise(generator: Generator | undefined, len: number): Float32Array {
  if (generator === undefined) {
    throw new Error(`${NAME}.step: eta > 0 draws noise; pass options.generator (or options.varianceNoise)`);
  }
  return generator.randn([len]);
}

function rowCoefficients(
  alphasCumprod: Float32Array,
  x: Float32Array,
  noise: Float32Array,
  timesteps: readonly number[],
  what: string,
): [Float32Array, Float32Array, number] {
  if (x.length !== noise.length) {
    throw new RangeError(`${NAME}.${what}: lengths differ (${x.length} vs ${noise.length})`);
  }
  if (timesteps.length === 0 || x.length % timesteps.length !== 0) {
    throw new RangeError(
      `${NAME}.${what}: ${timesteps.length} timesteps do not split ${x.length} values into rows`,
    );
  }
  const sa = new Float32Array(timesteps.length);
  const sb = new Float32Array(timesteps.length);
  timesteps.forEach((t, r) => {
    const a = Number.isInteger(t) ? alphasCumprod[t] : undefined;
    if (a === undefined) {
      throw new RangeError(
        `${NAME}.${what}: timestep ${t} is not an integer in 0..${alphasCumprod.length - 1}`,
      );
    }
    sa[r] = Math.sqrt(a);
    sb[r] = Math.sqrt(f32(1 - a));
  });
  return [sa, sb, x.length / timesteps.length];
}

function addNoiseRows(
  alphasCumprod: Float32Array,
  x: Float32Array,
  noise: Float32Array,
  timesteps: readonly number[],
): Float32Array {
  const [sa, sb, rowLen] = rowCoefficients(alphasCumprod, x, noise, timesteps, "addNoise");
  const out = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const r = Math.floor(i / rowLen);
    out[i] = f32(f32((sa[r] as number) * (x[i] as number)) + f32((sb[r] as number) * (noise[i] as number)));
  }
  return out;
}
