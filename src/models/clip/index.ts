export { ACTIVATION_NAMES, type ActivationName, activation } from "./activations.js";
export {
  CLIP_TEXT_IGNORED_KEYS,
  type CLIPTextForwardInput,
  type CLIPTextGraphOptions,
  CLIPTextModel,
  type CLIPTextModelOptions,
  type CLIPTextModelOutput,
} from "./clip_text_model.js";
export {
  CLIP_TEXT_ARCHITECTURES,
  CLIP_TEXT_CONFIG_DEFAULTS,
  CLIPConfigError,
  type CLIPTextArchitecture,
  type CLIPTextConfig,
  clipTextArchitecture,
  parseCLIPTextConfig,
} from "./config.js";
export { CLIPInputError, type TokenMatrix } from "./inputs.js";
export {
  CLIPAttention,
  CLIPEncoder,
  CLIPEncoderLayer,
  CLIPMLP,
  CLIPTextEmbeddings,
  CLIPTextTransformer,
  type CLIPTextTransformerOutput,
} from "./modeling_clip.js";
