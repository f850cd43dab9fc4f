/**
 * Double-precision `log`, `sin` and `cos` rounded (almost always) correctly, for the float64 paths of the
 * generator.
 *
 * torch computes those paths with glibc's libm, whose results are correctly rounded except in very rare cases.
 * V8's `Math.log` / `Math.sin` / `Math.cos` (fdlibm ports) are off by one ulp for a few percent of inputs, which
 * would break bitwise parity of float64 `randn`. Here each function is evaluated in double-double arithmetic
 * (about 2^-80 relative error or better) and rounded once at the end. The Box-Muller steps of the float64 paths
 * (the 16-element block and the scalar pair) live here too, so their loops make no cross-module calls.
 */

// ---- double-double primitives (error-free transformations, no FMA needed) ------------------------------------

/** Low part of the last double-double result (the high part is the return value). */
let LO = 0;

const SPLITTER = 134217729; // 2^27 + 1, Veltkamp split

/** Exact a*b = hi + LO for doubles (Dekker). */
function twoProd(a: number, b: number): number {
  const p = a * b;
  let t = SPLITTER * a;
  const ah = t - (t - a);
  const al = a - ah;
  t = SPLITTER * b;
  const bh = t - (t - b);
  const bl = b - bh;
  LO = ah * bh - p + ah * bl + al * bh + al * bl;
  return p;
}

/** Exact a+b = hi + LO for doubles (Knuth). */
function twoSum(a: number, b: number): number {
  const s = a + b;
  const bb = s - a;
  LO = a - (s - bb) + (b - bb);
  return s;
}

/** (ah, al) + (bh, bl) in double-double. */
function ddAdd(ah: number, al: number, bh: number, bl: number): number {
  const s = twoSum(ah, bh);
  const e = LO + al + bl;
  const h = s + e;
  LO = e - (h - s);
  return h;
}

/** (ah, al) * (bh, bl) in double-double. */
function ddMul(ah: number, al: number, bh: number, bl: number): number {
  const p = twoProd(ah, bh);
  const e = LO + (ah * bl + al * bh);
  const h = p + e;
  LO = e - (h - p);
  return h;
}

/** 1/n as a double-double [hi, lo] (n a positive integer below 2^53). */
function recip(n: number): [number, number] {
  const hi = 1 / n;
  const p = twoProd(hi, n); // hi*n = p + LO exactly, close to 1
  return [hi, -(p - 1 + LO) / n];
}

// ---- log ------------------------------------------------------------------------------------------------------

const LN2_HI = Math.LN2;
const LN2_LO = 2.3190468138462996e-17;
const SQRT2 = Math.SQRT2;
/** 1/3, 1/5, 1/7 in double-double: the leading coefficients of atanh(f)/f = sum s^n/(2n+1), s = f^2. */
const [I3H, I3L] = recip(3);
const [I5H, I5L] = recip(5);
const [I7H, I7L] = recip(7);

const f64 = new Float64Array(1);
const u32 = new Uint32Array(f64.buffer); // little-endian: u32[1] holds sign, exponent and top mantissa bits

/** Natural logarithm, correctly rounded except in astronomically rare cases. */
export function logD(x: number): number {
  if (!(x > 0) || x === Number.POSITIVE_INFINITY) return Math.log(x); // NaN, negative, 0, +inf
  if (x === 1) return 0;
  let k = 0;
  if (x < 2 ** -1000) {
    x *= 2 ** 60; // subnormals and tiny values: scale into the normal range
    k = -60;
  }
  f64[0] = x;
  const top = u32[1]!;
  k += ((top >>> 20) & 0x7ff) - 1023;
  u32[1] = (top & 0x000fffff) | 0x3ff00000;
  let m = f64[0]!; // [1, 2)
  if (m > SQRT2) {
    m *= 0.5;
    k += 1;
  }
  // log(m) = 2 atanh(f), f = (m-1)/(m+1), |f| <= 0.1716
  const num = m - 1; // exact (Sterbenz)
  const dh = twoSum(m, 1);
  const dl = LO;
  const q1 = num / dh;
  const p = twoProd(q1, dh);
  const q2 = (num - p - LO - q1 * dl) / dh;
  const fh = q1 + q2;
  const fl = q2 - (fh - q1);
  const sh = ddMul(fh, fl, fh, fl);
  const sl = LO;
  // tail: sum_{n>=4} s^(n-4)/(2n+1), in double (it contributes below 1e-7 relative)
  let tail = 1 / 39;
  for (let n = 18; n >= 4; n--) tail = tail * sh + 1 / (2 * n + 1);
  let h = ddAdd(I7H, I7L, tail * sh, 0);
  let l = LO;
  h = ddMul(h, l, sh, sl);
  h = ddAdd(h, LO, I5H, I5L);
  l = LO;
  h = ddMul(h, l, sh, sl);
  h = ddAdd(h, LO, I3H, I3L);
  l = LO;
  h = ddMul(h, l, sh, sl);
  h = ddAdd(h, LO, 1, 0);
  l = LO;
  h = ddMul(h, l, 2 * fh, 2 * fl); // log(m)
  l = LO;
  if (k !== 0) {
    const kh = twoProd(k, LN2_HI);
    h = ddAdd(kh, LO + k * LN2_LO, h, l);
    l = LO;
  }
  return h + l;
}

// ---- sin / cos ------------------------------------------------------------------------------------------------

/** pi/2 split in parts of at most 33 bits (fdlibm's e_rem_pio2 constants): k * part is exact for |k| < 2^20. */
const PIO2_1 = 1.5707963267341256;
const PIO2_2 = 6.077100506303966e-11;
const PIO2_3 = 2.0222662487111665e-21;
const PIO2_3T = 8.4784276603689e-32;
const TWO_OVER_PI = 2 / Math.PI;
const MAX_REDUCED = 2 ** 19;

/** 1/n! in double-double for n = 0..11. */
const INV_FACT: [number, number][] = [];
for (let n = 0, factorial = 1; n <= 11; n++) {
  if (n > 0) factorial *= n;
  INV_FACT.push(recip(factorial));
}

/** (-1)^n/(2n+1)! and (-1)^n/(2n)! in double, for the series terms n = 6..13 (indexed by n). */
const SIN_TAIL: number[] = [];
const COS_TAIL: number[] = [];
for (let n = 0, factorial = 1; n <= 13; n++) {
  COS_TAIL.push((n % 2 ? -1 : 1) / factorial); // factorial = (2n)!
  factorial *= 2 * n + 1;
  SIN_TAIL.push((n % 2 ? -1 : 1) / factorial); // factorial = (2n+1)!
  factorial *= 2 * n + 2;
}

/**
 * sin(r) and cos(r) of the double-double r = (rh, rl), |r| <= ~pi/4: Taylor series, terms up to r^11 / r^10 in
 * double-double, the rest in double. Results left unrounded in S_H/S_L and C_H/C_L.
 */
let S_H = 0;
let S_L = 0;
let C_H = 0;
let C_L = 0;
function sincosReduced(rh: number, rl: number): void {
  const sh = ddMul(rh, rl, rh, rl);
  const sl = LO;
  // sin(r)/r = sum (-1)^n s^n/(2n+1)!, cos(r) = sum (-1)^n s^n/(2n)!; n >= 6 in double
  let ts = 0;
  let tc = 0;
  for (let n = 13; n >= 6; n--) {
    ts = ts * sh + SIN_TAIL[n]!;
    tc = tc * sh + COS_TAIL[n]!;
  }
  // fold in n = 5 .. 0 in double-double
  let hs = ts * sh;
  let ls = 0;
  let hc = tc * sh;
  let lc = 0;
  for (let n = 5; n >= 0; n--) {
    const cs = INV_FACT[2 * n + 1]!;
    const sign = n % 2 === 0 ? 1 : -1;
    hs = ddAdd(hs, ls, sign * cs[0], sign * cs[1]);
    ls = LO;
    const cc = INV_FACT[2 * n]!;
    hc = ddAdd(hc, lc, sign * cc[0], sign * cc[1]);
    lc = LO;
    if (n > 0) {
      hs = ddMul(hs, ls, sh, sl);
      ls = LO;
      hc = ddMul(hc, lc, sh, sl);
      lc = LO;
    }
  }
  S_H = ddMul(hs, ls, rh, rl);
  S_L = LO;
  C_H = hc;
  C_L = lc;
}

/** sin and cos from the last `sincosLane` call (module state keeps the hot loop free of allocations). */
let SIN = 0;
let COS = 0;

/** sin(x) and cos(x), each correctly rounded except in astronomically rare cases. */
export function sincosD(x: number): { sin: number; cos: number } {
  sincosLane(x);
  return { sin: SIN, cos: COS };
}

function sincosLane(x: number): void {
  if (!(Math.abs(x) < MAX_REDUCED)) {
    SIN = Math.sin(x);
    COS = Math.cos(x);
    return;
  }
  const k = Math.round(x * TWO_OVER_PI);
  // r = x - k*pi/2 in double-double; x - k*PIO2_1 is exact (Sterbenz) and each k*PIO2_i is exact
  let rh = twoSum(x - k * PIO2_1, -k * PIO2_2);
  let rl = LO;
  rh = ddAdd(rh, rl, -k * PIO2_3, -k * PIO2_3T);
  rl = LO;
  sincosReduced(rh, rl);
  const s = S_H + S_L;
  const c = C_H + C_L;
  switch (((k % 4) + 4) % 4) {
    case 0:
      SIN = s;
      COS = c;
      break;
    case 1:
      SIN = c;
      COS = -s;
      break;
    case 2:
      SIN = -s;
      COS = -c;
      break;
    default:
      SIN = -c;
      COS = s;
  }
}

const TWO_PI = 2 * Math.PI;

/**
 * `normal_fill_16<double>` (mean 0, std 1) on `d[offset, offset+16)`, uniforms in [0, 1) in place: for j < 8,
 * `r = sqrt(-2*log(1 - d[j]))`, `theta = 2pi*d[j+8]`, `d[j] = r*cos(theta)`, `d[j+8] = r*sin(theta)`.
 */
export function normalFill16F64(d: Float64Array, offset: number): void {
  for (let j = offset; j < offset + 8; j++) {
    const radius = Math.sqrt(-2 * logD(1 - d[j]!));
    sincosLane(TWO_PI * d[j + 8]!);
    d[j] = radius * COS;
    d[j + 8] = radius * SIN;
  }
}

/**
 * `at::normal_distribution<double>` without its cache: from uniforms u1, u2 in [0, 1), `r = sqrt(-2*log(1-u2))`,
 * `theta = 2pi*u1`; returns `r*cos(theta)` and leaves `r*sin(theta)` in `boxMullerSin`.
 */
export function boxMullerPair(u1: number, u2: number): number {
  const r = Math.sqrt(-2 * logD(1 - u2));
  sincosLane(TWO_PI * u1);
  BM_SIN = r * SIN;
  return r * COS;
}

let BM_SIN = 0;
/** The sine half of the last `boxMullerPair`. */
export function boxMullerSin(): number {
  return BM_SIN;
}
