/**
 * Image value types shared by src/image: decoded 8-bit RGB images, raw caller-supplied pixels, float image batches
 * (the numpy / torch inputs of diffusers' VaeImageProcessor) and NCHW float tensors.
 */

/** 8-bit sRGB image, interleaved HWC RGB (3 bytes per pixel, row-major, no padding). */
export interface RgbImage {
  data: Uint8Array;
  width: number;
  height: number;
}

/** Raw interleaved 8-bit pixels: 1 = grey, 2 = grey + alpha, 3 = RGB, 4 = RGBA. */
export interface RawImage {
  data: Uint8Array | Uint8ClampedArray;
  width: number;
  height: number;
  channels: 1 | 2 | 3 | 4;
}

/**
 * Float image batch with values in [0, 1], as diffusers accepts a numpy array or a torch tensor.
 * - layout "nhwc" (numpy): shape [N, H, W, C] or [H, W, C];
 * - layout "nchw" (torch): shape [N, C, H, W] or [C, H, W].
 */
export interface FloatImageBatch {
  data: Float32Array;
  shape: readonly number[];
  layout: "nhwc" | "nchw";
}

/** Dense row-major float32 tensor of shape [N, C, H, W]. */
export interface ImageTensor {
  data: Float32Array;
  shape: [number, number, number, number];
}
