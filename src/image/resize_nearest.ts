/**
 * `torch.nn.functional.interpolate(x, size=(outH, outW))` with the default mode "nearest" (torch 1.13 CPU,
 * ATen UpSampleKernel.cpp `nearest_idx`), for float32 NCHW tensors:
 * - output size == input size: identity;
 * - output size == 2 * input size: src = dst >> 1;
 * - otherwise: scale = float32(in / out), src = min(floorf(float32(dst * scale)), in - 1).
 * (float32 division and product of small integers are correctly rounded when done in double and then rounded
 * to float32, so Math.fround reproduces floorf's argument exactly.)
 */
import { ImageInputError } from "./errors.js";
import type { ImageTensor } from "./types.js";

/** Source index of output index `dst` along one axis (legacy "nearest", not "nearest-exact"). */
export function nearestIndex(dst: number, inSize: number, outSize: number): number {
  if (outSize === inSize) return dst;
  if (outSize === 2 * inSize) return dst >> 1;
  const scale = Math.fround(inSize / outSize);
  return Math.min(Math.floor(Math.fround(dst * scale)), inSize - 1);
}

/** Nearest-neighbour resize of an NCHW float32 tensor to (outH, outW), as F.interpolate(mode="nearest"). */
export function resizeNearestNCHW(input: ImageTensor, outH: number, outW: number): ImageTensor {
  const [n, c, h, w] = input.shape;
  if (!Number.isInteger(outH) || !Number.isInteger(outW) || outH < 1 || outW < 1) {
    throw new ImageInputError("nearest resize", `output size ${outW}x${outH} must be positive integers`);
  }
  if (input.data.length !== n * c * h * w) {
    throw new ImageInputError(
      "nearest resize",
      `tensor has ${input.data.length} values, shape [${input.shape.join(", ")}] needs ${n * c * h * w}`,
    );
  }
  const ys = new Int32Array(outH);
  for (let y = 0; y < outH; y++) ys[y] = nearestIndex(y, h, outH);
  const xs = new Int32Array(outW);
  for (let x = 0; x < outW; x++) xs[x] = nearestIndex(x, w, outW);
  const out = new Float32Array(n * c * outH * outW);
  const src = input.data;
  let o = 0;
  for (let plane = 0; plane < n * c; plane++) {
    const pBase = plane * h * w;
    for (let y = 0; y < outH; y++) {
      const rBase = pBase + (ys[y] as number) * w;
      for (let x = 0; x < outW; x++) out[o++] = src[rBase + (xs[x] as number)] as number;
    }
  }
  return { data: out, shape: [n, c, outH, outW] };
}
