/**
 * Output encoding: RgbImage → PNG / JPEG / WebP bytes through sharp, plus the .npy writer and the atomic file
 * write (re-exported here so that output code has one import).
 */
import sharp from "sharp";
import { ImageInputError } from "./errors.js";
import type { RgbImage } from "./types.js";

export { type AtomicWriteSource, writeFileAtomic } from "./atomic_write.js";
export { decodeNpy, encodeNpy, type NpyData, readNpy, writeNpy } from "./npy.js";

export type ImageFormat = "png" | "jpg" | "webp";

export interface EncodeOptions {
  /** JPEG / WebP quality 1-100 (default 95). Ignored for PNG. */
  quality?: number;
  /** WebP only: lossless encoding (default false). */
  lossless?: boolean;
}

/** The output format implied by a file name's extension (.png, .jpg/.jpeg, .webp), or undefined. */
export function formatFromPath(path: string): ImageFormat | undefined {
  const ext = /\.([^./\\]+)$/.exec(path)?.[1]?.toLowerCase();
  if (ext === "png") return "png";
  if (ext === "jpg" || ext === "jpeg") return "jpg";
  if (ext === "webp") return "webp";
  return undefined;
}

/** Encode an 8-bit RGB image. PNG is lossless; JPEG uses 4:4:4 chroma (no subsampling) at the given quality. */
export async function encodeImage(
  img: RgbImage,
  format: ImageFormat,
  opts: EncodeOptions = {},
): Promise<Buffer> {
  const { width, height, data } = img;
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
    throw new ImageInputError("encode", `invalid size ${width}x${height}`);
  }
  if (data.length !== width * height * 3) {
    throw new ImageInputError("encode", `RGB data has ${data.length} bytes, expected ${width * height * 3}`);
  }
  const quality = opts.quality ?? 95;
  if (!Number.isInteger(quality) || quality < 1 || quality > 100) {
    throw new ImageInputError("encode", `quality ${quality} must be an integer in 1..100`);
  }
  const s = sharp(data, { raw: { width, height, channels: 3 } });
  switch (format) {
    case "png":
      return s.png().toBuffer();
    case "jpg":
      return s.jpeg({ quality, chromaSubsampling: "4:4:4" }).toBuffer();
    case "webp":
      return s.webp({ quality, lossless: opts.lossless ?? false }).toBuffer();
    default:
      throw new ImageInputError("encode", `unknown format ${String(format)}`);
  }
}
