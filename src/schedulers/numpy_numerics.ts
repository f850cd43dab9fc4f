/**
 * numpy (1.x) numerics that diffusers' `set_timesteps` runs before the values reach torch: float64
 * `np.linspace` / `np.arange` / `np.interp` with numpy's own formulas, and numpy's AVX2 float32 `np.log`.
 * Round-half-to-even (`np.round`) is `rint` from torch_numerics.ts.
 */
import { f32, fmaF32 } from "./torch_numerics.js";

/** `np.linspace(start, stop, num)` in float64, numpy's formula (`i*step + start`, last element = stop). */
export function npLinspace(start: number, stop: number, num: number): number[] {
  const div = num - 1;
  const delta = stop - start;
  const step = delta / div;
  const out: number[] = [];
  for (let i = 0; i < num; i++) {
    if (div <= 0) out.push(i * delta + start);
    else out.push(step === 0 ? (i / div) * delta + start : i * step + start);
  }
  if (num > 1) out[num - 1] = stop;
  return out;
}

/** `np.arange(start, stop, step)` for floats: length ceil((stop-start)/step), a[i] = start + i*(a[1]-a[0]). */
export function npArange(start: number, stop: number, step: number): number[] {
  const len = Math.max(0, Math.ceil((stop - start) / step));
  const second = start + step;
  const delta = second - start;
  const out: number[] = [];
  for (let i = 0; i < len; i++) out.push(i === 0 ? start : i === 1 ? second : start + i * delta);
  return out;
}

/** `np.interp(x, arange(len(fp)), fp)` in float64 (numpy's formula: slope*(x - xp[j]) + fp[j]). */
export function npInterp(x: readonly number[], fp: ArrayLike<number>): number[] {
  const last = fp.length - 1;
  return x.map((v) => {
    if (Number.isNaN(v)) return v;
    if (v <= 0) return fp[0] as number;
    if (v >= last) return fp[last] as number;
    const j = Math.floor(v);
    const y0 = fp[j] as number;
    if (j === v) return y0;
    const y1 = fp[j + 1] as number;
    return (y1 - y0) * (v - j) + y0;
  });
}

const F32_BUF = new Float32Array(1);
const U32_BUF = new Uint32Array(F32_BUF.buffer);
const LOG_PF = [
  0, 0.9999999999999998, 2.112677543073053, 1.4800006335765066, 0.3808837741388408, 0.02589979117907923,
].map(f32);
const LOG_QF = [
  1, 2.612677543073109, 2.4530060717847366, 0.9864942958519419, 0.15464763749839067, 0.005875095403124574,
].map(f32);
const SQRT1_2_F = f32(Math.SQRT1_2);
const LN2_F = f32(Math.LN2);

/**
 * numpy's float32 `log` (the AVX2/FMA3 kernel of loops_exponent_log.dispatch.c.src, up to 3.83 ulp from the
 * correctly rounded value); diffusers' `log_sigmas = np.log(sigmas)` runs through it. Bit-exact port.
 */
export function npLogF32(x: number): number {
  if (Number.isNaN(x) || x < 0) return Number.NaN;
  if (x === 0) return Number.NEGATIVE_INFINITY;
  if (x === Number.POSITIVE_INFINITY) return x;
  let adj = 0;
  if (x < 1.1754943508222875e-38) {
    x = f32(x * 2 ** 100);
    adj = 100;
  }
  F32_BUF[0] = x;
  const bits = U32_BUF[0] as number;
  let e = (bits >>> 23) - 126 - adj;
  U32_BUF[0] = (bits & 0x7fffff) | (126 << 23);
  let m = F32_BUF[0] as number;
  if (m <= SQRT1_2_F) {
    m = f32(m + m);
    e -= 1;
  }
  const y = f32(m - 1);
  let num = LOG_PF[5] as number;
  let den = LOG_QF[5] as number;
  for (let k = 4; k >= 0; k--) {
    num = fmaF32(num, y, LOG_PF[k] as number);
    den = fmaF32(den, y, LOG_QF[k] as number);
  }
  return fmaF32(e, LN2_F, f32(num / den));
}
