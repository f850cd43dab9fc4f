/** Generator API behaviour beyond the golden fixtures: seeds, shapes, dtypes, the normal cache, the default generator. */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { defaultGenerator, initialSeed, manualSeed } from "../../src/random/default_generator.js";
import { DEFAULT_RNG_SEED, Generator, normalizeSeed } from "../../src/random/generator.js";

const seeded = (s: number | bigint) => new Generator().manualSeed(s);

describe("seeds", () => {
  test("initialSeed reports the full value modulo 2^64; mt19937 uses the low 32 bits", () => {
    assert.equal(seeded(4294967303).initialSeed(), 4294967303n);
    assert.deepEqual(seeded(4294967303).randn([20]), seeded(7).randn([20]));
    assert.deepEqual(seeded(12345678901234n).rand([5]), seeded(1942892530).rand([5]));
    assert.equal(seeded(2n ** 64n - 1n).initialSeed(), 2n ** 64n - 1n);
  });
  test("negative seeds wrap modulo 2^64", () => {
    assert.equal(seeded(-1).initialSeed(), 2n ** 64n - 1n);
    assert.deepEqual(seeded(-1).randn([3]), seeded(0xffffffff).randn([3]));
    assert.equal(seeded(-(2n ** 63n)).initialSeed(), 2n ** 63n);
    assert.equal(normalizeSeed(-5), 2n ** 64n - 5n);
  });
  test("bad seeds throw clear errors", () => {
    assert.throws(() => seeded(1.5), TypeError);
    assert.throws(() => seeded(Number.NaN), TypeError);
    assert.throws(() => seeded(Number.POSITIVE_INFINITY), TypeError);
    assert.throws(() => seeded("3" as unknown as number), TypeError);
    assert.throws(() => seeded(undefined as unknown as number), TypeError);
    assert.throws(() => seeded(2n ** 64n), RangeError);
    assert.throws(() => seeded(-(2n ** 63n) - 1n), RangeError);
    assert.throws(() => seeded(2 ** 64), RangeError);
    // a failed manualSeed leaves the generator as it was
    const g = seeded(3);
    assert.throws(() => g.manualSeed(0.5), TypeError);
    assert.equal(g.initialSeed(), 3n);
    assert.deepEqual(g.randn([4]), seeded(3).randn([4]));
  });
  test("a new Generator starts from torch's default_rng_seed_val", () => {
    const g = new Generator();
    assert.equal(g.initialSeed(), DEFAULT_RNG_SEED);
    assert.equal(DEFAULT_RNG_SEED, 67280421310721n);
    assert.deepEqual(g.randn([40]), seeded(67280421310721n).randn([40]));
  });
  test("manualSeed returns this, resets the stream and clears the normal cache", () => {
    const g = new Generator();
    assert.equal(g.manualSeed(0), g);
    const first = g.randn([1]); // leaves a cached normal
    g.manualSeed(0);
    assert.deepEqual(g.randn([1]), first);
  });
  test("seed() reseeds non-deterministically with a 53-bit value", () => {
    const g = new Generator();
    const s = g.seed();
    assert.equal(g.initialSeed(), s);
    assert.ok(s >= 0n && s < 2n ** 53n);
    assert.deepEqual(g.randn([3]), seeded(s).randn([3]));
  });
});

describe("shapes and dtypes", () => {
  test("return types and lengths", () => {
    const g = seeded(0);
    assert.ok(g.randn([2, 3]) instanceof Float32Array);
    assert.ok(g.randn([2, 3], { dtype: "float32" }) instanceof Float32Array);
    assert.ok(g.randn([2, 3], { dtype: "float64" }) instanceof Float64Array);
    assert.ok(g.rand([4]) instanceof Float32Array);
    assert.ok(g.rand([4], { dtype: "float64" }) instanceof Float64Array);
    assert.equal(g.randn([2, 3, 4]).length, 24);
    assert.equal(g.randn([]).length, 1); // a 0-d tensor has one element
  });
  test("empty shapes draw nothing", () => {
    const g = seeded(11);
    assert.equal(g.randn([0, 4]).length, 0);
    assert.equal(g.rand([3, 0], { dtype: "float64" }).length, 0);
    assert.deepEqual(g.randn([5]), seeded(11).randn([5]));
  });
  test("bad shapes and dtypes throw", () => {
    const g = seeded(0);
    for (const bad of [[-1], [1.5], [Number.NaN], [Number.POSITIVE_INFINITY], ["2"], [2, -3]]) {
      assert.throws(() => g.randn(bad as number[]), TypeError, JSON.stringify(bad));
      assert.throws(() => g.rand(bad as number[]), TypeError, JSON.stringify(bad));
    }
    assert.throws(() => g.randn(4 as unknown as number[]), TypeError);
    assert.throws(() => g.randn([2], { dtype: "float16" as "float32" }), TypeError);
    assert.throws(() => g.rand([2], { dtype: "int64" as "float32" }), TypeError);
  });
});

describe("distributions", () => {
  test("rand float32 is (random() & 0xFFFFFF) * 2^-24, float64 has 53 random bits", () => {
    const u = seeded(1).rand([1000]);
    for (const v of u) {
      assert.ok(v >= 0 && v < 1);
      assert.ok(Number.isInteger(v * 2 ** 24));
    }
    const d = seeded(1).rand([1000], { dtype: "float64" });
    for (const v of d) assert.ok(v >= 0 && v < 1 && Number.isInteger(v * 2 ** 53));
    assert.ok(d.some((v) => !Number.isInteger(v * 2 ** 24)));
  });
  test("the normal cache is shared by float32 and float64 draws and survives vectorised draws", () => {
    const a = seeded(5);
    const pair = a.randn([2], { dtype: "float64" }); // cos half, then the cached sin half
    const b = seeded(5);
    assert.equal(b.randn([1])[0], Math.fround(pair[0]!));
    b.rand([7]);
    b.randn([64]);
    b.randn([33], { dtype: "float64" });
    assert.equal(b.randn([1], { dtype: "float64" })[0], pair[1]);
    // afterwards both streams agree with a generator that took the same draws
    const c = seeded(5);
    c.randn([1]);
    c.rand([7]);
    c.randn([64]);
    c.randn([33], { dtype: "float64" });
    c.randn([1]);
    assert.deepEqual(b.randn([3]), c.randn([3]));
  });
  test("standard normal statistics", () => {
    for (const dtype of ["float32", "float64"] as const) {
      const x = seeded(123).randn([200000], { dtype });
      let mean = 0;
      for (const v of x) mean += v;
      mean /= x.length;
      let variance = 0;
      for (const v of x) variance += (v - mean) ** 2;
      variance /= x.length;
      assert.ok(Math.abs(mean) < 0.01, `${dtype} mean ${mean}`);
      assert.ok(Math.abs(variance - 1) < 0.02, `${dtype} variance ${variance}`);
    }
  });
  test("randn of 1x4x256x256 float32 is fast", () => {
    const g = seeded(0);
    g.randn([1, 4, 64, 64]); // warm up the JIT
    const t0 = performance.now();
    const x = g.randn([1, 4, 256, 256]);
    const ms = performance.now() - t0;
    assert.equal(x.length, 262144);
    assert.ok(ms < 1000, `took ${ms.toFixed(1)} ms`); // typically a few tens of ms; generous for loaded CI
  });
});

describe("default generator", () => {
  test("manualSeed mirrors torch.manual_seed", () => {
    const g = manualSeed(42);
    assert.equal(g, defaultGenerator);
    assert.equal(initialSeed(), 42n);
    assert.deepEqual(defaultGenerator.randn([1, 4, 8, 8]), seeded(42).randn([1, 4, 8, 8]));
  });
});
