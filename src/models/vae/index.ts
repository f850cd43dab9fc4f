export {
  AutoencoderKL,
  type AutoencoderKLFromPretrainedOptions,
  type AutoencoderKLOptions,
  type VaeRunOptions,
} from "./autoencoder_kl.js";
export {
  AUTOENCODER_KL_DEFAULTS,
  type AutoencoderKLConfig,
  parseAutoencoderKLConfig,
  VaeConfigError,
  vaeScaleFactor,
} from "./config.js";
export { Decoder, UpDecoderBlock2D } from "./decoder.js";
export { DiagonalGaussianDistribution } from "./distribution.js";
export { DownEncoderBlock2D, Encoder } from "./encoder.js";
export { UNetMidBlock2D } from "./mid_block.js";
export {
  blendH,
  blendV,
  type FloatTensor,
  type TileRunner,
  type TileSettings,
  tiledDecode,
  tiledEncode,
} from "./tiling.js";
