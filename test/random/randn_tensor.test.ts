/** randnTensor (diffusers randn_tensor) semantics beyond the golden fixtures. */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { manualSeed } from "../../src/random/default_generator.js";
import { Generator } from "../../src/random/generator.js";
import { randnTensor } from "../../src/random/randn_tensor.js";

const seeded = (s: number) => new Generator().manualSeed(s);

describe("randnTensor", () => {
  test("a list draws one (1, ...) tensor per batch row from its own generator", () => {
    const out = randnTensor([3, 2, 5], [seeded(1), seeded(2), seeded(3)]);
    assert.ok(out instanceof Float32Array);
    assert.equal(out.length, 30);
    for (let i = 0; i < 3; i++) {
      assert.deepEqual(out.subarray(i * 10, (i + 1) * 10), seeded(i + 1).randn([1, 2, 5]));
    }
  });
  test("float64 list draws", () => {
    const out = randnTensor([2, 20], [seeded(4), seeded(5)], { dtype: "float64" });
    assert.ok(out instanceof Float64Array);
    assert.deepEqual(out.subarray(20), seeded(5).randn([1, 20], { dtype: "float64" }));
  });
  test("a list of length 1 and a single generator draw over the whole batch", () => {
    const viaList = randnTensor([2, 4, 8, 8], [seeded(7)]);
    assert.deepEqual(viaList, seeded(7).randn([2, 4, 8, 8]));
    assert.deepEqual(randnTensor([2, 4, 8, 8], seeded(7)), viaList);
  });
  test("generators keep their state across calls", () => {
    const gens = [seeded(0), seeded(1)];
    randnTensor([2, 3], gens);
    const second = randnTensor([2, 3], gens);
    const g0 = seeded(0);
    g0.randn([1, 3]);
    assert.deepEqual(second.subarray(0, 3), g0.randn([1, 3]));
  });
  test("without a generator it uses the default generator", () => {
    manualSeed(9);
    const a = randnTensor([1, 4, 4, 4]);
    manualSeed(9);
    assert.deepEqual(randnTensor([1, 4, 4, 4], null), a);
    assert.deepEqual(a, seeded(9).randn([1, 4, 4, 4]));
  });
  test("errors: list length, empty shape, bad generators, bad shapes", () => {
    assert.throws(() => randnTensor([3, 4], [seeded(0), seeded(1)]), /list of 2 generators.*batch size is 3/);
    assert.throws(() => randnTensor([1, 4], []), RangeError);
    assert.throws(() => randnTensor([], seeded(0)), TypeError);
    assert.throws(() => randnTensor([2, 4], [seeded(0), {} as Generator]), TypeError);
    assert.throws(() => randnTensor([2, 4], 5 as unknown as Generator), TypeError);
    assert.throws(() => randnTensor([2, -4], seeded(0)), TypeError);
    assert.throws(() => randnTensor([2, 4], seeded(0), { dtype: "bfloat16" as "float32" }), TypeError);
  });
});
