/**
 * UNet2DConditionModel loading and configuration: config keys / defaults / unsupported values (clear errors naming
 * the key), strict weight binding of a tmp copy of the tiny model (missing, unexpected and mis-shaped tensors in one
 * error), the fp16 variant, attention-slice validation, and equivalences that exercise config paths the fixtures do
 * not (conv proj_in/proj_out, center_input_sample, class_embed_type "identity" / "timestep"-free paths).
 */
import assert from "node:assert/strict";
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import * as ort from "onnxruntime-node";
import { readJson } from "../../src/io/model_files.js";
import { SafetensorsFile } from "../../src/io/safetensors.js";
import { parseUNet2DConditionConfig, UNetConfigError, unetLayout } from "../../src/models/unet/config.js";
import { UNet2DConditionModel } from "../../src/models/unet/unet_2d_condition.js";
import { WeightError, WeightSet } from "../../src/onnx/weights.js";
import { RuntimeHost } from "../../src/runtime/worker_host.js";
import { assertClose, FIXTURES, loadGroup, tensorOf } from "../helpers/fixtures.js";
import { runGraph } from "../helpers/ort.js";

const TINY = join(FIXTURES, "models/tiny-upscaler/unet");
const tinyConfig = readJson(join(TINY, "config.json"));
const group = loadGroup("components");
const host = new RuntimeHost({ inProcess: true });
after(() => host.close());

type Arrays = Record<string, { shape: number[]; data: Float32Array }>;

function tinyWeights(): Arrays {
  const st = SafetensorsFile.open(join(TINY, "diffusion_pytorch_model.safetensors"));
  const out: Arrays = {};
  for (const k of st.keys()) out[k] = { shape: [...st.info(k).shape], data: st.getFloat32(k) };
  st.close();
  return out;
}

/** float32 → float16 bits by truncation (any fp16 values do: the test compares with the same values in F32). */
function toHalfBits(v: number): number {
  const u = new Uint32Array(new Float32Array([v]).buffer)[0] as number;
  const sign = (u >>> 16) & 0x8000;
  const e = ((u >>> 23) & 0xff) - 127 + 15;
  if (e <= 0) return sign;
  if (e >= 0x1f) return sign | 0x7bff;
  return sign | (e << 10) | ((u & 0x7fffff) >>> 13);
}

/** Minimal safetensors writer (sorted names, F32 or F16). */
function writeSafetensors(path: string, tensors: Arrays, dtype: "F32" | "F16"): void {
  const names = Object.keys(tensors).sort();
  const header: Record<string, unknown> = {};
  const blobs: Buffer[] = [];
  let off = 0;
  for (const k of names) {
    const t = tensors[k] as Arrays[string];
    const bytes =
      dtype === "F32"
        ? Buffer.from(Float32Array.from(t.data).buffer)
        : Buffer.from(Uint16Array.from(t.data, toHalfBits).buffer);
    header[k] = { dtype, shape: t.shape, data_offsets: [off, off + bytes.length] };
    blobs.push(bytes);
    off += bytes.length;
  }
  let json = JSON.stringify(header);
  while (json.length % 8) json += " ";
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  writeFileSync(path, Buffer.concat([len, Buffer.from(json), ...blobs]));
}

function withTmp(fn: (dir: string) => Promise<void> | void): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "sdx4-unet-"));
  return Promise.resolve(fn(dir)).finally(() => rmSync(dir, { recursive: true, force: true }));
}

describe("UNet2DConditionModel config", () => {
  test("diffusers defaults are filled and snake_case keys kept", () => {
    const c = parseUNet2DConditionConfig({});
    assert.deepEqual(c.block_out_channels, [320, 640, 1280, 1280]);
    assert.equal(c.flip_sin_to_cos, true);
    assert.equal(c.norm_eps, 1e-5);
    assert.equal(c.mid_block_type, "UNetMidBlock2DCrossAttn");
    const t = parseUNet2DConditionConfig(tinyConfig);
    assert.equal(t.num_class_embeds, 100);
    assert.equal(t._class_name, "UNet2DConditionModel");
    const L = unetLayout(t);
    assert.equal(L.timeEmbedDim, 128);
    assert.equal(L.numUpsamplers, 2);
    assert.deepEqual(L.numAttentionHeads, [8, 8, 8]);
    assert.deepEqual(L.onlyCrossAttention, [true, true, false]);
  });

  const bad: [Record<string, unknown>, RegExp][] = [
    [{ addition_embed_type: "text" }, /addition_embed_type "text" is not supported/],
    [{ time_embedding_type: "fourier" }, /time_embedding_type "fourier" is not supported/],
    [{ encoder_hid_dim: 64 }, /encoder_hid_dim 64 is not supported/],
    [{ time_cond_proj_dim: 8 }, /time_cond_proj_dim 8 is not supported/],
    [{ dual_cross_attention: true }, /dual_cross_attention true is not supported/],
    [{ attention_type: "gated" }, /attention_type "gated" is not supported/],
    [{ class_embed_type: "learned" }, /class_embed_type "learned" is not supported/],
    [
      { class_embed_type: "projection" },
      /class_embed_type "projection" requires projection_class_embeddings_input_dim/,
    ],
    [
      { mid_block_type: "UNetMidBlock2DSimpleCrossAttn" },
      /mid_block_type "UNetMidBlock2DSimpleCrossAttn" is not supported/,
    ],
    [{ resnet_time_scale_shift: "spatial" }, /resnet_time_scale_shift "spatial" is not supported/],
    [{ num_attention_heads: 8 }, /num_attention_heads 8: diffusers 0.23 refuses it/],
    [{ act_fn: "tanh" }, /act_fn "tanh" is not a supported activation/],
    [{ norm_num_groups: null }, /norm_num_groups null is not supported/],
    [
      { down_block_types: ["DownBlock2D", "AttnDownBlock2D", "CrossAttnDownBlock2D"] },
      /down_block_types\[1\] "AttnDownBlock2D"/,
    ],
    [
      { up_block_types: ["CrossAttnUpBlock2D", "SimpleCrossAttnUpBlock2D", "UpBlock2D"] },
      /up_block_types\[1\]/,
    ],
    [{ up_block_types: ["UpBlock2D"] }, /up_block_types must have as many entries as down_block_types/],
    [{ block_out_channels: [32, 64] }, /block_out_channels must have one entry per down block \(3\)/],
    [{ only_cross_attention: [true, false] }, /only_cross_attention must have one entry per down block/],
    [{ attention_head_dim: "8" }, /attention_head_dim must be a positive integer or a list/],
    [{ transformer_layers_per_block: [[1, 2], 1, 1] }, /needs reverse_transformer_layers_per_block/],
    [{ conv_in_kernel: 2 }, /conv_in_kernel must be odd/],
    [{ in_channels: 0 }, /in_channels must be an integer >= 1/],
  ];
  for (const [patch, re] of bad) {
    test(`${JSON.stringify(patch)} is a clear error`, () => {
      assert.throws(
        () => new UNet2DConditionModel({ ...tinyConfig, ...patch }),
        (e: unknown) => e instanceof UNetConfigError && re.test(e.message),
      );
    });
  }

  test("a model without weights has no graph", () => {
    const u = new UNet2DConditionModel(tinyConfig);
    assert.throws(() => u.buildGraph(), /no weights/);
  });

  test("attention slice sizes are checked (diffusers' set_attention_slice)", () => {
    const u = new UNet2DConditionModel(tinyConfig);
    const n = u.attentionModules().length;
    assert.equal(n, 2 * (2 * 2 + 2 * 3 + 1)); // transformers (2 down × 2, 2 up × 3, mid 1) × (attn1, attn2)
    assert.throws(() => u.setAttentionSlice(9), /size 9 has to be smaller or equal to 8/);
    assert.throws(
      () => u.setAttentionSlice([1, 2]),
      new RegExp(`2 slice sizes given, but the model has ${n}`),
    );
    assert.throws(() => u.setAttentionSlice(0), /must be a positive integer/);
    u.setAttentionSlice(Array.from({ length: n }, (_, i) => (i % 2 ? null : 2)));
    u.setAttentionSlice("max");
    u.setAttentionSlice(null);
  });
});

describe("UNet2DConditionModel weights", () => {
  test("strict binding: missing, unexpected and mis-shaped tensors in one error", () =>
    withTmp(async (dir) => {
      const w = tinyWeights();
      delete w["up_blocks.0.resnets.1.conv1.bias"];
      w["mid_block.extra.weight"] = { shape: [2], data: new Float32Array(2) };
      w["conv_out.bias"] = { shape: [5], data: new Float32Array(5) };
      copyFileSync(join(TINY, "config.json"), join(dir, "config.json"));
      writeSafetensors(join(dir, "diffusion_pytorch_model.safetensors"), w, "F32");
      await assert.rejects(UNet2DConditionModel.fromPretrained(dir), (e: unknown) => {
        assert.ok(e instanceof WeightError);
        assert.match(e.message, /missing keys \(1\):\s+up_blocks\.0\.resnets\.1\.conv1\.bias/);
        assert.match(e.message, /shape mismatches \(1\):\s+conv_out\.bias: checkpoint \[5\] vs model \[4\]/);
        assert.match(e.message, /unexpected keys \(1\):\s+mid_block\.extra\.weight/);
        return true;
      });
    }));

  test("a config that does not match the checkpoint is a binding error", async () => {
    await assert.rejects(
      async () =>
        new UNet2DConditionModel(
          { ...tinyConfig, num_class_embeds: 10 },
          { weights: WeightSet.fromArrays(tinyWeights()) },
        ),
      /class_embedding\.weight: checkpoint \[100,128\] vs model \[10,128\]/,
    );
  });

  test("fp16 variant: weights cast in the graph equal the same values stored as float32", () =>
    withTmp(async (dir) => {
      const w = tinyWeights();
      copyFileSync(join(TINY, "config.json"), join(dir, "config.json"));
      writeSafetensors(join(dir, "diffusion_pytorch_model.fp16.safetensors"), w, "F16");
      const st = SafetensorsFile.open(join(dir, "diffusion_pytorch_model.fp16.safetensors"));
      const asF32: Arrays = {};
      for (const k of st.keys()) asF32[k] = { shape: [...st.info(k).shape], data: st.getFloat32(k) };
      st.close();
      await assert.rejects(UNet2DConditionModel.fromPretrained(dir), /pass a variant\?/);
      const u16 = await UNet2DConditionModel.fromPretrained(dir, { variant: "fp16", runtime: host });
      const u32 = new UNet2DConditionModel(tinyConfig, {
        weights: WeightSet.fromArrays(asF32),
        runtime: host,
      });
      const c = group.get("tiny_unet_basic");
      const inputs = {
        sample: { type: "float32" as const, dims: [1, 7, 32, 32], data: tensorOf(group, c, "sample").data },
        timestep: 667,
        encoderHiddenStates: {
          type: "float32" as const,
          dims: [1, 77, 32],
          data: tensorOf(group, c, "encoder_hidden_states").data,
        },
        classLabels: 20,
      };
      try {
        const a = await u16.forward(inputs);
        const b = await u32.forward(inputs);
        assertClose(
          a.data as Float32Array,
          b.data as Float32Array,
          { atol: 1e-6, rtol: 1e-6 },
          "fp16 variant",
        );
      } finally {
        u16.release();
        u32.release();
      }
    }));
});

describe("config paths by equivalence (tiny weights, basic case)", () => {
  const c = group.get("tiny_unet_basic");
  const sample = tensorOf(group, c, "sample");
  const ehs = tensorOf(group, c, "encoder_hidden_states");
  const want = tensorOf(group, c, "out");

  async function runModel(
    config: Record<string, unknown>,
    w: Arrays,
    samp: Float32Array,
    labels?: ort.Tensor,
  ) {
    const u = new UNet2DConditionModel(config, { weights: WeightSet.fromArrays(w) });
    const feeds: Record<string, ort.Tensor> = {
      sample: new ort.Tensor("float32", samp, sample.shape),
      timestep: new ort.Tensor("float32", new Float32Array([667]), [1]),
      encoder_hidden_states: new ort.Tensor("float32", ehs.data, ehs.shape),
    };
    feeds.class_labels = labels ?? new ort.Tensor("int64", new BigInt64Array([20n]), [1]);
    const out = await runGraph(u.buildGraph(), feeds);
    return out.out_sample?.data as Float32Array;
  }

  test("use_linear_projection false (1x1 conv proj_in / proj_out) with the same weights as 1x1 kernels", async () => {
    const w = tinyWeights();
    for (const [k, t] of Object.entries(w)) {
      if (/\.attentions\.\d+\.proj_(in|out)\.weight$/.test(k))
        w[k] = { shape: [...t.shape, 1, 1], data: t.data };
    }
    const out = await runModel({ ...tinyConfig, use_linear_projection: false }, w, sample.data);
    assertClose(out, want.data, c.tolerance, "conv projections");
  });

  test("center_input_sample on (sample+1)/2 equals the basic case", async () => {
    const shifted = sample.data.map((v) => (v + 1) / 2);
    const out = await runModel({ ...tinyConfig, center_input_sample: true }, tinyWeights(), shifted);
    assertClose(out, want.data, c.tolerance, "center_input_sample");
  });

  test('class_embed_type "identity" fed the embedding row of the label equals the basic case', async () => {
    const w = tinyWeights();
    const table = w["class_embedding.weight"] as Arrays[string];
    delete w["class_embedding.weight"];
    const row = table.data.slice(20 * 128, 21 * 128);
    const out = await runModel(
      { ...tinyConfig, class_embed_type: "identity" },
      w,
      sample.data,
      new ort.Tensor("float32", row, [1, 128]),
    );
    assertClose(out, want.data, c.tolerance, "identity class embedding");
  });
});

describe("other configs of the family build and run (random weights; shapes and finiteness)", () => {
  function randomWeights(u: UNet2DConditionModel): Arrays {
    const out: Arrays = {};
    let s = 12345;
    for (const p of u.store.params.values()) {
      const n = p.shape.reduce((a, b) => a * b, 1);
      const data = new Float32Array(n);
      const fan = p.shape.length > 1 ? p.shape.slice(1).reduce((a, b) => a * b, 1) : 1;
      for (let i = 0; i < n; i++) {
        s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
        data[i] = ((s / 2 ** 32 - 0.5) * 2) / Math.sqrt(fan);
      }
      out[p.key] = { shape: [...p.shape], data };
    }
    return out;
  }

  const variants: [string, Record<string, unknown>, (batch: number) => ort.Tensor | undefined][] = [
    [
      "transformer_layers_per_block 2, UNetMidBlock2D, attention_head_dim [4, 8, 8], conv kernels 1 / 5, scale_shift",
      {
        resnet_time_scale_shift: "scale_shift",
        transformer_layers_per_block: 2,
        mid_block_type: "UNetMidBlock2D",
        attention_head_dim: [4, 8, 8],
        conv_in_kernel: 1,
        conv_out_kernel: 5,
        only_cross_attention: false,
      },
      (n) =>
        new ort.Tensor(
          "int64",
          BigInt64Array.from({ length: n }, (_, i) => BigInt(i)),
          [n],
        ),
    ],
    [
      'class_embed_type "timestep", class_embeddings_concat, time_embedding_act_fn, timestep_post_act, mid_block_type null',
      {
        class_embed_type: "timestep",
        class_embeddings_concat: true,
        time_embedding_act_fn: "silu",
        timestep_post_act: "gelu",
        mid_block_type: null,
        time_embedding_dim: 64,
      },
      (n) =>
        new ort.Tensor(
          "float32",
          Float32Array.from({ length: n }, (_, i) => 10 * i + 3),
          [n],
        ),
    ],
    [
      'class_embed_type "projection" (float [batch, 6] labels)',
      { class_embed_type: "projection", projection_class_embeddings_input_dim: 6 },
      (n) =>
        new ort.Tensor(
          "float32",
          Float32Array.from({ length: n * 6 }, (_, i) => i / 10),
          [n, 6],
        ),
    ],
    [
      'class_embed_type "simple_projection" (float [batch, 3] labels)',
      { class_embed_type: "simple_projection", projection_class_embeddings_input_dim: 3 },
      (n) =>
        new ort.Tensor(
          "float32",
          Float32Array.from({ length: n * 3 }, (_, i) => i / 10),
          [n, 3],
        ),
    ],
    ["num_class_embeds null: no class_labels input", { num_class_embeds: null }, () => undefined],
  ];
  for (const [name, patch, labels] of variants) {
    test(name, async () => {
      const config = { ...tinyConfig, ...patch };
      const shapeOnly = new UNet2DConditionModel(config);
      const u = new UNet2DConditionModel(config, { weights: WeightSet.fromArrays(randomWeights(shapeOnly)) });
      const [B, H, W] = [2, 9, 13];
      const feeds: Record<string, ort.Tensor> = {
        sample: new ort.Tensor(
          "float32",
          Float32Array.from({ length: B * 7 * H * W }, (_, i) => Math.sin(i)),
          [B, 7, H, W],
        ),
        timestep: new ort.Tensor("float32", new Float32Array([999, 1]), [B]),
        encoder_hidden_states: new ort.Tensor(
          "float32",
          Float32Array.from({ length: B * 5 * 32 }, (_, i) => Math.cos(i)),
          [B, 5, 32],
        ),
      };
      const l = labels(B);
      if (l) feeds.class_labels = l;
      const out = (await runGraph(u.buildGraph(), feeds)).out_sample as ort.Tensor;
      assert.deepEqual(out.dims, [B, 4, H, W]);
      assert.ok((out.data as Float32Array).every(Number.isFinite));
    });
  }
});
