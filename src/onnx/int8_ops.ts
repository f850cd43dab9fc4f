/**
 * The int8 fast path, graph ops: Linear and Conv2d layers as onnxruntime's integer GEMM (com.microsoft
 * MatMulIntegerToFloat) on weights quantized when the graph is built (quantize.ts).
 *
 * Activations are quantized at run time, symmetric, to uint8 with zero point 128 (step max|x| / 127; 7-bit with
 * zero point 64 for the "u7s8" kernel), with one scale per row of a Linear's input (per token) and one per image
 * for a convolution (an im2col row mixes k² pixels, so the scale must be common to them). The GEMM's float output
 * is multiplied by the row's / image's scale; the weights' per-output-channel scales are applied inside the
 * kernel. No calibration, no fixed range.
 *
 * Two forms. The UNet's guided batches use guidance halves (below: int8LinearHalves, int8Conv2dHalves), others
 * the per-row form described here (int8Linear, int8Conv2d), whose optional guidance pairs were the guided form
 * before stop 12.
 *
 * Guidance pairs. Classifier-free guidance runs the UNet on [unconditional; conditional] halves and amplifies their
 * difference by the guidance scale (9 by default), and with it any error that differs between the halves. Given
 * `index` (an int64 [batch] graph input: the row each row is paired with, itself if none; a paired row's partner
 * must be unpaired), each layer quantizes a paired row as its difference from its partner, which is small, and
 * adds the partner's product back:
 *   y[r] = f(x[r]) for unpaired rows,   y[r] = f(x[index[r]]) + f(x[r] - x[index[r]]) for paired ones
 * (f linear, so exact without quantization). Where the halves agree, their outputs stay identical, and the
 * rounding error of the difference scales with the difference. Measured (Linear layers int8, twin model,
 * 32² → 128², 20 steps, guidance 9, image PSNR against float32): 32.4 dB with per-tensor uint8 activations and
 * 7-bit weights (before), 36.5 dB per-row, 42.6 dB per-row with guidance pairs ("u8s8" integers, run as "u8u8"),
 * 40.0 dB with 7-bit activations ("u7s8"). Guidance 1: 44.9 dB per-tensor.
 *
 * Conv2d k×k (groups 1): uint8 NHWC → Pad with the zero point (a real 0) → k² strided Slices concatenated on
 * channels (im2col in uint8, tap-major) → MatMulIntegerToFloat with W [(ky, kx, in), out] → NCHW. onnxruntime's
 * ConvInteger has a fast kernel for uint8 weights only and QLinearConv needs a fixed output scale; this form keeps
 * the output in float32 and uses MLAS's integer GEMM (AMX / AVX-512 VNNI / AVX-VNNI / AVX2 kernels).
 *
 * Measured (onnxruntime 1.30, 2 threads, Intel Xeon with AMX, 3×3 conv 256→256 on 2×256×128²): 121 ms float32
 * Conv, 49 ms in this form (per-tensor scale).
 */
import type { Value } from "./graph_builder.js";
import * as op from "./ops.js";
import { activationLevels, type Int8Weight, uint8Scalar } from "./quantize.js";

const INT64_MAX = Number.MAX_SAFE_INTEGER; // Slice clamps ends to the axis length.

/**
 * Symmetric uint8 quantization of x with one scale per slice over `axes`: q = round(L · x / m) + L + 1, where
 * m = max|x| over the slice (kept as size-1 dims, so it broadcasts against x; a tiny floor keeps an all-zero slice
 * at zeros) and L = 127, or 63 for 7-bit activations. Few nodes on purpose: onnxruntime's allocation planner
 * costs grow with (nodes × earlier buffers of unknown shape).
 */
export function quantizeActivations(x: Value, axes: number[], levels: number): { q: Value; m: Value } {
  const g = x.graph;
  const m = g.op("Max", [g.op("ReduceMax", [op.abs(x)], { axes, keepdims: 1 }), g.constFloat(1e-30)]);
  const q = g.op("QuantizeLinear", [op.div(x, m), g.constFloat(1 / levels), uint8Scalar(g, levels + 1)]);
  return { q, m };
}

/** x @ W (x as quantizeActivations left it, with its m) in float32, over q's leading dims. */
export function integerMatMul(q: Value, m: Value, w: Int8Weight): Value {
  const g = q.graph;
  const levels = activationLevels(w.kernel);
  const y = g.op(
    "MatMulIntegerToFloat",
    [q, w.w, g.constFloat(1 / levels), w.scale, uint8Scalar(g, levels + 1), w.zeroPoint],
    {},
    { domain: "com.microsoft" },
  );
  return op.mul(y, m);
}

/**
 * f applied with guidance pairs (see the file comment) on x of the given rank, batch first: a paired row goes
 * through f as its difference from its partner (`index`), whose output is added back. f must be linear in x;
 * without `index`, f(x).
 */
export function withGuidancePairs(
  x: Value,
  rank: number,
  index: Value | undefined,
  f: (x: Value) => Value,
): Value {
  if (index === undefined) return f(x);
  const g = x.graph;
  const paired = pairedRows(index, rank);
  // Partner rows × (1 if paired, else 0): a broadcast Mul runs far faster in onnxruntime than a broadcast Where.
  const ref = (v: Value) => op.mul(g.op("Gather", [v, index], { axis: 0 }), paired);
  const y = f(op.sub(x, ref(x)));
  return op.add(y, ref(y));
}

/**
 * float32 [batch, 1, ...] of the given rank: 1 where row r is paired (index[r] ≠ r), else 0. Built once per graph
 * and rank, with ops that keep the batch dimension's symbolic name (`index` is [batch]): onnxruntime's allocation
 * planner cannot reuse buffers of unknown shape, and scans all of them for every later node.
 */
function pairedRows(index: Value, rank: number): Value {
  const g = index.graph;
  const rows = g.shared(`int8_paired:${index.name}`, () => {
    const ones = op.add(op.mul(index, g.constInt64(0)), g.constInt64(1));
    const r = op.sub(g.op("CumSum", [ones, g.constInt64(0)]), g.constInt64(1));
    return op.cast(g.op("Not", [g.op("Equal", [index, r])]), "float32");
  });
  return g.shared(`int8_paired:${index.name}:${rank}`, () =>
    op.unsqueeze(
      rows,
      Array.from({ length: rank - 1 }, (_, i) => i + 1),
    ),
  );
}

/**
 * Linear: y = x @ W + bias on float32 x [..., in], quantized per row; W as quantize.ts stores it. With guidance
 * pairs x must be [batch, tokens, in].
 */
export function int8Linear(x: Value, w: Int8Weight, bias: Value | undefined, index?: Value): Value {
  const y = withGuidancePairs(x, 3, index, (v) => {
    const { q, m } = quantizeActivations(v, [-1], activationLevels(w.kernel));
    return integerMatMul(q, m, w);
  });
  return bias ? op.add(y, bias) : y;
}

/**
 * im2col of a uint8 NHWC tensor for a k×k convolution (stride s, padding p with `zero`, the zero point: a real 0):
 * the k² taps concatenated on channels, tap-major → [N, Ho, Wo, k²·C].
 */
function im2col(nhwc: Value, zero: Value, k: number, s: number, p: number): Value {
  const g = nhwc.graph;
  if (k === 1 && s === 1) return nhwc;
  let cols = nhwc;
  if (p > 0) cols = g.op("Pad", [cols, g.constInt64([0, p, p, 0, 0, p, p, 0]), zero], { mode: "constant" });
  const taps: Value[] = [];
  for (let ky = 0; ky < k; ky++) {
    for (let kx = 0; kx < k; kx++) {
      // Tap (ky, kx) reads rows ky, ky+s, ... up to (padded size) - (k-1-ky): Ho = floor((Hp - k) / s) + 1.
      const end = (d: number) => (k - 1 - d > 0 ? -(k - 1 - d) : INT64_MAX);
      taps.push(
        g.op("Slice", [
          cols,
          g.constInt64([ky, kx]),
          g.constInt64([end(ky), end(kx)]),
          g.constInt64([1, 2]),
          g.constInt64([s, s]),
        ]),
      );
    }
  }
  return taps.length === 1 ? (taps[0] as Value) : op.concat(taps, 3);
}

/** Conv2d (groups 1) on NCHW float32 x with W [(ky, kx, in), out], quantized per image. */
export function int8Conv2d(
  x: Value,
  w: Int8Weight,
  bias: Value | undefined,
  opts: { kernel: number; stride: number; padding: number },
  index?: Value,
): Value {
  const g = x.graph;
  const { kernel: k, stride: s, padding: p } = opts;
  let y = withGuidancePairs(x, 4, index, (v) => {
    const { q, m } = quantizeActivations(v, [1, 2, 3], activationLevels(w.kernel));
    const zero = uint8Scalar(g, activationLevels(w.kernel) + 1);
    const cols = im2col(op.transpose(q, [0, 2, 3, 1]), zero, k, s, p); // NHWC uint8
    return integerMatMul(cols, m, w); // [N, Ho, Wo, out]; m [N, 1, 1, 1]
  });
  if (bias) y = op.add(y, bias);
  return op.transpose(y, [0, 3, 1, 2]);
}

/*
 * Guidance halves: a leaner form of the guidance pairs for a batch that is [unconditional; conditional] halves
 * (what the pipeline runs), built with `int8Activations: "half"` (UNet.buildGraph). Each layer splits its input
 * into the halves u and c and runs f(u) and f(c - u) as two integer GEMMs, each half quantized per tensor,
 * asymmetric uint8 (onnxruntime's DynamicQuantizeLinear semantics: scale (max - min) / 255 over the half, zero
 * point from min), then y = [f(u); f(u) + f(c - u)]. The quantization is fused into the GEMM
 * (com.microsoft DynamicQuantizeMatMul: one pass for min / max, one to quantize; the scales and the bias applied in
 * the GEMM's output stage), so a Linear layer costs Split, Sub, Add and Concat besides its GEMMs, against ~10
 * element-wise passes for per-token scales. Activations take all 8 bits, so it needs the "u8s8" or "u8u8" kernel.
 * Measured (twin model, 32² → 128², 20 steps, guidance 9, image PSNR against float32, "u8s8" integers run as
 * "u8u8"): 41.5 dB with Linear layers int8 (per-token scales with guidance pairs: 42.6 dB).
 */

/**
 * f applied with guidance halves on x [2n, ...]: [f(u, bias); f(u, bias) + f(c − u)] for the halves u and c. f must
 * be linear in x apart from the bias it is given.
 */
function withGuidanceHalves(
  x: Value,
  bias: Value | undefined,
  f: (x: Value, bias: Value | undefined) => Value,
): Value {
  const [u, c] = op.split(x, 2, 0) as [Value, Value];
  const yu = f(u, bias);
  return op.concat([yu, op.add(yu, f(op.sub(c, u), undefined))], 0);
}

/** Linear with guidance halves: x [2n, tokens, in] float32 → [2n, tokens, out]. */
export function int8LinearHalves(x: Value, w: Int8Weight, bias: Value | undefined): Value {
  const g = x.graph;
  return withGuidanceHalves(x, bias, (v, b) =>
    g.op("DynamicQuantizeMatMul", [v, w.w, w.scale, w.zeroPoint, b], {}, { domain: "com.microsoft" }),
  );
}

/** Conv2d (groups 1) with guidance halves on NCHW float32 x [2n, C, H, W], W [(ky, kx, in), out]. */
export function int8Conv2dHalves(
  x: Value,
  w: Int8Weight,
  bias: Value | undefined,
  opts: { kernel: number; stride: number; padding: number },
): Value {
  const g = x.graph;
  const { kernel: k, stride: s, padding: p } = opts;
  const conv = (v: Value, b: Value | undefined) => {
    const [q, scale, zero] = g.node("DynamicQuantizeLinear", [v], {}, { numOutputs: 3 }) as [
      Value,
      Value,
      Value,
    ];
    const cols = im2col(op.transpose(q, [0, 2, 3, 1]), zero, k, s, p);
    return g.op(
      "MatMulIntegerToFloat",
      [cols, w.w, scale, w.scale, zero, w.zeroPoint, b],
      {},
      { domain: "com.microsoft" },
    ); // [n, Ho, Wo, out]
  };
  return op.transpose(withGuidanceHalves(x, bias, conv), [0, 3, 1, 2]);
}
