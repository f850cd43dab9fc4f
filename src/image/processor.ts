/**
 * diffusers v0.23.0 `VaeImageProcessor(vae_scale_factor=4, resample="bicubic", do_normalize=True)` as the
 * x4 upscale pipeline uses it: `preprocess` (images → NCHW float32 in [-1, 1]) and `postprocess`
 * (decoded NCHW → "pt" / "np" / "pil").
 *
 * Float32 rounding follows the reference step by step:
 * - PIL path: `np.array(img).astype(float32) / 255.0` then torch `2.0 * x - 1.0` → f32(2 * f32(u / 255) - 1);
 * - float path: `2.0 * x - 1.0` → f32(2x - 1);
 * - postprocess: `(x / 2 + 0.5).clamp(0, 1)` → clamp(f32(x/2 + 0.5)), "pil": `(x * 255).round()` with numpy's
 *   round-half-to-even, then uint8.
 * Double-precision +,-,*,/ of float32 operands followed by Math.fround is correctly rounded float32, so these
 * reproduce the reference bit for bit.
 */
import { ImageInputError } from "./errors.js";
import { resizeBicubic } from "./resize_bicubic.js";
import { resizeNearestNCHW } from "./resize_nearest.js";
import type { FloatImageBatch, ImageTensor, RgbImage } from "./types.js";

const f32 = Math.fround;

export interface PreprocessOptions {
  /** Sizes are floored to a multiple of this (the pipeline's vae_scale_factor, 4 for the x4 upscaler). */
  vaeScaleFactor?: number;
  /** Target height/width before flooring; default: the first image's size (as diffusers). */
  height?: number;
  width?: number;
  /** Default true. */
  doResize?: boolean;
  /** Default true: map [0, 1] to [-1, 1] (skipped, as in diffusers, when a float input already has values < 0). */
  doNormalize?: boolean;
}

export interface PreprocessResult extends ImageTensor {
  /** False when normalisation was off or skipped because a float input had negative values. */
  normalized: boolean;
}

export type PreprocessInput = RgbImage | FloatImageBatch | readonly RgbImage[] | readonly FloatImageBatch[];

function isFloatBatch(x: RgbImage | FloatImageBatch): x is FloatImageBatch {
  return (x as FloatImageBatch).layout !== undefined;
}

/** `get_default_height_width`: the given or the image's size, floored to a multiple of vaeScaleFactor. */
function targetSize(h: number, w: number, opts: PreprocessOptions, what: string): [number, number] {
  const vsf = opts.vaeScaleFactor ?? 4;
  if (!Number.isInteger(vsf) || vsf < 1)
    throw new ImageInputError("preprocess", `vaeScaleFactor ${vsf} is invalid`);
  const height = opts.height ?? h;
  const width = opts.width ?? w;
  const th = height - (height % vsf);
  const tw = width - (width % vsf);
  if (th < 1 || tw < 1) {
    throw new ImageInputError(
      what,
      `size ${width}x${height} becomes ${tw}x${th} when floored to a multiple of ${vsf}; it must be at least ${vsf}x${vsf}`,
    );
  }
  return [th, tw];
}

function checkRgb(img: RgbImage, what: string): void {
  if (!Number.isInteger(img.width) || !Number.isInteger(img.height) || img.width < 1 || img.height < 1) {
    throw new ImageInputError(what, `invalid size ${img.width}x${img.height}`);
  }
  if (img.data.length !== img.width * img.height * 3) {
    throw new ImageInputError(
      what,
      `RGB data has ${img.data.length} bytes, expected ${img.width}x${img.height}x3 = ${img.width * img.height * 3}`,
    );
  }
}

/** PIL branch: resize every image to the first one's floored size (bicubic), /255, NCHW, 2x-1. */
function preprocessRgb(images: readonly RgbImage[], opts: PreprocessOptions): PreprocessResult {
  for (const [i, img] of images.entries()) checkRgb(img, `image ${i + 1} of ${images.length}`);
  const first = images[0] as RgbImage;
  let h = first.height;
  let w = first.width;
  if (opts.doResize ?? true) [h, w] = targetSize(h, w, opts, `image 1 of ${images.length}`);
  const resized = images.map((img, i) => {
    if (opts.doResize ?? true) return img.width === w && img.height === h ? img : resizeBicubic(img, w, h);
    if (img.width !== w || img.height !== h) {
      throw new ImageInputError(
        `image ${i + 1} of ${images.length}`,
        `size ${img.width}x${img.height} differs from the first image's ${w}x${h}; images of a batch must have one size`,
      );
    }
    return img;
  });
  const normalize = opts.doNormalize ?? true;
  const plane = h * w;
  const out = new Float32Array(images.length * 3 * plane);
  resized.forEach((img, n) => {
    const base = n * 3 * plane;
    const src = img.data;
    for (let p = 0; p < plane; p++) {
      for (let c = 0; c < 3; c++) {
        const v = f32((src[p * 3 + c] as number) / 255);
        out[base + c * plane + p] = normalize ? f32(2 * v - 1) : v;
      }
    }
  });
  return { data: out, shape: [images.length, 3, h, w], normalized: normalize };
}

/** One float input as a [n, c, h, w] tensor (numpy: NHWC → NCHW as `numpy_to_pt`). */
function toNCHW(b: FloatImageBatch, what: string): ImageTensor {
  const shape = b.shape.length === 3 ? [1, ...b.shape] : [...b.shape];
  if (shape.length !== 4 || !shape.every((d) => Number.isInteger(d) && d >= 1)) {
    throw new ImageInputError(what, `float image shape [${b.shape.join(", ")}] must be 3-D or 4-D`);
  }
  const size = shape.reduce((a, d) => a * d, 1);
  if (b.data.length !== size) {
    throw new ImageInputError(
      what,
      `float data has ${b.data.length} values, shape [${b.shape.join(", ")}] needs ${size}`,
    );
  }
  if (b.layout === "nchw") return { data: b.data, shape: shape as [number, number, number, number] };
  const [n, h, w, c] = shape as [number, number, number, number];
  const out = new Float32Array(size);
  let i = 0;
  for (let b0 = 0; b0 < n; b0++) {
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        for (let ch = 0; ch < c; ch++) out[((b0 * c + ch) * h + y) * w + x] = b.data[i++] as number;
      }
    }
  }
  return { data: out, shape: [n, c, h, w] };
}

/** numpy / torch branch: cat (4-D) or stack (3-D), nearest resize, 2x-1 unless values are already negative. */
function preprocessFloat(batches: readonly FloatImageBatch[], opts: PreprocessOptions): PreprocessResult {
  const first = batches[0] as FloatImageBatch;
  const parts = batches.map((b, i) => {
    const what = `float image ${i + 1} of ${batches.length}`;
    if (b.layout !== first.layout)
      throw new ImageInputError(what, "numpy-style and torch-style inputs cannot be mixed");
    if (b.shape.length !== first.shape.length) {
      throw new ImageInputError(
        what,
        `is ${b.shape.length}-D but the first input is ${first.shape.length}-D`,
      );
    }
    return toNCHW(b, what);
  });
  const [, c, h0, w0] = (parts[0] as ImageTensor).shape;
  let n = 0;
  parts.forEach((p, i) => {
    const [pn, pc, ph, pw] = p.shape;
    if (pc !== c || ph !== h0 || pw !== w0) {
      throw new ImageInputError(
        `float image ${i + 1} of ${parts.length}`,
        `shape [${pc}, ${ph}, ${pw}] (C, H, W) differs from the first input's [${c}, ${h0}, ${w0}]; a batch needs one shape`,
      );
    }
    n += pn;
  });
  let t: ImageTensor;
  if (parts.length === 1) t = parts[0] as ImageTensor;
  else {
    const data = new Float32Array(n * c * h0 * w0);
    let off = 0;
    for (const p of parts) {
      data.set(p.data, off);
      off += p.data.length;
    }
    t = { data, shape: [n, c, h0, w0] };
  }
  // diffusers returns 4-channel torch tensors untouched: they are latents.
  if (first.layout === "nchw" && c === 4) return { data: t.data.slice(), shape: t.shape, normalized: false };
  if (c !== 3) {
    throw new ImageInputError("float image", `has ${c} channels; the upscaler needs 3 (RGB)`);
  }
  if (opts.doResize ?? true) {
    const [h, w] = targetSize(h0, w0, opts, "float image");
    t = resizeNearestNCHW(t, h, w);
  } else if (t.data === first.data) t = { data: t.data.slice(), shape: t.shape };
  let min = Number.POSITIVE_INFINITY;
  for (let i = 0; i < t.data.length; i++) min = Math.min(min, t.data[i] as number);
  const normalize = (opts.doNormalize ?? true) && !(min < 0);
  if (normalize) {
    const d = t.data;
    for (let i = 0; i < d.length; i++) d[i] = f32(2 * (d[i] as number) - 1);
  }
  return { data: t.data, shape: t.shape, normalized: normalize };
}

/**
 * `VaeImageProcessor.preprocess(image)`. 8-bit RGB images take the PIL path: every image is resized (Pillow
 * bicubic; a same-size resize is a copy) to the first image's size floored to a multiple of vaeScaleFactor, as
 * diffusers does. Float inputs in [0, 1] (numpy NHWC or torch NCHW) are concatenated, which needs one shape for
 * all, and resized with torch's "nearest". Returns [N, 3, H, W] float32.
 */
export function preprocess(images: PreprocessInput, opts: PreprocessOptions = {}): PreprocessResult {
  const list = (Array.isArray(images) ? images : [images]) as readonly (RgbImage | FloatImageBatch)[];
  if (list.length === 0) throw new ImageInputError("preprocess", "no images given");
  const float = isFloatBatch(list[0] as RgbImage | FloatImageBatch);
  list.forEach((img, i) => {
    if (isFloatBatch(img) !== float) {
      throw new ImageInputError(
        `image ${i + 1} of ${list.length}`,
        "8-bit images and float inputs cannot be mixed",
      );
    }
  });
  return float
    ? preprocessFloat(list as readonly FloatImageBatch[], opts)
    : preprocessRgb(list as readonly RgbImage[], opts);
}

export type OutputType = "pt" | "np" | "pil";

export interface PostprocessPt {
  outputType: "pt";
  /** (x/2 + 0.5).clamp(0, 1), NCHW. */
  data: Float32Array;
  shape: [number, number, number, number];
}

export interface PostprocessNp {
  outputType: "np";
  /** NHWC float32 in [0, 1]. */
  data: Float32Array;
  shape: [number, number, number, number];
}

export interface PostprocessPil {
  outputType: "pil";
  /** NHWC uint8: round-half-to-even(x * 255). */
  data: Uint8Array;
  shape: [number, number, number, number];
  /** One RgbImage per batch entry (views into `data`). */
  images: RgbImage[];
}

export interface PostprocessOptions {
  /** Per-image: map [-1, 1] to [0, 1] (default true for all, i.e. do_normalize=True). */
  doDenormalize?: readonly boolean[];
}

/** numpy's `round()` (round half to even) of a finite value. */
export function roundHalfEven(x: number): number {
  const fl = Math.floor(x);
  const d = x - fl;
  if (d > 0.5) return fl + 1;
  if (d < 0.5) return fl;
  return fl % 2 === 0 ? fl : fl + 1;
}

/** float [0, 1] → uint8 as numpy_to_pil: (x * 255) in float32, rounded half to even (clamped, NaN → 0). */
function toU8(x: number): number {
  const v = roundHalfEven(f32(x * 255));
  return v > 0 ? Math.min(v, 255) : 0;
}

export function postprocess(
  sample: Float32Array,
  shape: readonly number[],
  outputType: "pt",
  opts?: PostprocessOptions,
): PostprocessPt;
export function postprocess(
  sample: Float32Array,
  shape: readonly number[],
  outputType: "np",
  opts?: PostprocessOptions,
): PostprocessNp;
export function postprocess(
  sample: Float32Array,
  shape: readonly number[],
  outputType: "pil",
  opts?: PostprocessOptions,
): PostprocessPil;
export function postprocess(
  sample: Float32Array,
  shape: readonly number[],
  outputType: OutputType,
  opts?: PostprocessOptions,
): PostprocessPt | PostprocessNp | PostprocessPil;
/** `VaeImageProcessor.postprocess(sample, output_type)` for a decoded [N, C, H, W] sample in [-1, 1]. */
export function postprocess(
  sample: Float32Array,
  shape: readonly number[],
  outputType: OutputType,
  opts: PostprocessOptions = {},
): PostprocessPt | PostprocessNp | PostprocessPil {
  if (shape.length !== 4 || !shape.every((d) => Number.isInteger(d) && d >= 1)) {
    throw new ImageInputError("postprocess", `shape [${shape.join(", ")}] must be [N, C, H, W]`);
  }
  const [n, c, h, w] = shape as [number, number, number, number];
  if (sample.length !== n * c * h * w) {
    throw new ImageInputError(
      "postprocess",
      `sample has ${sample.length} values, shape needs ${n * c * h * w}`,
    );
  }
  const den = opts.doDenormalize;
  if (den && den.length !== n) {
    throw new ImageInputError("postprocess", `doDenormalize has ${den.length} entries for a batch of ${n}`);
  }
  const per = c * h * w;
  const pt = new Float32Array(sample.length);
  for (let b = 0; b < n; b++) {
    const base = b * per;
    if (den && den[b] === false) {
      pt.set(sample.subarray(base, base + per), base);
      continue;
    }
    for (let i = base; i < base + per; i++) {
      const v = f32((sample[i] as number) / 2 + 0.5);
      // torch.clamp keeps NaN
      pt[i] = v < 0 ? 0 : Math.min(v, 1);
    }
  }
  if (outputType === "pt") return { outputType, data: pt, shape: [n, c, h, w] };
  if (outputType !== "np" && outputType !== "pil") {
    throw new ImageInputError("postprocess", `unknown output type ${String(outputType)}`);
  }
  const pil = outputType === "pil";
  if (pil && c !== 3) throw new ImageInputError("postprocess", `"pil" output needs 3 channels, got ${c}`);
  const np = new Float32Array(pt.length);
  const u8 = pil ? new Uint8Array(pt.length) : undefined;
  const plane = h * w;
  for (let b = 0; b < n; b++) {
    const base = b * per;
    for (let p = 0; p < plane; p++) {
      for (let ch = 0; ch < c; ch++) {
        const v = pt[base + ch * plane + p] as number;
        const o = base + p * c + ch;
        np[o] = v;
        if (u8) u8[o] = toU8(v);
      }
    }
  }
  if (!u8) return { outputType: "np", data: np, shape: [n, h, w, c] };
  const images: RgbImage[] = [];
  for (let b = 0; b < n; b++) images.push({ data: u8.subarray(b * per, (b + 1) * per), width: w, height: h });
  return { outputType: "pil", data: u8, shape: [n, h, w, c], images };
}
