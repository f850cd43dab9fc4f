/**
 * Image loading: a file path, an encoded image in memory, or raw pixels → 8-bit sRGB `RgbImage` (HWC RGB).
 *
 * What diffusers users do is `load_image(path)`: PIL open, `ImageOps.exif_transpose`, `convert("RGB")`. We match
 * that through sharp:
 * - the EXIF orientation is applied (sharp `rotate()` without an angle);
 * - grey, grey+alpha, palette, 16-bit and CMYK inputs become 8-bit RGB (16-bit → 8-bit keeps the high byte, as
 *   both libvips and PIL's 16-bit RGB unpacker do);
 * - alpha policy: like PIL's `convert("RGB")`, the alpha channel is discarded, not composited over a background
 *   (fully transparent pixels keep whatever colour they store);
 * - colour management: PIL never applies an embedded ICC profile, so for RGB and grey images the profile is
 *   ignored and the stored values are used as they are; CMYK images are converted to sRGB with their embedded
 *   profile (or sharp's default CMYK profile), since CMYK has no meaningful "as stored" RGB.
 * Truncated or corrupt data fails (sharp `failOn: "truncated"`) instead of yielding a partly grey image.
 */
import { readFile, stat } from "node:fs/promises";
import sharp, { type Metadata, type OutputInfo } from "sharp";
import { ImageInputError } from "./errors.js";
import type { RawImage, RgbImage } from "./types.js";

/** Default cap on input pixels: 1024² input = 4096² output of the x4 upscaler. */
export const MAX_INPUT_PIXELS = 1024 * 1024;
/** Inputs must be at least this many pixels in each dimension (the VAE scale factor of the x4 upscaler). */
export const MIN_INPUT_SIDE = 4;

export interface LoadImageOptions {
  /** Largest accepted width*height (default MAX_INPUT_PIXELS). */
  maxPixels?: number;
  /** Smallest accepted width and height (default MIN_INPUT_SIDE). */
  minSide?: number;
  /** Name used in error messages for in-memory inputs (default "buffer" / "raw image"). */
  name?: string;
}

export type ImageSource = string | Uint8Array | RawImage;

function isRaw(x: ImageSource): x is RawImage {
  return typeof x === "object" && !(x instanceof Uint8Array) && "channels" in x;
}

function checkSize(what: string, width: number, height: number, opts: LoadImageOptions): void {
  const minSide = opts.minSide ?? MIN_INPUT_SIDE;
  const maxPixels = opts.maxPixels ?? MAX_INPUT_PIXELS;
  if (width < minSide || height < minSide) {
    throw new ImageInputError(
      what,
      `image is ${width}x${height}; it must be at least ${minSide}x${minSide} pixels`,
    );
  }
  if (width * height > maxPixels) {
    throw new ImageInputError(
      what,
      `image is ${width}x${height} = ${width * height} pixels, above the limit of ${maxPixels} ` +
        `(the x4 output would be ${width * 4}x${height * 4}); downscale it or raise the limit`,
    );
  }
}

/** Raw pixels (1-4 channels) → RGB: grey replicated, alpha dropped. */
function rawToRgb(raw: RawImage, opts: LoadImageOptions): RgbImage {
  const what = opts.name ?? "raw image";
  const { width, height, channels } = raw;
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
    throw new ImageInputError(what, `invalid size ${width}x${height}`);
  }
  if (channels !== 1 && channels !== 2 && channels !== 3 && channels !== 4) {
    throw new ImageInputError(what, `channels must be 1, 2, 3 or 4, got ${String(channels)}`);
  }
  const n = width * height;
  if (raw.data.length !== n * channels) {
    throw new ImageInputError(
      what,
      `data has ${raw.data.length} bytes, expected width*height*channels = ${width}*${height}*${channels} = ${n * channels}`,
    );
  }
  checkSize(what, width, height, opts);
  const out = new Uint8Array(n * 3);
  const src = raw.data;
  if (channels === 3) out.set(src);
  else if (channels === 4) {
    for (let i = 0; i < n; i++) {
      out[i * 3] = src[i * 4] as number;
      out[i * 3 + 1] = src[i * 4 + 1] as number;
      out[i * 3 + 2] = src[i * 4 + 2] as number;
    }
  } else {
    for (let i = 0; i < n; i++) {
      const g = src[i * channels] as number;
      out[i * 3] = g;
      out[i * 3 + 1] = g;
      out[i * 3 + 2] = g;
    }
  }
  return { data: out, width, height };
}

async function readInputFile(path: string): Promise<Buffer> {
  try {
    const st = await stat(path);
    if (!st.isFile()) throw new ImageInputError(path, "is not a regular file");
    return await readFile(path);
  } catch (e) {
    if (e instanceof ImageInputError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOENT") throw new ImageInputError(path, "file not found", { cause: e });
    if (code === "EACCES" || code === "EPERM")
      throw new ImageInputError(path, "permission denied", { cause: e });
    throw new ImageInputError(path, `cannot read file (${(e as Error).message})`, { cause: e });
  }
}

async function decodeEncoded(bytes: Uint8Array, what: string, opts: LoadImageOptions): Promise<RgbImage> {
  if (bytes.length === 0) throw new ImageInputError(what, "is empty, not an image");
  let meta: Metadata;
  try {
    meta = await sharp(bytes, { limitInputPixels: false }).metadata();
  } catch (e) {
    throw new ImageInputError(what, `not a decodable image (${(e as Error).message})`, { cause: e });
  }
  const w0 = meta.width;
  const h0 = meta.height;
  if (!w0 || !h0) throw new ImageInputError(what, "image has no dimensions");
  // Orientations 5-8 swap width and height; the pixel count is the same either way.
  const swap = (meta.orientation ?? 1) >= 5;
  checkSize(what, swap ? h0 : w0, swap ? w0 : h0, opts);
  let out: { data: Buffer; info: OutputInfo };
  try {
    out = await sharp(bytes, {
      failOn: "truncated",
      limitInputPixels: opts.maxPixels ?? MAX_INPUT_PIXELS,
      ignoreIcc: meta.space !== "cmyk",
    })
      .rotate()
      .removeAlpha()
      .toColourspace("srgb")
      .raw({ depth: "uchar" })
      .toBuffer({ resolveWithObject: true });
  } catch (e) {
    throw new ImageInputError(what, `cannot decode image, corrupt or truncated? (${(e as Error).message})`, {
      cause: e,
    });
  }
  const { width, height, channels } = out.info;
  if (channels !== 3 || out.data.length !== width * height * 3) {
    throw new ImageInputError(
      what,
      `decoder returned ${channels} channels and ${out.data.length} bytes, expected RGB`,
    );
  }
  checkSize(what, width, height, opts);
  return { data: new Uint8Array(out.data.buffer, out.data.byteOffset, out.data.length), width, height };
}

/**
 * Load an image as 8-bit sRGB RGB. `input`: a file path, the bytes of an encoded image (PNG, JPEG, WebP, TIFF,
 * GIF, AVIF, ...), or raw pixels. Throws ImageInputError naming the input and the problem.
 */
export async function loadImage(input: ImageSource, opts: LoadImageOptions = {}): Promise<RgbImage> {
  if (typeof input === "string") return decodeEncoded(await readInputFile(input), input, opts);
  if (input instanceof Uint8Array) return decodeEncoded(input, opts.name ?? "buffer", opts);
  if (isRaw(input)) return rawToRgb(input, opts);
  throw new ImageInputError(
    opts.name ?? "input",
    "expected a file path, an encoded image buffer or raw pixels",
  );
}
