/**
 * torch 1.13 CPU float32 numerics that the schedulers' reference tables and per-step scalars go through,
 * reproduced bit for bit (x86-64 AVX2 build, FMA everywhere): `torch.linspace`, `torch.cumprod`, SLEEF's
 * `log` / `exp` kernels, `torch.lerp`, `Tensor.max()` and the `torch.quantile` of diffusers' dynamic
 * thresholding. Elementwise float32 ops are `Math.fround` after every operation (`f32`).
 */

export const f32 = Math.fround;

/** IEEE round-half-to-even (C `rint`, SLEEF's `rintfk`, numpy's `np.round` / `np.rint`). */
export function rint(x: number): number {
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** fma(a, b, c) rounded once to float32, for float32 a, b, c (the product is exact in double). */
export function fmaF32(a: number, b: number, c: number): number {
  const p = a * b;
  const s = p + c;
  const r = f32(s);
  if (r === s) return r;
  const bb = s - p;
  const err = p - (s - bb) + (c - bb); // s + err == p + c exactly
  if (err === 0) return r;
  const other = 2 * s - r; // a float32 only when s is exactly halfway between r and its neighbour
  if (f32(other) !== other) return r;
  return err > 0 === other > r ? other : r;
}

/**
 * `torch.linspace(start, end, steps, dtype=float32)` as torch 1.13's CPU kernel (`linspace_kernel` through
 * `cpu_serial_kernel_vec`) computes it: float32 step; the first half counts up from `start`, the second half
 * down from `end`, each base contracted to one FMA; while 16 elements remain, two 8-lane vectors
 * `Vectorized::arange(base, step)` (`base + k*step`) are written, the tail is scalar.
 */
export function torchLinspaceF32(start: number, end: number, steps: number): Float32Array {
  const out = new Float32Array(steps);
  const s = f32(start);
  const e = f32(end);
  if (steps === 1) {
    out[0] = s;
    return out;
  }
  const step = f32(f32(e - s) / (steps - 1));
  const halfway = Math.floor(steps / 2);
  const at = (idx: number) => (idx < halfway ? fmaF32(step, idx, s) : fmaF32(-step, steps - idx - 1, e));
  const vecEnd = steps - (steps % 16);
  for (let i = 0; i < steps; i++) {
    const k = i % 8;
    out[i] = i < vecEnd ? (k === 0 ? at(i) : f32(at(i - k) + f32(k * step))) : at(i);
  }
  return out;
}

/** `torch.cumprod` on a float32 CPU tensor: the running product is kept in double (acc_type), each output rounded. */
export function cumprodF32(a: Float32Array): Float32Array {
  const out = new Float32Array(a.length);
  let p = 1;
  for (let i = 0; i < a.length; i++) {
    p *= a[i] as number;
    out[i] = p;
  }
  return out;
}

/** `Tensor.max()` of a float32 tensor (NaN-propagating). */
export function maxF32(a: ArrayLike<number>): number {
  let m = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < a.length; i++) {
    const v = a[i] as number;
    if (Number.isNaN(v)) return v;
    if (v > m) m = v;
  }
  return m;
}

// ---------------------------------------------------------------- SLEEF float32 log / exp

// torch's float32 `log` / `exp` run SLEEF's u10 kernels on every element (AVX2 build, FMA everywhere); the
// ports below are bit-exact (within 1 ulp of the correctly rounded value, like SLEEF).

const F32_BUF = new Float32Array(1);
const U32_BUF = new Uint32Array(F32_BUF.buffer);

/** fma(-a, b, c) */
const fnmaF32 = (a: number, b: number, c: number) => fmaF32(-a, b, c);

/** torch float32 `log`: SLEEF `xlogf_u1` (Sleef_logf8_u10, AVX2). */
export function torchLogF32(d: number): number {
  if (Number.isNaN(d) || d < 0) return Number.NaN;
  if (d === 0) return Number.NEGATIVE_INFINITY;
  if (d === Number.POSITIVE_INFINITY) return d;
  const tiny = d < 1.1754943508222875e-38;
  if (tiny) d = f32(d * 2 ** 64);
  F32_BUF[0] = f32(d * f32(1 / 0.75));
  let e = (((U32_BUF[0] as number) >>> 23) & 0xff) - 0x7f;
  F32_BUF[0] = d;
  U32_BUF[0] = ((U32_BUF[0] as number) - (e << 23)) >>> 0;
  const m = F32_BUF[0] as number;
  if (tiny) e -= 64;
  // s = (ln2_hi, ln2_lo) * e
  const l2h = f32(0.6931471824645996);
  const l2l = f32(-1.904654323148236e-9);
  let sx = f32(l2h * e);
  let sy = fmaF32(l2l, e, fmaF32(l2h, e, -sx));
  // x = (m - 1) / (m + 1) in double-float
  const nx = f32(m - 1);
  let v = f32(nx + 1);
  const ny = f32(f32(-1 - f32(nx - v)) + f32(m - v));
  const dx = f32(m + 1);
  v = f32(dx - 1);
  const dy = f32(f32(1 - f32(dx - v)) + f32(m - v));
  const t0 = f32(1 / dx);
  const qx = f32(nx * t0);
  const u = fmaF32(t0, nx, -qx);
  const w = fnmaF32(dy, t0, fnmaF32(dx, t0, 1));
  const qy = fmaF32(qx, w, fmaF32(ny, t0, u));
  const x2 = f32(qx * qx);
  let t = fmaF32(f32(0.3027294874), x2, f32(0.3996108174));
  t = fmaF32(t, x2, f32(0.666669488));
  // s = s + 2x (double-float add), then + x^3 * t
  const x2x = f32(qx * 2);
  const x2y = f32(qy * 2);
  let ss = f32(sx + x2x);
  sy = f32(f32(f32(f32(sx - ss) + x2x) + sy) + x2y);
  sx = ss;
  const tail = f32(f32(x2 * qx) * t);
  ss = f32(sx + tail);
  sy = f32(f32(f32(sx - ss) + tail) + sy);
  return f32(ss + sy);
}

/** torch float32 `exp`: SLEEF `xexpf` (Sleef_expf8_u10, AVX2). */
export function torchExpF32(d: number): number {
  if (Number.isNaN(d)) return d;
  if (d < -104) return 0;
  if (d > 100) return Number.POSITIVE_INFINITY;
  const q = rint(f32(d * f32(Math.LOG2E)));
  let s = fmaF32(q, f32(-0.693145751953125), d);
  s = fmaF32(q, f32(-0.000001428606765330187), s);
  let u = f32(0.00019852761761285365);
  u = fmaF32(u, s, f32(0.0013930435525253415));
  u = fmaF32(u, s, f32(0.008333360776305199));
  u = fmaF32(u, s, f32(0.041666485369205475));
  u = fmaF32(u, s, f32(0.1666666716337204));
  u = fmaF32(u, s, 0.5);
  u = f32(1 + fmaF32(f32(s * s), u, s));
  const h = q >> 1;
  return f32(f32(u * 2 ** h) * 2 ** (q - h));
}

/**
 * `torch.lerp(start, end, 0.5)` on float32: weight >= 0.5 evaluates `end - (end - start) * (1 - weight)`, so a
 * -inf end gives NaN (the reference's NaN for KDPM2-Ancestral n=2 comes from here).
 */
export function lerpHalfF32(start: number, end: number): number {
  return f32(end - f32(end - start) * 0.5);
}

// ---------------------------------------------------------------- dynamic thresholding

/**
 * diffusers `_threshold_sample` (Imagen's dynamic thresholding): per batch row, s = `torch.quantile(|x|, ratio)`
 * (linear interpolation, float32), clamped to [1, maxValue]; then x is clamped to [-s, s] and divided by s.
 * `batchSize` must divide `x.length` (see `batchSizeOf`).
 */
export function thresholdSample(
  x: Float32Array,
  batchSize: number,
  ratio: number,
  maxValue: number,
): Float32Array {
  const rowLen = x.length / batchSize;
  const out = new Float32Array(x.length);
  const rank = f32(f32(ratio) * (rowLen - 1));
  const below = Math.trunc(rank);
  const above = Math.ceil(rank);
  const w = f32(rank - below);
  for (let b = 0; b < batchSize; b++) {
    const row = x.subarray(b * rowLen, (b + 1) * rowLen);
    const sorted = Float32Array.from(row, Math.abs).sort();
    const lo = sorted[below] as number;
    const hi = sorted[above] as number;
    const q = Math.abs(w) < 0.5 ? f32(lo + f32(w * f32(hi - lo))) : f32(hi - f32(f32(hi - lo) * f32(1 - w)));
    const s = Math.min(Math.max(q, 1), f32(maxValue)); // NaN quantile stays NaN
    for (let i = 0; i < rowLen; i++) {
      out[b * rowLen + i] = f32(Math.min(Math.max(row[i] as number, -s), s) / s);
    }
  }
  return out;
}
