/**
 * Timestep embeddings (src/models/embeddings.ts) against references written from diffusers v0.23.0
 * `get_timestep_embedding` / `TimestepEmbedding`: the float32 frequency table, sin/cos order (flip_sin_to_cos),
 * downscale_freq_shift, scale, odd dims (zero pad), and the linear_1 → act → linear_2 (→ post_act) MLP with
 * `cond_proj`.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import * as ort from "onnxruntime-node";
import {
  getTimestepEmbedding,
  TimestepEmbedding,
  Timesteps,
  timestepFrequencies,
} from "../../src/models/embeddings.js";
import { ModelBuilder } from "../../src/onnx/model_builder.js";
import { ParamStore } from "../../src/onnx/params.js";
import { bindWeights, WeightSet } from "../../src/onnx/weights.js";
import { assertClose } from "../helpers/fixtures.js";
import { runGraph } from "../helpers/ort.js";

function rand(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  return Float32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32 - 0.5;
  });
}

/** get_timestep_embedding in float64 from the float32 argument torch computes (t·freq rounded to float32). */
function reference(
  t: number[],
  dim: number,
  o: { flip: boolean; shift: number; scale?: number; maxPeriod?: number },
): Float64Array {
  const half = Math.floor(dim / 2);
  const freqs = timestepFrequencies(dim, o.shift, o.maxPeriod ?? 10000);
  const out = new Float64Array(t.length * dim);
  t.forEach((tv, r) => {
    for (let i = 0; i < half; i++) {
      let arg = Math.fround(Math.fround(tv) * (freqs[i] as number));
      if (o.scale !== undefined && o.scale !== 1) arg = Math.fround(arg * Math.fround(o.scale));
      const [first, second] = o.flip ? [Math.cos(arg), Math.sin(arg)] : [Math.sin(arg), Math.cos(arg)];
      out[r * dim + i] = first;
      out[r * dim + half + i] = second;
    }
  });
  return out;
}

describe("get_timestep_embedding", () => {
  test("frequency table: exp(-ln(max_period)·i / (half - shift)), float32 steps (within 1e-6 of exact)", () => {
    for (const [dim, shift] of [
      [32, 0],
      [320, 0],
      [64, 1],
      [7, 1],
    ] as const) {
      const f = timestepFrequencies(dim, shift);
      const half = Math.floor(dim / 2);
      assert.equal(f.length, half);
      for (let i = 0; i < half; i++) {
        const exact = Math.exp((-Math.log(10000) * i) / (half - shift));
        assert.ok(
          Math.abs((f[i] as number) - exact) <= 1e-6 * exact,
          `dim ${dim} i ${i}: ${f[i]} vs ${exact}`,
        );
      }
      assert.equal(f[0], 1);
    }
  });

  const cases = [
    { dim: 32, flip: true, shift: 0, t: [667, 0, 999, 512.25] },
    { dim: 33, flip: true, shift: 0, t: [1, 20] },
    { dim: 8, flip: false, shift: 1, t: [3.5, 250] },
    { dim: 16, flip: false, shift: 1, scale: 2.5, maxPeriod: 500, t: [10, 0.25] },
  ];
  for (const c of cases) {
    test(`dim ${c.dim} flip ${c.flip} shift ${c.shift}${c.scale ? ` scale ${c.scale}` : ""}`, async () => {
      const b = new ModelBuilder(bindWeights(new ParamStore(), WeightSet.fromArrays({})));
      const t = b.input("t", "float32", ["n"]);
      b.output(
        getTimestepEmbedding(b, t, c.dim, {
          flipSinToCos: c.flip,
          downscaleFreqShift: c.shift,
          scale: c.scale,
          maxPeriod: c.maxPeriod,
        }),
        "emb",
      );
      const out = await runGraph(b, { t: new ort.Tensor("float32", Float32Array.from(c.t), [c.t.length]) });
      const emb = out.emb as ort.Tensor;
      assert.deepEqual(emb.dims, [c.t.length, c.dim]);
      const want = reference(c.t, c.dim, {
        flip: c.flip,
        shift: c.shift,
        scale: c.scale,
        maxPeriod: c.maxPeriod,
      });
      // An odd dim ends with a zero column (want is zero-initialised there).
      assertClose(emb.data as Float32Array, want, { atol: 1e-6, rtol: 0 }, `dim ${c.dim}`);
    });
  }
});

describe("TimestepEmbedding", () => {
  const [inC, dim, condDim] = [8, 12, 5];
  const weights = {
    "te.linear_1.weight": { shape: [dim, inC], data: rand(dim * inC, 1) },
    "te.linear_1.bias": { shape: [dim], data: rand(dim, 2) },
    "te.linear_2.weight": { shape: [dim, dim], data: rand(dim * dim, 3) },
    "te.linear_2.bias": { shape: [dim], data: rand(dim, 4) },
    "te.cond_proj.weight": { shape: [inC, condDim], data: rand(inC * condDim, 5) },
  };
  const linear = (x: Float64Array, w: Float32Array, bias: Float32Array | undefined, o: number, i: number) =>
    Float64Array.from({ length: o }, (_, r) => {
      let s = bias ? (bias[r] as number) : 0;
      for (let k = 0; k < i; k++) s += (w[r * i + k] as number) * (x[k] as number);
      return s;
    });
  const silu = (v: number) => v / (1 + Math.exp(-v));

  test("linear_1 → silu → linear_2 → post_act (gelu), with cond_proj", async () => {
    const store = new ParamStore();
    const te = new TimestepEmbedding(store.root().pp("te"), inC, dim, {
      actFn: "silu",
      postActFn: "gelu",
      condProjDim: condDim,
    });
    const b = new ModelBuilder(bindWeights(store, WeightSet.fromArrays(weights)));
    const x = b.input("x", "float32", [1, inC]);
    const cond = b.input("cond", "float32", [1, condDim]);
    b.output(te.forward(b, x, cond), "y");
    const xv = rand(inC, 9);
    const cv = rand(condDim, 10);
    const out = await runGraph(b, {
      x: new ort.Tensor("float32", xv, [1, inC]),
      cond: new ort.Tensor("float32", cv, [1, condDim]),
    });
    const w = weights;
    const sample = Float64Array.from(xv);
    const proj = linear(Float64Array.from(cv), w["te.cond_proj.weight"].data, undefined, inC, condDim);
    const s = sample.map((v, k) => v + (proj[k] as number));
    const h1 = linear(s, w["te.linear_1.weight"].data, w["te.linear_1.bias"].data, dim, inC).map(silu);
    const h2 = linear(h1, w["te.linear_2.weight"].data, w["te.linear_2.bias"].data, dim, dim);
    // exact GELU via erf: 0.5·x·(1 + erf(x/√2)); erf from its Taylor series (|x| small here).
    const erf = (z: number) => {
      let sum = 0;
      let term = z;
      for (let n = 0; n < 60; n++) {
        sum += term / (2 * n + 1);
        term *= (-z * z) / (n + 1);
      }
      return (2 / Math.sqrt(Math.PI)) * sum;
    };
    const want = h2.map((v) => 0.5 * v * (1 + erf(v / Math.SQRT2)));
    assertClose(out.y?.data as Float32Array, want, { atol: 1e-6, rtol: 1e-5 });
  });

  test("Timesteps is parameter-free; unknown activations are clear errors", () => {
    const store = new ParamStore();
    const ts = new Timesteps(32, true, 0);
    assert.equal(ts.numChannels, 32);
    assert.equal(store.params.size, 0);
    assert.throws(
      () => new TimestepEmbedding(store.root().pp("bad"), 4, 4, { actFn: "tanh" }),
      /bad: act_fn.*tanh/,
    );
  });
});
