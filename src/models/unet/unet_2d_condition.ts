/**
 * UNet2DConditionModel: the conditional denoising UNet (x4-upscaler family) as an onnxruntime graph.
 *
 * Ports diffusers v0.23.0 src/diffusers/models/unet_2d_condition.py
 * (https://github.com/huggingface/diffusers/blob/v0.23.0/src/diffusers/models/unet_2d_condition.py): the module
 * layout of `__init__` (parameter keys bind to the checkpoint by name), `forward` (time / class embedding, down,
 * mid, up with forwarded upsample sizes, post-process), `enable_freeu` / `disable_freeu`, `set_attention_slice` and
 * memory-efficient attention (diffusers' xformers switch; here onnxruntime's fused MultiHeadAttention).
 *
 * Graph inputs: `sample` float32 [batch, in_channels, height, width], `timestep` float32 [batch],
 * `encoder_hidden_states` float32 [batch, sequence, cross_attention_dim], and `class_labels` when the model has a
 * class embedding (int64 [batch] for `num_class_embeds`). Output: `out_sample` [batch, out_channels, height, width].
 */

import { join } from "node:path";
import { loadWeightSet, readJson } from "../../io/model_files.js";
import {
  checkModelConvOptions,
  largeMaps,
  modelConvPlan,
  modelWinogradFilters,
  type WinogradFilters,
} from "../../onnx/conv_plan.js";
import type { Value } from "../../onnx/graph_builder.js";
import { ModelBuilder } from "../../onnx/model_builder.js";
import { Conv2d, Embedding, GroupNorm, Linear } from "../../onnx/nn.js";
import * as op from "../../onnx/ops.js";
import { ParamStore } from "../../onnx/params.js";
import { checkPrecision, type Precision } from "../../onnx/quantize.js";
import { type BoundWeights, bindWeights, type WeightSet } from "../../onnx/weights.js";
import { type HostTensor, validateHostTensor } from "../../runtime/host_tensor.js";
import type { RemoteSession } from "../../runtime/remote_session.js";
import type { RuntimeOptions } from "../../runtime/session_options.js";
import { defaultRuntimeHost, type RuntimeHost } from "../../runtime/worker_host.js";
import type { Attention, AttentionGraphOptions } from "../attention_processor.js";
import { TimestepEmbedding, Timesteps } from "../embeddings.js";
import { getActivation } from "../resnet.js";
import {
  parseUNet2DConditionConfig,
  type UNet2DConditionModelConfig,
  type UNetLayout,
  unetLayout,
} from "./config.js";
import type { FreeUConfig } from "./freeu.js";
import {
  type ClassLabelsInput,
  classLabelIndices,
  classLabelTimesteps,
  classLabelVectors,
  type TimestepInput,
  timestepTensor,
  UNetInputError,
} from "./inputs.js";
import { type UNetInt8GraphOptions, unetInt8Options } from "./int8.js";
import {
  type BlockContext,
  type DownBlock,
  getDownBlock,
  getUpBlock,
  type MidBlock,
  UNetMidBlock2D,
  UNetMidBlock2DCrossAttn,
  type UpBlock,
} from "./unet_2d_blocks.js";

/** `set_attention_slice` argument: "auto" (heads // 2), "max" (1), one size, or one size (or null) per layer. */
export type AttentionSliceSize = "auto" | "max" | number | readonly (number | null)[] | null;

/** How the class_labels input is fed, by class embedding kind. */
export type ClassLabelsKind =
  | { kind: "none" }
  | { kind: "index"; numClassEmbeds: number }
  | { kind: "timestep" }
  | { kind: "vector"; dim: number };

type AttentionMode =
  | { kind: "default" }
  | { kind: "sliced"; sizes: (number | null)[] }
  | { kind: "memory-efficient" };

export interface UNet2DConditionModelOptions {
  /** The checkpoint's weights, bound strictly at construction (required to build the graph). */
  weights?: WeightSet;
  /** Runs the graph (default: the process-wide worker host). */
  runtime?: RuntimeHost;
  /** Session options (execution provider, threads, ...). */
  runtimeOptions?: RuntimeOptions;
  /** Names the model in errors (default "unet"). */
  label?: string;
  /**
   * "float32" (default) or "int8": the resnet and attention blocks' Linear layers as dynamically quantized int8
   * kernels (src/onnx/quantize.ts, int8_ops.ts; convolutions too with buildGraph's int8Convolutions), meant for
   * CPUs with AMX / VNNI. Not bit-faithful to diffusers.
   */
  precision?: Precision;
}

export interface UNet2DConditionFromPretrainedOptions {
  /** Weight file variant, e.g. "fp16" → diffusion_pytorch_model.fp16.safetensors. */
  variant?: string;
  precision?: Precision;
  runtime?: RuntimeHost;
  runtimeOptions?: RuntimeOptions;
}

export interface UNet2DConditionInputs {
  /** float32 [batch, in_channels, height, width]. */
  sample: HostTensor;
  /** A number, or a 0-d / [1] / [batch] int64, int32 or float32 tensor (cast to float32 as diffusers does). */
  timestep: TimestepInput;
  /** float32 [batch, sequence, cross_attention_dim]. */
  encoderHiddenStates: HostTensor;
  /** Required when the model has a class embedding (the x4 upscaler: the noise level, < num_class_embeds). */
  classLabels?: ClassLabelsInput;
  /**
   * The batch is [unconditional; conditional] halves of classifier-free guidance (what the pipeline runs). The
   * int8 UNet then runs its guidance-halves graph, which quantizes the second half as its difference from the
   * first (src/onnx/int8_ops.ts: int8LinearHalves), keeping the guided difference accurate; float32 graphs
   * ignore it. Needs an even batch.
   */
  guidancePairs?: boolean;
}

/** diffusers `UNet2DConditionModel`: module tree, graph options, graph and its runtime session. */
export class UNet2DConditionModel {
  readonly config: UNet2DConditionModelConfig;
  readonly layout: UNetLayout;
  readonly store = new ParamStore();
  readonly convIn: Conv2d;
  readonly timeProj: Timesteps;
  readonly timeEmbedding: TimestepEmbedding;
  readonly classEmbedding: Embedding | TimestepEmbedding | Linear | "identity" | undefined;
  readonly downBlocks: DownBlock[] = [];
  readonly midBlock: MidBlock | undefined;
  readonly upBlocks: UpBlock[] = [];
  readonly convNormOut: GroupNorm;
  readonly convOut: Conv2d;
  private readonly timeEmbedAct: ((x: Value) => Value) | undefined;
  private readonly convAct: (x: Value) => Value;
  readonly label: string;
  private readonly bound: BoundWeights | undefined;
  private readonly runtime: RuntimeHost | undefined;
  private readonly runtimeOptions: RuntimeOptions;
  private attentionMode: AttentionMode = { kind: "default" };
  private precisionMode: Precision;
  private freeu: FreeUConfig | undefined;
  private session: { key: string; promise: Promise<RemoteSession> } | undefined;

  /** A model from a config object (diffusers' config.json keys); weights are bound strictly when given. */
  constructor(config: Record<string, unknown>, options: UNet2DConditionModelOptions = {}) {
    this.label = options.label ?? "unet";
    const c = parseUNet2DConditionConfig(config, `${this.label} config`);
    this.config = c;
    const L = unetLayout(c);
    this.layout = L;
    const root = this.store.root();
    const boc = c.block_out_channels;
    const c0 = boc[0] as number;
    const n = boc.length;
    const pad = (k: number) => (k - 1) / 2;

    this.convIn = new Conv2d(root.pp("conv_in"), c.in_channels, c0, c.conv_in_kernel, {
      padding: pad(c.conv_in_kernel),
    });
    this.timeProj = new Timesteps(c0, c.flip_sin_to_cos, c.freq_shift);
    this.timeEmbedding = new TimestepEmbedding(
      root.pp("time_embedding"),
      L.timestepInputDim,
      L.timeEmbedDim,
      {
        actFn: c.act_fn,
        postActFn: c.timestep_post_act,
      },
    );
    const ce = root.pp("class_embedding");
    if (c.class_embed_type === null && c.num_class_embeds !== null) {
      this.classEmbedding = new Embedding(ce, c.num_class_embeds, L.timeEmbedDim);
    } else if (c.class_embed_type === "timestep") {
      this.classEmbedding = new TimestepEmbedding(ce, L.timestepInputDim, L.timeEmbedDim, {
        actFn: c.act_fn,
      });
    } else if (c.class_embed_type === "identity") {
      this.classEmbedding = "identity";
    } else if (c.class_embed_type === "projection") {
      this.classEmbedding = new TimestepEmbedding(
        ce,
        c.projection_class_embeddings_input_dim as number,
        L.timeEmbedDim,
      );
    } else if (c.class_embed_type === "simple_projection") {
      this.classEmbedding = new Linear(ce, c.projection_class_embeddings_input_dim as number, L.timeEmbedDim);
    }
    this.timeEmbedAct = c.time_embedding_act_fn
      ? getActivation(c.time_embedding_act_fn, "time_embedding_act_fn")
      : undefined;

    const common = {
      tembChannels: L.blocksTimeEmbedDim,
      resnetEps: c.norm_eps,
      resnetActFn: c.act_fn,
      resnetGroups: c.norm_num_groups,
      resnetTimeScaleShift: c.resnet_time_scale_shift,
      useLinearProjection: c.use_linear_projection,
      upcastAttention: c.upcast_attention,
    };
    let outputChannel = c0;
    c.down_block_types.forEach((type, i) => {
      const inputChannel = outputChannel;
      outputChannel = boc[i] as number;
      this.downBlocks.push(
        getDownBlock(type, root.pp("down_blocks").pp(i), {
          ...common,
          numLayers: L.layersPerBlock[i] as number,
          transformerLayersPerBlock: L.transformerLayersPerBlock[i] as number | number[],
          inChannels: inputChannel,
          outChannels: outputChannel,
          addDownsample: i !== n - 1,
          downsamplePadding: c.downsample_padding,
          crossAttentionDim: L.crossAttentionDim[i] as number,
          numAttentionHeads: L.numAttentionHeads[i] as number,
          onlyCrossAttention: L.onlyCrossAttention[i] as boolean,
        }),
      );
    });

    const mid = {
      ...common,
      inChannels: boc[n - 1] as number,
      transformerLayersPerBlock: L.transformerLayersPerBlock[n - 1] as number | number[],
      crossAttentionDim: L.crossAttentionDim[n - 1] as number,
      numAttentionHeads: L.numAttentionHeads[n - 1] as number,
      outputScaleFactor: c.mid_block_scale_factor,
    };
    if (c.mid_block_type === "UNetMidBlock2DCrossAttn") {
      this.midBlock = new UNetMidBlock2DCrossAttn(root.pp("mid_block"), mid);
    } else if (c.mid_block_type === "UNetMidBlock2D") {
      this.midBlock = new UNetMidBlock2D(root.pp("mid_block"), mid);
    }

    const rev = <T>(xs: readonly T[]) => [...xs].reverse();
    const rBoc = rev(boc);
    const rHeads = rev(L.numAttentionHeads);
    const rLayers = rev(L.layersPerBlock);
    const rCross = rev(L.crossAttentionDim);
    const rOnlyCross = rev(L.onlyCrossAttention);
    outputChannel = rBoc[0] as number;
    c.up_block_types.forEach((type, i) => {
      const prevOutputChannel = outputChannel;
      outputChannel = rBoc[i] as number;
      const inputChannel = rBoc[Math.min(i + 1, n - 1)] as number;
      this.upBlocks.push(
        getUpBlock(type, root.pp("up_blocks").pp(i), {
          ...common,
          numLayers: (rLayers[i] as number) + 1,
          transformerLayersPerBlock: L.reverseTransformerLayersPerBlock[i] as number | number[],
          inChannels: inputChannel,
          outChannels: outputChannel,
          prevOutputChannel,
          addUpsample: i !== n - 1,
          resolutionIdx: i,
          crossAttentionDim: rCross[i] as number,
          numAttentionHeads: rHeads[i] as number,
          onlyCrossAttention: rOnlyCross[i] as boolean,
        }),
      );
    });

    this.convNormOut = new GroupNorm(root.pp("conv_norm_out"), c.norm_num_groups, c0, c.norm_eps);
    this.convAct = getActivation(c.act_fn, "act_fn");
    this.convOut = new Conv2d(root.pp("conv_out"), c0, c.out_channels, c.conv_out_kernel, {
      padding: pad(c.conv_out_kernel),
    });

    this.bound = options.weights ? bindWeights(this.store, options.weights) : undefined;
    this.runtime = options.runtime;
    this.runtimeOptions = { ...options.runtimeOptions };
    this.precisionMode = this.checkedPrecision(options.precision ?? "float32");
    checkModelConvOptions("unet", this.runtimeOptions, this.label);
  }

  /** When the Winograd layers' filters are transformed: RuntimeOptions.winogradFilters, default "session". */
  get winogradFilters(): WinogradFilters {
    return modelWinogradFilters("unet", this.runtimeOptions);
  }

  /** A valid precision for this model's execution provider (int8 uses onnxruntime's CPU integer kernels). */
  private checkedPrecision(precision: unknown): Precision {
    const p = checkPrecision(precision, `${this.label}: precision`);
    const ep = this.runtimeOptions.executionProvider ?? "cpu";
    if (p === "int8" && ep !== "cpu") {
      throw new RangeError(
        `${this.label}: precision "int8" runs onnxruntime's CPU integer kernels; it is not available with the ` +
          `"${ep}" execution provider (use float32 there)`,
      );
    }
    return p;
  }

  /** Loads `<dir>/config.json` and its safetensors weights (strictly bound: every mismatch in one error). */
  static async fromPretrained(
    dir: string,
    options: UNet2DConditionFromPretrainedOptions = {},
  ): Promise<UNet2DConditionModel> {
    const config = readJson(join(dir, "config.json"));
    const weights = loadWeightSet(dir, { variant: options.variant });
    return new UNet2DConditionModel(config, {
      weights,
      runtime: options.runtime,
      runtimeOptions: options.runtimeOptions,
      label: dir,
      precision: options.precision,
    });
  }

  /** The precision of the UNet's graph ("float32" or "int8"); a change rebuilds the session on the next call. */
  get precision(): Precision {
    return this.precisionMode;
  }

  setPrecision(precision: Precision): void {
    this.precisionMode = this.checkedPrecision(precision);
  }

  /** 2 ** number of upsamplers: sizes that are not multiples of it get explicit upsample sizes. */
  get defaultOverallUpFactor(): number {
    return 2 ** this.layout.numUpsamplers;
  }

  /** How `class_labels` is fed. */
  get classLabels(): ClassLabelsKind {
    const c = this.config;
    const e = this.classEmbedding;
    if (e === undefined) return { kind: "none" };
    if (e instanceof Embedding) return { kind: "index", numClassEmbeds: e.num };
    if (c.class_embed_type === "timestep") return { kind: "timestep" };
    if (e === "identity") return { kind: "vector", dim: this.layout.timeEmbedDim };
    return { kind: "vector", dim: c.projection_class_embeddings_input_dim as number };
  }

  /** Every Attention module, in diffusers' module order (down blocks, up blocks, mid block). */
  attentionModules(): Attention[] {
    return [
      ...this.downBlocks.flatMap((blk) => blk.attentionModules()),
      ...this.upBlocks.flatMap((blk) => blk.attentionModules()),
      ...(this.midBlock?.attentionModules() ?? []),
    ];
  }

  /** diffusers `set_attention_slice`: null turns slicing off. The result is unchanged; peak memory is lower. */
  setAttentionSlice(sliceSize: AttentionSliceSize): void {
    const dims = this.attentionModules().map((a) => a.heads);
    if (sliceSize === null) {
      this.attentionMode = { kind: "default" };
      return;
    }
    let sizes: (number | null)[];
    if (sliceSize === "auto") sizes = dims.map((d) => Math.floor(d / 2));
    else if (sliceSize === "max") sizes = dims.map(() => 1);
    else if (typeof sliceSize === "number") sizes = dims.map(() => sliceSize);
    else if (Array.isArray(sliceSize)) sizes = [...sliceSize];
    else throw new Error(`setAttentionSlice: invalid slice size ${JSON.stringify(sliceSize)}`);
    if (sizes.length !== dims.length) {
      throw new Error(
        `setAttentionSlice: ${sizes.length} slice sizes given, but the model has ${dims.length} attention layers`,
      );
    }
    sizes.forEach((s, i) => {
      if (s === null) return;
      if (!Number.isInteger(s) || s < 1) {
        throw new Error(
          `setAttentionSlice: slice size ${s} (attention layer ${i}) must be a positive integer`,
        );
      }
      if (s > (dims[i] as number))
        throw new Error(`setAttentionSlice: size ${s} has to be smaller or equal to ${dims[i]}.`);
    });
    this.attentionMode = { kind: "sliced", sizes };
  }

  /** Attention through onnxruntime's fused MultiHeadAttention (diffusers' memory-efficient attention switch). */
  enableMemoryEfficientAttention(): void {
    this.attentionMode = { kind: "memory-efficient" };
  }

  disableMemoryEfficientAttention(): void {
    if (this.attentionMode.kind === "memory-efficient") this.attentionMode = { kind: "default" };
  }

  /** diffusers `enable_freeu(s1, s2, b1, b2)`. */
  enableFreeU(f: FreeUConfig): void {
    for (const k of ["s1", "s2", "b1", "b2"] as const) {
      if (typeof f[k] !== "number" || !Number.isFinite(f[k])) {
        throw new Error(`enableFreeU: ${k} must be a finite number, got ${f[k]}`);
      }
    }
    this.freeu = { s1: f.s1, s2: f.s2, b1: f.b1, b2: f.b2 };
  }

  disableFreeU(): void {
    this.freeu = undefined;
  }

  get freeU(): FreeUConfig | undefined {
    return this.freeu ? { ...this.freeu } : undefined;
  }

  /** A key of every option that changes the graph (sessions are cached per key). */
  private get graphKey(): string {
    return JSON.stringify({
      attention: this.attentionMode,
      freeu: this.freeu ?? null,
      precision: this.precisionMode,
    });
  }

  private attentionOptions(): ((a: Attention) => AttentionGraphOptions | undefined) | undefined {
    const mode = this.attentionMode;
    if (mode.kind === "default") return undefined;
    if (mode.kind === "memory-efficient") return () => ({ memoryEfficient: true });
    const bySize = new Map<Attention, number>();
    this.attentionModules().forEach((a, i) => {
      const s = mode.sizes[i];
      if (s !== null && s !== undefined) bySize.set(a, s);
    });
    return (a) => {
      const s = bySize.get(a);
      return s === undefined ? undefined : { sliceSize: s };
    };
  }

  /**
   * The whole graph (inputs and output declared) with the current FreeU / attention options. `largeMaps`: the
   * variant `forward` uses above 256² latents (no Winograd under convAlgorithm "auto": src/onnx/conv_plan.ts).
   */
  buildGraph(options: UNetInt8GraphOptions & { largeMaps?: boolean } = {}): ModelBuilder {
    if (!this.bound) throw new Error(`${this.label}: no weights were given, so the graph cannot be built`);
    // int8: UNET_INT8_KEEP, the kernel, convolutions and activations (./int8.ts); float32 ignores them.
    const resolved = this.precisionMode === "int8" ? unetInt8Options(this.label, options) : undefined;
    const int8 = resolved?.int8;
    const conv = modelConvPlan("unet", this.runtimeOptions, options.largeMaps === true);
    const b = new ModelBuilder(this.bound, { name: "unet", int8, conv });
    // int8: each batch row's partner row for guidance pairs (itself if none; src/onnx/int8_ops.ts), or halves.
    if (int8 && resolved?.halves) b.int8GuidanceHalves = true;
    else if (int8) b.int8GuidanceIndex = b.input("guidance_index", "int64", ["batch"]);
    const c = this.config;
    const cross = this.layout.crossAttentionDim;
    const crossDim = cross.every((d) => d === cross[0]) ? (cross[0] as number) : "cross_attention_dim";
    const sample = b.input("sample", "float32", ["batch", c.in_channels, "height", "width"]);
    const timestep = b.input("timestep", "float32", ["batch"]);
    const ehs = b.input("encoder_hidden_states", "float32", ["batch", "sequence", crossDim]);
    const kind = this.classLabels;
    let labels: Value | undefined;
    if (kind.kind === "index") labels = b.input("class_labels", "int64", ["batch"]);
    else if (kind.kind === "timestep") labels = b.input("class_labels", "float32", ["batch"]);
    else if (kind.kind === "vector") labels = b.input("class_labels", "float32", ["batch", kind.dim]);
    const out = this.forwardGraph(b, sample, timestep, ehs, labels);
    b.output(out, "out_sample", "float32", ["batch", c.out_channels, "height", "width"]);
    return b;
  }

  /**
   * Runs the model: diffusers' `unet(sample, timestep, encoder_hidden_states, class_labels).sample`. The session
   * is created on the first call and reused until an option that changes the graph is toggled.
   */
  async forward(inputs: UNet2DConditionInputs, options: { signal?: AbortSignal } = {}): Promise<HostTensor> {
    const { sample, encoderHiddenStates } = inputs;
    validateHostTensor(sample, "sample");
    if (sample.dims.length !== 4)
      throw new UNetInputError(`sample: expected [batch, channels, height, width], got [${sample.dims}]`);
    const batch = sample.dims[0] as number;
    const feeds: Record<string, HostTensor> = {
      sample,
      timestep: timestepTensor(inputs.timestep, batch),
      encoder_hidden_states: encoderHiddenStates,
    };
    const kind = this.classLabels;
    if (kind.kind !== "none") {
      if (inputs.classLabels === undefined) {
        throw new UNetInputError("class_labels should be provided when num_class_embeds > 0");
      }
      if (kind.kind === "index")
        feeds.class_labels = classLabelIndices(inputs.classLabels, batch, kind.numClassEmbeds);
      else if (kind.kind === "timestep") feeds.class_labels = classLabelTimesteps(inputs.classLabels, batch);
      else feeds.class_labels = classLabelVectors(inputs.classLabels, batch, kind.dim);
    }
    if (inputs.guidancePairs && batch % 2 !== 0)
      throw new UNetInputError(
        `guidancePairs needs an even batch ([unconditional; conditional]), got ${batch}`,
      );
    const session = await this.getSession(
      largeMaps("unet", sample.dims[2] as number, sample.dims[3] as number, this.runtimeOptions),
      inputs.guidancePairs === true,
    );
    if (session.inputNames.includes("guidance_index")) {
      // The per-row int8 graph, which forward runs for unguided batches only (guided ones run the halves graph,
      // which has no such input): every row is its own partner, i.e. unpaired.
      const index = BigInt64Array.from({ length: batch }, (_, r) => BigInt(r));
      feeds.guidance_index = { type: "int64", dims: [batch], data: index };
    }
    const out = await session.run(feeds, { signal: options.signal });
    return out.out_sample as HostTensor;
  }

  /**
   * The cached session for the current graph options and input size class (a change releases the old one: one
   * session is alive at a time).
   */
  private getSession(large: boolean, guidancePairs = false): Promise<RemoteSession> {
    // int8: guided batches run the guidance-halves graph, others the per-row one (buildGraph, int8Activations).
    const int8Activations = this.precisionMode === "int8" && guidancePairs ? "half" : "row";
    const key = JSON.stringify({ graph: this.graphKey, largeMaps: large, int8Activations });
    if (this.session?.key === key) return this.session.promise;
    this.release();
    const b = this.buildGraph({ largeMaps: large, int8Activations });
    const host = this.runtime ?? defaultRuntimeHost();
    const promise = b.createSession((model, external) =>
      host.createSession(model, { ...this.runtimeOptions, name: "unet", ...external }),
    );
    this.session = { key, promise };
    promise.catch(() => {
      if (this.session?.promise === promise) this.session = undefined;
    });
    return promise;
  }

  /** Frees the runtime session (a later forward creates a new one). */
  release(): void {
    const s = this.session;
    this.session = undefined;
    s?.promise.then((session) => session.release()).catch(() => {});
  }

  /** diffusers `UNet2DConditionModel.forward` as graph ops (timestep already float32 [batch]). */
  forwardGraph(
    b: ModelBuilder,
    sample: Value,
    timestep: Value,
    encoderHiddenStates: Value,
    classLabels?: Value,
  ): Value {
    const c = this.config;
    // 0. center input
    let x = c.center_input_sample ? op.sub(op.mul(sample, 2), 1) : sample;

    // 1. time (+ class) embedding
    let emb = this.timeEmbedding.forward(b, this.timeProj.forward(b, timestep));
    if (this.classEmbedding !== undefined) {
      if (!classLabels) throw new Error("class_labels should be provided when num_class_embeds > 0");
      const e = this.classEmbedding;
      let classEmb: Value;
      if (e === "identity") classEmb = classLabels;
      else if (e instanceof Embedding || e instanceof Linear) classEmb = e.forward(b, classLabels);
      else if (c.class_embed_type === "timestep")
        classEmb = e.forward(b, this.timeProj.forward(b, classLabels));
      else classEmb = e.forward(b, classLabels);
      emb = c.class_embeddings_concat ? op.concat([emb, classEmb], -1) : op.add(emb, classEmb);
    }
    if (this.timeEmbedAct) emb = this.timeEmbedAct(emb);

    const ctx: BlockContext = { temb: emb, encoderHiddenStates, attnOptions: this.attentionOptions() };

    // 2. pre-process
    x = this.convIn.forward(b, x);

    // 3. down
    const skips: Value[] = [x];
    for (const block of this.downBlocks) {
      const r = block.forward(b, x, ctx);
      x = r.hidden;
      skips.push(...r.resSamples);
    }

    // 4. mid
    if (this.midBlock) x = this.midBlock.forward(b, x, ctx);

    // 5. up. diffusers forwards the skip connection's size to the upsampler only when the input is not a multiple
    // of 2**num_upsamplers; otherwise the upsampler doubles, which is that same size. The graph always forwards it,
    // so one graph serves every input size.
    this.upBlocks.forEach((block, i) => {
      const res = skips.splice(skips.length - block.resnets.length);
      const isFinal = i === this.upBlocks.length - 1;
      const next = skips[skips.length - 1];
      const upsampleSize = !isFinal && next ? op.shape(next, 2, 4) : undefined;
      x = block.forward(b, x, res, ctx, upsampleSize, this.freeu);
    });

    // 6. post-process
    x = this.convAct(this.convNormOut.forward(b, x));
    return this.convOut.forward(b, x);
  }
}
