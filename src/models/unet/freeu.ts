/**
 * FreeU (https://arxiv.org/abs/2309.11497) as diffusers v0.23.0 applies it in the UNet's up blocks: `apply_freeu`
 * and `fourier_filter` of src/diffusers/utils/torch_utils.py
 * (https://github.com/huggingface/diffusers/blob/v0.23.0/src/diffusers/utils/torch_utils.py).
 *
 * `fourier_filter(x, threshold=1, scale)` is `ifftn(ifftshift(fftshift(fftn(x)) * mask)).real` with the mask equal
 * to `scale` on the centred window rows/cols [n//2 - 1, n//2 + 1) of the shifted spectrum, 1 elsewhere. The filter
 * is linear, so it is computed without an FFT (onnxruntime's CPU DFT is limited): the window holds the frequencies
 * k ∈ {0, -1} on each axis (only k = 0 when the axis has length 1), and
 *
 *   fourier_filter(x) = x + (scale - 1) · Re(A_H · x · A_Wᵀ),   A_n[i, j] = (1/n) Σ_k∈window e^{2πi·k·(i-j)/n}
 *                     = x + (scale - 1) · (Re A_H · x · Re A_Wᵀ − Im A_H · x · Im A_Wᵀ)        (x is real)
 *
 * with Re A_n = (1 + c·cos(2π(i-j)/n)) / n, Im A_n = −c·sin(2π(i-j)/n) / n, c = min(n - 1, 1). The n×n matrices
 * are built in the graph from the runtime shape, so any (non-power-of-2) size works.
 */
import type { Value } from "../../onnx/graph_builder.js";
import * as op from "../../onnx/ops.js";

/** `unet.enable_freeu(s1, s2, b1, b2)`: skip-feature (s) and backbone (b) factors of up stages 1 and 2. */
export interface FreeUConfig {
  s1: number;
  s2: number;
  b1: number;
  b2: number;
}

/** diffusers checks `s1 and s2 and b1 and b2`: any zero factor leaves FreeU off. */
export function isFreeUEnabled(f: FreeUConfig | undefined): f is FreeUConfig {
  return !!f && !!f.s1 && !!f.s2 && !!f.b1 && !!f.b2;
}

/**
 * The real and imaginary parts of A_n for axis `axis` of x (length n at run time), laid out for a left product
 * (`[i, j]`, d = i - j) or for a right product by A_nᵀ (`[j, i]`, d = i - j).
 */
function windowOperator(x: Value, axis: number, side: "left" | "right"): { re: Value; im: Value } {
  const g = x.graph;
  const n = op.shape(x, axis, axis + 1); // int64 [1]
  const nf = op.cast(n, "float32");
  // Range in int64 (onnx shape inference rejects a float Range whose limit comes from a Shape), then cast.
  const idx = op.cast(g.op("Range", [g.constInt64(0), op.squeeze(n, [0]), g.constInt64(1)]), "float32"); // [n]
  const col = op.unsqueeze(idx, [1]);
  const row = op.unsqueeze(idx, [0]);
  const d = side === "left" ? op.sub(col, row) : op.sub(row, col);
  const angle = op.div(op.mul(d, 2 * Math.PI), nf);
  // c = min(n - 1, 1): a length-1 axis has only the zero frequency in its window.
  const c = g.op("Min", [op.sub(nf, 1), g.constFloat(1)]);
  const re = op.div(op.add(op.mul(op.cos(angle), c), 1), nf);
  const im = op.div(op.neg(op.mul(op.sin(angle), c)), nf);
  return { re, im };
}

/** diffusers `fourier_filter(x, threshold=1, scale)` on NCHW float32. */
export function fourierFilter(x: Value, scale: number): Value {
  if (scale === 1) return x;
  const h = windowOperator(x, 2, "left");
  const w = windowOperator(x, 3, "right");
  const real = op.sub(op.matmul(op.matmul(h.re, x), w.re), op.matmul(op.matmul(h.im, x), w.im));
  return op.add(x, op.mul(real, Math.fround(scale) - 1));
}

/**
 * diffusers `apply_freeu` for up block `resolutionIdx` (0 and 1 only; others pass through): the first half of
 * the backbone channels × b, the skip features through `fourier_filter` with s.
 */
export function applyFreeU(
  resolutionIdx: number,
  hidden: Value,
  hiddenChannels: number,
  resHidden: Value,
  f: FreeUConfig,
): [Value, Value] {
  if (resolutionIdx !== 0 && resolutionIdx !== 1) return [hidden, resHidden];
  const bFactor = resolutionIdx === 0 ? f.b1 : f.b2;
  const sFactor = resolutionIdx === 0 ? f.s1 : f.s2;
  const half = Math.floor(hiddenChannels / 2);
  const factors = new Float32Array(hiddenChannels).fill(1);
  factors.fill(bFactor, 0, half);
  const scaled = op.mul(hidden, hidden.graph.constFloat(factors, [1, hiddenChannels, 1, 1]));
  return [scaled, fourierFilter(resHidden, sFactor)];
}
