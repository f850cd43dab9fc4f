/**
 * CLIPTextModel / CLIPTextModelWithProjection (the Stable Diffusion text encoder) as an onnxruntime graph.
 *
 * Graph inputs: `input_ids` int64 [batch, sequence] and, with `attentionMask`, `attention_mask` int64
 * [batch, sequence]. Outputs: `last_hidden_state` [batch, sequence, hidden], `pooler_output` [batch, hidden],
 * `text_embeds` [batch, projection_dim] (CLIPTextModelWithProjection), with `outputHiddenStates` every hidden state
 * `hidden_states_0` (embedding output) ... `hidden_states_N` (layer N output, before the final layer norm), and with
 * `clipSkip` k the `clip_skip` output final_layer_norm(hidden_states[-(k+1)]) (diffusers' encode_prompt clip_skip).
 *
 * Ports transformers v4.35 CLIPTextModel / CLIPTextModelWithProjection:
 * https://github.com/huggingface/transformers/blob/v4.35.2/src/transformers/models/clip/modeling_clip.py
 */
import { join } from "node:path";
import { findWeightFiles, readJson } from "../../io/model_files.js";
import { SafetensorsFile } from "../../io/safetensors.js";
import type { Value } from "../../onnx/graph_builder.js";
import { ModelBuilder } from "../../onnx/model_builder.js";
import { Linear } from "../../onnx/nn.js";
import { ParamStore } from "../../onnx/params.js";
import { type BoundWeights, bindWeights, WeightSet } from "../../onnx/weights.js";
import {
  defaultRuntimeHost,
  type HostTensor,
  type RemoteSession,
  type RuntimeHost,
  type RuntimeOptions,
} from "../../runtime/index.js";
import {
  type CLIPTextArchitecture,
  type CLIPTextConfig,
  clipTextArchitecture,
  parseCLIPTextConfig,
} from "./config.js";
import { CLIPInputError, checkInputIds, onesMask, type TokenMatrix, toInt64Matrix } from "./inputs.js";
import { CLIPTextTransformer } from "./modeling_clip.js";

/** Checkpoint keys that are not parameters: the position_ids buffer older (pre-4.31) checkpoints saved. */
export const CLIP_TEXT_IGNORED_KEYS: readonly RegExp[] = [/^text_model\.embeddings\.position_ids$/];

export interface CLIPTextGraphOptions {
  /** Adds the `attention_mask` input (padding mask added to the causal mask). Default false. */
  attentionMask?: boolean;
  /** Adds the outputs hidden_states_0 ... hidden_states_N. Default false. */
  outputHiddenStates?: boolean;
  /** Adds the `clip_skip` output final_layer_norm(hidden_states[-(clipSkip+1)]); 0 <= clipSkip <= N. */
  clipSkip?: number | null;
}

export interface CLIPTextModelOptions {
  /** Weight file variant, e.g. "fp16" for model.fp16.safetensors. */
  variant?: string;
  /** Host running the session (default: defaultRuntimeHost()). */
  runtime?: RuntimeHost;
  runtimeOptions?: RuntimeOptions;
}

export interface CLIPTextForwardInput {
  inputIds: TokenMatrix;
  /** [batch, seq], required when inputIds (and attentionMask) are flat BigInt64Arrays. */
  dims?: readonly number[];
  /** 1 = attend, anything else = padding (transformers: 1 - mask, non-zero entries → finfo.min). */
  attentionMask?: TokenMatrix;
  /** Return `hiddenStates` (num_hidden_layers + 1 tensors). Default false. */
  outputHiddenStates?: boolean;
  /** Return `clipSkipHiddenState` = final_layer_norm(hidden_states[-(clipSkip+1)]). */
  clipSkip?: number | null;
  signal?: AbortSignal;
}

export interface CLIPTextModelOutput {
  lastHiddenState: HostTensor;
  poolerOutput: HostTensor;
  /** CLIPTextModelWithProjection only: text_projection(pooler_output). */
  textEmbeds?: HostTensor;
  /** [embedding output, layer 1, ..., layer N], each [batch, seq, hidden] (outputHiddenStates). */
  hiddenStates?: HostTensor[];
  /** final_layer_norm(hidden_states[-(clipSkip+1)]) [batch, seq, hidden] (clipSkip given). */
  clipSkipHiddenState?: HostTensor;
}

interface CachedSession {
  key: string;
  session: Promise<RemoteSession>;
  active: number;
  stale: boolean;
}

export class CLIPTextModel {
  readonly architecture: CLIPTextArchitecture;
  readonly store = new ParamStore();
  /** `text_model.*` */
  readonly textModel: CLIPTextTransformer;
  /** `text_projection` (CLIPTextModelWithProjection). */
  readonly textProjection: Linear | undefined;
  readonly bound: BoundWeights;
  readonly runtime: RuntimeHost;
  readonly runtimeOptions: RuntimeOptions;
  private cached: CachedSession | undefined;

  /** Declares the parameters for `config` and binds `weights` strictly (one error lists every problem). */
  constructor(
    readonly config: CLIPTextConfig,
    weights: WeightSet,
    options: Omit<CLIPTextModelOptions, "variant"> = {},
  ) {
    this.architecture = clipTextArchitecture(config);
    const root = this.store.root();
    this.textModel = new CLIPTextTransformer(root.pp("text_model"), config);
    this.textProjection =
      this.architecture === "CLIPTextModelWithProjection"
        ? new Linear(root.pp("text_projection"), config.hidden_size, config.projection_dim, false)
        : undefined;
    this.bound = bindWeights(this.store, weights, { ignoreUnexpected: [...CLIP_TEXT_IGNORED_KEYS] });
    this.runtime = options.runtime ?? defaultRuntimeHost();
    this.runtimeOptions = options.runtimeOptions ?? {};
  }

  /** Loads `<dir>/config.json` and its safetensors weights (`model[.<variant>].safetensors` or shards). */
  static async fromPretrained(dir: string, options: CLIPTextModelOptions = {}): Promise<CLIPTextModel> {
    const configPath = join(dir, "config.json");
    const config = parseCLIPTextConfig(readJson(configPath), configPath);
    const files = findWeightFiles(dir, { variant: options.variant }).map((f) => SafetensorsFile.open(f));
    let weights: WeightSet;
    try {
      weights = WeightSet.fromSafetensors(files, dir);
    } finally {
      // Only the headers are needed: onnxruntime reads the data itself.
      for (const f of files) f.close();
    }
    return new CLIPTextModel(config, weights, options);
  }

  get numHiddenLayers(): number {
    return this.config.num_hidden_layers;
  }

  /** Builds the graph (see the file comment for its inputs and outputs). */
  buildGraph(options: CLIPTextGraphOptions = {}): ModelBuilder {
    const { hidden_size: hidden, num_hidden_layers: layers } = this.config;
    const clipSkip = options.clipSkip ?? null;
    if (clipSkip !== null && (!Number.isInteger(clipSkip) || clipSkip < 0 || clipSkip > layers)) {
      throw new RangeError(
        `clip_skip must be an integer in [0, ${layers}] (num_hidden_layers), got ${clipSkip}`,
      );
    }
    const b = new ModelBuilder(this.bound, { name: this.architecture });
    const dims = ["batch", "sequence"];
    const inputIds = b.input("input_ids", "int64", dims);
    const attentionMask = options.attentionMask ? b.input("attention_mask", "int64", dims) : undefined;
    const out = b.withScope("text_model", () => this.textModel.forward(b, inputIds, attentionMask));
    const seqDims = ["batch", "sequence", hidden];
    b.output(out.lastHiddenState, "last_hidden_state", "float32", seqDims);
    b.output(out.pooledOutput, "pooler_output", "float32", ["batch", hidden]);
    if (this.textProjection) {
      const textEmbeds = this.textProjection.forward(b, out.pooledOutput);
      b.output(textEmbeds, "text_embeds", "float32", ["batch", this.config.projection_dim]);
    }
    if (options.outputHiddenStates) {
      out.hiddenStates.forEach((h: Value, i) => {
        b.output(h, `hidden_states_${i}`, "float32", seqDims);
      });
    }
    if (clipSkip !== null) {
      b.output(this.textModel.clipSkip(b, out.hiddenStates, clipSkip), "clip_skip", "float32", seqDims);
    }
    return b;
  }

  /**
   * Runs the model through the runtime host. The session (a graph with the attention_mask input and every
   * hidden state; an absent mask is fed as ones, which gives bit-identical results) is created on the first
   * call and kept until `clipSkip` changes or `release()`.
   */
  async forward(input: CLIPTextForwardInput): Promise<CLIPTextModelOutput> {
    const ids = toInt64Matrix(input.inputIds, input.dims, "input_ids");
    checkInputIds(ids, this.config.vocab_size, this.config.max_position_embeddings);
    let mask: HostTensor;
    if (input.attentionMask === undefined) {
      mask = onesMask(ids.dims);
    } else {
      mask = toInt64Matrix(input.attentionMask, input.dims ?? ids.dims, "attention_mask");
      if (mask.dims[0] !== ids.dims[0] || mask.dims[1] !== ids.dims[1]) {
        throw new CLIPInputError(`attention_mask: dims [${mask.dims}] differ from input_ids [${ids.dims}]`);
      }
    }
    const clipSkip = input.clipSkip ?? null;
    const layers = this.config.num_hidden_layers;
    if (clipSkip !== null && (!Number.isInteger(clipSkip) || clipSkip < 0 || clipSkip > layers)) {
      throw new RangeError(
        `clip_skip must be an integer in [0, ${layers}] (num_hidden_layers), got ${clipSkip}`,
      );
    }
    const outputs = ["last_hidden_state", "pooler_output"];
    if (this.textProjection) outputs.push("text_embeds");
    const hiddenNames = Array.from({ length: layers + 1 }, (_, i) => `hidden_states_${i}`);
    if (input.outputHiddenStates) outputs.push(...hiddenNames);
    if (clipSkip !== null) outputs.push("clip_skip");

    const entry = this.acquire(clipSkip);
    let result: Record<string, HostTensor>;
    try {
      const session = await entry.session;
      result = await session.run({ input_ids: ids, attention_mask: mask }, { outputs, signal: input.signal });
    } finally {
      this.releaseEntry(entry);
    }
    const get = (name: string): HostTensor => {
      const t = result[name];
      if (!t) throw new Error(`text encoder session returned no "${name}"`);
      return t;
    };
    const output: CLIPTextModelOutput = {
      lastHiddenState: get("last_hidden_state"),
      poolerOutput: get("pooler_output"),
    };
    if (this.textProjection) output.textEmbeds = get("text_embeds");
    if (input.outputHiddenStates) output.hiddenStates = hiddenNames.map(get);
    if (clipSkip !== null) output.clipSkipHiddenState = get("clip_skip");
    return output;
  }

  /** Frees the cached session (a later forward creates a new one). */
  async release(): Promise<void> {
    const c = this.cached;
    this.cached = undefined;
    if (!c) return;
    c.stale = true;
    if (c.active === 0) await closeSession(c);
  }

  private acquire(clipSkip: number | null): CachedSession {
    const key = `clip_skip=${clipSkip}`;
    let c = this.cached;
    if (!c || c.key !== key) {
      if (c) {
        c.stale = true;
        if (c.active === 0) void closeSession(c);
      }
      const b = this.buildGraph({ attentionMask: true, outputHiddenStates: true, clipSkip });
      const session = b.createSession((model, external) =>
        this.runtime.createSession(model, { ...this.runtimeOptions, name: "text_encoder", ...external }),
      );
      c = { key, session, active: 0, stale: false };
      const created = c;
      // A failed creation is not cached: the next forward tries again.
      session.catch(() => {
        if (this.cached === created) this.cached = undefined;
      });
      this.cached = c;
    }
    c.active++;
    return c;
  }

  private releaseEntry(c: CachedSession): void {
    c.active--;
    if (c.stale && c.active === 0) void closeSession(c);
  }
}

async function closeSession(c: CachedSession): Promise<void> {
  try {
    await (await c.session).release();
  } catch {
    // creation failed or the host is gone: nothing to free
  }
}
