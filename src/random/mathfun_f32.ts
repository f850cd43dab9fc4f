/**
 * Float32 `log` and `sincos` reproducing ATen's `log256_ps` / `sincos256_ps` (avx_mathfun.h, Cephes polynomials),
 * which torch 1.13 uses for `randn` on float32 CPU tensors of 16 or more elements.
 *
 * Every step is rounded to float32 like the AVX2 code, including the fused multiply-adds the compiler contracted
 * (see `fma`). The contraction pattern is the one the fixtures README documents. The 16-element Box-Muller
 * block built on them (`normal_fill_16_AVX2`) lives here too, so the hot loop makes no cross-module calls.
 */

const fround = Math.fround;

/**
 * The `_ps256_*` constants of avx_mathfun.h, rounded to float32 as the C arrays store them. Literals the linter
 * would flag for excess digits are written as the same double (the C text is in the comment).
 */
const SQRTHF = fround(Math.SQRT1_2); // 0.707106781186547524
const LOG_P0 = fround(7.0376836292e-2);
const LOG_P1 = fround(-1.151461031e-1);
const LOG_P2 = fround(1.167699874e-1);
const LOG_P3 = fround(-1.2420140846e-1);
const LOG_P4 = fround(1.4249322787e-1);
const LOG_P5 = fround(-1.6668057665e-1);
const LOG_P6 = fround(2.0000714765e-1);
const LOG_P7 = fround(-2.4999993993e-1);
const LOG_P8 = fround(3.3333331174e-1);
const LOG_Q1 = fround(-2.1219444e-4);
const LOG_Q2 = fround(0.693359375);

const MINUS_DP1 = fround(-0.78515625);
const MINUS_DP2 = fround(-2.4187564849853516e-4); // -2.4187564849853515625e-4
const MINUS_DP3 = fround(-3.774894977445941e-8); // -3.77489497744594108e-8
const SINCOF_P0 = fround(-1.9515295891e-4);
const SINCOF_P1 = fround(8.3321608736e-3);
const SINCOF_P2 = fround(-1.6666654611e-1);
const COSCOF_P0 = fround(2.443315711809948e-5);
const COSCOF_P1 = fround(-1.388731625493765e-3);
const COSCOF_P2 = fround(4.166664568298827e-2);
const FOPI = fround(1.27323954473516);

const MIN_NORM_POS = 2 ** -126;

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/**
 * The fused multiply-adds the compiler contracted, emulated as `fround(a*b + c)`. The product of two float32 is
 * exact in double, so this differs from a true single-rounding FMA only when the double sum lands exactly on a
 * float32 midpoint. On the inputs `randn` produces (`1 - k*2^-24` for log, `fround(fround(2pi) * k*2^-24)` for
 * sincos, k < 2^24) it never does: all 2^24 values of each give results identical to an exact FMA (checked
 * exhaustively; test/random/mathfun.test.ts sweeps a sample against an exact-FMA reference).
 */
function fma(a: number, b: number, c: number): number {
  return fround(a * b + c);
}

/** log256_ps for one lane: natural logarithm of a positive finite float32; NaN for x <= 0 and NaN. */
export function logf(x: number): number {
  if (!(x > 0)) return Number.NaN;
  if (x < MIN_NORM_POS) x = MIN_NORM_POS; // cut off denormals
  f32[0] = x;
  const bits = u32[0]!;
  let e = fround((bits >>> 23) - 0x7f + 1);
  u32[0] = (bits & ~0x7f800000) | 0x3f000000; // mantissa with the exponent of 0.5: [0.5, 1)
  let m = f32[0]!;
  if (m < SQRTHF) {
    e = fround(e - 1);
    m = fround(fround(m - 1) + m);
  } else {
    m = fround(m - 1);
  }
  const z = fround(m * m);
  let y = fma(LOG_P0, m, LOG_P1);
  y = fma(y, m, LOG_P2);
  y = fma(y, m, LOG_P3);
  y = fma(y, m, LOG_P4);
  y = fma(y, m, LOG_P5);
  y = fma(y, m, LOG_P6);
  y = fma(y, m, LOG_P7);
  y = fma(y, m, LOG_P8);
  y = fround(y * m);
  y = fma(y, z, fround(e * LOG_Q1));
  y = fma(z, -0.5, y);
  return fma(e, LOG_Q2, fround(m + y));
}

/** sin and cos from the last `sincosLane` call (module state keeps the hot loop free of allocations). */
let SIN = 0;
let COS = 0;

/** sincos256_ps for one lane: float32 sin(x) and cos(x). Accurate for |x| < 8192. */
export function sincosf(x: number): { sin: number; cos: number } {
  sincosLane(x);
  return { sin: SIN, cos: COS };
}

function sincosLane(x: number): void {
  const negative = x < 0 || Object.is(x, -0);
  const ax = Math.abs(x);
  const j = ((Math.trunc(fround(ax * FOPI)) | 0) + 1) & ~1;
  const yj = fround(j);
  const r = fma(yj, MINUS_DP3, fma(yj, MINUS_DP2, fma(yj, MINUS_DP1, ax)));
  const z = fround(r * r);

  let yc = fround(fma(fma(COSCOF_P0, z, COSCOF_P1), z, COSCOF_P2) * z);
  yc = fround(fma(yc, z, -fround(z * 0.5)) + 1);
  let ys = fround(fma(fma(SINCOF_P0, z, SINCOF_P1), z, SINCOF_P2) * z);
  ys = fma(ys, r, r);

  // poly_mask: (j & 2) == 0 selects the sine polynomial for sin and the cosine polynomial for cos; the additions
  // of +0 are those of the branch-free selection (they turn -0 into +0).
  let s: number;
  let c: number;
  if ((j & 2) === 0) {
    s = 0 + ys;
    c = yc + 0;
  } else {
    s = yc + 0;
    c = 0 + ys;
  }
  const flipSin = negative !== ((j & 4) !== 0);
  const flipCos = ((j - 2) & 4) === 0;
  SIN = flipSin ? -s : s;
  COS = flipCos ? -c : c;
}

const TWO_PI_F32 = fround(2 * Math.PI);

/**
 * `normal_fill_16_AVX2` (mean 0, std 1) on `d[offset, offset+16)`, uniforms in [0, 1) in place: for j < 8,
 * `u1 = 1 - d[j]`, `u2 = d[j+8]`, `r = sqrt(-2*log(u1))`, `theta = 2pi*u2`, `d[j] = r*cos(theta)`,
 * `d[j+8] = r*sin(theta)`, all in float32 with avx_mathfun's log and sincos.
 */
export function normalFill16F32(d: Float32Array, offset: number): void {
  for (let j = offset; j < offset + 8; j++) {
    const u1 = fround(1 - d[j]!);
    const radius = fround(Math.sqrt(fround(-2 * logf(u1))));
    sincosLane(fround(TWO_PI_F32 * d[j + 8]!));
    d[j] = radius * COS; // the store rounds to float32
    d[j + 8] = radius * SIN;
  }
}
