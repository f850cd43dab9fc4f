/**
 * Bit-exact Pillow 9.4 `Image.resize((w, h), Image.BICUBIC)` for 8-bit images (src/libImaging/Resample.c).
 *
 * What is reproduced, step by step:
 * - filter: Keys cubic convolution with a = -0.5, support 2 (scaled by the downscale factor when shrinking);
 * - `precompute_coeffs`: per output pixel, centre = (i + 0.5) * scale, a window [xmin, xmin + n) found by
 *   truncating `centre ± support + 0.5`, weights evaluated at (x - centre + 0.5) / filterscale and divided by
 *   their sum, all in double precision;
 * - `normalize_coeffs_8bpc`: weights converted to fixed point with PRECISION_BITS = 22, rounding half away
 *   from zero and truncating toward zero (`(int)(±0.5 + w * 2^22)`);
 * - two passes, horizontal first (only over the rows the vertical pass reads), then vertical, each one an
 *   integer accumulation started at 2^21 and clipped with `clip8` (arithmetic shift by 22, clamp to 0..255);
 * - a pass is skipped when its dimension is unchanged; same size in both is a plain copy (PIL returns
 *   `self.copy()`).
 * Bands are independent, so any channel count works (Pillow's RGB mode stores 4 bytes a pixel but never mixes
 * them). The accumulators stay far below 2^31, so double arithmetic reproduces the C int arithmetic exactly.
 */
import { ImageInputError } from "./errors.js";
import type { RgbImage } from "./types.js";

const PRECISION_BITS = 32 - 8 - 2;
const ONE = 1 << PRECISION_BITS;
const HALF = 1 << (PRECISION_BITS - 1);

/** Pillow's bicubic_filter with a = -0.5. */
function bicubicFilter(x: number): number {
  const a = -0.5;
  if (x < 0.0) x = -x;
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}

/** Fixed-point coefficients for one axis: window start/length per output index and ksize weights each. */
export interface ResampleCoeffs {
  ksize: number;
  /** bounds[2i] = first input index, bounds[2i+1] = number of input samples used by output i. */
  bounds: Int32Array;
  /** kk[i * ksize + j]: fixed-point weight (2^22 = 1.0) of input bounds[2i] + j for output i. */
  kk: Int32Array;
}

/** `precompute_coeffs` + `normalize_coeffs_8bpc` for the whole-image box [0, inSize). */
export function precomputeCoeffs(inSize: number, outSize: number): ResampleCoeffs {
  const support0 = 2.0; // BICUBIC support
  const scale = inSize / outSize;
  const filterscale = Math.max(scale, 1.0);
  const support = support0 * filterscale;
  const ksize = Math.ceil(support) * 2 + 1;
  const bounds = new Int32Array(outSize * 2);
  const kk = new Int32Array(outSize * ksize);
  const w = new Float64Array(ksize);
  const ss = 1.0 / filterscale;
  for (let xx = 0; xx < outSize; xx++) {
    const center = 0 + (xx + 0.5) * scale;
    let ww = 0.0;
    // (int) casts truncate toward zero.
    let xmin = Math.trunc(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    let xmax = Math.trunc(center + support + 0.5);
    if (xmax > inSize) xmax = inSize;
    xmax -= xmin;
    for (let x = 0; x < xmax; x++) {
      const v = bicubicFilter((x + xmin - center + 0.5) * ss);
      w[x] = v;
      ww += v;
    }
    const base = xx * ksize;
    for (let x = 0; x < xmax; x++) {
      let k = w[x] as number;
      if (ww !== 0.0) k /= ww;
      kk[base + x] = k < 0 ? Math.trunc(-0.5 + k * ONE) : Math.trunc(0.5 + k * ONE);
    }
    // kk[base + xmax .. base + ksize) stay 0, as in Pillow.
    bounds[xx * 2] = xmin;
    bounds[xx * 2 + 1] = xmax;
  }
  return { ksize, bounds, kk };
}

/** clip8: arithmetic shift by PRECISION_BITS, clamped to 0..255. */
function clip8(ss: number): number {
  const v = ss >> PRECISION_BITS;
  return v < 0 ? 0 : Math.min(v, 255);
}

/** Horizontal pass over input rows [rowOffset, rowOffset + outRows). */
function resampleHorizontal(
  src: Uint8Array,
  inW: number,
  channels: number,
  rowOffset: number,
  outRows: number,
  outW: number,
  c: ResampleCoeffs,
): Uint8Array {
  const out = new Uint8Array(outW * outRows * channels);
  const { ksize, bounds, kk } = c;
  const acc = new Float64Array(channels);
  for (let yy = 0; yy < outRows; yy++) {
    const rowIn = (yy + rowOffset) * inW * channels;
    const rowOut = yy * outW * channels;
    for (let xx = 0; xx < outW; xx++) {
      const xmin = bounds[xx * 2] as number;
      const xmax = bounds[xx * 2 + 1] as number;
      const kb = xx * ksize;
      acc.fill(HALF);
      for (let x = 0; x < xmax; x++) {
        const k = kk[kb + x] as number;
        const p = rowIn + (x + xmin) * channels;
        for (let ch = 0; ch < channels; ch++) acc[ch] = (acc[ch] as number) + (src[p + ch] as number) * k;
      }
      const o = rowOut + xx * channels;
      for (let ch = 0; ch < channels; ch++) out[o + ch] = clip8(acc[ch] as number);
    }
  }
  return out;
}

/** Vertical pass; bounds are relative to the first row of `src`, shifted by `-rowShift`. */
function resampleVertical(
  src: Uint8Array,
  width: number,
  channels: number,
  outH: number,
  c: ResampleCoeffs,
  rowShift: number,
): Uint8Array {
  const rowLen = width * channels;
  const out = new Uint8Array(rowLen * outH);
  const { ksize, bounds, kk } = c;
  for (let yy = 0; yy < outH; yy++) {
    const ymin = (bounds[yy * 2] as number) - rowShift;
    const ymax = bounds[yy * 2 + 1] as number;
    const kb = yy * ksize;
    const rowOut = yy * rowLen;
    for (let i = 0; i < rowLen; i++) {
      let ss = HALF;
      for (let y = 0; y < ymax; y++) {
        ss += (src[(y + ymin) * rowLen + i] as number) * (kk[kb + y] as number);
      }
      out[rowOut + i] = clip8(ss);
    }
  }
  return out;
}

/**
 * Resize interleaved 8-bit pixels (any channel count, bands resampled independently) exactly as Pillow 9.4's
 * BICUBIC does for modes L and RGB. Returns a new buffer; same size returns a copy.
 */
export function resizeBicubicU8(
  data: Uint8Array,
  width: number,
  height: number,
  channels: number,
  outW: number,
  outH: number,
): Uint8Array {
  for (const [name, v] of [
    ["width", width],
    ["height", height],
    ["output width", outW],
    ["output height", outH],
  ] as const) {
    if (!Number.isInteger(v) || v < 1)
      throw new ImageInputError("bicubic resize", `${name} ${v} is not a positive integer`);
  }
  if (data.length !== width * height * channels) {
    throw new ImageInputError(
      "bicubic resize",
      `buffer has ${data.length} bytes, expected ${width}x${height}x${channels} = ${width * height * channels}`,
    );
  }
  const needH = outW !== width;
  const needV = outH !== height;
  if (!needH && !needV) return data.slice();
  const vert = precomputeCoeffs(height, outH);
  if (!needH) return resampleVertical(data, width, channels, outH, vert, 0);
  const horiz = precomputeCoeffs(width, outW);
  // Only the rows the vertical pass reads (all rows when there is no vertical pass).
  const yFirst = needV ? (vert.bounds[0] as number) : 0;
  const yLast = needV
    ? (vert.bounds[outH * 2 - 2] as number) + (vert.bounds[outH * 2 - 1] as number)
    : height;
  const tmp = resampleHorizontal(data, width, channels, yFirst, yLast - yFirst, outW, horiz);
  if (!needV) return tmp;
  return resampleVertical(tmp, outW, channels, outH, vert, yFirst);
}

/** Pillow 9.4 `image.resize((outW, outH), Image.BICUBIC)` for an RGB image. */
export function resizeBicubic(img: RgbImage, outW: number, outH: number): RgbImage {
  return { data: resizeBicubicU8(img.data, img.width, img.height, 3, outW, outH), width: outW, height: outH };
}
