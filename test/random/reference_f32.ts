/**
 * Test oracle: log256_ps / sincos256_ps (avx_mathfun.h) for one lane with a TRUE float32 fused multiply-add
 * (single rounding), to check that src/random/mathfun_f32.ts, which emulates the FMA as fround(a*b + c), gives the
 * same bits on the inputs randn produces.
 */

const fround = Math.fround;

/**
 * a*b + c rounded once to float32. a*b of two float32 is exact in double, so s = a*b + c carries one double
 * rounding; fround(s) is wrong only when s is exactly a float32 midpoint while the exact sum is not, which is
 * detected and resolved with the exact error of the double addition (TwoSum).
 */
export function exactFmaf(a: number, b: number, c: number): number {
  const p = a * b;
  const s = p + c;
  const r = fround(s);
  const other = s + (s - r); // the float32 on the other side of s when s is a midpoint
  if (fround(other) !== other || other === r) return r;
  const bb = s - p;
  const err = p - (s - bb) + (c - bb); // a*b + c = s + err exactly
  if (err === 0) return r; // exactly the midpoint: ties to even, as fround does
  return err > 0 === other > s ? other : r;
}

const SQRTHF = fround(Math.SQRT1_2);
const LOG_P = [
  7.0376836292e-2, -1.151461031e-1, 1.167699874e-1, -1.2420140846e-1, 1.4249322787e-1, -1.6668057665e-1,
  2.0000714765e-1, -2.4999993993e-1, 3.3333331174e-1,
].map(fround);
const LOG_Q1 = fround(-2.1219444e-4);
const LOG_Q2 = fround(0.693359375);
const DP = [-0.78515625, -2.4187564849853516e-4, -3.774894977445941e-8].map(fround);
const SINCOF = [-1.9515295891e-4, 8.3321608736e-3, -1.6666654611e-1].map(fround);
const COSCOF = [2.443315711809948e-5, -1.388731625493765e-3, 4.166664568298827e-2].map(fround);
const FOPI = fround(1.27323954473516);

/** log256_ps for positive normal float32 x, with exact FMAs. */
export function referenceLogf(x: number): number {
  const f = new Float32Array([x]);
  const u = new Uint32Array(f.buffer);
  let e = fround((u[0]! >>> 23) - 127 + 1);
  u[0] = (u[0]! & 0x807fffff) | 0x3f000000;
  let m = f[0]!;
  if (m < SQRTHF) {
    e = fround(e - 1);
    m = fround(fround(m - 1) + m);
  } else {
    m = fround(m - 1);
  }
  const z = fround(m * m);
  let y = LOG_P[0]!;
  for (let i = 1; i < 9; i++) y = exactFmaf(y, m, LOG_P[i]!);
  y = fround(y * m);
  y = exactFmaf(y, z, fround(e * LOG_Q1));
  y = exactFmaf(z, -0.5, y);
  return exactFmaf(e, LOG_Q2, fround(m + y));
}

/** sincos256_ps for x >= 0, with exact FMAs. */
export function referenceSincosf(x: number): { sin: number; cos: number } {
  const j = ((Math.trunc(fround(x * FOPI)) | 0) + 1) & ~1;
  const yj = fround(j);
  const r = exactFmaf(yj, DP[2]!, exactFmaf(yj, DP[1]!, exactFmaf(yj, DP[0]!, x)));
  const z = fround(r * r);
  let yc = fround(exactFmaf(exactFmaf(COSCOF[0]!, z, COSCOF[1]!), z, COSCOF[2]!) * z);
  yc = fround(exactFmaf(yc, z, -fround(z * 0.5)) + 1);
  let ys = fround(exactFmaf(exactFmaf(SINCOF[0]!, z, SINCOF[1]!), z, SINCOF[2]!) * z);
  ys = exactFmaf(ys, r, r);
  const polySin = (j & 2) === 0;
  const s = polySin ? ys : yc;
  const c = polySin ? yc : ys;
  return { sin: (j & 4) !== 0 ? -s : s, cos: ((j - 2) & 4) === 0 ? -c : c };
}
