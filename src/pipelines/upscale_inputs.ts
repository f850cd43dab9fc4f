/**
 * The arguments of StableDiffusionUpscalePipeline.call (diffusers v0.23 `__call__`, camelCased) and their checks,
 * all made before any compute (step 1 of the call). diffusers lets some bad values through (negative noise
 * levels, 0 steps); here each is a clear error naming the argument.
 */
import type { FloatImageBatch, RawImage, RgbImage } from "../image/types.js";
import type { Generator } from "../random/generator.js";
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
  /** false: `call` resolves to [images, nsfwContentDetected] like diffusers' return_dict=False. */
  returnDict?: boolean;
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
  if (t.type !== "float32" || t.dims.length !== 3) {
    throw new UpscaleInputError(
      `${name} must be a float32 tensor [batch, seq, ${hidden}], got ${t.type} [${t.dims}]`,
    );
  }
  if (t.dims[2] !== hidden) {
    throw new UpscaleInputError(
      `${name} has hidden size ${t.dims[2]}, the UNet expects ${hidden} (cross_attention_dim)`,
    );
  }
  for (const v of t.data as Float32Array) {
    if (!Number.isFinite(v)) throw new UpscaleInputError(`${name} contains ${v}`);
  }
}

export interface CheckContext {
  maxNoiseLevel: number;
  numTrainTimesteps: number;
  /** The UNet's class-embedding rows (noise levels must be below it), when it has one. */
  numClassEmbeds?: number;
  crossAttentionDim: number;
  numHiddenLayers: number;
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

  if (o.image === undefined || o.image === null) throw new UpscaleInputError("image is required");
  const images = Array.isArray(o.image) ? [...o.image] : [o.image];
  if (images.length === 0) throw new UpscaleInputError("image is an empty array");
  if (images.length !== batchSize) {
    throw new UpscaleInputError(
      `prompt has batch size ${batchSize} and image has batch size ${images.length}; pass one image per prompt`,
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
  if (!isInt(numInferenceSteps) || numInferenceSteps < 1 || numInferenceSteps > ctx.numTrainTimesteps) {
    throw new UpscaleInputError(
      `numInferenceSteps must be an integer in 1..${ctx.numTrainTimesteps}, got ${numInferenceSteps}`,
    );
  }
  if (typeof guidanceScale !== "number" || !Number.isFinite(guidanceScale)) {
    throw new UpscaleInputError(`guidanceScale must be a finite number, got ${guidanceScale}`);
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
  if (
    o.clipSkip !== undefined &&
    (!isInt(o.clipSkip) || o.clipSkip < 0 || o.clipSkip >= ctx.numHiddenLayers)
  ) {
    throw new UpscaleInputError(
      `clipSkip must be an integer in 0..${ctx.numHiddenLayers - 1}, got ${o.clipSkip}`,
    );
  }
  if (o.crossAttentionKwargs !== undefined) {
    for (const k of Object.keys(o.crossAttentionKwargs)) {
      if (k !== "scale")
        throw new UpscaleInputError(`crossAttentionKwargs.${k} is not supported (only "scale")`);
    }
  }
  const total = batchSize * numImagesPerPrompt;
  if (Array.isArray(o.generator) && o.generator.length !== total && o.generator.length !== 1) {
    throw new UpscaleInputError(
      `generator list has ${o.generator.length} generators for an effective batch of ${total} (prompts × numImagesPerPrompt)`,
    );
  }
  if (o.latents !== undefined && (o.latents.type !== "float32" || o.latents.dims.length !== 4)) {
    throw new UpscaleInputError(
      `latents must be float32 [batch, channels, height, width], got ${o.latents.type} [${o.latents.dims}]`,
    );
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
