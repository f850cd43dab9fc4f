/**
 * The int8 fast path, weights: each Linear / Conv2d weight is quantized once, when the graph is built, to symmetric
 * int8 with one scale per output channel (scale = max|w| / 127). The graph ops that use them are in int8_ops.ts.
 *
 * Which integer kernel runs them (`int8Kernel`), all exact (int32 accumulation without overflow):
 * - "u8s8" (x86 with AVX-VNNI / AVX-512 VNNI / AMX, Arm64): 8-bit activations (uint8, zero point 128) × int8
 *   weights, onnxruntime's fast MLAS kernels.
 * - "u7s8" (other x86: AVX2): MLAS's u8×s8 kernel there multiplies with vpmaddubsw, whose int16 pair sums saturate
 *   for 255·127·2 > 32767 (measured: 15-22 % error per convolution). Activations get 7 bits (1..127, zero point
 *   64: 127·127·2 = 32258 fits), the weights keep 8.
 * - "u8u8": 8-bit activations × weights stored as uint8 (q + 128, zero point 128): MLAS widens to int16 first, exact
 *   on every CPU, the same integers as "u8s8" (so it reproduces a VNNI CPU's results anywhere) but slower.
 *   AMD EPYC (AVX2), 8192×512 · 512×4096: 329 ms u8u8, 263 ms u7s8, 434 ms float32.
 */
import { checkChoice } from "../io/choice.js";
import { cpuFlags } from "../io/cpu_info.js";
import type { GraphBuilder, Value } from "./graph_builder.js";
import { DataType } from "./proto.js";

export type Precision = "float32" | "int8";
export const PRECISIONS: readonly Precision[] = ["float32", "int8"];

/** Throws a clear error unless `p` is a supported precision. */
export function checkPrecision(p: unknown, what = "precision"): Precision {
  return checkChoice(PRECISIONS, p, what);
}

/** The integer GEMM the int8 layers use (see the file comment). */
export type Int8Kernel = "u8s8" | "u7s8" | "u8u8";
export const INT8_KERNELS: readonly Int8Kernel[] = ["u8s8", "u7s8", "u8u8"];

/** Throws a clear error unless `k` is an int8 kernel name. */
export function checkInt8Kernel(k: unknown, what = "int8 kernel"): Int8Kernel {
  return checkChoice(INT8_KERNELS, k, what);
}

/** The largest quantized activation magnitude of a kernel (zero point = this + 1). */
export function activationLevels(kernel: Int8Kernel): 127 | 63 {
  return kernel === "u7s8" ? 63 : 127;
}

/** The fast exact kernel for this CPU (see the file comment): "u8s8" with VNNI / AMX or on Arm64, else "u7s8". */
export function int8Kernel(flags: readonly string[] | undefined = cpuFlags()): Int8Kernel {
  if (process.arch === "arm64") return "u8s8";
  if (!flags) return "u7s8";
  return flags.some((f) => f === "avx512_vnni" || f === "avx_vnni" || f === "amx_int8") ? "u8s8" : "u7s8";
}

/**
 * Whether the int8 path quantizes convolutions as well as Linear layers by default: no, on every CPU (since stop
 * 12). Quantized convolutions cost ~4-5 dB of image PSNR (twin model, guidance 9: 37.6 dB with them, 41.5 dB
 * Linear-only, guidance halves), below the int8 path's 40 dB bar, for 7 % of speed on the AMX Xeon (UNet 128²,
 * per-row path: 6.37 vs 6.82 s; float32 7.52 s), and on AVX2 they were slower than float32 Winograd ones. Most of
 * the loss is their weights' rounding, which no activation scheme can win back: the float32 graph with only the
 * weights rounded to this file's int8 grid gives the twin image 39.2 dB (stop 13, README "Why ≥ 3x at ≥ 40 dB ...").
 * The kernel no longer changes the answer; `UNet2DConditionModel.buildGraph({ int8Convolutions: true })` builds them.
 */
export function int8Convolutions(_kernel: Int8Kernel = int8Kernel()): boolean {
  return false;
}

/** The largest weight magnitude (symmetric int8). */
export const INT8_WEIGHT_MAX = 127;

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

/** A uint8 scalar constant, one per graph and value (zero points). */
export function uint8Scalar(g: GraphBuilder, v: number): Value {
  return g.sharedInitializer(`int8_zero_point_${v}`, () => ({
    dims: [],
    dataType: DataType.UINT8,
    rawData: new Uint8Array([v]),
  }));
}

/** A quantized weight as graph values: W [inner, out] (int8, or uint8 + 128 for "u8u8"), per-column scales. */
export interface Int8Weight {
  w: Value;
  scale: Value;
  /** The weight's zero point: undefined for int8 (0), a uint8 scalar 128 for "u8u8". */
  zeroPoint: Value | undefined;
  /** The kernel it is stored for (its activations' quantization follows it). */
  kernel: Int8Kernel;
}

/** The initializers of a quantized weight, stored for `kernel`. */
export function int8Initializers(
  g: GraphBuilder,
  name: string,
  m: QuantizedMatrix,
  kernel: Int8Kernel,
): Int8Weight {
  const unsigned = kernel === "u8u8";
  let raw = new Uint8Array(m.q.buffer, m.q.byteOffset, m.q.byteLength);
  if (unsigned) {
    raw = raw.slice(); // q + 128 as uint8 is the int8 byte with its top bit flipped
    for (let i = 0; i < raw.length; i++) raw[i] = (raw[i] as number) ^ 0x80;
  }
  const w = g.addInitializer({
    name: `${name}::int8`,
    dims: [m.rows, m.cols],
    dataType: unsigned ? DataType.UINT8 : DataType.INT8,
    rawData: raw,
  });
  const scale = g.addInitializer({
    name: `${name}::int8_scale`,
    dims: [m.cols],
    dataType: DataType.FLOAT,
    rawData: new Uint8Array(m.scale.buffer, m.scale.byteOffset, m.scale.byteLength),
  });
  const zeroPoint = unsigned ? uint8Scalar(g, 128) : undefined;
  return { w, scale, zeroPoint, kernel };
}
