/**
 * A float64 reference of transformers 4.35's CLIPTextModel / CLIPTextModelWithProjection forward (eager attention),
 * written directly from modeling_clip.py, plus random small configs with random weights for clip.test.ts.
 */
import { type CLIPTextConfig, parseCLIPTextConfig } from "../../src/models/clip/config.js";
import { WeightSet } from "../../src/onnx/weights.js";

export type F64 = Float64Array;
type Arrays = Record<string, { shape: number[]; data: Float32Array }>;

const FLOAT32_MIN = -3.4028234663852886e38;

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32 - 0.5;
  };
}

/** A small config (vocab 48, hidden 24, 2 layers, 4 heads, 12 positions) with `over` applied, and random weights. */
export function randomConfig(
  over: Partial<CLIPTextConfig>,
  seed: number,
): { config: CLIPTextConfig; weights: WeightSet; arrays: Arrays } {
  const config = parseCLIPTextConfig({
    architectures: ["CLIPTextModel"],
    model_type: "clip_text_model",
    vocab_size: 48,
    hidden_size: 24,
    intermediate_size: 40,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    max_position_embeddings: 12,
    projection_dim: 16,
    ...over,
  });
  const r = rng(seed);
  const arrays: Arrays = {};
  const { hidden_size: H, intermediate_size: I, vocab_size: V, max_position_embeddings: P } = config;
  const add = (key: string, shape: number[], scale: number, offset = 0) => {
    const n = shape.reduce((a, b) => a * b, 1);
    arrays[key] = { shape, data: Float32Array.from({ length: n }, () => offset + scale * r()) };
  };
  add("text_model.embeddings.token_embedding.weight", [V, H], 2);
  add("text_model.embeddings.position_embedding.weight", [P, H], 1);
  for (let l = 0; l < config.num_hidden_layers; l++) {
    const p = `text_model.encoder.layers.${l}`;
    for (const proj of ["q_proj", "k_proj", "v_proj", "out_proj"]) {
      add(`${p}.self_attn.${proj}.weight`, [H, H], 4 / Math.sqrt(H));
      add(`${p}.self_attn.${proj}.bias`, [H], 0.4);
    }
    for (const ln of ["layer_norm1", "layer_norm2"]) {
      add(`${p}.${ln}.weight`, [H], 0.4, 1);
      add(`${p}.${ln}.bias`, [H], 0.4);
    }
    add(`${p}.mlp.fc1.weight`, [I, H], 4 / Math.sqrt(H));
    add(`${p}.mlp.fc1.bias`, [I], 0.4);
    add(`${p}.mlp.fc2.weight`, [H, I], 4 / Math.sqrt(I));
    add(`${p}.mlp.fc2.bias`, [H], 0.4);
  }
  add("text_model.final_layer_norm.weight", [H], 0.4, 1);
  add("text_model.final_layer_norm.bias", [H], 0.4);
  if (config.architectures?.[0] === "CLIPTextModelWithProjection") {
    add("text_projection.weight", [config.projection_dim, H], 2 / Math.sqrt(H));
  }
  return { config, weights: WeightSet.fromArrays(arrays), arrays };
}

const erf = (x: number): number => {
  // Abramowitz-Stegun 7.1.26 is too coarse; use a series / continued fraction accurate to ~1e-15.
  const ax = Math.abs(x);
  if (ax < 2.5) {
    let sum = x;
    let term = x;
    for (let n = 1; n < 200; n++) {
      term *= (-x * x) / n;
      const add = term / (2 * n + 1);
      sum += add;
      if (Math.abs(add) < 1e-17 * Math.abs(sum)) break;
    }
    return (2 / Math.sqrt(Math.PI)) * sum;
  }
  // erfc continued fraction (Lentz) for large |x|
  let f = ax;
  let c = ax;
  let d = 0;
  for (let n = 1; n < 300; n++) {
    const an = n / 2;
    d = ax + an * d;
    d = 1 / d;
    c = ax + an / c;
    const delta = c * d;
    f *= delta;
    if (Math.abs(delta - 1) < 1e-16) break;
  }
  const erfc = Math.exp(-ax * ax) / (Math.sqrt(Math.PI) * f);
  return Math.sign(x) * (1 - erfc);
};

function act(name: string, x: number): number {
  const tanhGelu = (v: number) => 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3)));
  switch (name) {
    case "gelu":
      return 0.5 * x * (1 + erf(x / Math.SQRT2));
    case "gelu_new":
      return tanhGelu(x);
    case "gelu_fast":
      return 0.5 * x * (1 + Math.tanh(x * 0.7978845608 * (1 + 0.044715 * x * x)));
    case "quick_gelu":
      return x / (1 + Math.exp(-1.702 * x));
    case "relu":
      return Math.max(0, x);
    default:
      throw new Error(`reference has no ${name}`);
  }
}

/** Row-wise LayerNorm of x [n, H]. */
function layerNorm(x: F64, H: number, w: Float32Array, b: Float32Array, eps: number): F64 {
  const out = new Float64Array(x.length);
  for (let r = 0; r < x.length / H; r++) {
    let mean = 0;
    for (let j = 0; j < H; j++) mean += x[r * H + j] as number;
    mean /= H;
    let v = 0;
    for (let j = 0; j < H; j++) v += ((x[r * H + j] as number) - mean) ** 2;
    const inv = 1 / Math.sqrt(v / H + eps);
    for (let j = 0; j < H; j++)
      out[r * H + j] = ((x[r * H + j] as number) - mean) * inv * (w[j] as number) + (b[j] as number);
  }
  return out;
}

/** x [n, in] @ Wᵀ + b, W [out, in]. */
function linear(x: F64, inF: number, w: Float32Array, b: Float32Array | undefined, outF: number): F64 {
  const n = x.length / inF;
  const out = new Float64Array(n * outF);
  for (let r = 0; r < n; r++)
    for (let o = 0; o < outF; o++) {
      let s = b ? (b[o] as number) : 0;
      for (let i = 0; i < inF; i++) s += (x[r * inF + i] as number) * (w[o * inF + i] as number);
      out[r * outF + o] = s;
    }
  return out;
}

export interface ReferenceOutput {
  lastHiddenState: F64;
  pooledOutput: F64;
  hiddenStates: F64[];
  textEmbeds?: F64;
  clipSkip(k: number): F64;
}

/** CLIPTextTransformer.forward (+ text_projection) in float64. */
export function referenceCLIP(
  c: CLIPTextConfig,
  w: Arrays,
  ids: number[][],
  mask?: number[][],
): ReferenceOutput {
  const W = (k: string) => {
    const t = w[k];
    if (!t) throw new Error(`no weight ${k}`);
    return t.data;
  };
  const B = ids.length;
  const S = ids[0]?.length ?? 0;
  const H = c.hidden_size;
  const heads = c.num_attention_heads;
  const d = H / heads;
  const tok = W("text_model.embeddings.token_embedding.weight");
  const pos = W("text_model.embeddings.position_embedding.weight");
  let h = new Float64Array(B * S * H);
  for (let bi = 0; bi < B; bi++)
    for (let s = 0; s < S; s++)
      for (let j = 0; j < H; j++) {
        const id = ids[bi]?.[s] as number;
        h[(bi * S + s) * H + j] = (tok[id * H + j] as number) + (pos[s * H + j] as number);
      }
  const states = [h];
  for (let l = 0; l < c.num_hidden_layers; l++) {
    const p = `text_model.encoder.layers.${l}`;
    const x = layerNorm(h, H, W(`${p}.layer_norm1.weight`), W(`${p}.layer_norm1.bias`), c.layer_norm_eps);
    const q = linear(x, H, W(`${p}.self_attn.q_proj.weight`), W(`${p}.self_attn.q_proj.bias`), H);
    const k = linear(x, H, W(`${p}.self_attn.k_proj.weight`), W(`${p}.self_attn.k_proj.bias`), H);
    const v = linear(x, H, W(`${p}.self_attn.v_proj.weight`), W(`${p}.self_attn.v_proj.bias`), H);
    const att = new Float64Array(B * S * H);
    const scores = new Float64Array(S);
    for (let bi = 0; bi < B; bi++)
      for (let hd = 0; hd < heads; hd++)
        for (let i = 0; i < S; i++) {
          let max = -Infinity;
          for (let j = 0; j < S; j++) {
            let s = 0;
            for (let e = 0; e < d; e++)
              s +=
                (q[(bi * S + i) * H + hd * d + e] as number) * (k[(bi * S + j) * H + hd * d + e] as number);
            s *= d ** -0.5;
            // float32 semantics of `scores + causal + padding`: one finfo.min absorbs the score, two overflow to -inf.
            const causal = j > i;
            const pad = mask ? mask[bi]?.[j] !== 1 : false;
            if (causal && pad) s = -Infinity;
            else if (causal || pad) s = FLOAT32_MIN;
            scores[j] = s;
            if (s > max) max = s;
          }
          let z = 0;
          for (let j = 0; j < S; j++) {
            const e = Math.exp((scores[j] as number) - max);
            scores[j] = e;
            z += e;
          }
          for (let e = 0; e < d; e++) {
            let acc = 0;
            for (let j = 0; j < S; j++)
              acc += ((scores[j] as number) / z) * (v[(bi * S + j) * H + hd * d + e] as number);
            att[(bi * S + i) * H + hd * d + e] = acc;
          }
        }
    const o = linear(att, H, W(`${p}.self_attn.out_proj.weight`), W(`${p}.self_attn.out_proj.bias`), H);
    const h1 = h.map((val, idx) => val + (o[idx] as number));
    const x2 = layerNorm(h1, H, W(`${p}.layer_norm2.weight`), W(`${p}.layer_norm2.bias`), c.layer_norm_eps);
    const f1 = linear(x2, H, W(`${p}.mlp.fc1.weight`), W(`${p}.mlp.fc1.bias`), c.intermediate_size).map(
      (val) => act(c.hidden_act, val),
    );
    const f2 = linear(f1, c.intermediate_size, W(`${p}.mlp.fc2.weight`), W(`${p}.mlp.fc2.bias`), H);
    h = h1.map((val, idx) => val + (f2[idx] as number));
    states.push(h);
  }
  const finalLN = (x: F64) =>
    layerNorm(
      x,
      H,
      W("text_model.final_layer_norm.weight"),
      W("text_model.final_layer_norm.bias"),
      c.layer_norm_eps,
    );
  const last = finalLN(h);
  const pooled = new Float64Array(B * H);
  for (let bi = 0; bi < B; bi++) {
    const row = ids[bi] as number[];
    const score = c.eos_token_id === 2 ? row : row.map((t) => (t === c.eos_token_id ? 1 : 0));
    const at = score.indexOf(Math.max(...score)); // first maximum, like torch.argmax
    pooled.set(last.subarray((bi * S + at) * H, (bi * S + at + 1) * H), bi * H);
  }
  const out: ReferenceOutput = {
    lastHiddenState: last,
    pooledOutput: pooled,
    hiddenStates: states,
    clipSkip: (k) => finalLN(states[states.length - 1 - k] as F64),
  };
  if (c.architectures?.[0] === "CLIPTextModelWithProjection") {
    out.textEmbeds = linear(pooled, H, W("text_projection.weight"), undefined, c.projection_dim);
  }
  return out;
}
