/**
 * The int8 fast path: Linear and Conv2d layers as onnxruntime's dynamically quantized integer kernels.
 *
 * Weights are quantized once, when the graph is built: symmetric int8 with one scale per output channel
 * (scale = max|w| / 127, or / 63 where the CPU's kernels would overflow: int8WeightMax). Activations are quantized at run time, per tensor, asymmetric uint8
 * (DynamicQuantizeLinear: the scale and zero point come from the tensor's own min and max), so there is no
 * calibration step and no fixed activation range. Accumulation is int32 and the result is float32 again.
 *
 * - Linear: com.microsoft DynamicQuantizeMatMul(x, Wq [in, out], scale [out], -, bias).
 * - Conv2d k×k (groups 1): DynamicQuantizeLinear(x) → uint8 NHWC → Pad with the zero point (a real 0) → k² strided
 *   Slices concatenated on channels (im2col in uint8, tap-major) → com.microsoft MatMulIntegerToFloat with
 *   Wq [(ky, kx, in), out] → NCHW. onnxruntime's ConvInteger has a fast kernel for uint8 weights only, and
 *   QLinearConv needs a fixed output scale; this form keeps the output in float32 and uses MLAS's u8s8 GEMM
 *   (AMX / AVX-512 VNNI / AVX-VNNI / AVX2 kernels).
 *
 * Measured (onnxruntime 1.30, 2 threads, Intel Xeon with AMX, 3×3 conv 256→256 on 2×256×128²): 121 ms float32 Conv,
 * 49 ms this form; a 8192×1024 × 1024×4096 matmul: 334 ms float32, 61 ms DynamicQuantizeMatMul.
 */
import { checkChoice } from "../io/choice.js";
import { cpuFlags } from "../io/cpu_info.js";
import type { Value } from "./graph_builder.js";
import * as op from "./ops.js";
import { DataType } from "./proto.js";

export type Precision = "float32" | "int8";
export const PRECISIONS: readonly Precision[] = ["float32", "int8"];

/** Throws a clear error unless `p` is a supported precision. */
export function checkPrecision(p: unknown, what = "precision"): Precision {
  return checkChoice(PRECISIONS, p, what);
}

/**
 * The largest int8 weight magnitude onnxruntime's u8×s8 kernels accumulate exactly on this CPU. Without VNNI, MLAS's
 * AVX2 / AVX-512BW kernels multiply with vpmaddubsw, whose int16 pair sums saturate for 255·127·2 > 32767 (measured
 * here: 15-22 % error per convolution on an AVX2-only CPU); 7-bit weights (±63, 255·63·2 = 32130) stay exact.
 * AVX-VNNI / AVX-512 VNNI / AMX and Arm's dot-product kernels accumulate in int32 directly and take the full ±127.
 */
export function int8WeightMax(flags: readonly string[] | undefined = cpuFlags()): 127 | 63 {
  if (process.arch === "arm64") return 127;
  if (!flags) return 63;
  return flags.some((f) => f === "avx512_vnni" || f === "avx_vnni" || f === "amx_int8") ? 127 : 63;
}

/**
 * Whether the int8 path quantizes convolutions as well as Linear layers, for the int8WeightMax of the target CPU.
 * With VNNI / AMX (8-bit weights) the u8×s8 im2col GEMM is the fast path (Xeon with AMX: UNet 2.95-3.5x faster
 * than PyTorch). Without them (AVX2-only x86: 7-bit weights, vpmaddubsw) quantized convolutions were both slower and
 * less accurate than float32 Winograd ones (AMD EPYC, UNet batch 2 at 128²: 11.4-14.1 s and 10.3 % relative RMS
 * error with them, 10.7 s and 5.5 % with float32 convolutions and int8 Linear layers; float32: 14.4-14.9 s), so
 * there int8 covers the Linear layers only.
 */
export function int8Convolutions(weightMax: number = int8WeightMax()): boolean {
  return weightMax === 127;
}

const ROUND_MAGIC = 6755399441055744;

export interface QuantizedMatrix {
  /** int8 values, row-major [rows, cols]. */
  q: Int8Array;
  /** One scale per column (output channel). */
  scale: Float32Array;
  rows: number;
  cols: number;
}

/**
 * Quantizes a weight stored as [out, inner] (torch layout: Linear [out, in], Conv2d [out, in, kh, kw] flattened
 * with `innerIndex`) into a [inner, out] int8 matrix with one scale per output channel (scale = max|w| / qmax).
 * `innerIndex(j)` maps the matrix row j to the offset inside one output channel's torch-ordered values.
 */
export function quantizePerOutputChannel(
  w: Float32Array,
  out: number,
  inner: number,
  qmax: number,
  innerIndex: (j: number) => number = (j) => j,
): QuantizedMatrix {
  if (w.length !== out * inner) throw new Error(`quantize: ${w.length} values for ${out}×${inner}`);
  // 1. Quantize in the torch order (sequential reads and writes), one scale per output row.
  const rows = new Int8Array(out * inner);
  const scale = new Float32Array(out);
  for (let o = 0; o < out; o++) {
    const base = o * inner;
    let m = 0;
    for (let i = 0; i < inner; i++) {
      const a = Math.abs(w[base + i] as number);
      if (a > m) m = a;
    }
    if (!Number.isFinite(m)) throw new Error(`quantize: output channel ${o} has a non-finite weight`);
    const s = m > 0 ? m / qmax : 1;
    scale[o] = s;
    const inv = 1 / s;
    for (let i = 0; i < inner; i++) {
      // Round half to even (as numpy / torch) by the 1.5·2^52 trick: |v| <= qmax, far below 2^51.
      const v = (w[base + i] as number) * inv + ROUND_MAGIC - ROUND_MAGIC;
      rows[base + i] = Math.min(qmax, Math.max(-qmax, v));
    }
  }
  // 2. Transpose to [inner, out] (rows permuted by innerIndex) in cache-sized tiles.
  const map = new Int32Array(inner);
  for (let j = 0; j < inner; j++) map[j] = innerIndex(j);
  const q = new Int8Array(inner * out);
  const T = 64;
  for (let o0 = 0; o0 < out; o0 += T) {
    const o1 = Math.min(o0 + T, out);
    for (let j = 0; j < inner; j++) {
      const src = map[j] as number;
      const dst = j * out;
      for (let o = o0; o < o1; o++) q[dst + o] = rows[o * inner + src] as number;
    }
  }
  return { q, scale, rows: inner, cols: out };
}

/** Quantized Linear weight [out, in] → int8 [in, out]. */
export function quantizeLinearWeight(
  w: Float32Array,
  out: number,
  inF: number,
  qmax: number,
): QuantizedMatrix {
  return quantizePerOutputChannel(w, out, inF, qmax);
}

/** Quantized Conv2d weight [out, in, k, k] → int8 [(ky, kx, in), out] (the im2col order of int8Conv2d). */
export function quantizeConvWeight(
  w: Float32Array,
  out: number,
  inC: number,
  k: number,
  qmax: number,
): QuantizedMatrix {
  // Row j = (ky * k + kx) * inC + c  ←  torch offset c * k * k + ky * k + kx.
  return quantizePerOutputChannel(w, out, inC * k * k, qmax, (j) => {
    const c = j % inC;
    const tap = (j - c) / inC;
    return c * k * k + tap;
  });
}

/** y = x @ W + bias with W int8 [in, out] (per-column scales); x float32 [..., in]. */
export function int8Linear(x: Value, w: Value, scale: Value, bias: Value | undefined): Value {
  return x.graph.op("DynamicQuantizeMatMul", [x, w, scale, undefined, bias], {}, { domain: "com.microsoft" });
}

const INT64_MAX = Number.MAX_SAFE_INTEGER; // Slice clamps ends to the axis length.

/**
 * Conv2d (groups 1) on NCHW float32 x with W int8 [(ky, kx, in), out]: uint8 im2col + integer GEMM.
 */
export function int8Conv2d(
  x: Value,
  w: Value,
  scale: Value,
  bias: Value | undefined,
  opts: { kernel: number; stride: number; padding: number },
): Value {
  const g = x.graph;
  const { kernel: k, stride: s, padding: p } = opts;
  const [xq, xScale, xZero] = g.node("DynamicQuantizeLinear", [x], {}, { numOutputs: 3 }) as [
    Value,
    Value,
    Value,
  ];
  let cols = op.transpose(xq, [0, 2, 3, 1]); // NHWC uint8
  if (k > 1 || s > 1) {
    if (p > 0)
      cols = g.op("Pad", [cols, g.constInt64([0, p, p, 0, 0, p, p, 0]), xZero], { mode: "constant" });
    const taps: Value[] = [];
    for (let ky = 0; ky < k; ky++) {
      for (let kx = 0; kx < k; kx++) {
        // Tap (ky, kx) reads rows ky, ky+s, ... up to (padded size) - (k-1-ky): Ho = floor((Hp - k) / s) + 1 rows.
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
    cols = taps.length === 1 ? (taps[0] as Value) : op.concat(taps, 3);
  }
  const y = g.op(
    "MatMulIntegerToFloat",
    [cols, w, xScale, scale, xZero, undefined, bias],
    {},
    { domain: "com.microsoft" },
  );
  return op.transpose(y, [0, 3, 1, 2]);
}

/** The int8 initializer pair of a quantized weight. */
export function int8Initializers(
  g: { addInitializer: (t: import("./proto.js").ITensorProto) => Value },
  name: string,
  m: QuantizedMatrix,
): { w: Value; scale: Value } {
  const w = g.addInitializer({
    name: `${name}::int8`,
    dims: [m.rows, m.cols],
    dataType: DataType.INT8,
    rawData: new Uint8Array(m.q.buffer, m.q.byteOffset, m.q.byteLength),
  });
  const scale = g.addInitializer({
    name: `${name}::int8_scale`,
    dims: [m.cols],
    dataType: DataType.FLOAT,
    rawData: new Uint8Array(m.scale.buffer, m.scale.byteOffset, m.scale.byteLength),
  });
  return { w, scale };
}
