/**
 * ResnetBlock2D / Downsample2D / Upsample2D against a float64 reference of diffusers 0.23's resnet.py,
 * with small random weights.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import * as ort from "onnxruntime-node";
import { Downsample2D, ResnetBlock2D, Upsample2D } from "../../src/models/resnet.js";
import { ModelBuilder } from "../../src/onnx/model_builder.js";
import { ParamStore } from "../../src/onnx/params.js";
import { bindWeights, WeightSet } from "../../src/onnx/weights.js";
import { assertClose } from "../helpers/fixtures.js";
import { runGraph } from "../helpers/ort.js";

// ---------- float64 reference ----------

interface T {
  dims: number[];
  data: Float64Array;
}

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32 - 0.5;
  };
}

function randT(dims: number[], seed: number, scale = 2, offset = 0): T {
  const r = rng(seed);
  const n = dims.reduce((a, b) => a * b, 1);
  return { dims, data: Float64Array.from({ length: n }, () => Math.fround(offset + scale * r())) };
}

/** Random weights for every declared parameter (norm scales near 1, fan-in scaled weights). */
function randomWeights(store: ParamStore, seed: number): { ws: WeightSet; w: Map<string, T> } {
  const w = new Map<string, T>();
  const arrays: Record<string, { shape: number[]; data: Float32Array }> = {};
  let i = 0;
  for (const p of store.params.values()) {
    const isNorm = /norm/.test(p.key) && p.key.endsWith(".weight");
    const fanIn = p.shape.length > 1 ? p.shape.slice(1).reduce((a, b) => a * b, 1) : 1;
    const t = isNorm
      ? randT([...p.shape], seed + i++, 0.4, 1)
      : randT([...p.shape], seed + i++, p.shape.length > 1 ? 2 / Math.sqrt(fanIn) : 0.4);
    const f32 = Float32Array.from(t.data);
    w.set(p.key, t);
    arrays[p.key] = { shape: [...p.shape], data: f32 };
  }
  return { ws: WeightSet.fromArrays(arrays), w };
}

function conv2d(x: T, w: T, bias: T | undefined, stride: number, pads: [number, number, number, number]): T {
  const [B, C, H, W] = x.dims as [number, number, number, number];
  const [O, , K] = w.dims as [number, number, number, number];
  const [pt, pl, pb, pr] = pads;
  const Ho = Math.floor((H + pt + pb - K) / stride) + 1;
  const Wo = Math.floor((W + pl + pr - K) / stride) + 1;
  const out = new Float64Array(B * O * Ho * Wo);
  for (let n = 0; n < B; n++)
    for (let o = 0; o < O; o++)
      for (let i = 0; i < Ho; i++)
        for (let j = 0; j < Wo; j++) {
          let s = bias ? bias.data[o]! : 0;
          for (let c = 0; c < C; c++)
            for (let ki = 0; ki < K; ki++) {
              const y = i * stride + ki - pt;
              if (y < 0 || y >= H) continue;
              for (let kj = 0; kj < K; kj++) {
                const xx = j * stride + kj - pl;
                if (xx < 0 || xx >= W) continue;
                s += x.data[((n * C + c) * H + y) * W + xx]! * w.data[((o * C + c) * K + ki) * K + kj]!;
              }
            }
          out[((n * O + o) * Ho + i) * Wo + j] = s;
        }
  return { dims: [B, O, Ho, Wo], data: out };
}

function groupNorm(x: T, G: number, gamma: T, beta: T, eps: number): T {
  const [B, C] = x.dims as [number, number];
  const hw = x.data.length / (B * C);
  const cg = C / G;
  const out = new Float64Array(x.data.length);
  for (let n = 0; n < B; n++)
    for (let g = 0; g < G; g++) {
      const start = (n * C + g * cg) * hw;
      const len = cg * hw;
      let m = 0;
      for (let i = 0; i < len; i++) m += x.data[start + i]!;
      m /= len;
      let v = 0;
      for (let i = 0; i < len; i++) v += (x.data[start + i]! - m) ** 2;
      v /= len;
      const inv = 1 / Math.sqrt(v + eps);
      for (let i = 0; i < len; i++) {
        const c = g * cg + Math.floor(i / hw);
        out[start + i] = (x.data[start + i]! - m) * inv * gamma.data[c]! + beta.data[c]!;
      }
    }
  return { dims: x.dims, data: out };
}

const map = (x: T, f: (v: number) => number): T => ({ dims: x.dims, data: x.data.map(f) });
const silu = (x: T) => map(x, (v) => v / (1 + Math.exp(-v)));
const add = (a: T, b: T): T => ({ dims: a.dims, data: a.data.map((v, i) => v + b.data[i]!) });

function linear(x: T, w: T, b?: T): T {
  const [O, I] = w.dims as [number, number];
  const N = x.data.length / I;
  const out = new Float64Array(N * O);
  for (let n = 0; n < N; n++)
    for (let o = 0; o < O; o++) {
      let s = b ? b.data[o]! : 0;
      for (let i = 0; i < I; i++) s += x.data[n * I + i]! * w.data[o * I + i]!;
      out[n * O + o] = s;
    }
  return { dims: [...x.dims.slice(0, -1), O], data: out };
}

/** Maps each element of [B, C, H, W] with its channel c and batch row n. */
function perChannel(x: T, f: (x: number, c: number, n: number) => number): T {
  const [B, C] = x.dims as [number, number];
  const hw = x.data.length / (B * C);
  return { dims: x.dims, data: x.data.map((xv, i) => f(xv, Math.floor(i / hw) % C, Math.floor(i / hw / C))) };
}

function nearest(x: T, Ho: number, Wo: number): T {
  const [B, C, H, W] = x.dims as [number, number, number, number];
  const out = new Float64Array(B * C * Ho * Wo);
  for (let p = 0; p < B * C; p++)
    for (let i = 0; i < Ho; i++)
      for (let j = 0; j < Wo; j++) {
        const si = Math.min(Math.floor((i * H) / Ho), H - 1);
        const sj = Math.min(Math.floor((j * W) / Wo), W - 1);
        out[(p * Ho + i) * Wo + j] = x.data[(p * H + si) * W + sj]!;
      }
  return { dims: [B, C, Ho, Wo], data: out };
}

function avgPool2(x: T): T {
  const [B, C, H, W] = x.dims as [number, number, number, number];
  const Ho = Math.floor(H / 2);
  const Wo = Math.floor(W / 2);
  const out = new Float64Array(B * C * Ho * Wo);
  for (let p = 0; p < B * C; p++)
    for (let i = 0; i < Ho; i++)
      for (let j = 0; j < Wo; j++) {
        let s = 0;
        for (const [a, c] of [
          [0, 0],
          [0, 1],
          [1, 0],
          [1, 1],
        ] as const)
          s += x.data[(p * H + 2 * i + a) * W + 2 * j + c]!;
        out[(p * Ho + i) * Wo + j] = s / 4;
      }
  return { dims: [B, C, Ho, Wo], data: out };
}

interface RefResnet {
  prefix: string;
  groups: number;
  eps: number;
  temb?: T;
  scaleShift?: boolean;
  osf?: number;
  shortcut: boolean;
}

function refResnet(x: T, w: Map<string, T>, o: RefResnet): T {
  const p = (n: string) => w.get(o.prefix ? `${o.prefix}.${n}` : n)!;
  let h = silu(groupNorm(x, o.groups, p("norm1.weight"), p("norm1.bias"), o.eps));
  h = conv2d(h, p("conv1.weight"), p("conv1.bias"), 1, [1, 1, 1, 1]);
  const C = h.dims[1]!;
  let t: T | undefined;
  if (o.temb) t = linear(silu(o.temb), p("time_emb_proj.weight"), p("time_emb_proj.bias"));
  if (t && !o.scaleShift) {
    const tt = t;
    h = perChannel(h, (xv, c, n) => xv + tt.data[n * C + c]!);
  }
  h = groupNorm(h, o.groups, p("norm2.weight"), p("norm2.bias"), o.eps);
  if (t && o.scaleShift) {
    const tt = t;
    h = perChannel(h, (xv, c, n) => xv * (1 + tt.data[n * 2 * C + c]!) + tt.data[n * 2 * C + C + c]!);
  }
  h = conv2d(silu(h), p("conv2.weight"), p("conv2.bias"), 1, [1, 1, 1, 1]);
  const s = o.shortcut ? conv2d(x, p("conv_shortcut.weight"), p("conv_shortcut.bias"), 1, [0, 0, 0, 0]) : x;
  return map(add(s, h), (v) => v / (o.osf ?? 1));
}

const f32 = (t: T) => new ort.Tensor("float32", Float32Array.from(t.data), t.dims);
const TOL = { atol: 1e-4, rtol: 1e-4 };

// ---------- tests ----------

describe("ResnetBlock2D", () => {
  test("with a time embedding and a conv shortcut (8 → 16 channels, groups 4)", async () => {
    const store = new ParamStore();
    const blk = new ResnetBlock2D(store.root().pp("resnets").pp(0), {
      inChannels: 8,
      outChannels: 16,
      tembChannels: 6,
      groups: 4,
      eps: 1e-5,
    });
    assert.deepEqual([...store.params.keys()].sort(), [
      "resnets.0.conv1.bias",
      "resnets.0.conv1.weight",
      "resnets.0.conv2.bias",
      "resnets.0.conv2.weight",
      "resnets.0.conv_shortcut.bias",
      "resnets.0.conv_shortcut.weight",
      "resnets.0.norm1.bias",
      "resnets.0.norm1.weight",
      "resnets.0.norm2.bias",
      "resnets.0.norm2.weight",
      "resnets.0.time_emb_proj.bias",
      "resnets.0.time_emb_proj.weight",
    ]);
    const { ws, w } = randomWeights(store, 11);
    const b = new ModelBuilder(bindWeights(store, ws));
    const x = b.input("x", "float32", ["batch", 8, "h", "w"]);
    const temb = b.input("temb", "float32", ["batch", 6]);
    b.output(blk.forward(b, x, temb), "y");
    const xv = randT([2, 8, 5, 7], 1);
    const tv = randT([2, 6], 2);
    const out = await runGraph(b, { x: f32(xv), temb: f32(tv) });
    const ref = refResnet(xv, w, { prefix: "resnets.0", groups: 4, eps: 1e-5, temb: tv, shortcut: true });
    assert.deepEqual(out.y!.dims, [2, 16, 5, 7]);
    assertClose(out.y!.data as Float32Array, ref.data, TOL, "resnet temb");
  });

  test("without temb, identity shortcut, output_scale_factor 2 (the VAE configuration)", async () => {
    const store = new ParamStore();
    const blk = new ResnetBlock2D(store.root(), {
      inChannels: 8,
      tembChannels: null,
      groups: 2,
      outputScaleFactor: 2,
    });
    assert.ok(!store.params.has("conv_shortcut.weight") && !store.params.has("time_emb_proj.weight"));
    const { ws, w } = randomWeights(store, 21);
    const b = new ModelBuilder(bindWeights(store, ws));
    const x = b.input("x", "float32", [1, 8, "h", "w"]);
    b.output(blk.forward(b, x), "y");
    const xv = randT([1, 8, 6, 3], 3);
    const out = await runGraph(b, { x: f32(xv) });
    const ref = refResnet(xv, w, { prefix: "", groups: 2, eps: 1e-6, shortcut: false, osf: 2 }).data;
    assertClose(out.y!.data as Float32Array, ref, TOL, "resnet no temb");
  });

  test("scale_shift time embedding norm", async () => {
    const store = new ParamStore();
    const blk = new ResnetBlock2D(store.root().pp("r"), {
      inChannels: 4,
      outChannels: 8,
      tembChannels: 5,
      groups: 2,
      timeEmbeddingNorm: "scale_shift",
    });
    assert.deepEqual(store.params.get("r.time_emb_proj.weight")!.shape, [16, 5]);
    const { ws, w } = randomWeights(store, 31);
    const b = new ModelBuilder(bindWeights(store, ws));
    b.output(blk.forward(b, b.input("x", "float32", [2, 4, 3, 3]), b.input("t", "float32", [2, 5])), "y");
    const xv = randT([2, 4, 3, 3], 4);
    const tv = randT([2, 5], 5);
    const out = await runGraph(b, { x: f32(xv), t: f32(tv) });
    const ref = refResnet(xv, w, {
      prefix: "r",
      groups: 2,
      eps: 1e-6,
      temb: tv,
      scaleShift: true,
      shortcut: true,
    });
    assertClose(out.y!.data as Float32Array, ref.data, TOL, "scale_shift");
  });

  test("clear errors: unknown activation, unsupported norm, missing temb", () => {
    const root = () => new ParamStore().root();
    assert.throws(
      () =>
        new ResnetBlock2D(root(), {
          inChannels: 4,
          tembChannels: null,
          groups: 2,
          nonLinearity: "tanh" as "silu",
        }),
      /unsupported activation function "tanh"/,
    );
    assert.throws(
      () =>
        new ResnetBlock2D(root(), {
          inChannels: 4,
          tembChannels: 4,
          groups: 2,
          timeEmbeddingNorm: "ada_group" as "default",
        }),
      /time_embedding_norm "ada_group"/,
    );
    const store = new ParamStore();
    const blk = new ResnetBlock2D(store.root().pp("x"), { inChannels: 4, tembChannels: 4, groups: 2 });
    const { ws } = randomWeights(store, 1);
    const b = new ModelBuilder(bindWeights(store, ws));
    assert.throws(() => blk.forward(b, b.input("x", "float32", [1, 4, 2, 2])), /needs a time embedding/);
  });
});

describe("Downsample2D", () => {
  for (const [padding, H, W] of [
    [0, 7, 9],
    [0, 8, 6],
    [1, 7, 9],
  ] as const) {
    test(`conv, padding ${padding}, ${H}x${W}`, async () => {
      const store = new ParamStore();
      const ds = new Downsample2D(store.root().pp("downsamplers").pp(0), 4, {
        useConv: true,
        outChannels: 6,
        padding,
        name: "op",
      });
      assert.deepEqual([...store.params.keys()], ["downsamplers.0.conv.weight", "downsamplers.0.conv.bias"]);
      const { ws, w } = randomWeights(store, 41);
      const b = new ModelBuilder(bindWeights(store, ws));
      b.output(ds.forward(b, b.input("x", "float32", [1, 4, "h", "w"])), "y");
      const xv = randT([1, 4, H, W], 6);
      const out = await runGraph(b, { x: f32(xv) });
      const pads: [number, number, number, number] =
        padding === 0 ? [0, 0, 1, 1] : [padding, padding, padding, padding];
      const ref = conv2d(
        xv,
        w.get("downsamplers.0.conv.weight")!,
        w.get("downsamplers.0.conv.bias")!,
        2,
        pads,
      );
      assert.deepEqual(out.y!.dims, ref.dims);
      assertClose(out.y!.data as Float32Array, ref.data, TOL, "downsample");
    });
  }

  test("average pool without a conv", async () => {
    const store = new ParamStore();
    const ds = new Downsample2D(store.root(), 3, { useConv: false });
    assert.equal(store.params.size, 0);
    const b = new ModelBuilder(bindWeights(store, WeightSet.fromArrays({})));
    b.output(ds.forward(b, b.input("x", "float32", [2, 3, 5, 6])), "y");
    const xv = randT([2, 3, 5, 6], 7);
    const out = await runGraph(b, { x: f32(xv) });
    assertClose(out.y!.data as Float32Array, avgPool2(xv).data, TOL, "avgpool");
  });
});

describe("Upsample2D", () => {
  test("nearest x2 then conv", async () => {
    const store = new ParamStore();
    const us = new Upsample2D(store.root().pp("upsamplers").pp(0), 4, { useConv: true });
    assert.deepEqual([...store.params.keys()], ["upsamplers.0.conv.weight", "upsamplers.0.conv.bias"]);
    const { ws, w } = randomWeights(store, 51);
    const b = new ModelBuilder(bindWeights(store, ws));
    b.output(us.forward(b, b.input("x", "float32", ["n", 4, "h", "w"])), "y");
    const xv = randT([2, 4, 3, 5], 8);
    const out = await runGraph(b, { x: f32(xv) });
    const ref = conv2d(
      nearest(xv, 6, 10),
      w.get("upsamplers.0.conv.weight")!,
      w.get("upsamplers.0.conv.bias")!,
      1,
      [1, 1, 1, 1],
    );
    assert.deepEqual(out.y!.dims, [2, 4, 6, 10]);
    assertClose(out.y!.data as Float32Array, ref.data, TOL, "upsample x2");
  });

  for (const [h, w, H, W] of [
    [3, 4, 5, 7],
    [3, 5, 6, 9],
    [4, 4, 8, 8],
  ] as const) {
    test(`explicit output size ${h}x${w} → ${H}x${W} (no conv)`, async () => {
      const store = new ParamStore();
      const us = new Upsample2D(store.root(), 2, { useConv: false });
      const b = new ModelBuilder(bindWeights(store, WeightSet.fromArrays({})));
      const size = b.input("size", "int64", [2]);
      b.output(us.forward(b, b.input("x", "float32", [1, 2, "h", "w"]), size), "y");
      const xv = randT([1, 2, h, w], 9);
      const out = await runGraph(b, {
        x: f32(xv),
        size: new ort.Tensor("int64", BigInt64Array.from([BigInt(H), BigInt(W)]), [2]),
      });
      assert.deepEqual(out.y!.dims, [1, 2, H, W]);
      assertClose(out.y!.data as Float32Array, nearest(xv, H, W).data, { atol: 0, rtol: 0 }, "upsample size");
    });
  }
});
