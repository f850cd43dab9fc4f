/** src/image: decode, Pillow-exact bicubic, VaeImageProcessor pre/postprocess, encode, atomic output. */
export {
  type ImageSource,
  type LoadImageOptions,
  loadImage,
  MAX_INPUT_PIXELS,
  MIN_INPUT_SIDE,
} from "./decode.js";
export {
  type AtomicWriteSource,
  decodeNpy,
  type EncodeOptions,
  encodeImage,
  encodeNpy,
  formatFromPath,
  type ImageFormat,
  type NpyData,
  readNpy,
  writeFileAtomic,
  writeNpy,
} from "./encode.js";
export { ImageInputError } from "./errors.js";
export {
  type OutputType,
  type PostprocessNp,
  type PostprocessOptions,
  type PostprocessPil,
  type PostprocessPt,
  type PreprocessInput,
  type PreprocessOptions,
  type PreprocessResult,
  postprocess,
  preprocess,
  roundHalfEven,
} from "./processor.js";
export { precomputeCoeffs, resizeBicubic, resizeBicubicU8 } from "./resize_bicubic.js";
export { nearestIndex, resizeNearestNCHW } from "./resize_nearest.js";
export type { FloatImageBatch, ImageTensor, RawImage, RgbImage } from "./types.js";
