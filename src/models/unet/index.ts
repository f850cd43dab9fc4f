/** UNet2DConditionModel (diffusers v0.23.0) and its parts. */
export {
  type ClassEmbedType,
  parseUNet2DConditionConfig,
  UNET_2D_CONDITION_DEFAULTS,
  type UNet2DConditionModelConfig,
  UNetConfigError,
  type UNetLayout,
  unetLayout,
} from "./config.js";
export { applyFreeU, type FreeUConfig, fourierFilter, isFreeUEnabled } from "./freeu.js";
export { type ClassLabelsInput, type TimestepInput, UNetInputError } from "./inputs.js";
export { type Int8Activations, UNET_INT8_KEEP, type UNetInt8GraphOptions, unetInt8Options } from "./int8.js";
export {
  type AttentionSliceSize,
  type ClassLabelsKind,
  type UNet2DConditionFromPretrainedOptions,
  type UNet2DConditionInputs,
  UNet2DConditionModel,
  type UNet2DConditionModelOptions,
} from "./unet_2d_condition.js";
