/**
 * The arguments of StableDiffusionUpscalePipeline.call (diffusers v0.23 `__call__`, camelCased) and their checks,
 * all made before any compute (step 1 of the call). diffusers lets some bad values through (negative noise
 * levels, 0 steps); here each is a clear error naming the argument.
 */
import { MAX_INPUT_PIXELS, MIN_INPUT_SIDE } from "../image/decode.js";
import type { FloatImageBatch, RawImage, RgbImage } from "../image/types.js";
import { Generator } from "../random/generator.js";
import type { HostTensor } from "../runtime/host_tensor.js";

/** One input image: a file path, encoded bytes, raw pixels, a decoded RGB image, or a float batch in [0, 1]. */
export type UpscaleImageInput = string | Uint8Array | RawImage | RgbImage | FloatImageBatch;

export type UpscaleOutputType = "pil" | "np" | "pt" | "latent";

export interface StepInfo {
  /** 0-based step index (in scheduler order units, like diffusers' callback). */
  step: number;
  /** Number of progress steps (numInferenceSteps). */
  totalSteps: number;
  timestep: number;
}

export interface UpscaleCallOptions {
  prompt?: string | string[];
  image: UpscaleImageInput | UpscaleImageInput[];
  numInferenceSteps?: number;
  guidanceScale?: number;
  noiseLevel?: number;
  negativePrompt?: string | string[];
  numImagesPerPrompt?: number;
  eta?: number;
  generator?: Generator | Generator[];
  /** float32 [B·numImagesPerPrompt, 4, h, w]. */
  latents?: HostTensor;
  /** float32 [B, 77, hidden]. */
  promptEmbeds?: HostTensor;
  negativePromptEmbeds?: HostTensor;
  outputType?: UpscaleOutputType;
  /** diffusers' callback(step, timestep, latents), every `callbackSteps` steps. */
  callback?: (step: number, timestep: number, latents: HostTensor) => void | Promise<void>;
  callbackSteps?: number;
  /** Only `scale` (the LoRA scale) is accepted; it has no effect without LoRA weights, as in diffusers. */
  crossAttentionKwargs?: { scale?: number };
  clipSkip?: number;
  /** Cancels between steps (and before each model run). */
  signal?: AbortSignal;
  /** Called after every progress step. */
  onProgress?: (info: StepInfo) => void;
  /** Largest accepted input image in pixels (default 1024² = a 4096² output). */
  maxInputPixels?: number;
  /**
   * Diagnostics: receives the intermediate tensors diffusers' fixtures record ("prompt_embeds",
   * "preprocessed_image", "low_res_noise", "noised_image", "initial_latents", "unet_out" per step), to localise a
   * mismatch against a reference run.
   */
  trace?: (stage: TraceStage, tensor: HostTensor, step?: number) => void;
}

/**
 * `returnDict: false` makes `call` resolve to [images, nsfwContentDetected] like diffusers' return_dict=False.
 * Kept out of UpscaleCallOptions so that the result type follows from the literal given.
 */
export interface ReturnDictOption {
  returnDict?: boolean;
}

export type TraceStage =
  | "prompt_embeds"
  | "preprocessed_image"
  | "low_res_noise"
  | "noised_image"
  | "initial_latents"
  | "unet_out";

export class UpscaleInputError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UpscaleInputError";
  }
}

const OUTPUT_TYPES: readonly UpscaleOutputType[] = ["pil", "np", "pt", "latent"];

function isInt(x: unknown): x is number {
  return typeof x === "number" && Number.isInteger(x);
}

function checkEmbeds(t: HostTensor | undefined, name: string, hidden: number): void {
  if (t === undefined) return;
  if (
    typeof t !== "object" ||
    t === null ||
    t.type !== "float32" ||
    !Array.isArray(t.dims) ||
    t.dims.length !== 3
  ) {
    throw new UpscaleInputError(
      `${name} must be a float32 tensor [batch, seq, ${hidden}], got ${t?.type} [${t?.dims}]`,
    );
  }
  if (!t.dims.every((d) => isInt(d) && d >= 1)) {
    throw new UpscaleInputError(`${name} has shape [${t.dims}]; every dimension must be a positive integer`);
  }
  if (t.dims[2] !== hidden) {
    throw new UpscaleInputError(
      `${name} has hidden size ${t.dims[2]}, the UNet expects ${hidden} (cross_attention_dim)`,
    );
  }
  checkData(t, name);
}

/** data is a Float32Array of dims' size with only finite values. */
function checkData(t: HostTensor, name: string): void {
  const size = t.dims.reduce((a, b) => a * b, 1);
  if (!(t.data instanceof Float32Array) || t.data.length !== size) {
    throw new UpscaleInputError(
      `${name}: data must be a Float32Array of ${size} values for shape [${t.dims}], got ${t.data?.constructor?.name} of ${(t.data as { length?: number })?.length}`,
    );
  }
  for (const v of t.data) {
    if (!Number.isFinite(v)) throw new UpscaleInputError(`${name} contains ${v}`);
  }
}

function isFloatBatch(x: unknown): x is FloatImageBatch {
  return typeof x === "object" && x !== null && "layout" in x;
}

/**
 * Batch rows an image entry contributes (a 4-D float batch brings its N, anything else one), after checking what
 * can be checked without decoding: the entry's type, and a float batch's shape, values and size limits.
 */
function imageRows(im: unknown, name: string, maxPixels: number): number {
  if (typeof im === "string") {
    if (im.length === 0) throw new UpscaleInputError(`${name} is an empty path`);
    return 1;
  }
  if (typeof im !== "object" || im === null) {
    throw new UpscaleInputError(
      `${name} must be a file path, encoded image bytes, raw pixels, an RgbImage or a float image batch, got ${im === null ? "null" : typeof im}`,
    );
  }
  if (!isFloatBatch(im)) return 1;
  const { layout, shape, data } = im;
  if (layout !== "nhwc" && layout !== "nchw") {
    throw new UpscaleInputError(`${name}.layout must be "nhwc" or "nchw", got ${JSON.stringify(layout)}`);
  }
  if (
    !Array.isArray(shape) ||
    (shape.length !== 3 && shape.length !== 4) ||
    !shape.every((d) => isInt(d) && d >= 1)
  ) {
    throw new UpscaleInputError(
      `${name}.shape must be 3-D or 4-D with positive integer sizes, got [${shape}]`,
    );
  }
  const full = shape.length === 3 ? [1, ...shape] : shape;
  const [n, a, b, c] = full as [number, number, number, number];
  const [h, w] = layout === "nhwc" ? [a, b] : [b, c];
  const size = n * a * b * c;
  if (!(data instanceof Float32Array) || data.length !== size) {
    throw new UpscaleInputError(`${name}.data must be a Float32Array of ${size} values for shape [${shape}]`);
  }
  for (const v of data) {
    if (!Number.isFinite(v)) throw new UpscaleInputError(`${name} contains ${v}`);
  }
  if (h < MIN_INPUT_SIDE || w < MIN_INPUT_SIDE) {
    throw new UpscaleInputError(
      `${name}: image is ${w}x${h}; it must be at least ${MIN_INPUT_SIDE}x${MIN_INPUT_SIDE} pixels`,
    );
  }
  if (w * h > maxPixels) {
    throw new UpscaleInputError(
      `${name}: image is ${w}x${h} = ${w * h} pixels, above the limit of ${maxPixels} (maxInputPixels)`,
    );
  }
  return n;
}

export interface CheckContext {
  maxNoiseLevel: number;
  numTrainTimesteps: number;
  /** The UNet's class-embedding rows (noise levels must be below it), when it has one. */
  numClassEmbeds?: number;
  crossAttentionDim: number;
  numHiddenLayers: number;
  /** The low-res (noise-adding) scheduler's num_train_timesteps: noise levels must be below it. */
  lowResTrainTimesteps?: number;
  /** Token length of text-encoded prompts (the tokenizer's model_max_length, 77). */
  textSequenceLength?: number;
}

export interface CheckedInputs {
  batchSize: number;
  images: UpscaleImageInput[];
  numInferenceSteps: number;
  guidanceScale: number;
  noiseLevel: number;
  numImagesPerPrompt: number;
  eta: number;
  outputType: UpscaleOutputType;
  callbackSteps: number;
}

/** diffusers' check_inputs plus the checks it lacks; returns the normalised arguments. */
export function checkInputs(o: UpscaleCallOptions, ctx: CheckContext): CheckedInputs {
  const {
    prompt,
    promptEmbeds,
    negativePrompt,
    negativePromptEmbeds,
    numInferenceSteps = 75,
    guidanceScale = 9.0,
    noiseLevel = 20,
    numImagesPerPrompt = 1,
    eta = 0,
    outputType = "pil",
    callbackSteps = 1,
  } = o;
  if (!isInt(callbackSteps) || callbackSteps <= 0) {
    throw new UpscaleInputError(`callbackSteps must be a positive integer, got ${callbackSteps}`);
  }
  for (const name of ["callback", "onProgress", "trace"] as const) {
    if (o[name] !== undefined && typeof o[name] !== "function") {
      throw new UpscaleInputError(`${name} must be a function, got ${typeof o[name]}`);
    }
  }
  if (prompt !== undefined && promptEmbeds !== undefined) {
    throw new UpscaleInputError("pass either prompt or promptEmbeds, not both");
  }
  if (prompt === undefined && promptEmbeds === undefined) {
    throw new UpscaleInputError("pass a prompt or promptEmbeds");
  }
  if (prompt !== undefined) {
    const ok =
      typeof prompt === "string" || (Array.isArray(prompt) && prompt.every((p) => typeof p === "string"));
    if (!ok) throw new UpscaleInputError("prompt must be a string or an array of strings");
    if (Array.isArray(prompt) && prompt.length === 0) throw new UpscaleInputError("prompt is an empty array");
  }
  if (negativePrompt !== undefined && negativePromptEmbeds !== undefined) {
    throw new UpscaleInputError("pass either negativePrompt or negativePromptEmbeds, not both");
  }
  if (negativePrompt !== undefined) {
    const ok =
      typeof negativePrompt === "string" ||
      (Array.isArray(negativePrompt) && negativePrompt.every((p) => typeof p === "string"));
    if (!ok) throw new UpscaleInputError("negativePrompt must be a string or an array of strings");
  }
  checkEmbeds(promptEmbeds, "promptEmbeds", ctx.crossAttentionDim);
  checkEmbeds(negativePromptEmbeds, "negativePromptEmbeds", ctx.crossAttentionDim);
  if (promptEmbeds && negativePromptEmbeds && promptEmbeds.dims.join() !== negativePromptEmbeds.dims.join()) {
    throw new UpscaleInputError(
      `promptEmbeds [${promptEmbeds.dims}] and negativePromptEmbeds [${negativePromptEmbeds.dims}] must have the same shape`,
    );
  }
  const batchSize =
    prompt !== undefined
      ? typeof prompt === "string"
        ? 1
        : prompt.length
      : (promptEmbeds as HostTensor).dims[0]!;

  const maxPixels = o.maxInputPixels ?? MAX_INPUT_PIXELS;
  if (!isInt(maxPixels) || maxPixels < 1) {
    throw new UpscaleInputError(`maxInputPixels must be a positive integer, got ${o.maxInputPixels}`);
  }
  if (o.image === undefined || o.image === null) throw new UpscaleInputError("image is required");
  const images = Array.isArray(o.image) ? [...o.image] : [o.image];
  if (images.length === 0) throw new UpscaleInputError("image is an empty array");
  let imageBatch = 0;
  images.forEach((im, i) => {
    imageBatch += imageRows(im, Array.isArray(o.image) ? `image[${i}]` : "image", maxPixels);
  });
  if (imageBatch !== batchSize) {
    throw new UpscaleInputError(
      `prompt has batch size ${batchSize} and image has batch size ${imageBatch}; pass one image per prompt`,
    );
  }
  if (Array.isArray(negativePrompt) && negativePrompt.length !== batchSize) {
    throw new UpscaleInputError(
      `negativePrompt has batch size ${negativePrompt.length}, but prompt has batch size ${batchSize}`,
    );
  }
  if (prompt !== undefined && negativePrompt !== undefined && typeof prompt !== typeof negativePrompt) {
    throw new UpscaleInputError(
      "negativePrompt must be the same type as prompt (both strings or both arrays)",
    );
  }
  // diffusers encodes a string negativePrompt as one row, which only fits a batch of one.
  if (typeof negativePrompt === "string" && batchSize !== 1) {
    throw new UpscaleInputError(
      `negativePrompt is a single string but promptEmbeds has batch size ${batchSize}; pass an array of ${batchSize}`,
    );
  }
  if (negativePromptEmbeds && negativePromptEmbeds.dims[0] !== batchSize) {
    throw new UpscaleInputError(
      `negativePromptEmbeds has batch size ${negativePromptEmbeds.dims[0]}, but prompt has batch size ${batchSize}`,
    );
  }
  if (!isInt(noiseLevel) || noiseLevel < 0 || noiseLevel > ctx.maxNoiseLevel) {
    throw new UpscaleInputError(
      `noiseLevel must be an integer in 0..${ctx.maxNoiseLevel}, got ${noiseLevel}`,
    );
  }
  if (ctx.numClassEmbeds !== undefined && noiseLevel >= ctx.numClassEmbeds) {
    throw new UpscaleInputError(
      `noiseLevel ${noiseLevel} is outside this UNet's class embedding (num_class_embeds ${ctx.numClassEmbeds})`,
    );
  }
  if (ctx.lowResTrainTimesteps !== undefined && noiseLevel >= ctx.lowResTrainTimesteps) {
    throw new UpscaleInputError(
      `noiseLevel ${noiseLevel} is outside the low-res scheduler's ${ctx.lowResTrainTimesteps} timesteps`,
    );
  }
  if (!isInt(numInferenceSteps) || numInferenceSteps < 1 || numInferenceSteps > ctx.numTrainTimesteps) {
    throw new UpscaleInputError(
      `numInferenceSteps must be an integer in 1..${ctx.numTrainTimesteps}, got ${numInferenceSteps}`,
    );
  }
  if (typeof guidanceScale !== "number" || !Number.isFinite(guidanceScale)) {
    throw new UpscaleInputError(`guidanceScale must be a finite number, got ${guidanceScale}`);
  }
  // Under guidance, text-encoded embeddings (model_max_length tokens) are concatenated with given ones.
  const seq = ctx.textSequenceLength;
  if (guidanceScale > 1 && seq !== undefined) {
    if (promptEmbeds && !negativePromptEmbeds && promptEmbeds.dims[1] !== seq) {
      throw new UpscaleInputError(
        `promptEmbeds has sequence length ${promptEmbeds.dims[1]}, but the negative prompt is encoded to ${seq} tokens; pass negativePromptEmbeds of the same shape`,
      );
    }
    if (negativePromptEmbeds && !promptEmbeds && negativePromptEmbeds.dims[1] !== seq) {
      throw new UpscaleInputError(
        `negativePromptEmbeds has sequence length ${negativePromptEmbeds.dims[1]}, but the prompt is encoded to ${seq} tokens`,
      );
    }
  }
  if (!isInt(numImagesPerPrompt) || numImagesPerPrompt < 1) {
    throw new UpscaleInputError(`numImagesPerPrompt must be a positive integer, got ${numImagesPerPrompt}`);
  }
  if (typeof eta !== "number" || !Number.isFinite(eta) || eta < 0) {
    throw new UpscaleInputError(`eta must be a finite number >= 0, got ${eta}`);
  }
  if (!OUTPUT_TYPES.includes(outputType)) {
    throw new UpscaleInputError(
      `outputType must be one of ${OUTPUT_TYPES.join(", ")}, got ${JSON.stringify(outputType)}`,
    );
  }
  // clip_skip k uses hidden_states[-(k + 1)]: k = num_hidden_layers is the embedding output, as in diffusers.
  if (
    o.clipSkip !== undefined &&
    (!isInt(o.clipSkip) || o.clipSkip < 0 || o.clipSkip > ctx.numHiddenLayers)
  ) {
    throw new UpscaleInputError(
      `clipSkip must be an integer in 0..${ctx.numHiddenLayers}, got ${o.clipSkip}`,
    );
  }
  if (o.crossAttentionKwargs !== undefined) {
    if (typeof o.crossAttentionKwargs !== "object" || o.crossAttentionKwargs === null) {
      throw new UpscaleInputError("crossAttentionKwargs must be an object");
    }
    for (const k of Object.keys(o.crossAttentionKwargs)) {
      if (k !== "scale")
        throw new UpscaleInputError(`crossAttentionKwargs.${k} is not supported (only "scale")`);
    }
    const scale = o.crossAttentionKwargs.scale;
    if (scale !== undefined && (typeof scale !== "number" || !Number.isFinite(scale))) {
      throw new UpscaleInputError(`crossAttentionKwargs.scale must be a finite number, got ${scale}`);
    }
  }
  const total = batchSize * numImagesPerPrompt;
  if (Array.isArray(o.generator)) {
    if (o.generator.length !== total && o.generator.length !== 1) {
      throw new UpscaleInputError(
        `generator list has ${o.generator.length} generators for an effective batch of ${total} (prompts × numImagesPerPrompt)`,
      );
    }
    o.generator.forEach((g, i) => {
      if (!(g instanceof Generator)) throw new UpscaleInputError(`generator[${i}] is not a Generator`);
    });
  } else if (o.generator !== undefined && !(o.generator instanceof Generator)) {
    throw new UpscaleInputError("generator must be a Generator or an array of Generators");
  }
  if (o.latents !== undefined) {
    const l = o.latents;
    if (
      typeof l !== "object" ||
      l === null ||
      l.type !== "float32" ||
      !Array.isArray(l.dims) ||
      l.dims.length !== 4
    ) {
      throw new UpscaleInputError(
        `latents must be float32 [batch, channels, height, width], got ${l?.type} [${l?.dims}]`,
      );
    }
    if (l.dims[0] !== total) {
      throw new UpscaleInputError(
        `latents have batch size ${l.dims[0]}, expected ${total} (prompts × numImagesPerPrompt)`,
      );
    }
    checkData(l, "latents");
  }
  return {
    batchSize,
    images,
    numInferenceSteps,
    guidanceScale,
    noiseLevel,
    numImagesPerPrompt,
    eta,
    outputType,
    callbackSteps,
  };
}

/**
 * The checks that need the decoded, preprocessed image batch [B, C, h, w] (still before any model runs): the
 * UNet's input channels and the shape of given latents.
 */
export function checkPreparedImage(
  imageDims: readonly number[],
  o: { latents?: HostTensor },
  ctx: { batchSize: number; numImagesPerPrompt: number; latentChannels: number; unetInChannels: number },
): number[] {
  const [rows, channels, height, width] = imageDims as [number, number, number, number];
  if (rows !== ctx.batchSize) {
    throw new UpscaleInputError(`image has batch size ${rows}, but prompt has batch size ${ctx.batchSize}`);
  }
  if (ctx.latentChannels + channels !== ctx.unetInChannels) {
    throw new UpscaleInputError(
      `image has ${channels} channels: the UNet expects ${ctx.unetInChannels} input channels, but latents (${ctx.latentChannels}) + image (${channels}) give ${ctx.latentChannels + channels}`,
    );
  }
  const shape = [ctx.batchSize * ctx.numImagesPerPrompt, ctx.latentChannels, height, width];
  if (o.latents && o.latents.dims.join() !== shape.join()) {
    throw new UpscaleInputError(`latents have shape [${o.latents.dims}], expected [${shape}]`);
  }
  return shape;
}
