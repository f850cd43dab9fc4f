/**
 * AutoencoderKL: the VAE of Stable Diffusion (and of the x4 upscaler) as two onnxruntime graphs, decode
 * (`z` → post_quant_conv → Decoder → `sample`) and encode (`image` → Encoder → quant_conv → `moments`, turned into a
 * DiagonalGaussianDistribution on the host), with diffusers' tiling and slicing switches driving them host-side.
 * Ports diffusers v0.23.0 src/diffusers/models/autoencoder_kl.py:
 * https://github.com/huggingface/diffusers/blob/v0.23.0/src/diffusers/models/autoencoder_kl.py
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
import { Conv2d } from "../../onnx/nn.js";
import { ParamStore } from "../../onnx/params.js";
import { type BoundWeights, bindWeights, type WeightSet } from "../../onnx/weights.js";
import { describeTensor, type HostTensor, validateHostTensor } from "../../runtime/host_tensor.js";
import type { RemoteSession } from "../../runtime/remote_session.js";
import type { RuntimeOptions } from "../../runtime/session_options.js";
import { defaultRuntimeHost, type RuntimeHost } from "../../runtime/worker_host.js";
import type { AttentionGraphOptions } from "../attention_processor.js";
import type { ActivationName } from "../resnet.js";
import { type AutoencoderKLConfig, parseAutoencoderKLConfig, vaeScaleFactor } from "./config.js";
import { Decoder } from "./decoder.js";
import { DiagonalGaussianDistribution } from "./distribution.js";
import { Encoder } from "./encoder.js";
import { catBatch, type FloatTensor, splitBatch, tiledDecode, tiledEncode } from "./tiling.js";

export interface AutoencoderKLOptions {
  /** The checkpoint's weights, bound strictly at construction (required to build the graphs). */
  weights?: WeightSet;
  /** Runs the graphs (default: the process-wide worker host). */
  runtime?: RuntimeHost;
  /** Session options (execution provider, threads, ...). */
  runtimeOptions?: RuntimeOptions;
  /** Names the model in errors (default "vae"). */
  label?: string;
}

export interface AutoencoderKLFromPretrainedOptions {
  /** Weight file variant, e.g. "fp16" → diffusion_pytorch_model.fp16.safetensors. */
  variant?: string;
  runtime?: RuntimeHost;
  runtimeOptions?: RuntimeOptions;
}

export interface VaeRunOptions {
  signal?: AbortSignal;
}

type GraphKind = "decode" | "encode";

/** Checkpoint keys of the mid-block attention saved before diffusers renamed them (query/key/value/proj_attn). */
function usesDeprecatedAttentionNames(weights: WeightSet | undefined, part: "encoder" | "decoder"): boolean {
  return weights?.entries.has(`${part}.mid_block.attentions.0.query.weight`) ?? false;
}

/** diffusers `AutoencoderKL`: module tree, tiling / slicing switches, graphs and their runtime sessions. */
export class AutoencoderKL {
  readonly config: AutoencoderKLConfig;
  readonly label: string;
  readonly store = new ParamStore();
  readonly encoder: Encoder;
  readonly decoder: Decoder;
  readonly quantConv: Conv2d;
  readonly postQuantConv: Conv2d;

  useSlicing = false;
  useTiling = false;
  /** Image-space tile size (config.sample_size; its first entry when a list). Settable, as in diffusers. */
  tileSampleMinSize: number;
  /** Latent-space tile size: sample_size / 2^(len(block_out_channels) - 1). Settable. */
  tileLatentMinSize: number;
  tileOverlapFactor = 0.25;

  private readonly bound: BoundWeights | undefined;
  private readonly runtime: RuntimeHost | undefined;
  private readonly runtimeOptions: RuntimeOptions;
  /** undefined: the default (fused on the CPU provider, see `memoryEfficientAttention`). */
  private memoryEfficient: boolean | undefined;
  private readonly sessions = new Map<GraphKind, { key: string; promise: Promise<RemoteSession> }>();

  /** A model from a config object (diffusers' config.json keys); weights are bound strictly when given. */
  constructor(config: Record<string, unknown>, options: AutoencoderKLOptions = {}) {
    this.label = options.label ?? "vae";
    const c = parseAutoencoderKLConfig(config, `${this.label} config`);
    this.config = c;
    const root = this.store.root();
    const common = {
      blockOutChannels: c.block_out_channels,
      layersPerBlock: c.layers_per_block,
      normNumGroups: c.norm_num_groups,
      actFn: c.act_fn.toLowerCase() as ActivationName,
    };
    this.encoder = new Encoder(root.pp("encoder"), {
      ...common,
      inChannels: c.in_channels,
      outChannels: c.latent_channels,
      doubleZ: true,
      deprecatedAttentionNames: usesDeprecatedAttentionNames(options.weights, "encoder"),
    });
    this.decoder = new Decoder(root.pp("decoder"), {
      ...common,
      inChannels: c.latent_channels,
      outChannels: c.out_channels,
      deprecatedAttentionNames: usesDeprecatedAttentionNames(options.weights, "decoder"),
    });
    const L = c.latent_channels;
    this.quantConv = new Conv2d(root.pp("quant_conv"), 2 * L, 2 * L, 1);
    this.postQuantConv = new Conv2d(root.pp("post_quant_conv"), L, L, 1);

    const sampleSize = Array.isArray(c.sample_size) ? (c.sample_size[0] as number) : c.sample_size;
    this.tileSampleMinSize = sampleSize;
    this.tileLatentMinSize = Math.trunc(sampleSize / 2 ** (c.block_out_channels.length - 1));

    this.bound = options.weights ? bindWeights(this.store, options.weights) : undefined;
    this.runtime = options.runtime;
    this.runtimeOptions = { ...options.runtimeOptions };
    checkModelConvOptions("vae", this.runtimeOptions, this.label);
  }

  /** When the Winograd layers' filters are transformed: RuntimeOptions.winogradFilters, default "run". */
  get winogradFilters(): WinogradFilters {
    return modelWinogradFilters("vae", this.runtimeOptions);
  }

  /** Loads `<dir>/config.json` and its safetensors weights (strictly bound: every mismatch in one error). */
  static async fromPretrained(
    dir: string,
    options: AutoencoderKLFromPretrainedOptions = {},
  ): Promise<AutoencoderKL> {
    const config = readJson(join(dir, "config.json"));
    const weights = loadWeightSet(dir, { variant: options.variant });
    return new AutoencoderKL(config, {
      weights,
      runtime: options.runtime,
      runtimeOptions: options.runtimeOptions,
      label: dir,
    });
  }

  /** 2^(len(block_out_channels) - 1): the pipeline's vae_scale_factor. */
  get scaleFactor(): number {
    return vaeScaleFactor(this.config);
  }

  /** diffusers `enable_tiling(use_tiling=True)`. */
  enableTiling(useTiling = true): void {
    this.useTiling = useTiling;
  }

  disableTiling(): void {
    this.enableTiling(false);
  }

  /** diffusers `enable_slicing()`: a batch is decoded (and encoded, when not tiled) one sample at a time. */
  enableSlicing(): void {
    this.useSlicing = true;
  }

  disableSlicing(): void {
    this.useSlicing = false;
  }

  /** Mid-block attention through onnxruntime's fused MultiHeadAttention (no H·W × H·W score matrix). */
  enableMemoryEfficientAttention(enabled = true): void {
    this.memoryEfficient = enabled;
  }

  /** The plain attention (softmax(QKᵀ)V with its score matrix), diffusers' AttnProcessor. */
  disableMemoryEfficientAttention(): void {
    this.memoryEfficient = false;
  }

  /**
   * Whether the mid-block attention is fused. Default: yes on the CPU provider, as diffusers on torch 2 runs
   * scaled_dot_product_attention there: the mid-block attends over every latent pixel with one head, so the plain
   * score matrix is (H·W)² floats per image (128² latents: 1 GiB, 256²: 16 GiB) for no speed gain (measured: the
   * same decode time at 64² and 128²; the goldens pass either way). Other providers keep the plain attention
   * unless enabled.
   */
  get memoryEfficientAttention(): boolean {
    return this.memoryEfficient ?? (this.runtimeOptions.executionProvider ?? "cpu") === "cpu";
  }

  private attentionOptions(): AttentionGraphOptions {
    return this.memoryEfficientAttention ? { memoryEfficient: true } : {};
  }

  private builder(name: string, large: boolean): ModelBuilder {
    if (!this.bound) throw new Error(`${this.label}: no weights were given, so the graph cannot be built`);
    const conv = modelConvPlan("vae", this.runtimeOptions, large);
    return new ModelBuilder(this.bound, { name, conv });
  }

  /** post_quant_conv + decoder as graph ops. */
  decodeGraph(b: ModelBuilder, z: Value, attention: AttentionGraphOptions = this.attentionOptions()): Value {
    return this.decoder.forward(b, this.postQuantConv.forward(b, z), attention);
  }

  /** encoder + quant_conv as graph ops (the moments: mean and logvar stacked on channels, unclamped). */
  encodeGraph(
    b: ModelBuilder,
    image: Value,
    attention: AttentionGraphOptions = this.attentionOptions(),
  ): Value {
    return this.quantConv.forward(b, this.encoder.forward(b, image, attention));
  }

  /**
   * The decode graph: input `z` [batch, latent, height, width] → output `sample`. `largeMaps`: the variant that
   * `decode` uses above 128² latents (no Winograd under convAlgorithm "auto": src/onnx/conv_plan.ts; the same
   * results up to float rounding, far less memory). Tiles of a tiled decode are small.
   */
  buildDecodeGraph(
    attention: AttentionGraphOptions = this.attentionOptions(),
    largeMaps = false,
  ): ModelBuilder {
    const c = this.config;
    const b = this.builder("vae_decoder", largeMaps);
    const z = b.input("z", "float32", ["batch", c.latent_channels, "height", "width"]);
    b.output(this.decodeGraph(b, z, attention), "sample", "float32", [
      "batch",
      c.out_channels,
      "sample_height",
      "sample_width",
    ]);
    return b;
  }

  /**
   * The encode graph: input `image` [batch, in, height, width] → output `moments` [batch, 2·latent, h, w].
   * `largeMaps` as for `buildDecodeGraph`.
   */
  buildEncodeGraph(
    attention: AttentionGraphOptions = this.attentionOptions(),
    largeMaps = false,
  ): ModelBuilder {
    const c = this.config;
    const b = this.builder("vae_encoder", largeMaps);
    const x = b.input("image", "float32", ["batch", c.in_channels, "height", "width"]);
    b.output(this.encodeGraph(b, x, attention), "moments", "float32", [
      "batch",
      2 * c.latent_channels,
      "latent_height",
      "latent_width",
    ]);
    return b;
  }

  /**
   * diffusers `vae.decode(z).sample`: z float32 [batch, latent_channels, h, w] → [batch, out_channels, h·f, w·f].
   * Slicing decodes one sample at a time; tiling is used when `use_tiling and (w > tile_latent_min_size or
   * h > tile_latent_min_size)`.
   */
  async decode(z: HostTensor, options: VaeRunOptions = {}): Promise<HostTensor> {
    const t = this.checkInput(z, "z", this.config.latent_channels);
    const run = (x: FloatTensor) => this.runGraph("decode", x, options);
    const decodeOne = (x: FloatTensor): Promise<FloatTensor> => {
      const [, , h, w] = x.dims as [number, number, number, number];
      if (this.useTiling && (w > this.tileLatentMinSize || h > this.tileLatentMinSize)) {
        return tiledDecode(x, this.tileSettings(), run);
      }
      return run(x);
    };
    let out: FloatTensor;
    if (this.useSlicing && t.dims[0]! > 1) {
      const parts: FloatTensor[] = [];
      for (const s of splitBatch(t)) parts.push(await decodeOne(s));
      out = catBatch(parts);
    } else {
      out = await decodeOne(t);
    }
    return { type: "float32", dims: out.dims, data: out.data };
  }

  /**
   * diffusers `vae.encode(image).latent_dist`: image float32 [batch, in_channels, H, W] (in [-1, 1]). Tiling is
   * used when `use_tiling and (W > tile_sample_min_size or H > tile_sample_min_size)`, else slicing (one sample at
   * a time) when enabled.
   */
  async encode(image: HostTensor, options: VaeRunOptions = {}): Promise<DiagonalGaussianDistribution> {
    const t = this.checkInput(image, "image", this.config.in_channels);
    const run = (x: FloatTensor) => this.runGraph("encode", x, options);
    const [, , H, W] = t.dims as [number, number, number, number];
    let moments: FloatTensor;
    if (this.useTiling && (W > this.tileSampleMinSize || H > this.tileSampleMinSize)) {
      moments = await tiledEncode(t, this.tileSettings(), run);
    } else if (this.useSlicing && t.dims[0]! > 1) {
      const parts: FloatTensor[] = [];
      for (const s of splitBatch(t)) parts.push(await run(s));
      moments = catBatch(parts);
    } else {
      moments = await run(t);
    }
    return new DiagonalGaussianDistribution(moments);
  }

  private tileSettings() {
    for (const k of ["tileSampleMinSize", "tileLatentMinSize"] as const) {
      if (!Number.isInteger(this[k]) || this[k] < 1)
        throw new Error(`${this.label}: ${k} must be a positive integer`);
    }
    if (!(this.tileOverlapFactor >= 0 && this.tileOverlapFactor < 1)) {
      throw new Error(`${this.label}: tileOverlapFactor must be in [0, 1), got ${this.tileOverlapFactor}`);
    }
    return {
      tileSampleMinSize: this.tileSampleMinSize,
      tileLatentMinSize: this.tileLatentMinSize,
      tileOverlapFactor: this.tileOverlapFactor,
    };
  }

  private checkInput(x: HostTensor, name: string, channels: number): FloatTensor {
    validateHostTensor(x, name);
    if (x.type !== "float32" || x.dims.length !== 4 || x.dims[1] !== channels || x.dims[0] === 0) {
      throw new Error(
        `${this.label}: ${name} must be float32 [batch, ${channels}, height, width], got ${describeTensor(x)}`,
      );
    }
    return { dims: x.dims, data: x.data as Float32Array };
  }

  private async runGraph(kind: GraphKind, x: FloatTensor, options: VaeRunOptions): Promise<FloatTensor> {
    const [, , h, w] = x.dims as [number, number, number, number];
    const f = kind === "decode" ? 1 : this.scaleFactor;
    const session = await this.getSession(kind, largeMaps("vae", h / f, w / f, this.runtimeOptions));
    const input = kind === "decode" ? "z" : "image";
    const output = kind === "decode" ? "sample" : "moments";
    const out = await session.run({ [input]: { type: "float32", dims: x.dims, data: x.data } }, options);
    const r = out[output] as HostTensor;
    return { dims: r.dims, data: r.data as Float32Array };
  }

  /**
   * The cached session of a graph for the current options and input size class (a change releases the old one:
   * one session per kind is alive at a time).
   */
  private getSession(kind: GraphKind, large: boolean): Promise<RemoteSession> {
    const attention = this.attentionOptions();
    const key = JSON.stringify({ attention, largeMaps: large });
    const hit = this.sessions.get(kind);
    if (hit?.key === key) return hit.promise;
    this.releaseSession(kind);
    const b =
      kind === "decode" ? this.buildDecodeGraph(attention, large) : this.buildEncodeGraph(attention, large);
    const host = this.runtime ?? defaultRuntimeHost();
    const name = kind === "decode" ? "vae_decoder" : "vae_encoder";
    const promise = b.createSession((model, external) =>
      host.createSession(model, { ...this.runtimeOptions, name, ...external }),
    );
    this.sessions.set(kind, { key, promise });
    promise.catch(() => {
      if (this.sessions.get(kind)?.promise === promise) this.sessions.delete(kind);
    });
    return promise;
  }

  private releaseSession(kind: GraphKind): void {
    const s = this.sessions.get(kind);
    this.sessions.delete(kind);
    s?.promise.then((session) => session.release()).catch(() => {});
  }

  /** Frees the runtime sessions (a later call creates new ones). */
  release(): void {
    this.releaseSession("decode");
    this.releaseSession("encode");
  }
}
