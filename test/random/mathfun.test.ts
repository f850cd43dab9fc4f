/**
 * Unit tests of the float32 avx_mathfun emulation (fmaf, logf, sincosf) and the float64 log/sin/cos used by the
 * generator's float64 paths.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { logf, sincosf } from "../../src/random/mathfun_f32.js";
import { logD, sincosD } from "../../src/random/mathfun_f64.js";
import { MT19937 } from "../../src/random/mt19937.js";
import { exactFmaf, referenceLogf, referenceSincosf } from "./reference_f32.js";

const view = new DataView(new ArrayBuffer(8));

/** x = m * 2^e exactly (x finite, non-zero or zero). */
function exact(x: number): { m: bigint; e: number } {
  view.setFloat64(0, x);
  const bits = view.getBigUint64(0);
  const sign = bits >> 63n ? -1n : 1n;
  const be = Number((bits >> 52n) & 0x7ffn);
  const frac = bits & ((1n << 52n) - 1n);
  if (be === 0) return { m: sign * frac, e: -1074 };
  return { m: sign * (frac | (1n << 52n)), e: be - 1075 };
}

/** a*b + c computed exactly and rounded once to float32 (ties to even), normal range only. */
function referenceFma(a: number, b: number, c: number): number {
  const A = exact(a);
  const B = exact(b);
  const C = exact(c);
  const pe = A.e + B.e;
  const e = Math.min(pe, C.e);
  const M = ((A.m * B.m) << BigInt(pe - e)) + (C.m << BigInt(C.e - e));
  if (M === 0n) return 0;
  const neg = M < 0n;
  const abs = neg ? -M : M;
  const len = abs.toString(2).length;
  let q = abs;
  let shift = 0;
  if (len > 24) {
    shift = len - 24;
    q = abs >> BigInt(shift);
    const rem = abs - (q << BigInt(shift));
    const half = 1n << BigInt(shift - 1);
    if (rem > half || (rem === half && (q & 1n) === 1n)) q += 1n;
  }
  const v = Number(q) * 2 ** (e + shift);
  return neg ? -v : v;
}

/** Deterministic float32 values in [lo, hi) from mt19937. */
function floats(seed: number, n: number, lo: number, hi: number): number[] {
  const mt = new MT19937(seed);
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push(Math.fround(lo + (hi - lo) * (mt.nextUint32() / 2 ** 32)));
  return out;
}

function ulpF32(x: number): number {
  const ax = Math.abs(Math.fround(x));
  if (ax === 0) return 2 ** -149;
  return 2 ** (Math.floor(Math.log2(ax)) - 23);
}

describe("MT19937", () => {
  test("matches the reference generator (std::mt19937, default seed 5489)", () => {
    const mt = new MT19937();
    assert.equal(mt.nextUint32(), 3499211612);
    for (let i = 2; i < 10000; i++) mt.nextUint32();
    assert.equal(mt.nextUint32(), 4123659995); // the C++ standard's check value for the 10000th output
  });
  test("seed uses the low 32 bits; copyFrom clones the position", () => {
    const a = new MT19937(7);
    const b = new MT19937(2 ** 32 + 7);
    for (let i = 0; i < 700; i++) assert.equal(a.nextUint32(), b.nextUint32());
    const c = new MT19937(0).copyFrom(a);
    for (let i = 0; i < 1000; i++) assert.equal(c.nextUint32(), a.nextUint32());
  });
});

describe("exactFmaf (the test oracle's float32 fused multiply-add)", () => {
  test("equals the exactly rounded a*b + c on random operands", () => {
    const a = floats(1, 20000, -2, 2);
    const b = floats(2, 20000, -2, 2);
    const c = floats(3, 20000, -1, 1);
    for (let i = 0; i < a.length; i++) {
      const x = a[i]!;
      const y = b[i]!;
      const z = c[i]!;
      assert.equal(exactFmaf(x, y, z), referenceFma(x, y, z), `exactFmaf(${x}, ${y}, ${z})`);
    }
  });
  test("resolves double-rounding midpoints that a plain fround(a*b + c) gets wrong", () => {
    // exact = 1 + 3*2^-24 - 2^-70 rounds in double to the float32 midpoint 1 + 3*2^-24; ties-to-even would give
    // 1 + 2^-22, the correct float32 is 1 + 2^-23
    const a = Math.fround(2 ** -24 * (1 + 2 ** -23));
    const b = Math.fround(1 - 2 ** -23);
    const c = Math.fround(1 + 2 ** -23);
    assert.equal(Math.fround(a * b + c), 1 + 2 ** -22);
    assert.equal(exactFmaf(a, b, c), 1 + 2 ** -23);
    assert.equal(referenceFma(a, b, c), 1 + 2 ** -23);
    // exactly at the midpoint: ties to even
    assert.equal(exactFmaf(2 ** -24, 3, 1), referenceFma(2 ** -24, 3, 1));
    assert.equal(exactFmaf(-a, b, -c), -(1 + 2 ** -23));
  });
});

describe("float32 log/sincos on the randn domain", () => {
  // randn feeds log with u1 = 1 - k*2^-24 and sincos with theta = fround(fround(2pi) * k*2^-24), k < 2^24. The
  // fround(a*b + c) FMA emulation was checked against exact FMAs for all 2^24 values of each; this sweeps a sample.
  const TWO_PI_F32 = Math.fround(2 * Math.PI);
  const ks: number[] = [0, 1, 2, 2 ** 23, 2 ** 24 - 2, 2 ** 24 - 1];
  for (let k = 3; k < 2 ** 24; k += 257) ks.push(k);
  test("logf equals the exact-FMA reference bit for bit", () => {
    for (const k of ks) {
      const u1 = 1 - k * 2 ** -24;
      assert.equal(logf(u1), referenceLogf(u1), `log(${u1})`);
    }
  });
  test("sincosf equals the exact-FMA reference bit for bit", () => {
    for (const k of ks) {
      const theta = Math.fround(TWO_PI_F32 * k * 2 ** -24);
      assert.deepEqual(sincosf(theta), referenceSincosf(theta), `sincos(${theta})`);
    }
  });
});

describe("logf (log256_ps)", () => {
  test("within 2 float32 ulp of log on (0, 1] and beyond; special values", () => {
    for (const x of [...floats(4, 20000, 0, 1), ...floats(5, 2000, 1, 1000), 2 ** -24, 0.5, 2 ** -126]) {
      if (x <= 0) continue;
      const got = logf(x);
      assert.equal(got, Math.fround(got), "result is a float32");
      assert.ok(
        Math.abs(got - Math.log(x)) <= 2 * ulpF32(Math.log(x)),
        `logf(${x}) = ${got}, log = ${Math.log(x)}`,
      );
    }
    assert.equal(logf(1), 0);
    assert.ok(Number.isNaN(logf(0)));
    assert.ok(Number.isNaN(logf(-1)));
    assert.ok(Number.isNaN(logf(Number.NaN)));
  });
});

describe("sincosf (sincos256_ps)", () => {
  test("within 1e-7 of sin/cos on [-2pi, 2pi]", () => {
    for (const x of [...floats(6, 20000, -6.3, 6.3), 0, Math.fround(Math.PI), Math.fround(Math.PI / 2)]) {
      const { sin, cos } = sincosf(x);
      assert.equal(sin, Math.fround(sin));
      assert.equal(cos, Math.fround(cos));
      assert.ok(Math.abs(sin - Math.sin(x)) <= 1.2e-7, `sin(${x}) = ${sin}`);
      assert.ok(Math.abs(cos - Math.cos(x)) <= 1.2e-7, `cos(${x}) = ${cos}`);
    }
    assert.deepEqual(sincosf(0), { sin: 0, cos: 1 });
  });
});

describe("float64 log / sincos", () => {
  // Inputs where glibc's result (correctly rounded here, checked at 90 digits) differs from V8's Math functions.
  const logCases: [number, number][] = [
    [0.3693741687588855, -0.9959451412232628],
    [0.43974289489659046, -0.8215650526374866],
    [0.39104114153968705, -0.9389425032030242],
    [0.31876278252795365, -1.1433080812650849],
    [0.644535798218113, -0.43922491397456503],
    [0.5983555559218414, -0.5135701266011224],
    [0.1689064574419349, -1.7784102235609434],
    [0.31942468904820276, -1.1412337479788006],
  ];
  const sincosCases: [number, number, number][] = [
    [5.4702406527972816, -0.7263143658772112, 0.687362671317249],
    [5.332113811759135, -0.8140383084945085, 0.580811184726499],
    [0.7995156456814878, 0.7170185538637613, 0.6970540821307343],
    [5.559666185990216, -0.6620262790061652, 0.749480624102619],
    [2.6660965614532004, 0.4577795620099973, -0.8890657301943062],
    [2.3261498141322483, 0.7280292568209662, -0.6855460606062233],
    [1.2185194964252848, 0.9385895585476238, 0.3450357091452659],
    [1.1980999028930297, 0.9313488889585432, 0.364128064059456],
  ];
  test("matches glibc where V8's Math.log differs", () => {
    for (const [x, y] of logCases) assert.equal(logD(x), y, `log(${x})`);
  });
  test("matches glibc where V8's Math.sin/cos differ", () => {
    for (const [x, s, c] of sincosCases) assert.deepEqual(sincosD(x), { sin: s, cos: c }, `sincos(${x})`);
  });
  test("special values and agreement with Math within 1 ulp", () => {
    assert.equal(logD(1), 0);
    assert.equal(logD(0.5), -Math.LN2);
    assert.equal(logD(2 ** -53), -53 * Math.LN2);
    assert.equal(logD(0), Number.NEGATIVE_INFINITY);
    assert.ok(Number.isNaN(logD(-1)));
    assert.equal(logD(5e-324), Math.log(5e-324));
    assert.deepEqual(sincosD(0), { sin: 0, cos: 1 });
    assert.equal(sincosD(Math.PI).sin, 1.2246467991473532e-16);
    const mt = new MT19937(9);
    for (let i = 0; i < 20000; i++) {
      const u = (mt.nextUint32() * 2 ** 21 + (mt.nextUint32() >>> 11)) * 2 ** -53;
      const x = 1 - u;
      const y = logD(x);
      assert.ok(Math.abs(y - Math.log(x)) <= Math.abs(Math.log(x)) * 2 ** -52 + 1e-300, `log(${x})`);
      const t = 2 * Math.PI * u;
      const { sin, cos } = sincosD(t);
      assert.ok(Math.abs(sin - Math.sin(t)) <= 2 ** -53, `sin(${t})`);
      assert.ok(Math.abs(cos - Math.cos(t)) <= 2 ** -53, `cos(${t})`);
    }
  });
});
