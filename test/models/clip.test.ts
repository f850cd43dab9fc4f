/**
 * CLIPTextModel: golden cases recorded from transformers 4.35 (tiny and twin text encoders), a float64 reference of
 * modeling_clip.py on random small configs (activations, sequence lengths, padding masks, projection), config
 * errors and strict weight binding.
 */
import assert from "node:assert/strict";
import { cpSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import * as ort from "onnxruntime-node";
import { SafetensorsFile } from "../../src/io/safetensors.js";
import { type TensorToWrite, writeSafetensors } from "../../src/io/safetensors_writer.js";
import { CLIPTextModel } from "../../src/models/clip/clip_text_model.js";
import { CLIPConfigError, type CLIPTextConfig, parseCLIPTextConfig } from "../../src/models/clip/config.js";
import { WeightError, WeightSet } from "../../src/onnx/weights.js";
import { RuntimeHost } from "../../src/runtime/index.js";
import { assertClose, FIXTURES, loadGroup, SHARED_FIXTURES } from "../helpers/fixtures.js";
import { runGraph } from "../helpers/ort.js";
import { type F64, randomConfig, referenceCLIP } from "./clip_reference.js";

const TINY = join(FIXTURES, "models/tiny-upscaler/text_encoder");
const TWIN = SHARED_FIXTURES ? join(SHARED_FIXTURES, "models/twin-upscaler/text_encoder") : undefined;

const host = new RuntimeHost();
after(() => host.close());

const ids64 = (rows: number[][]) =>
  new ort.Tensor("int64", BigInt64Array.from(rows.flat().map(BigInt)), [rows.length, rows[0]?.length ?? 0]);

/** Concatenates equally sized arrays (hidden states → the fixture's stacked layout). */
function stack(parts: (Float32Array | undefined)[]): Float32Array {
  const n = parts[0]?.length ?? 0;
  const out = new Float32Array(n * parts.length);
  parts.forEach((p, i) => {
    if (!p || p.length !== n) throw new Error(`hidden state ${i} is missing or has another size`);
    out.set(p, i * n);
  });
  return out;
}

// ---------- golden cases ----------

for (const [model, dir] of [
  ["tiny", TINY],
  ["twin", TWIN],
] as const) {
  describe(`${model} text encoder (golden)`, {
    skip: dir ? false : "twin model needs ../shared/fixtures",
  }, () => {
    const g = loadGroup("components");
    const role = (c: ReturnType<typeof g.get>, r: string) => {
      const key = c.tensors[r];
      if (!key) throw new Error(`${c.name}: no ${r}`);
      return { data: g.tensors.getTyped(key), dims: g.tensors.info(key).shape };
    };
    const load = () => CLIPTextModel.fromPretrained(dir as string, { runtime: host });

    test(`${model}_text_encoder: graph with hidden states and clip_skip 1`, async () => {
      const c = g.get(`${model}_text_encoder`);
      const te = await load();
      assert.equal(te.numHiddenLayers, c.params.num_hidden_layers);
      const ids = role(c, "input_ids");
      const b = te.buildGraph({ outputHiddenStates: true, clipSkip: 1 });
      const out = await runGraph(b, {
        input_ids: new ort.Tensor("int64", ids.data as BigInt64Array, ids.dims),
      });
      for (const r of ["last_hidden_state", "pooler_output"]) {
        assertClose(
          out[r]?.data as Float32Array,
          role(c, r).data as Float32Array,
          c.tolerance,
          `${c.name} ${r}`,
        );
      }
      const hs = role(c, "hidden_states");
      const stacked = stack(
        Array.from(
          { length: te.numHiddenLayers + 1 },
          (_, i) => out[`hidden_states_${i}`]?.data as Float32Array,
        ),
      );
      assert.deepEqual(hs.dims, [te.numHiddenLayers + 1, ...(out.hidden_states_0?.dims ?? [])]);
      assertClose(stacked, hs.data as Float32Array, c.tolerance, `${c.name} hidden_states`);
      assertClose(
        out.clip_skip?.data as Float32Array,
        role(c, "clip_skip1").data as Float32Array,
        c.tolerance,
        `${c.name} clip_skip1`,
      );
    });

    test(`${model}_text_encoder: forward through the runtime host`, async () => {
      const c = g.get(`${model}_text_encoder`);
      const te = await load();
      const ids = role(c, "input_ids");
      const out = await te.forward({
        inputIds: ids.data as BigInt64Array,
        dims: ids.dims,
        outputHiddenStates: true,
        clipSkip: 1,
      });
      assertClose(
        out.lastHiddenState.data as Float32Array,
        role(c, "last_hidden_state").data as Float32Array,
        c.tolerance,
        "last_hidden_state",
      );
      assertClose(
        out.poolerOutput.data as Float32Array,
        role(c, "pooler_output").data as Float32Array,
        c.tolerance,
        "pooler_output",
      );
      const hs = out.hiddenStates ?? [];
      assert.equal(hs.length, te.numHiddenLayers + 1);
      const stacked = stack(hs.map((t) => t.data as Float32Array));
      assertClose(stacked, role(c, "hidden_states").data as Float32Array, c.tolerance, "hidden_states");
      assertClose(
        out.clipSkipHiddenState?.data as Float32Array,
        role(c, "clip_skip1").data as Float32Array,
        c.tolerance,
        "clip_skip1",
      );
      // clip_skip 0 is the last hidden state itself.
      const skip0 = await te.forward({ inputIds: ids.data as BigInt64Array, dims: ids.dims, clipSkip: 0 });
      assert.deepEqual(skip0.clipSkipHiddenState?.data, skip0.lastHiddenState.data);
      assert.deepEqual(skip0.lastHiddenState.data, out.lastHiddenState.data);
      await te.release();
    });

    test(`${model}_text_encoder_attention_mask: graph and forward`, async () => {
      const c = g.get(`${model}_text_encoder_attention_mask`);
      const te = await load();
      const ids = role(c, "input_ids");
      const mask = role(c, "attention_mask");
      const b = te.buildGraph({ attentionMask: true });
      const out = await runGraph(b, {
        input_ids: new ort.Tensor("int64", ids.data as BigInt64Array, ids.dims),
        attention_mask: new ort.Tensor("int64", mask.data as BigInt64Array, mask.dims),
      });
      for (const r of ["last_hidden_state", "pooler_output"]) {
        assertClose(
          out[r]?.data as Float32Array,
          role(c, r).data as Float32Array,
          c.tolerance,
          `${c.name} ${r}`,
        );
      }
      const fwd = await te.forward({
        inputIds: ids.data as BigInt64Array,
        attentionMask: mask.data as BigInt64Array,
        dims: ids.dims,
      });
      assertClose(
        fwd.lastHiddenState.data as Float32Array,
        role(c, "last_hidden_state").data as Float32Array,
        c.tolerance,
        "forward last_hidden_state",
      );
      assertClose(
        fwd.poolerOutput.data as Float32Array,
        role(c, "pooler_output").data as Float32Array,
        c.tolerance,
        "forward pooler_output",
      );
      await te.release();
    });
  });
}

// ---------- float64 reference on random configs ----------

describe("CLIPTextModel vs a float64 reference of modeling_clip.py", () => {
  const cases: { name: string; over: Partial<CLIPTextConfig>; ids: number[][]; mask?: number[][] }[] = [
    {
      name: "gelu, first-eos pooling, eos repeated as padding",
      over: { hidden_act: "gelu", eos_token_id: 9, bos_token_id: 8, pad_token_id: 9 },
      ids: [
        [8, 3, 4, 9, 9, 9, 9],
        [8, 9, 9, 9, 9, 9, 9],
      ],
    },
    {
      name: "quick_gelu (default), legacy eos 2 → argmax(input_ids), padding mask",
      over: { eos_token_id: 2, bos_token_id: 0, pad_token_id: 1 },
      ids: [
        [0, 17, 5, 2, 1, 1],
        [0, 2, 1, 1, 1, 1],
        [0, 30, 31, 12, 4, 2],
      ],
      mask: [
        [1, 1, 1, 1, 0, 0],
        [1, 1, 0, 0, 0, 0],
        [1, 1, 1, 1, 1, 1],
      ],
    },
    {
      name: "gelu_new, with projection, left padding (fully masked rows) and non-0/1 mask values",
      over: {
        hidden_act: "gelu_new",
        architectures: ["CLIPTextModelWithProjection"],
        num_attention_heads: 3,
      },
      ids: [
        [1, 1, 6, 7, 2],
        [6, 40, 2, 1, 1],
      ],
      mask: [
        [0, 0, 1, 1, 1],
        [1, 2, 1, 0, 0],
      ],
    },
    {
      name: "gelu_fast, no eos present (pooled row 0), sequence of 1",
      over: { hidden_act: "gelu_fast", eos_token_id: 47 },
      ids: [[5], [6]],
    },
    {
      name: "relu, zero layers",
      over: { hidden_act: "relu", num_hidden_layers: 0 },
      ids: [[3, 47, 4]],
    },
  ];
  for (const [i, tc] of cases.entries()) {
    test(tc.name, async () => {
      const { config, weights, arrays } = randomConfig(tc.over, 100 + i);
      const te = new CLIPTextModel(config, weights, { runtime: host });
      const layers = config.num_hidden_layers;
      const clipSkip = Math.min(1, layers);
      const b = te.buildGraph({ attentionMask: !!tc.mask, outputHiddenStates: true, clipSkip });
      const feeds: Record<string, ort.Tensor> = { input_ids: ids64(tc.ids) };
      if (tc.mask) feeds.attention_mask = ids64(tc.mask);
      const out = await runGraph(b, feeds);
      const ref = referenceCLIP(config, arrays, tc.ids, tc.mask);
      const tol = { atol: 2e-5, rtol: 2e-5 };
      const close = (a: ort.Tensor | undefined, e: F64, label: string) =>
        assertClose(a?.data as Float32Array, e, tol, label);
      close(out.last_hidden_state, ref.lastHiddenState, "last_hidden_state");
      close(out.pooler_output, ref.pooledOutput, "pooler_output");
      for (const [k, h] of ref.hiddenStates.entries())
        close(out[`hidden_states_${k}`], h, `hidden_states_${k}`);
      close(out.clip_skip, ref.clipSkip(clipSkip), "clip_skip");
      if (ref.textEmbeds) close(out.text_embeds, ref.textEmbeds, "text_embeds");
      else assert.equal(out.text_embeds, undefined);
      // The runtime path (always a mask input: ones when absent) gives the same numbers.
      const fwd = await te.forward({ inputIds: tc.ids, attentionMask: tc.mask, outputHiddenStates: true });
      assert.deepEqual(fwd.lastHiddenState.data, out.last_hidden_state?.data);
      assert.deepEqual(fwd.poolerOutput.data, out.pooler_output?.data);
      assert.deepEqual(fwd.textEmbeds?.data, out.text_embeds?.data);
      assert.equal(fwd.hiddenStates?.length, layers + 1);
      await te.release();
    });
  }

  test("an all-ones attention mask is bit-identical to no mask", async () => {
    const { config, weights } = randomConfig({}, 7);
    const te = new CLIPTextModel(config, weights);
    const rows = [
      [49406, 3, 4, 49407, 0],
      [49406, 49407, 0, 0, 0],
    ].map((r) => r.map((v) => v % config.vocab_size));
    const a = await runGraph(te.buildGraph(), { input_ids: ids64(rows) });
    const m = await runGraph(te.buildGraph({ attentionMask: true }), {
      input_ids: ids64(rows),
      attention_mask: ids64(rows.map((r) => r.map(() => 1))),
    });
    assert.deepEqual(m.last_hidden_state?.data, a.last_hidden_state?.data);
    assert.deepEqual(m.pooler_output?.data, a.pooler_output?.data);
  });
});

// ---------- inputs ----------

describe("CLIPTextModel inputs", () => {
  test("rejects bad ids, lengths and masks with clear errors", async () => {
    const te = await CLIPTextModel.fromPretrained(TINY, { runtime: host });
    await assert.rejects(
      te.forward({ inputIds: [[49406, 49408]] }),
      /token id 49408 at \[0\]\[1\] is outside the vocabulary/,
    );
    await assert.rejects(te.forward({ inputIds: [[1, -1]] }), /token id -1/);
    await assert.rejects(
      te.forward({ inputIds: [Array(78).fill(0)] }),
      /sequence length 78 .* max_position_embeddings 77/,
    );
    await assert.rejects(te.forward({ inputIds: [[1, 2], [3]] }), /row 1 has 1 entries/);
    await assert.rejects(te.forward({ inputIds: new BigInt64Array(4) }), /needs dims/);
    await assert.rejects(te.forward({ inputIds: [[1, 2]], attentionMask: [[1, 1, 1]] }), /attention_mask/);
    await assert.rejects(
      te.forward({ inputIds: [[1, 2]], clipSkip: 6 }),
      /clip_skip must be an integer in \[0, 5\]/,
    );
    assert.throws(() => te.buildGraph({ clipSkip: -1 }), /clip_skip/);
    const ok = await te.forward({ inputIds: [[49406, 320, 49407]] });
    assert.deepEqual(ok.lastHiddenState.dims, [1, 3, 32]);
    assert.deepEqual(ok.poolerOutput.dims, [1, 32]);
    await te.release();
  });
});

// ---------- config ----------

describe("CLIPTextConfig", () => {
  const base = {
    architectures: ["CLIPTextModel"],
    model_type: "clip_text_model",
    hidden_size: 32,
    num_attention_heads: 4,
  };

  test("fills transformers 4.35 defaults and keeps extra keys", () => {
    const c = parseCLIPTextConfig({ torch_dtype: "float32" });
    assert.equal(c.hidden_act, "quick_gelu");
    assert.equal(c.vocab_size, 49408);
    assert.equal(c.hidden_size, 512);
    assert.equal(c.intermediate_size, 2048);
    assert.equal(c.num_hidden_layers, 12);
    assert.equal(c.num_attention_heads, 8);
    assert.equal(c.max_position_embeddings, 77);
    assert.equal(c.layer_norm_eps, 1e-5);
    assert.equal(c.projection_dim, 512);
    assert.deepEqual([c.pad_token_id, c.bos_token_id, c.eos_token_id], [1, 49406, 49407]);
    assert.equal(c.torch_dtype, "float32");
  });

  test("unsupported values are errors naming the key and value", () => {
    const bad: [Record<string, unknown>, RegExp][] = [
      [{ architectures: ["CLIPModel"] }, /architectures \["CLIPModel"\] is not supported/],
      [{ model_type: "clip" }, /model_type "clip" is not supported.*text_config/],
      [{ hidden_act: "laplace" }, /hidden_act "laplace" is not supported/],
      [{ num_attention_heads: 5 }, /num_attention_heads 5 must divide hidden_size 32/],
      [{ hidden_size: 0 }, /hidden_size must be an integer >= 1, got 0/],
      [{ layer_norm_eps: 0 }, /layer_norm_eps must be a number > 0/],
      [{ eos_token_id: null }, /eos_token_id must be an integer/],
      [{ num_hidden_layers: 1.5 }, /num_hidden_layers must be an integer >= 0, got 1.5/],
    ];
    for (const [over, re] of bad) {
      assert.throws(
        () => parseCLIPTextConfig({ ...base, ...over }),
        (e: Error) => e instanceof CLIPConfigError && re.test(e.message),
        JSON.stringify(over),
      );
    }
  });
});

// ---------- strict weight binding ----------

describe("CLIPTextModel weight binding", () => {
  const tmp = mkdtempSync(join(tmpdir(), "sdx4-clip-"));
  after(() => rmSync(tmp, { recursive: true, force: true }));

  /** A copy of the tiny text encoder whose weights are edited by `edit`. */
  function variantDir(name: string, edit: (t: Record<string, TensorToWrite>) => void): string {
    const dir = join(tmp, name);
    cpSync(TINY, dir, { recursive: true });
    const src = SafetensorsFile.open(join(TINY, "model.safetensors"));
    const tensors: Record<string, TensorToWrite> = {};
    for (const k of src.keys())
      tensors[k] = { dtype: "F32", shape: src.info(k).shape, data: src.getFloat32(k) };
    src.close();
    edit(tensors);
    writeSafetensors(join(dir, "model.safetensors"), tensors, { format: "pt" });
    return dir;
  }

  test("missing, extra and mis-shaped tensors are listed in one error", async () => {
    const dir = variantDir("broken", (t) => {
      delete t["text_model.encoder.layers.2.mlp.fc1.bias"];
      t["text_model.encoder.layers.9.mlp.fc1.bias"] = {
        dtype: "F32",
        shape: [37],
        data: new Float32Array(37),
      };
      t["text_model.final_layer_norm.weight"] = { dtype: "F32", shape: [33], data: new Float32Array(33) };
    });
    await assert.rejects(CLIPTextModel.fromPretrained(dir), (e: Error) => {
      assert.ok(e instanceof WeightError, e.message);
      assert.match(e.message, /missing keys \(1\):\s+text_model\.encoder\.layers\.2\.mlp\.fc1\.bias/);
      assert.match(
        e.message,
        /shape mismatches \(1\):\s+text_model\.final_layer_norm\.weight: checkpoint \[33\] vs model \[32\]/,
      );
      assert.match(e.message, /unexpected keys \(1\):\s+text_model\.encoder\.layers\.9\.mlp\.fc1\.bias/);
      return true;
    });
  });

  test("an old checkpoint's position_ids buffer is ignored; fp16 weights load", async () => {
    const dir = variantDir("legacy", (t) => {
      t["text_model.embeddings.position_ids"] = {
        dtype: "I64",
        shape: [1, 77],
        data: BigInt64Array.from({ length: 77 }, (_, i) => BigInt(i)),
      };
      for (const v of Object.values(t)) if (v.dtype === "F32") v.dtype = "F16";
    });
    // position_ids is I64: WeightSet refuses non-float tensors, so this checks that such a buffer is not fatal.
    const te = await CLIPTextModel.fromPretrained(dir, { runtime: host }).catch((e: Error) => e);
    assert.ok(te instanceof CLIPTextModel, te instanceof Error ? te.message : "");
    const out = await te.forward({ inputIds: [[49406, 320, 49407]] });
    assert.deepEqual(out.lastHiddenState.dims, [1, 3, 32]);
    await te.release();
  });

  test("CLIPTextModelWithProjection needs text_projection.weight", () => {
    const { config, arrays } = randomConfig({}, 3);
    const proj = { ...config, architectures: ["CLIPTextModelWithProjection" as const] };
    assert.throws(
      () => new CLIPTextModel(proj, WeightSet.fromArrays(arrays)),
      /missing keys \(1\):\s+text_projection\.weight/,
    );
  });
});
