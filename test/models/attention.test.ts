/**
 * Attention (diffusers 0.23 AttnProcessor semantics) against a float64 reference, with small random weights:
 * default, head-sliced and fused (com.microsoft MultiHeadAttention) graphs, 3-D and 4-D inputs.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import * as ort from "onnxruntime-node";
import {
  Attention,
  type AttentionForwardOptions,
  type AttentionOptions,
} from "../../src/models/attention_processor.js";
import { ModelBuilder } from "../../src/onnx/model_builder.js";
import { ParamStore } from "../../src/onnx/params.js";
import { bindWeights, WeightSet } from "../../src/onnx/weights.js";
import { assertClose } from "../helpers/fixtures.js";
import { runGraph } from "../helpers/ort.js";

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32 - 0.5;
  };
}

/** float32-representable random values in [offset - scale/2, offset + scale/2). */
function rand(n: number, seed: number, scale = 2, offset = 0): Float64Array {
  const r = rng(seed);
  return Float64Array.from({ length: n }, () => Math.fround(offset + scale * r()));
}

function randomWeights(store: ParamStore, seed: number): { ws: WeightSet; w: Map<string, Float64Array> } {
  const w = new Map<string, Float64Array>();
  const arrays: Record<string, { shape: number[]; data: Float32Array }> = {};
  let i = 0;
  for (const p of store.params.values()) {
    const n = p.shape.reduce((a, b) => a * b, 1);
    const isNormScale = p.key.includes("norm") && p.key.endsWith(".weight");
    const d = isNormScale
      ? rand(n, seed + i++, 0.4, 1)
      : rand(n, seed + i++, p.shape.length > 1 ? 4 / Math.sqrt(p.shape[1]!) : 0.4);
    w.set(p.key, d);
    arrays[p.key] = { shape: [...p.shape], data: Float32Array.from(d) };
  }
  return { ws: WeightSet.fromArrays(arrays), w };
}

/** x [N, I] → [N, O] with W [O, I]. */
function linear(x: Float64Array, I: number, W: Float64Array, O: number, b?: Float64Array): Float64Array {
  const N = x.length / I;
  const out = new Float64Array(N * O);
  for (let n = 0; n < N; n++)
    for (let o = 0; o < O; o++) {
      let s = b ? b[o]! : 0;
      for (let i = 0; i < I; i++) s += x[n * I + i]! * W[o * I + i]!;
      out[n * O + o] = s;
    }
  return out;
}

/** Group norm of [B, C, N] (channel-major). */
function groupNorm(
  x: Float64Array,
  B: number,
  C: number,
  G: number,
  g: Float64Array,
  be: Float64Array,
  eps: number,
) {
  const N = x.length / (B * C);
  const out = new Float64Array(x.length);
  const len = (C / G) * N;
  for (let n = 0; n < B; n++)
    for (let k = 0; k < G; k++) {
      const st = (n * C + (k * C) / G) * N;
      let m = 0;
      for (let i = 0; i < len; i++) m += x[st + i]!;
      m /= len;
      let v = 0;
      for (let i = 0; i < len; i++) v += (x[st + i]! - m) ** 2;
      const inv = 1 / Math.sqrt(v / len + eps);
      for (let i = 0; i < len; i++) {
        const c = (k * C) / G + Math.floor(i / N);
        out[st + i] = (x[st + i]! - m) * inv * g[c]! + be[c]!;
      }
    }
  return out;
}

/** [B, A, Bdim] ↔ [B, Bdim, A]. */
function swap12(x: Float64Array, B: number, A: number, D: number): Float64Array {
  const out = new Float64Array(x.length);
  for (let n = 0; n < B; n++)
    for (let a = 0; a < A; a++)
      for (let d = 0; d < D; d++) out[(n * D + d) * A + a] = x[(n * A + a) * D + d]!;
  return out;
}

interface RefOpts {
  queryDim: number;
  crossDim: number;
  heads: number;
  dimHead: number;
  groups?: number;
  eps?: number;
  residual?: boolean;
  rescale?: number;
  scale?: number;
}

/** AttnProcessor on 3-D hidden states [B, L, C] (and context [B, S, Cc] or self). */
function refAttention(
  w: Map<string, Float64Array>,
  o: RefOpts,
  x: Float64Array,
  B: number,
  L: number,
  ctx?: { data: Float64Array; S: number },
): Float64Array {
  const { queryDim: C, heads: H, dimHead: D } = o;
  const inner = H * D;
  let h = x;
  if (o.groups) {
    h = swap12(
      groupNorm(
        swap12(h, B, L, C),
        B,
        C,
        o.groups,
        w.get("group_norm.weight")!,
        w.get("group_norm.bias")!,
        o.eps!,
      ),
      B,
      C,
      L,
    );
  }
  const context = ctx ?? { data: h, S: L };
  const Cc = ctx ? o.crossDim : C;
  const S = context.S;
  const q = linear(h, C, w.get("to_q.weight")!, inner, w.get("to_q.bias"));
  const k = linear(context.data, Cc, w.get("to_k.weight")!, inner, w.get("to_k.bias"));
  const v = linear(context.data, Cc, w.get("to_v.weight")!, inner, w.get("to_v.bias"));
  const scale = o.scale ?? D ** -0.5;
  const att = new Float64Array(B * L * inner);
  const p = new Float64Array(S);
  for (let n = 0; n < B; n++)
    for (let hd = 0; hd < H; hd++)
      for (let i = 0; i < L; i++) {
        let mx = -Infinity;
        for (let j = 0; j < S; j++) {
          let s = 0;
          for (let d = 0; d < D; d++)
            s += q[(n * L + i) * inner + hd * D + d]! * k[(n * S + j) * inner + hd * D + d]!;
          p[j] = s * scale;
          mx = Math.max(mx, p[j]!);
        }
        let z = 0;
        for (let j = 0; j < S; j++) {
          p[j] = Math.exp(p[j]! - mx);
          z += p[j]!;
        }
        for (let d = 0; d < D; d++) {
          let s = 0;
          for (let j = 0; j < S; j++) s += p[j]! * v[(n * S + j) * inner + hd * D + d]!;
          att[(n * L + i) * inner + hd * D + d] = s / z;
        }
      }
  let out = linear(att, inner, w.get("to_out.0.weight")!, C, w.get("to_out.0.bias"));
  if (o.residual) out = out.map((val, i) => val + x[i]!);
  return out.map((val) => val / (o.rescale ?? 1));
}

function build(opts: AttentionOptions, seed: number) {
  const store = new ParamStore();
  const attn = new Attention(store.root(), opts);
  const { ws, w } = randomWeights(store, seed);
  return { attn, store, ws, w };
}

const tensor = (d: Float64Array, dims: number[]) => new ort.Tensor("float32", Float32Array.from(d), dims);
const TOL = { atol: 1e-4, rtol: 1e-4 };

const VARIANTS: [string, AttentionForwardOptions][] = [
  ["default", {}],
  ["sliceSize 1", { sliceSize: 1 }],
  ["sliceSize 2", { sliceSize: 2 }],
  ["sliceSize 3 (remainder chunk)", { sliceSize: 3 }],
  ["memoryEfficient", { memoryEfficient: true }],
];

describe("Attention, 3-D inputs (transformer blocks)", () => {
  const opts: AttentionOptions = { queryDim: 24, heads: 4, dimHead: 8 };
  const { attn, store, ws, w } = build(opts, 100);
  const B = 2;
  const L = 9;
  const x = rand(B * L * 24, 1);
  const ref = refAttention(w, { queryDim: 24, crossDim: 24, heads: 4, dimHead: 8 }, x, B, L);

  test("parameter names", () => {
    assert.deepEqual([...store.params.keys()].sort(), [
      "to_k.weight",
      "to_out.0.bias",
      "to_out.0.weight",
      "to_q.weight",
      "to_v.weight",
    ]);
    assert.deepEqual(store.params.get("to_q.weight")!.shape, [32, 24]);
  });

  for (const [name, fo] of VARIANTS) {
    test(`self-attention, ${name}`, async () => {
      const b = new ModelBuilder(bindWeights(store, ws));
      b.output(attn.forward(b, b.input("x", "float32", ["batch", "seq", 24]), undefined, fo), "y");
      const out = await runGraph(b, { x: tensor(x, [B, L, 24]) });
      assert.deepEqual(out.y!.dims, [B, L, 24]);
      assertClose(out.y!.data as Float32Array, ref, TOL, name);
    });
  }

  const crossOpts: AttentionOptions = {
    queryDim: 16,
    crossAttentionDim: 12,
    heads: 2,
    dimHead: 5,
    bias: true,
  };
  const cross = build(crossOpts, 200);
  const xq = rand(2 * 7 * 16, 2);
  const ctx = rand(2 * 5 * 12, 3);
  const crossRef = refAttention(cross.w, { queryDim: 16, crossDim: 12, heads: 2, dimHead: 5 }, xq, 2, 7, {
    data: ctx,
    S: 5,
  });
  for (const [name, fo] of VARIANTS) {
    test(`cross-attention (L 7, S 5, biased q/k/v), ${name}`, async () => {
      const b = new ModelBuilder(bindWeights(cross.store, cross.ws));
      const hs = b.input("x", "float32", ["batch", "seq", 16]);
      const ehs = b.input("ctx", "float32", ["batch", "ctx_seq", 12]);
      b.output(cross.attn.forward(b, hs, ehs, fo), "y");
      const out = await runGraph(b, { x: tensor(xq, [2, 7, 16]), ctx: tensor(ctx, [2, 5, 12]) });
      assertClose(out.y!.data as Float32Array, crossRef, TOL, name);
    });
  }

  test("group_norm on 3-D input, scale_qk false", async () => {
    const o: AttentionOptions = { queryDim: 8, heads: 2, dimHead: 4, normNumGroups: 4, scaleQk: false };
    const m = build(o, 300);
    const xs = rand(1 * 6 * 8, 4);
    const r = refAttention(
      m.w,
      { queryDim: 8, crossDim: 8, heads: 2, dimHead: 4, groups: 4, eps: 1e-5, scale: 1 },
      xs,
      1,
      6,
    );
    for (const fo of [{}, { memoryEfficient: true }]) {
      const b = new ModelBuilder(bindWeights(m.store, m.ws));
      b.output(m.attn.forward(b, b.input("x", "float32", [1, 6, 8]), undefined, fo), "y");
      const out = await runGraph(b, { x: tensor(xs, [1, 6, 8]) });
      assertClose(out.y!.data as Float32Array, r, TOL, "3-D group norm");
    }
  });
});

describe("Attention, 4-D inputs (VAE mid-block)", () => {
  // The VAE's configuration: one head of all channels, biases, group_norm, residual, rescale.
  const C = 16;
  const o: AttentionOptions = {
    queryDim: C,
    heads: 1,
    dimHead: C,
    bias: true,
    normNumGroups: 4,
    eps: 1e-6,
    residualConnection: true,
    rescaleOutputFactor: 2,
  };
  const m = build(o, 400);
  const B = 2;
  const Hh = 5;
  const Ww = 7;
  const x = rand(B * C * Hh * Ww, 5);
  // AttnProcessor: view [B, C, HW] → [B, HW, C]; compute; back; residual; rescale.
  const x3 = swap12(x, B, C, Hh * Ww);
  const ref3 = refAttention(
    m.w,
    { queryDim: C, crossDim: C, heads: 1, dimHead: C, groups: 4, eps: 1e-6, residual: true, rescale: 2 },
    x3,
    B,
    Hh * Ww,
  );
  const ref = swap12(ref3, B, Hh * Ww, C);

  for (const [name, fo] of [
    ["default", {}],
    ["memoryEfficient", { memoryEfficient: true }],
  ] as const) {
    test(name, async () => {
      const b = new ModelBuilder(bindWeights(m.store, m.ws));
      const hs = b.input("x", "float32", ["batch", C, "height", "width"]);
      b.output(m.attn.forward(b, hs, undefined, { ...fo, inputNdim: 4 }), "y");
      const out = await runGraph(b, { x: tensor(x, [B, C, Hh, Ww]) });
      assert.deepEqual(out.y!.dims, [B, C, Hh, Ww]);
      assertClose(out.y!.data as Float32Array, ref, TOL, name);
    });
  }
});

describe("Attention options", () => {
  test("deprecated attention-block names (query/key/value/proj_attn)", () => {
    const store = new ParamStore();
    new Attention(store.root().pp("attentions").pp(0), {
      queryDim: 8,
      heads: 1,
      dimHead: 8,
      bias: true,
      normNumGroups: 2,
      deprecatedNames: true,
    });
    assert.deepEqual([...store.params.keys()].sort(), [
      "attentions.0.group_norm.bias",
      "attentions.0.group_norm.weight",
      "attentions.0.key.bias",
      "attentions.0.key.weight",
      "attentions.0.proj_attn.bias",
      "attentions.0.proj_attn.weight",
      "attentions.0.query.bias",
      "attentions.0.query.weight",
      "attentions.0.value.bias",
      "attentions.0.value.weight",
    ]);
  });

  test("only_cross_attention without added KV is an error, as in diffusers", () => {
    assert.throws(
      () =>
        new Attention(new ParamStore().root(), {
          queryDim: 8,
          heads: 1,
          dimHead: 8,
          onlyCrossAttention: true,
        }),
      /only_cross_attention can only be set to True if added_kv_proj_dim/,
    );
  });

  test("a bad slice size is an error", () => {
    const { attn, store, ws } = build({ queryDim: 8, heads: 4, dimHead: 2 }, 1);
    const b = new ModelBuilder(bindWeights(store, ws));
    assert.throws(
      () => attn.forward(b, b.input("x", "float32", [1, 3, 8]), undefined, { sliceSize: 0 }),
      /slice size/,
    );
  });
});
