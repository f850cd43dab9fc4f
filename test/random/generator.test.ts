/**
 * Replays every case of test/fixtures/rng (torch 1.13.1 CPU) from its params alone and checks each output at the
 * case tolerance, plus bit-for-bit equality (the goal; every value is expected to match exactly).
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { defaultGenerator, manualSeed } from "../../src/random/default_generator.js";
import { Generator } from "../../src/random/generator.js";
import { randnTensor } from "../../src/random/randn_tensor.js";
import { assertClose, type FixtureCase, type FixtureGroup, loadGroup } from "../helpers/fixtures.js";

interface Call {
  role: string;
  op: string;
  shape: number[];
  dtype: "float32" | "float64";
}

type Mode = "sequence" | "fresh" | "global" | "randn_tensor";

function modeOf(c: FixtureCase): Mode {
  const setup = String(c.params.setup ?? "");
  const calls = c.params.calls as Call[];
  if (calls.every((k) => k.op === "diffusers.utils.torch_utils.randn_tensor")) return "randn_tensor";
  if (setup.includes("OWN fresh")) return "fresh";
  if (setup.includes("WITHOUT generator")) return "global";
  if (setup.includes("calls with generator=g")) return "sequence";
  throw new Error(`case ${c.name}: unknown setup ${JSON.stringify(setup)}`);
}

function seedOf(c: FixtureCase): bigint {
  return BigInt(String(c.params.seed_decimal));
}

function expectedOf(
  g: FixtureGroup,
  c: FixtureCase,
  role: string,
): { data: Float32Array | Float64Array; shape: number[]; dtype: string } {
  const key = c.tensors[role];
  if (!key) throw new Error(`case ${c.name} has no role ${role}`);
  const info = g.tensors.info(key);
  const data = info.dtype === "F64" ? g.tensors.getFloat64(key) : g.tensors.getFloat32(key);
  return { data, shape: info.shape, dtype: info.dtype };
}

/** Number of elements whose float bits match exactly (compared in the expected dtype). */
function bitwiseEqualCount(
  actual: Float32Array | Float64Array,
  expected: Float32Array | Float64Array,
): number {
  let n = 0;
  for (let i = 0; i < expected.length; i++) if (Object.is(actual[i], expected[i])) n++;
  return n;
}

function runOp(gen: Generator | undefined, call: Call): Float32Array | Float64Array {
  const opts = { dtype: call.dtype };
  if (call.op === "torch.randn")
    return gen ? gen.randn(call.shape, opts) : defaultGenerator.randn(call.shape, opts);
  if (call.op === "torch.rand")
    return gen ? gen.rand(call.shape, opts) : defaultGenerator.rand(call.shape, opts);
  throw new Error(`unknown op ${call.op}`);
}

/** Replays a case and returns the produced tensor of every role. */
function replay(c: FixtureCase): Map<string, Float32Array | Float64Array> {
  const calls = c.params.calls as Call[];
  const outputs = new Map<string, Float32Array | Float64Array>();
  const mode = modeOf(c);
  if (mode === "randn_tensor") {
    const seeds: number[] = Array.isArray(c.params.seeds) ? c.params.seeds : [c.params.seeds];
    const gens = seeds.map((s) => new Generator().manualSeed(s));
    const generator = c.params.generator_is_list ? gens : gens[0]!;
    for (const call of calls)
      outputs.set(call.role, randnTensor(call.shape, generator, { dtype: call.dtype }));
    return outputs;
  }
  const seed = seedOf(c);
  const shared = mode === "sequence" ? new Generator().manualSeed(seed) : undefined;
  if (mode === "global") manualSeed(seed);
  for (const call of calls) {
    const gen = mode === "fresh" ? new Generator().manualSeed(seed) : shared;
    outputs.set(call.role, runOp(gen, call));
  }
  return outputs;
}

describe("rng fixtures (torch 1.13.1 CPU parity)", () => {
  const g = loadGroup("rng");
  let total = 0;
  let bitwise = 0;
  for (const c of g.cases) {
    test(c.name, () => {
      const calls = c.params.calls as Call[];
      assert.ok(calls.length > 0, "case has calls");
      assert.deepEqual(
        new Set(calls.map((k) => k.role)),
        new Set(Object.keys(c.tensors)),
        "every role is replayed",
      );
      const outputs = replay(c);
      let caseBitwise = 0;
      let caseTotal = 0;
      for (const call of calls) {
        const exp = expectedOf(g, c, call.role);
        const act = outputs.get(call.role)!;
        assert.deepEqual(exp.shape, call.shape, `${call.role} shape`);
        assert.equal(act instanceof Float64Array, exp.dtype === "F64", `${call.role} dtype`);
        assertClose(act, exp.data, c.tolerance, `${c.name}/${call.role}`);
        caseBitwise += bitwiseEqualCount(act, exp.data);
        caseTotal += exp.data.length;
      }
      total += caseTotal;
      bitwise += caseBitwise;
      assert.equal(caseBitwise, caseTotal, `${c.name}: ${caseBitwise}/${caseTotal} values bitwise equal`);
    });
  }
  test("all fixture values are bitwise equal", (t) => {
    t.diagnostic(`${bitwise}/${total} values bitwise equal`);
    assert.ok(total > 0);
    assert.equal(bitwise, total);
  });
});
