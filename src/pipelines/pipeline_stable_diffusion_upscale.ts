/**
 * StableDiffusionUpscalePipeline: diffusers v0.23.0
 * (src/diffusers/pipelines/stable_diffusion/pipeline_stable_diffusion_upscale.py) in TypeScript. `call` reads top
 * to bottom in diffusers' numbered steps; random draws happen in diffusers' order (low-res noise, then latents, then
 * per-step noise), so a seed gives the same image.
 *
 * One deliberate deviation: with several prompts and numImagesPerPrompt > 1, diffusers tiles the image batch
 * ([i0, i1, i0, i1]) while repeating each prompt in place ([p0, p0, p1, p1]), pairing prompts with the wrong
 * images. Here every prompt is paired with its own image ([i0, i0, i1, i1]). For one prompt, or one image per
 * prompt, the two agree.
 */
import { join } from "node:path";
import { loadImage } from "../image/decode.js";
import { ImageInputError } from "../image/errors.js";
import { postprocess, preprocess } from "../image/processor.js";
import type { FloatImageBatch, RgbImage } from "../image/types.js";
import { type ResolveOptions, resolvePretrained } from "../io/hub.js";
import { readJson } from "../io/model_files.js";
import { CLIPTextModel } from "../models/clip/clip_text_model.js";
import type { FreeUConfig } from "../models/unet/freeu.js";
import { UNet2DConditionModel } from "../models/unet/unet_2d_condition.js";
import { AutoencoderKL } from "../models/vae/autoencoder_kl.js";
import { checkPrecision, type Precision } from "../onnx/quantize.js";
import { defaultGenerator } from "../random/default_generator.js";
import { Generator } from "../random/generator.js";
import { randnTensor } from "../random/randn_tensor.js";
import type { RandomDtype } from "../random/shape.js";
import type { HostTensor } from "../runtime/host_tensor.js";
import type { RuntimeOptions } from "../runtime/session_options.js";
import { defaultRuntimeHost, type RuntimeHost } from "../runtime/worker_host.js";
import { type Scheduler, schedulerFromConfig } from "../schedulers/index.js";
import { DDPMScheduler } from "../schedulers/scheduling_ddpm.js";
import { CLIPTokenizer } from "../tokenizers/clip_tokenizer.js";
import { catBatch, catChannels, firstNonFinite, repeatInterleaveBatch } from "./batch_ops.js";
import { readPipelineIndex } from "./pipeline_config.js";
import {
  type CheckedInputs,
  checkInputs,
  checkPreparedImage,
  type ReturnDictOption,
  type UpscaleCallOptions,
  type UpscaleImageInput,
  UpscaleInputError,
} from "./upscale_inputs.js";

export interface FromPretrainedOptions extends Omit<ResolveOptions, "variant"> {
  /** Weight variant, e.g. "fp16" (cast to float32 for the CPU). */
  variant?: string;
  /** Execution provider: "cpu" (default), "cuda", "webgpu". */
  device?: RuntimeOptions["executionProvider"];
  /** Intra-op threads per session (default: onnxruntime's choice, the physical cores). */
  threads?: number;
  /** Further session options. */
  runtimeOptions?: RuntimeOptions;
  /**
   * UNet precision: "float32" (default, faithful to diffusers) or "int8" (dynamically quantized resnet and
   * attention layers: the CPU fast path on AMX / VNNI processors; see README "Performance").
   */
  precision?: Precision;
  /** Host running the sessions (default: the process-wide worker thread). */
  runtime?: RuntimeHost;
  safetyChecker?: SafetyChecker;
  watermarker?: Watermarker;
}

/** Returns, per image, whether it is flagged; flagged images are replaced by black ones (as diffusers). */
export type SafetyChecker = (images: RgbImage[]) => boolean[] | Promise<boolean[]>;
/** Applied to "pil" outputs, like diffusers' watermarker.apply_watermark. */
export type Watermarker = (images: RgbImage[]) => RgbImage[] | Promise<RgbImage[]>;

export type UpscaleImages =
  | { outputType: "pil"; images: RgbImage[] }
  | { outputType: "np" | "pt" | "latent"; data: Float32Array; shape: [number, number, number, number] };

export interface UpscaleOutput {
  images: UpscaleImages;
  /** Per image, when a safety checker is set; null otherwise. */
  nsfwContentDetected: boolean[] | null;
}

export interface EncodePromptOptions {
  negativePrompt?: string | string[];
  promptEmbeds?: HostTensor;
  negativePromptEmbeds?: HostTensor;
  clipSkip?: number;
  signal?: AbortSignal;
}

/** A NaN/Inf appeared; names the stage that produced it. */
export class NonFiniteError extends Error {
  constructor(stage: string, index: number) {
    super(`${stage} produced a non-finite value (at element ${index}); the output would be garbage`);
    this.name = "NonFiniteError";
  }
}

function checkFinite(t: HostTensor, stage: string): void {
  const i = firstNonFinite(t.data as Float32Array);
  if (i >= 0) throw new NonFiniteError(stage, i);
}

function isFloatBatch(x: UpscaleImageInput): x is FloatImageBatch {
  return typeof x === "object" && x !== null && "layout" in x;
}
function isRgbImage(x: UpscaleImageInput): x is RgbImage {
  return (
    typeof x === "object" &&
    x !== null &&
    !(x instanceof Uint8Array) &&
    !("channels" in x) &&
    !("layout" in x)
  );
}

/**
 * A list of generators seen by a scheduler as one: `randn` of the whole batch draws row i from generator i, as
 * diffusers' randn_tensor(model_output.shape, generator=[...]) does in the schedulers' step (eta > 0, ancestral
 * samplers). The schedulers draw `randn([numel])`; a row's draw depends only on its element count, so
 * `randn([rowSize])` per generator equals torch's `randn((1, C, H, W))`.
 */
class PerRowGenerator extends Generator {
  constructor(private readonly rows: readonly Generator[]) {
    super();
  }
  override randn(shape: readonly number[], options?: { dtype?: "float32" }): Float32Array;
  override randn(shape: readonly number[], options: { dtype: "float64" }): Float64Array;
  override randn(shape: readonly number[], options?: { dtype?: RandomDtype }): Float32Array | Float64Array;
  override randn(shape: readonly number[], options?: { dtype?: RandomDtype }): Float32Array | Float64Array {
    const numel = shape.reduce((a, b) => a * b, 1);
    const n = this.rows.length;
    if (numel % n !== 0) {
      throw new Error(`a draw of ${numel} values does not split into ${n} rows, one per generator`);
    }
    return randnTensor([n, numel / n], this.rows, options);
  }
}

export class StableDiffusionUpscalePipeline {
  /** Registered pipeline config (model_index.json `max_noise_level`). */
  readonly config: { max_noise_level: number };
  /** 2^(len(vae.block_out_channels) - 1): 4 for the x4 upscaler. */
  readonly vaeScaleFactor: number;
  safetyChecker: SafetyChecker | undefined;
  watermarker: Watermarker | undefined;

  constructor(
    readonly vae: AutoencoderKL,
    readonly textEncoder: CLIPTextModel,
    readonly tokenizer: CLIPTokenizer,
    readonly unet: UNet2DConditionModel,
    readonly lowResScheduler: DDPMScheduler,
    /** Swap it the diffusers way: `pipe.scheduler = EulerDiscreteScheduler.fromConfig(pipe.scheduler.config)`. */
    public scheduler: Scheduler,
    options: { maxNoiseLevel?: number; safetyChecker?: SafetyChecker; watermarker?: Watermarker } = {},
  ) {
    this.config = { max_noise_level: options.maxNoiseLevel ?? 350 };
    this.vaeScaleFactor = 2 ** (vae.config.block_out_channels.length - 1);
    this.safetyChecker = options.safetyChecker;
    this.watermarker = options.watermarker;
  }

  /**
   * Loads a pipeline folder: a local path, a cached hub snapshot, or (online) a hub repo id such as
   * "stabilityai/stable-diffusion-x4-upscaler".
   */
  static async fromPretrained(
    pathOrRepoId: string,
    options: FromPretrainedOptions = {},
  ): Promise<StableDiffusionUpscalePipeline> {
    if (options.precision !== undefined) checkPrecision(options.precision);
    const ep = options.device ?? options.runtimeOptions?.executionProvider ?? "cpu";
    if (options.precision === "int8" && ep !== "cpu") {
      throw new RangeError(
        `precision "int8" is a CPU path (onnxruntime's integer kernels), not available on "${ep}"`,
      );
    }
    const dir = await resolvePretrained(pathOrRepoId, options);
    const index = readPipelineIndex(dir);
    const runtime = options.runtime ?? defaultRuntimeHost();
    const runtimeOptions: RuntimeOptions = {
      ...options.runtimeOptions,
      ...(options.device ? { executionProvider: options.device } : {}),
      ...(options.threads ? { threads: options.threads } : {}),
    };
    const common = { variant: options.variant, runtime, runtimeOptions };
    const [vae, textEncoder, unet] = await Promise.all([
      AutoencoderKL.fromPretrained(join(dir, "vae"), common),
      CLIPTextModel.fromPretrained(join(dir, "text_encoder"), common),
      UNet2DConditionModel.fromPretrained(join(dir, "unet"), { ...common, precision: options.precision }),
    ]);
    const tokenizer = CLIPTokenizer.fromPretrained(join(dir, "tokenizer"));
    const schedulerConfig = readJson(join(dir, "scheduler", "scheduler_config.json"));
    const scheduler = schedulerFromConfig(schedulerConfig, index.classes.scheduler);
    const lowResScheduler = DDPMScheduler.fromConfig(
      readJson(join(dir, "low_res_scheduler", "scheduler_config.json")),
    );
    return new StableDiffusionUpscalePipeline(vae, textEncoder, tokenizer, unet, lowResScheduler, scheduler, {
      maxNoiseLevel: index.maxNoiseLevel,
      safetyChecker: options.safetyChecker,
      watermarker: options.watermarker,
    });
  }

  // ---- options (diffusers names, camelCased) ----

  /** Attention in slices of heads: "auto" (half the heads), "max" (one at a time) or a slice size. */
  enableAttentionSlicing(sliceSize: "auto" | "max" | number = "auto"): void {
    this.unet.setAttentionSlice(sliceSize);
  }
  disableAttentionSlicing(): void {
    this.unet.setAttentionSlice(null);
  }
  /**
   * onnxruntime's fused attention (com.microsoft MultiHeadAttention) in the UNet and the VAE (the VAE's default on
   * the CPU provider already; `disableMemoryEfficientAttention()` makes both plain).
   */
  enableMemoryEfficientAttention(): void {
    this.unet.enableMemoryEfficientAttention();
    this.vae.enableMemoryEfficientAttention();
  }
  disableMemoryEfficientAttention(): void {
    this.unet.disableMemoryEfficientAttention();
    this.vae.disableMemoryEfficientAttention();
  }
  enableFreeU(f: FreeUConfig): void {
    this.unet.enableFreeU(f);
  }
  disableFreeU(): void {
    this.unet.disableFreeU();
  }
  enableVaeTiling(): void {
    this.vae.enableTiling();
  }
  disableVaeTiling(): void {
    this.vae.disableTiling();
  }
  enableVaeSlicing(): void {
    this.vae.enableSlicing();
  }
  disableVaeSlicing(): void {
    this.vae.disableSlicing();
  }

  /**
   * diffusers' enable_model_cpu_offload, for onnxruntime: keep one model's session alive at a time (the text
   * encoder is freed after encoding, the UNet after the denoising loop, the VAE after decoding). Peak memory drops
   * to the largest single model; each call pays the session creations again. On glibc, a released model's memory
   * stays in malloc's heaps (only partly reused by the next model) unless the process was started with
   * `MALLOC_MMAP_THRESHOLD_=262144`, as the CLI does (README, "Memory").
   */
  enableModelOffload(): void {
    this.modelOffload = true;
  }
  disableModelOffload(): void {
    this.modelOffload = false;
  }
  private modelOffload = false;

  /** Frees every session. */
  async release(): Promise<void> {
    this.unet.release();
    this.vae.release();
    await this.textEncoder.release();
  }

  // ---- encode_prompt ----

  /**
   * diffusers' encode_prompt: [B·numImagesPerPrompt, 77, H] prompt embeddings, and the negative ones under
   * classifier-free guidance (not concatenated).
   */
  async encodePrompt(
    prompt: string | string[] | undefined,
    numImagesPerPrompt: number,
    doClassifierFreeGuidance: boolean,
    options: EncodePromptOptions = {},
  ): Promise<{ promptEmbeds: HostTensor; negativePromptEmbeds: HostTensor | undefined }> {
    const { negativePrompt, clipSkip, signal } = options;
    const batchSize =
      prompt !== undefined ? (typeof prompt === "string" ? 1 : prompt.length) : options.promptEmbeds?.dims[0];
    if (batchSize === undefined) throw new UpscaleInputError("pass a prompt or promptEmbeds");
    let promptEmbeds = options.promptEmbeds;
    if (promptEmbeds === undefined) {
      const texts = typeof prompt === "string" ? [prompt] : (prompt as string[]);
      promptEmbeds = await this.encodeTexts(texts, clipSkip, signal);
    }
    checkFinite(promptEmbeds, "the text encoder (prompt)");
    let negativePromptEmbeds = options.negativePromptEmbeds;
    if (doClassifierFreeGuidance && negativePromptEmbeds === undefined) {
      let uncond: string[];
      if (negativePrompt === undefined) uncond = Array(batchSize).fill("");
      else if (prompt !== undefined && typeof prompt !== typeof negativePrompt) {
        throw new UpscaleInputError(
          "negativePrompt must be the same type as prompt (both strings or both arrays)",
        );
      } else if (typeof negativePrompt === "string") uncond = [negativePrompt];
      else if (negativePrompt.length !== batchSize) {
        throw new UpscaleInputError(
          `negativePrompt has batch size ${negativePrompt.length}, but prompt has batch size ${batchSize}`,
        );
      } else uncond = negativePrompt;
      // diffusers 0.23 encodes the negative prompt without clip_skip.
      negativePromptEmbeds = await this.encodeTexts(uncond, undefined, signal);
      checkFinite(negativePromptEmbeds, "the text encoder (negative prompt)");
    }
    return {
      promptEmbeds: repeatInterleaveBatch(promptEmbeds, numImagesPerPrompt),
      negativePromptEmbeds:
        doClassifierFreeGuidance && negativePromptEmbeds
          ? repeatInterleaveBatch(negativePromptEmbeds, numImagesPerPrompt)
          : undefined,
    };
  }

  private async encodeTexts(
    texts: string[],
    clipSkip: number | undefined,
    signal?: AbortSignal,
  ): Promise<HostTensor> {
    const max = this.tokenizer.modelMaxLength;
    const { inputIds, attentionMask } = this.tokenizer.call(texts, {
      padding: "max_length",
      maxLength: max,
      truncation: true,
    });
    const useMask = (this.textEncoder.config as { use_attention_mask?: boolean }).use_attention_mask === true;
    const out = await this.textEncoder.forward({
      inputIds,
      attentionMask: useMask ? attentionMask : undefined,
      clipSkip: clipSkip ?? null,
      signal,
    });
    if (clipSkip !== undefined) {
      if (!out.clipSkipHiddenState) throw new Error("text encoder returned no clip_skip output");
      return out.clipSkipHiddenState;
    }
    return out.lastHiddenState;
  }

  // ---- the call ----

  /** Upscales 4x (diffusers `__call__`). */
  async call(options: UpscaleCallOptions & { returnDict?: true }): Promise<UpscaleOutput>;
  async call(options: UpscaleCallOptions & { returnDict: false }): Promise<[UpscaleImages, boolean[] | null]>;
  async call(
    options: UpscaleCallOptions & ReturnDictOption,
  ): Promise<UpscaleOutput | [UpscaleImages, boolean[] | null]>;
  async call(
    options: UpscaleCallOptions & ReturnDictOption,
  ): Promise<UpscaleOutput | [UpscaleImages, boolean[] | null]> {
    const signal = options.signal;
    const unetConfig = this.unet.config;
    const crossDim = unetConfig.cross_attention_dim;
    // 1. Check inputs (all of them, before any compute)
    const args: CheckedInputs = checkInputs(options, {
      maxNoiseLevel: this.config.max_noise_level,
      numTrainTimesteps: Number(this.scheduler.config.num_train_timesteps ?? 1000),
      numClassEmbeds: unetConfig.num_class_embeds ?? undefined,
      crossAttentionDim: typeof crossDim === "number" ? crossDim : (crossDim[0] as number),
      numHiddenLayers: this.textEncoder.numHiddenLayers,
      lowResTrainTimesteps: this.lowResScheduler.config.num_train_timesteps,
      textSequenceLength: this.tokenizer.modelMaxLength,
    });
    const named = Array.isArray(options.image);
    const images = await Promise.all(
      args.images.map((im, i) => this.loadInput(im, named ? `image[${i}]` : "image", options.maxInputPixels)),
    );
    // diffusers preprocesses at step 4; preprocessing is pure host work (no random draws), so it is done here to
    // check the image batch, its channels and the latents' shape before any model runs. Traced at step 4.
    const pre = preprocess(images as RgbImage[] | FloatImageBatch[], { vaeScaleFactor: this.vaeScaleFactor });
    const latentChannels = this.vae.config.latent_channels;
    const shape = checkPreparedImage(pre.shape, options, {
      batchSize: args.batchSize,
      numImagesPerPrompt: args.numImagesPerPrompt,
      latentChannels,
      unetInChannels: unetConfig.in_channels,
    });
    signal?.throwIfAborted();

    // 2. Define call parameters
    const { numImagesPerPrompt, guidanceScale, noiseLevel } = args;
    const doCFG = guidanceScale > 1.0;
    // No generator: the process-wide default one, like torch's global RNG in diffusers (`manualSeed` seeds it).
    const generator = options.generator ?? defaultGenerator;

    // 3. Encode input prompt
    const enc = await this.encodePrompt(options.prompt, numImagesPerPrompt, doCFG, {
      negativePrompt: options.negativePrompt,
      promptEmbeds: options.promptEmbeds,
      negativePromptEmbeds: options.negativePromptEmbeds,
      clipSkip: options.clipSkip,
      signal,
    });
    const promptEmbeds = doCFG
      ? catBatch([enc.negativePromptEmbeds as HostTensor, enc.promptEmbeds])
      : enc.promptEmbeds;
    const trace = options.trace;
    trace?.("prompt_embeds", promptEmbeds);
    if (this.modelOffload) await this.textEncoder.release();

    // 4. Preprocess image (done in step 1)
    let image: HostTensor = { type: "float32", dims: [...pre.shape], data: pre.data };
    trace?.("preprocessed_image", image);

    // 5. Set timesteps
    this.scheduler.setTimesteps(args.numInferenceSteps);
    const timesteps = this.scheduler.timesteps;

    // 5. Add noise to image (first random draw: the low-res noise, image-shaped)
    const imageGen =
      Array.isArray(generator) && generator.length > 1 ? generator.slice(0, image.dims[0]) : generator;
    const noise = randnTensor(image.dims, imageGen);
    image = {
      ...image,
      data: this.lowResScheduler.addNoise(image.data as Float32Array, noise, [noiseLevel]),
    };
    trace?.("low_res_noise", { ...image, data: noise });
    trace?.("noised_image", image);
    // Pair every prompt with its own image (see the file header), then duplicate for guidance.
    image = repeatInterleaveBatch(image, numImagesPerPrompt);
    if (doCFG) image = catBatch([image, image]);
    const classLabels = Array(image.dims[0]).fill(noiseLevel) as number[];

    // 6. Prepare latent variables (second random draw; a given latents' shape was checked in step 1)
    let latents: HostTensor;
    if (options.latents) {
      latents = options.latents;
    } else {
      latents = { type: "float32", dims: shape, data: randnTensor(shape, generator) };
    }
    const sigma = this.scheduler.initNoiseSigma;
    latents = { ...latents, data: (latents.data as Float32Array).map((v) => Math.fround(v * sigma)) };
    trace?.("initial_latents", latents);

    // 7. Check that sizes of image and latents match (done in step 1, before any compute)

    // 8. Prepare extra step kwargs: a generator list gives each batch row its own step noise, as in diffusers.
    const stepGenerator = Array.isArray(generator)
      ? generator.length === 1
        ? generator[0]
        : new PerRowGenerator(generator)
      : generator;
    const stepOptions = { eta: args.eta, generator: stepGenerator };

    // 9. Denoising loop
    const order = this.scheduler.order;
    const numWarmupSteps = timesteps.length - args.numInferenceSteps * order;
    const g = Math.fround(guidanceScale);
    for (let i = 0; i < timesteps.length; i++) {
      signal?.throwIfAborted();
      const t = timesteps[i] as number;
      let modelInput = doCFG ? catBatch([latents, latents]) : latents;
      modelInput = {
        ...modelInput,
        data: this.scheduler.scaleModelInput(modelInput.data as Float32Array, t),
      };
      modelInput = catChannels(modelInput, image);
      const out = await this.unet.forward(
        {
          sample: modelInput,
          timestep: t,
          encoderHiddenStates: promptEmbeds,
          classLabels,
          guidancePairs: doCFG,
        },
        { signal },
      );
      checkFinite(out, `the UNet at step ${i} (timestep ${t})`);
      trace?.("unet_out", out, i);
      let noisePred = out.data as Float32Array;
      if (doCFG) {
        const half = noisePred.length / 2;
        const guided = new Float32Array(half);
        for (let j = 0; j < half; j++) {
          const u = noisePred[j] as number;
          guided[j] = Math.fround(u + Math.fround(g * Math.fround((noisePred[half + j] as number) - u)));
        }
        noisePred = guided;
      }
      const prev = this.scheduler.step(noisePred, t, latents.data as Float32Array, stepOptions).prevSample;
      latents = { type: "float32", dims: shape, data: prev };
      checkFinite(latents, `the scheduler at step ${i} (timestep ${t})`);
      if (i === timesteps.length - 1 || (i + 1 > numWarmupSteps && (i + 1) % order === 0)) {
        const stepIdx = Math.floor(i / order);
        options.onProgress?.({ step: stepIdx, totalSteps: args.numInferenceSteps, timestep: t });
        if (options.callback && i % args.callbackSteps === 0) await options.callback(stepIdx, t, latents);
      }
    }

    if (this.modelOffload) this.unet.release();

    // 10. Post-processing
    let result: UpscaleImages;
    let nsfw: boolean[] | null = null;
    if (args.outputType === "latent") {
      result = {
        outputType: "latent",
        data: latents.data as Float32Array,
        shape: shape as [number, number, number, number],
      };
    } else {
      signal?.throwIfAborted();
      const scale = this.vae.config.scaling_factor;
      const z: HostTensor = {
        ...latents,
        data: (latents.data as Float32Array).map((v) => Math.fround(v / scale)),
      };
      const decoded = await this.vae.decode(z, { signal });
      if (this.modelOffload) this.vae.release();
      checkFinite(decoded, "the VAE decoder");
      const dshape = decoded.dims as [number, number, number, number];
      let ddata = decoded.data as Float32Array;
      if (this.safetyChecker) {
        const pil = postprocess(ddata, dshape, "pil");
        nsfw = await this.safetyChecker(pil.images);
        if (nsfw.length !== dshape[0])
          throw new Error(`safetyChecker returned ${nsfw.length} flags for ${dshape[0]} images`);
        const per = ddata.length / dshape[0];
        ddata = ddata.slice();
        nsfw.forEach((flag, k) => {
          if (flag) ddata.fill(0, k * per, (k + 1) * per);
        });
      }
      const doDenormalize = nsfw ? nsfw.map((f) => !f) : undefined;
      if (args.outputType === "pil") {
        let pil = postprocess(ddata, dshape, "pil", { doDenormalize }).images;
        if (this.watermarker) pil = await this.watermarker(pil);
        result = { outputType: "pil", images: pil };
      } else {
        const p = postprocess(ddata, dshape, args.outputType as "np" | "pt", { doDenormalize });
        result = { outputType: args.outputType, data: p.data as Float32Array, shape: p.shape };
      }
    }
    if (options.returnDict === false) return [result, nsfw];
    return { images: result, nsfwContentDetected: nsfw };
  }

  private async loadInput(
    im: UpscaleImageInput,
    name: string,
    maxPixels: number | undefined,
  ): Promise<RgbImage | FloatImageBatch> {
    if (isFloatBatch(im)) return im;
    if (isRgbImage(im)) return loadImage({ ...im, channels: 3 }, { maxPixels, name });
    if (typeof im !== "string") return loadImage(im, { maxPixels, name });
    try {
      return await loadImage(im, { maxPixels });
    } catch (e) {
      // The error names the path; also name the argument.
      if (e instanceof ImageInputError) throw new ImageInputError(name, e.message, { cause: e });
      throw e;
    }
  }
}
