/**
 * 3×3 convolutions (stride 1, padding 1, groups 1) by Winograd's minimal filtering F(4×4, 3×3) (Lavin & Gray,
 * "Fast Algorithms for Convolutional Neural Networks", 2015): each 6×6 input tile d becomes V = Bᵀ d B, each
 * filter g becomes U = G g Gᵀ (at session creation or in every run: winogradFilterGraph), the 36 tile positions
 * are 36 independent GEMMs M = U·V over the input channels, and Aᵀ M A gives a 4×4 output tile: 36 multiply-adds
 * per tile of 16 outputs (2.25 per output) instead of 9 per output.
 *
 * As onnxruntime graph ops, NCHW float32, any height and width:
 *   x [N, C, H, W]
 *   → Conv(group C, 36 fixed 6×6 filters per channel, stride 4, pads 1,1,4,4)  V  [N, C·36, ⌈H/4⌉, ⌈W/4⌉]
 *   → Reshape [N, C, 36, T] → Transpose [N, 36, C, T]
 *   → MatMul(U [36, K, C])                                                      M  [N, 36, K, T]
 *   → MatMul(Aᵀ⊗Aᵀ [16, 36]) on [N, 36, K·T]                                    Y  [N, 16, K·T]
 *   → DepthToSpace(4, DCR) [N, K, 4⌈H/4⌉, 4⌈W/4⌉] → Slice [N, K, H, W] → + bias
 * The padding of the transform conv (1 before, 4 after) covers the conv's own padding and a height or width that
 * is not a multiple of 4; the Slice drops the extra rows. The transform conv is grouped with one input channel per
 * group so that onnxruntime runs it directly in NCHW (its NCHWc layout would add a reorder of the 2.25× larger V).
 *
 * Measured on a 2-core AMD EPYC (AVX2), onnxruntime 1.30, against its float32 Conv on the same tensors:
 * 256→256 on 2×256×128² 278 → 184 ms (1.5x), 512→512 on 2×512×64² 250 → 97 ms (2.6x), 512→512 on 1×512×128²
 * 511 → 263 ms (1.9x); 128→128 on 1×128×512²: no gain (the transforms are memory-bound and the GEMMs small).
 *
 * Numerics: float32 throughout; the transforms have entries up to 8 (Aᵀ) and 5 (Bᵀ), so the result differs from a
 * direct convolution by about 1e-5 of the output's magnitude (direct convolutions in different libraries differ
 * by about 1e-7). The weights U take 36/9 = 4x the memory of the 3×3 filters they replace.
 */
import type { Value } from "./graph_builder.js";
import * as op from "./ops.js";
import { DataType } from "./proto.js";

/** Bᵀ (6×6): input tile transform for the interpolation points 0, 1, -1, 2, -2, ∞. */
const BT = [
  [4, 0, -5, 0, 1, 0],
  [0, -4, -4, 1, 1, 0],
  [0, 4, -4, -1, 1, 0],
  [0, -2, -1, 2, 1, 0],
  [0, 2, -1, -2, 1, 0],
  [0, 4, 0, -5, 0, 1],
];
/** G (6×3): filter transform. */
const G = [
  [1 / 4, 0, 0],
  [-1 / 6, -1 / 6, -1 / 6],
  [-1 / 6, 1 / 6, -1 / 6],
  [1 / 24, 1 / 12, 1 / 6],
  [1 / 24, -1 / 12, 1 / 6],
  [0, 0, 1],
];
/** Aᵀ (4×6): output tile transform. */
const AT = [
  [1, 1, 1, 1, 1, 0],
  [0, 1, -1, 2, -2, 0],
  [0, 1, 1, 4, 4, 0],
  [0, 1, -1, 8, -8, 1],
];

/** Output tile side (m) and input tile side (m + 2). */
export const WINOGRAD_TILE = 4;
const T = 6;
const T2 = T * T;
const M2 = WINOGRAD_TILE * WINOGRAD_TILE;

/**
 * m ⊗ m for an r×c matrix m (rows of numbers), as a row-major [r², c²] float32 matrix: entry ((i, j), (a, b)) is
 * m[i][a] · m[j][b]. The 2-D transforms X ↦ m X mᵀ of a tile flattened row by row are this matrix's products.
 */
function kronSquare(m: number[][]): Float32Array {
  const r = m.length;
  const c = (m[0] as number[]).length;
  const out = new Float32Array(r * r * c * c);
  for (let i = 0; i < r; i++)
    for (let j = 0; j < r; j++)
      for (let a = 0; a < c; a++)
        for (let b = 0; b < c; b++)
          out[((i * r + j) * c + a) * c + b] = (m[i]?.[a] as number) * (m[j]?.[b] as number);
  return out;
}

/**
 * U = G g Gᵀ for every filter of a torch-layout weight w [K, C, 3, 3], as graph ops on the weight initializer:
 * [36, K, C] (tile position major, so that each position's K×C matrix is contiguous).
 *
 * Without `atRun`, every input is constant, so onnxruntime's constant folding computes U once when the session is
 * created: the graph and its cache key stay small, and U never exists in JS memory, but the session holds U (4x
 * the 3×3 filters) for its life. With `atRun` (x: the layer's input; the layer's channel counts) the transform
 * matrix is made to depend on x's batch size, which onnxruntime cannot fold, so U is computed in every run from
 * the filters (pre-transposed to [9, K·C] at session creation, the same size) as one MatMul [36, 9] · [9, K·C],
 * and freed after the layer: ~1.5x U's bytes of memory traffic per run (UNet: ~0.2 s per step on a 2-core CPU).
 */
export function winogradFilterGraph(
  w: Value,
  atRun?: { x: Value; outChannels: number; inChannels: number },
): Value {
  const g = w.graph;
  // (G ⊗ G) as [36, 3, 3]: U[(i, j), k, c] = Σ_ab G[i, a] G[j, b] w[k, c, a, b].
  const kron = g.sharedInitializer("winograd_filter_transform", () => ({
    dims: [T2, 3, 3],
    dataType: DataType.FLOAT,
    rawData: new Uint8Array(kronSquare(G).buffer),
  }));
  if (!atRun) return g.op("Einsum", [kron, w], { equation: "xab,kcab->xkc" });
  // One zero for the graph (from the first Winograd layer's input); onnxruntime still computes each U next to its
  // layer. Tying each U to its own layer's input instead was measured worse: CLI 128² → 512² peak 2.88 vs 2.67 GiB.
  const kronAtRun = g.shared("winograd_filter_transform_at_run", () =>
    op.add(op.reshape(kron, [T2, 9]), runtimeZero(atRun.x)),
  );
  const taps = op.reshape(op.transpose(w, [2, 3, 0, 1]), [9, -1]); // [9, K·C], folded once
  return op.reshape(op.matmul(kronAtRun, taps), [T2, atRun.outChannels, atRun.inChannels]);
}

/**
 * A float32 0 that onnxruntime cannot constant-fold: derived from the batch size of `x` (a tensor computed from the
 * graph's inputs, whose first dimension is symbolic).
 */
function runtimeZero(x: Value): Value {
  const n = op.shape(x, 0, 1);
  return op.cast(op.sub(n, n), "float32");
}

/** The 36 input-transform filters Bᵀ[i,·] ⊗ Bᵀ[j,·] as 6×6 kernels, [36, 36]: filter (i, j), tap (a, b). */
export function winogradInputKernel(): Float32Array {
  return kronSquare(BT);
}

/** Aᵀ ⊗ Aᵀ as [16, 36]: output position (p, q) from tile position (i, j). */
export function winogradOutputMatrix(): Float32Array {
  return kronSquare(AT);
}

/** y = conv3x3(x, W, bias, stride 1, padding 1), given U = winogradFilterGraph(W) [36, K, C]. */
export function winogradConv3x3(
  x: Value,
  u: Value,
  bias: Value | undefined,
  inChannels: number,
  outChannels: number,
): Value {
  const g = x.graph;
  const C = inChannels;
  const K = outChannels;
  // The grouped transform conv's weight [C·36, 1, 6, 6]: the 36 filters repeated per channel, expanded in the graph
  // (constant-folded once per channel count) so the model bytes carry them once.
  const kernel = g.shared(`winograd_input_transform_${C}`, () => {
    const one = g.sharedInitializer("winograd_input_transform", () => ({
      dims: [1, T2, T2],
      dataType: DataType.FLOAT,
      rawData: new Uint8Array(winogradInputKernel().buffer),
    }));
    return op.reshape(op.expand(one, [C, T2, T2]), [C * T2, 1, T, T]);
  });
  const at = g.sharedInitializer("winograd_output_transform", () => ({
    dims: [M2, T2],
    dataType: DataType.FLOAT,
    rawData: new Uint8Array(winogradOutputMatrix().buffer),
  }));
  // V: [N, C·36, Th, Tw], Th = ⌈H/4⌉ (pads 1 before, 4 after: ⌊(H + 5 - 6) / 4⌋ + 1 = ⌈H/4⌉).
  const v = g.op("Conv", [x, kernel], {
    kernel_shape: [T, T],
    strides: [WINOGRAD_TILE, WINOGRAD_TILE],
    pads: [1, 1, WINOGRAD_TILE, WINOGRAD_TILE],
    group: C,
  });
  const tiles = op.shape(v, 2, 4);
  const vt = op.transpose(op.reshape(v, [0, C, T2, -1]), [0, 2, 1, 3]); // [N, 36, C, T]
  const m = op.matmul(u, vt); // [N, 36, K, T]
  const y = op.matmul(at, op.reshape(m, [0, T2, -1])); // [N, 16, K·T]
  const blocks = op.reshape(y, op.concat([g.constInt64([0, M2 * K]), tiles], 0)); // [N, 16·K, Th, Tw]
  let out = g.op("DepthToSpace", [blocks], { blocksize: WINOGRAD_TILE, mode: "DCR" }); // [N, K, 4Th, 4Tw]
  out = op.slice(out, g.constInt64([0, 0]), op.shape(x, 2, 4), [2, 3]);
  return bias ? op.add(out, op.reshape(bias, [K, 1, 1])) : out;
}
