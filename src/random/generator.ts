/**
 * `torch.Generator('cpu')` of torch 1.13, reproduced bit for bit: mt19937 plus ATen's CPU `uniform_` (`rand`)
 * and `normal_` (`randn`) kernels (x86-64 AVX2 build).
 *
 * - `manualSeed(s)` keeps `s` modulo 2^64 as the initial seed, starts mt19937 from its low 32 bits and clears the
 *   cached normal.
 * - `rand`: float32 = `(random() & 0xFFFFFF) * 2^-24`; float64 = `(random64() & (2^53-1)) * 2^-53`, where
 *   `random64()` is `(first << 32) | second`.
 * - `randn` with fewer than 16 elements: scalar Box-Muller in double with a one-value float64 cache shared by every
 *   dtype (`at::normal_distribution<double>`). With 16 or more: all uniforms first, then 16-element Box-Muller
 *   blocks on pairs (j, j+8), and when numel % 16 != 0 the last 16 slots are redrawn and transformed again; this
 *   path neither reads nor writes the cache.
 *
 * Precision: uniforms and every float32 output are bit-exact (float32 `randn` >= 16 uses avx_mathfun's Cephes
 * polynomials, see mathfun_f32.ts). Float64 Box-Muller values use correctly rounded log/sin/cos (mathfun_f64.ts);
 * glibc, which torch calls, is not correctly rounded for roughly 0.1-0.3% of arguments, so about 0.16% of float64
 * `randn` values can differ from torch's by one ulp (~4e-16). Float32 results cast from them were unaffected in a
 * 160,000-value comparison.
 */
import { randomFillSync } from "node:crypto";
import { normalFill16F32 } from "./mathfun_f32.js";
import { boxMullerPair, boxMullerSin, normalFill16F64 } from "./mathfun_f64.js";
import { MT19937 } from "./mt19937.js";
import { dtypeOf, numelOf, type RandomDtype } from "./shape.js";

export type { RandomDtype } from "./shape.js";

/** torch's `default_rng_seed_val`: the seed of a freshly constructed `torch.Generator()`. */
export const DEFAULT_RNG_SEED = 67280421310721n;

const TWO_POW_M24 = 2 ** -24;
const TWO_POW_M53 = 2 ** -53;
const TWO_POW_32 = 2 ** 32;
/** Below this many elements torch's `normal_` takes the scalar (cached Box-Muller) path. */
const VECTORISED_MIN_NUMEL = 16;

/**
 * Normalises a seed the way `torch.Generator.manual_seed` accepts it: an integer in [-2^63, 2^64), negative values
 * wrapping modulo 2^64.
 */
export function normalizeSeed(seed: number | bigint): bigint {
  let s: bigint;
  if (typeof seed === "bigint") {
    s = seed;
  } else if (typeof seed === "number") {
    if (!Number.isInteger(seed)) throw new TypeError(`seed must be an integer, got ${seed}`);
    s = BigInt(seed);
  } else {
    throw new TypeError(`seed must be a number or a bigint, got ${typeof seed}`);
  }
  if (s < -(2n ** 63n) || s >= 2n ** 64n) {
    throw new RangeError(`seed must be in [-2^63, 2^64), got ${s}`);
  }
  return BigInt.asUintN(64, s);
}

/** A non-deterministic 53-bit seed, like c10's `getNonDeterministicRandom()` (used by `seed()`). */
export function nonDeterministicSeed(): bigint {
  const words = randomFillSync(new Uint32Array(2));
  return ((BigInt(words[0]!) << 32n) | BigInt(words[1]!)) & ((1n << 53n) - 1n);
}

export class Generator {
  private readonly engine = new MT19937();
  private seedValue = DEFAULT_RNG_SEED;
  private hasNormal = false;
  private cachedNormal = 0;

  constructor() {
    this.manualSeed(DEFAULT_RNG_SEED);
  }

  /** `torch.Generator.manual_seed`: reseeds (mt19937 from `seed & 0xffffffff`) and clears the normal cache. */
  manualSeed(seed: number | bigint): this {
    const s = normalizeSeed(seed);
    this.seedValue = s;
    this.engine.seed(Number(s & 0xffffffffn));
    this.hasNormal = false;
    this.cachedNormal = 0;
    return this;
  }

  /** `torch.Generator.seed`: reseeds from a non-deterministic 53-bit value and returns it. */
  seed(): bigint {
    const s = nonDeterministicSeed();
    this.manualSeed(s);
    return s;
  }

  /** `torch.Generator.initial_seed`: the last seed given, modulo 2^64. */
  initialSeed(): bigint {
    return this.seedValue;
  }

  /** `torch.randn(shape, generator=this, dtype=...)`: standard normal samples, row-major. */
  randn(shape: readonly number[], options?: { dtype?: "float32" }): Float32Array;
  randn(shape: readonly number[], options: { dtype: "float64" }): Float64Array;
  randn(shape: readonly number[], options?: { dtype?: RandomDtype }): Float32Array | Float64Array;
  randn(shape: readonly number[], options?: { dtype?: RandomDtype }): Float32Array | Float64Array {
    const n = numelOf(shape);
    const dtype = dtypeOf(options);
    const out = dtype === "float64" ? new Float64Array(n) : new Float32Array(n);
    if (n < VECTORISED_MIN_NUMEL) {
      for (let i = 0; i < n; i++) out[i] = this.nextNormal(); // a Float32Array store casts like static_cast<float>
    } else if (out instanceof Float32Array) {
      this.normalFillF32(out);
    } else {
      this.normalFillF64(out);
    }
    return out;
  }

  /** `torch.rand(shape, generator=this, dtype=...)`: uniform samples in [0, 1), row-major. */
  rand(shape: readonly number[], options?: { dtype?: "float32" }): Float32Array;
  rand(shape: readonly number[], options: { dtype: "float64" }): Float64Array;
  rand(shape: readonly number[], options?: { dtype?: RandomDtype }): Float32Array | Float64Array;
  rand(shape: readonly number[], options?: { dtype?: RandomDtype }): Float32Array | Float64Array {
    const n = numelOf(shape);
    if (dtypeOf(options) === "float64") {
      const out = new Float64Array(n);
      this.uniformF64(out, 0, n);
      return out;
    }
    const out = new Float32Array(n);
    this.uniformF32(out, 0, n);
    return out;
  }

  /** `at::uniform_real_distribution<float>(0, 1)` into `out[start, end)`: one mt output each. */
  private uniformF32(out: Float32Array, start: number, end: number): void {
    const engine = this.engine;
    for (let i = start; i < end; i++) out[i] = (engine.nextUint32() & 0xffffff) * TWO_POW_M24;
  }

  /** `at::uniform_real_distribution<double>(0, 1)` into `out[start, end)`: two mt outputs each. */
  private uniformF64(out: Float64Array, start: number, end: number): void {
    for (let i = start; i < end; i++) out[i] = this.nextUniform53();
  }

  /** 53 low bits of `random64()` times 2^-53. */
  private nextUniform53(): number {
    const hi = this.engine.nextUint32();
    const lo = this.engine.nextUint32();
    return ((hi & 0x1fffff) * TWO_POW_32 + lo) * TWO_POW_M53;
  }

  /** `at::normal_distribution<double>(0, 1)`: Box-Muller in double, the sine half kept for the next call. */
  private nextNormal(): number {
    if (this.hasNormal) {
      this.hasNormal = false;
      return this.cachedNormal;
    }
    const u1 = this.nextUniform53();
    const u2 = this.nextUniform53();
    const normal = boxMullerPair(u1, u2);
    this.cachedNormal = boxMullerSin();
    this.hasNormal = true;
    return normal;
  }

  /** `normal_fill_AVX2` (numel >= 16). */
  private normalFillF32(out: Float32Array): void {
    const n = out.length;
    this.uniformF32(out, 0, n);
    for (let i = 0; i + 16 <= n; i += 16) normalFill16F32(out, i);
    if (n % 16 !== 0) {
      this.uniformF32(out, n - 16, n);
      normalFill16F32(out, n - 16);
    }
  }

  /** `normal_fill<double>` (numel >= 16). */
  private normalFillF64(out: Float64Array): void {
    const n = out.length;
    this.uniformF64(out, 0, n);
    for (let i = 0; i + 16 <= n; i += 16) normalFill16F64(out, i);
    if (n % 16 !== 0) {
      this.uniformF64(out, n - 16, n);
      normalFill16F64(out, n - 16);
    }
  }
}
