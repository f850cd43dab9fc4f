/**
 * sdx4 — Stable Diffusion x4 upscaling for TypeScript: diffusers' StableDiffusionUpscalePipeline (v0.23 API), with
 * the networks defined in TypeScript, emitted as ONNX graphs over the safetensors weights and run by onnxruntime.
 */

// Images
export * from "./image/index.js";
// I/O
export {
  type DownloadProgress,
  findCachedSnapshot,
  hubCacheDir,
  ModelNotFoundError,
  resolvePretrained,
} from "./io/hub.js";
export { findWeightFiles, loadWeightSet, ModelFileError } from "./io/model_files.js";
export { loadSafetensors, SafetensorsError, SafetensorsFile, type TensorInfo } from "./io/safetensors.js";
export { writeSafetensors } from "./io/safetensors_writer.js";
// Components
export * from "./models/clip/index.js";
export * from "./models/unet/index.js";
export * from "./models/vae/index.js";
// Graph builder (for defining further models)
export {
  CONV_ALGORITHMS,
  type ConvAlgorithm,
  type ConvPlan,
  convPlan,
  largeMaps,
  WINOGRAD_AUTO,
  WINOGRAD_AUTO_MAX_LATENT_AREA,
} from "./onnx/conv_plan.js";
export { GraphBuilder, Value } from "./onnx/graph_builder.js";
export { ModelBuilder } from "./onnx/model_builder.js";
export { ParamStore, Scope } from "./onnx/params.js";
export {
  type Int8Kernel,
  int8Convolutions,
  int8Kernel,
  PRECISIONS,
  type Precision,
} from "./onnx/quantize.js";
export { bindWeights, WeightError, WeightSet } from "./onnx/weights.js";
// Pipeline
export {
  type EncodePromptOptions,
  type FromPretrainedOptions,
  NonFiniteError,
  type SafetyChecker,
  StableDiffusionUpscalePipeline,
  type UpscaleImages,
  type UpscaleOutput,
  type Watermarker,
} from "./pipelines/pipeline_stable_diffusion_upscale.js";
export {
  type ReturnDictOption,
  type StepInfo,
  type TraceStage,
  type UpscaleCallOptions,
  type UpscaleImageInput,
  UpscaleInputError,
  type UpscaleOutputType,
} from "./pipelines/upscale_inputs.js";
// Random numbers (torch-compatible)
export { defaultGenerator, initialSeed, manualSeed } from "./random/default_generator.js";
export { Generator, type RandomDtype } from "./random/generator.js";
export { randnTensor } from "./random/randn_tensor.js";
// Runtime
export * from "./runtime/index.js";
export * from "./schedulers/index.js";
export { CLIPTokenizer, TokenizerFileError } from "./tokenizers/clip_tokenizer.js";
