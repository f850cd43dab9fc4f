/**
 * AutoencoderKL against the golden fixtures recorded with diffusers 0.23.0 (test/fixtures/components, cases
 * m_vae_*: decode, batch-2 non-square decode, encode, tiled decode square / non-square, tiled encode), for the
 * tiny model and (when ../shared/fixtures is present) the twin; plus config errors, strict weight binding,
 * deprecated attention names and the graph variants (memory-efficient attention, slicing).
 */
import assert from "node:assert/strict";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import * as ort from "onnxruntime-node";
import { SafetensorsFile } from "../../src/io/safetensors.js";
import { AutoencoderKL } from "../../src/models/vae/autoencoder_kl.js";
import { parseAutoencoderKLConfig, VaeConfigError } from "../../src/models/vae/config.js";
import { DiagonalGaussianDistribution } from "../../src/models/vae/distribution.js";
import { blendH, blendV, type FloatTensor, tiledDecode } from "../../src/models/vae/tiling.js";
import { Generator } from "../../src/random/generator.js";
import { randnTensor } from "../../src/random/randn_tensor.js";
import type { HostTensor } from "../../src/runtime/host_tensor.js";
import { RuntimeHost } from "../../src/runtime/worker_host.js";
import {
  assertClose,
  FIXTURES,
  type FixtureCase,
  loadGroup,
  SHARED_FIXTURES,
  tensorOf,
} from "../helpers/fixtures.js";
import { runGraph } from "../helpers/ort.js";

const group = loadGroup("components");
const host = new RuntimeHost({ inProcess: true });
after(() => host.close());

const MODELS = {
  tiny: join(FIXTURES, "models/tiny-upscaler/vae"),
  twin: SHARED_FIXTURES ? join(SHARED_FIXTURES, "models/twin-upscaler/vae") : undefined,
};

function host32(t: { data: Float32Array; shape: number[] }): HostTensor {
  return { type: "float32", dims: t.shape, data: t.data };
}

/** A fresh model (tiling / slicing settings are per test). */
function load(m: "tiny" | "twin"): Promise<AutoencoderKL> {
  return AutoencoderKL.fromPretrained(MODELS[m]!, { runtime: host });
}

/** The tile sizes and overlap a tiled fixture case was recorded with. */
function useTileParams(vae: AutoencoderKL, c: FixtureCase): void {
  vae.tileSampleMinSize = c.params.tile_sample_min_size;
  vae.tileLatentMinSize = c.params.tile_latent_min_size;
  vae.tileOverlapFactor = c.params.tile_overlap_factor;
}

function caseOf(m: string, name: string): FixtureCase {
  return group.get(`${m}_${name}`);
}

/** Decodes case c's z with the model's current settings and compares with its recorded sample. */
async function assertDecodes(vae: AutoencoderKL, c: FixtureCase, label: string): Promise<void> {
  const out = await vae.decode(host32(tensorOf(group, c, "z")));
  assertClose(out.data as Float32Array, tensorOf(group, c, "sample").data, c.tolerance, label);
}

for (const m of ["tiny", "twin"] as const) {
  const skip = MODELS[m] === undefined ? "twin model not present (../shared/fixtures)" : false;

  describe(`AutoencoderKL golden (${m})`, () => {
    test(`${m}_vae_decode`, { skip }, async () => {
      const c = caseOf(m, "vae_decode");
      const vae = await load(m);
      assert.equal(vae.config.scaling_factor, c.params.scaling_factor);
      // z = latents / scaling_factor, as the pipeline computes it.
      const latents = tensorOf(group, c, "latents");
      const z = tensorOf(group, c, "z");
      assertClose(
        latents.data.map((v) => v / vae.config.scaling_factor),
        z.data,
        { atol: 1e-6, rtol: 1e-6 },
        "z",
      );
      // The default on the CPU provider: the memory-efficient (fused MultiHeadAttention) graph.
      assert.equal(vae.memoryEfficientAttention, true);
      const out = await vae.decode(host32(z));
      const want = tensorOf(group, c, "sample");
      assert.deepEqual(out.dims, want.shape);
      assertClose(out.data as Float32Array, want.data, c.tolerance, c.name);

      // The same through the plain attention graph (diffusers' AttnProcessor, score matrix and all).
      vae.disableMemoryEfficientAttention();
      const plain = await vae.decode(host32(z));
      assertClose(plain.data as Float32Array, want.data, c.tolerance, `${c.name} plain attention`);
      vae.release();
    });

    test(`${m}_vae_decode_batch2_nonsquare (plain and sliced)`, { skip }, async () => {
      const c = caseOf(m, "vae_decode_batch2_nonsquare");
      const vae = await load(m);
      const z = host32(tensorOf(group, c, "z"));
      const want = tensorOf(group, c, "sample");
      const out = await vae.decode(z);
      assert.deepEqual(out.dims, want.shape);
      assertClose(out.data as Float32Array, want.data, c.tolerance, c.name);
      vae.enableSlicing();
      const sliced = await vae.decode(z);
      assertClose(sliced.data as Float32Array, want.data, c.tolerance, `${c.name} sliced`);
      vae.release();
    });

    test(`${m}: every 3x3 conv on Winograd and 1x1 on MatMul (convAlgorithm "winograd"; filters per run or folded) matches the goldens`, {
      skip,
    }, async () => {
      const vae = await AutoencoderKL.fromPretrained(MODELS[m]!, {
        runtime: host,
        runtimeOptions: { convAlgorithm: "winograd" },
      });
      // The VAE's default transforms the filters in every run; the folded ones ("session") too.
      const folded = await AutoencoderKL.fromPretrained(MODELS[m]!, {
        runtime: host,
        runtimeOptions: { convAlgorithm: "winograd", winogradFilters: "session" },
      });
      try {
        for (const name of ["vae_decode", "vae_decode_batch2_nonsquare"]) {
          const c = caseOf(m, name);
          await assertDecodes(vae, c, `${c.name} (winograd)`);
          await assertDecodes(folded, c, `${c.name} (winograd, filters folded)`);
        }
        // Tiles of odd latent sizes (edge tiles are not multiples of 4).
        const t = caseOf(m, "vae_tiled_decode_nonsquare");
        useTileParams(vae, t);
        vae.enableTiling();
        await assertDecodes(vae, t, `${t.name} (winograd)`);
        vae.disableTiling();
        const c = caseOf(m, "vae_encode");
        const dist = await vae.encode(host32(tensorOf(group, c, "image")));
        assertClose(
          dist.mean.data as Float32Array,
          tensorOf(group, c, "mean").data,
          c.tolerance,
          `${c.name} (winograd)`,
        );
      } finally {
        vae.release();
        folded.release();
      }
    });

    test(`${m}_vae_encode`, { skip }, async () => {
      const c = caseOf(m, "vae_encode");
      const vae = await load(m);
      const image = host32(tensorOf(group, c, "image"));
      const dist = await vae.encode(image);
      for (const role of ["mean", "logvar", "std"] as const) {
        const want = tensorOf(group, c, role);
        assert.deepEqual(dist[role].dims, want.shape);
        assertClose(dist[role].data as Float32Array, want.data, c.tolerance, `${c.name} ${role}`);
      }
      vae.disableMemoryEfficientAttention();
      const plain = await vae.encode(image);
      assertClose(
        plain.mean.data as Float32Array,
        tensorOf(group, c, "mean").data,
        c.tolerance,
        "plain attention",
      );
      vae.release();
    });

    for (const name of ["vae_tiled_decode", "vae_tiled_decode_nonsquare"]) {
      test(`${m}_${name}`, { skip }, async () => {
        const c = caseOf(m, name);
        const vae = await load(m);
        const natural = m === "tiny";
        if (natural) {
          // the tiny model's own config gives the recorded attributes
          assert.equal(vae.tileSampleMinSize, c.params.tile_sample_min_size);
          assert.equal(vae.tileLatentMinSize, c.params.tile_latent_min_size);
          assert.equal(vae.tileOverlapFactor, c.params.tile_overlap_factor);
        } else {
          assert.deepEqual([vae.tileSampleMinSize, vae.tileLatentMinSize], [256, 64]);
        }
        useTileParams(vae, c);
        const z = host32(tensorOf(group, c, "z"));
        const untiled = await vae.decode(z);
        assertClose(
          untiled.data as Float32Array,
          tensorOf(group, c, "sample_untiled").data,
          c.tolerance,
          "untiled",
        );
        vae.enableTiling();
        const out = await vae.decode(z);
        const want = tensorOf(group, c, "sample");
        assert.deepEqual(out.dims, want.shape);
        assertClose(out.data as Float32Array, want.data, c.tolerance, c.name);
        vae.release();
      });
    }

    test(`${m}_vae_tiled_encode`, { skip }, async () => {
      const c = caseOf(m, "vae_tiled_encode");
      const vae = await load(m);
      useTileParams(vae, c);
      vae.enableTiling();
      const dist = await vae.encode(host32(tensorOf(group, c, "image")));
      for (const role of ["mean", "logvar"] as const) {
        const want = tensorOf(group, c, role);
        assert.deepEqual(dist[role].dims, want.shape);
        assertClose(dist[role].data as Float32Array, want.data, c.tolerance, `${c.name} ${role}`);
      }
      vae.release();
    });
  });
}

describe("AutoencoderKL graphs and tiling helpers", () => {
  test("tiledDecode driven by an in-process graph runner (runGraph) matches the tiled fixture", async () => {
    const c = caseOf("tiny", "vae_tiled_decode");
    const vae = await load("tiny");
    const b = vae.buildDecodeGraph();
    const run = async (t: FloatTensor): Promise<FloatTensor> => {
      const out = await runGraph(b, { z: new ort.Tensor("float32", t.data, t.dims) });
      return { dims: [...out.sample!.dims], data: out.sample!.data as Float32Array };
    };
    const z = tensorOf(group, c, "z");
    const settings = { tileSampleMinSize: 32, tileLatentMinSize: 8, tileOverlapFactor: 0.25 };
    const out = await tiledDecode({ dims: z.shape, data: z.data }, settings, run);
    assertClose(out.data, tensorOf(group, c, "sample").data, c.tolerance, "tiledDecode + runGraph");
  });

  test("mid-block attention: fused by default on the CPU provider, plain elsewhere unless enabled", async () => {
    const attentionOps = (vae: AutoencoderKL) => {
      const nodes = vae.buildDecodeGraph().toModel().graph?.node ?? [];
      return {
        fused: nodes.filter((n) => n.opType === "MultiHeadAttention").length,
        softmax: nodes.filter((n) => n.opType === "Softmax").length,
      };
    };
    const cpu = await load("tiny");
    assert.equal(cpu.memoryEfficientAttention, true);
    assert.deepEqual(attentionOps(cpu), { fused: 1, softmax: 0 });
    cpu.disableMemoryEfficientAttention();
    assert.equal(cpu.memoryEfficientAttention, false);
    assert.deepEqual(attentionOps(cpu), { fused: 0, softmax: 1 });
    cpu.enableMemoryEfficientAttention();
    assert.deepEqual(attentionOps(cpu), { fused: 1, softmax: 0 });

    for (const executionProvider of ["cuda", "webgpu"] as const) {
      const gpu = await AutoencoderKL.fromPretrained(MODELS.tiny, {
        runtime: host,
        runtimeOptions: { executionProvider },
      });
      assert.equal(gpu.memoryEfficientAttention, false, executionProvider);
      assert.deepEqual(attentionOps(gpu), { fused: 0, softmax: 1 });
      gpu.enableMemoryEfficientAttention();
      assert.deepEqual(attentionOps(gpu), { fused: 1, softmax: 0 });
    }
  });

  test("inputs above 128² latents run on the large-maps graph (one session per kind, switched by size)", async () => {
    const vae = await load("tiny");
    const built: boolean[] = [];
    const build = vae.buildDecodeGraph.bind(vae);
    vae.buildDecodeGraph = (attention, largeMaps) => {
      built.push(largeMaps === true);
      return build(attention, largeMaps);
    };
    const z = (h: number, w: number): HostTensor => ({
      type: "float32",
      dims: [1, 4, h, w],
      data: new Float32Array(4 * h * w).fill(0.1),
    });
    try {
      const small = await vae.decode(z(8, 8));
      await vae.decode(z(8, 8));
      const large = await vae.decode(z(64, 257));
      assert.deepEqual(large.dims, [1, 3, 64 * 4, 257 * 4]);
      const again = await vae.decode(z(8, 8));
      assert.deepEqual(built, [false, true, false], "built once per size class and switch");
      assert.deepEqual(again.data, small.data);
      // The tiny model has no layer "auto" puts on Winograd: both graphs give the same numbers.
      assert.ok((large.data as Float32Array).every(Number.isFinite));
    } finally {
      vae.release();
    }
    // "direct" builds the same graph at every size: one graph, one session.
    const direct = await AutoencoderKL.fromPretrained(MODELS.tiny, {
      runtime: host,
      runtimeOptions: { convAlgorithm: "direct" },
    });
    const builds: (boolean | undefined)[] = [];
    const buildDirect = direct.buildDecodeGraph.bind(direct);
    direct.buildDecodeGraph = (attention, largeMaps) => {
      builds.push(largeMaps);
      return buildDirect(attention, largeMaps);
    };
    try {
      await direct.decode(z(8, 8));
      await direct.decode(z(64, 257));
      assert.deepEqual(builds, [false]);
    } finally {
      direct.release();
    }
  });

  test("blend_v / blend_h follow diffusers (clamped extent, in place)", () => {
    const a: FloatTensor = { dims: [1, 1, 2, 3], data: Float32Array.from([1, 2, 3, 4, 5, 6]) };
    const b: FloatTensor = { dims: [1, 1, 3, 3], data: new Float32Array(9).fill(10) };
    // extent min(2, 3, 4) = 2: row 0 = a[-2]*1 + b*0, row 1 = a[-1]*0.5 + b*0.5
    assert.equal(blendV(a, b, 4), b);
    assert.deepEqual([...b.data], [1, 2, 3, 7, 7.5, 8, 10, 10, 10]);
    const c: FloatTensor = { dims: [1, 1, 3, 2], data: Float32Array.from([0, 4, 0, 8, 0, 12]) };
    blendH(c, b, 2); // cols 0..1: col 0 = c[:, -2], col 1 = c[:, -1]*0.5 + b*0.5
    assert.deepEqual([...b.data], [0, 3, 3, 0, 7.75, 8, 0, 11, 10]);
  });

  test("DiagonalGaussianDistribution: chunk, clamp, std, sample = mean + std·randn", () => {
    const moments: FloatTensor = {
      dims: [2, 2, 1, 2],
      data: Float32Array.from([0.5, -1, -40, 2, 1.5, 3, 25, -2]),
    };
    const d = new DiagonalGaussianDistribution(moments);
    assert.deepEqual(d.mean.dims, [2, 1, 1, 2]);
    assert.deepEqual([...(d.mean.data as Float32Array)], [0.5, -1, 1.5, 3]);
    assert.deepEqual([...(d.logvar.data as Float32Array)], [-30, 2, 20, -2]);
    assertClose(d.std.data as Float32Array, [Math.exp(-15), Math.E, Math.exp(10), Math.exp(-1)], {
      atol: 0,
      rtol: 1e-6,
    });
    const s = d.sample(new Generator().manualSeed(7));
    const noise = randnTensor([2, 1, 1, 2], new Generator().manualSeed(7));
    const std = d.std.data as Float32Array;
    const mean = d.mean.data as Float32Array;
    assert.deepEqual(
      [...(s.data as Float32Array)],
      [...noise].map((n, i) => Math.fround(mean[i]! + Math.fround(std[i]! * n))),
    );
    assert.equal(d.mode(), d.mean);
  });
});

describe("AutoencoderKL config", () => {
  const base = JSON.parse(readFileSync(join(MODELS.tiny, "config.json"), "utf8")) as Record<string, unknown>;

  test("defaults are diffusers 0.23's", () => {
    const c = parseAutoencoderKLConfig({});
    assert.equal(c.scaling_factor, 0.18215);
    assert.deepEqual(c.block_out_channels, [64]);
    assert.equal(c.layers_per_block, 1);
    assert.equal(c.sample_size, 32);
    const tiny = parseAutoencoderKLConfig(base);
    assert.equal(tiny.scaling_factor, 0.08333);
    assert.equal(tiny._class_name, "AutoencoderKL");
  });

  const bad: [string, Record<string, unknown>, RegExp][] = [
    [
      "another down block type",
      { down_block_types: ["DownEncoderBlock2D", "AttnDownEncoderBlock2D", "DownEncoderBlock2D"] },
      /down_block_types contains "AttnDownEncoderBlock2D"/,
    ],
    [
      "another up block type",
      { up_block_types: ["UpDecoderBlock2D", "X", "Y"] },
      /up_block_types contains "X"/,
    ],
    ["block count mismatch", { up_block_types: ["UpDecoderBlock2D"] }, /up_block_types has 1 entries/],
    ["mid-block attention off", { mid_block_add_attention: false }, /mid_block_add_attention = false/],
    ["no quant_conv", { use_quant_conv: false }, /use_quant_conv = false/],
    ["unknown activation", { act_fn: "tanh" }, /act_fn "tanh"/],
    ["groups not dividing", { norm_num_groups: 24 }, /norm_num_groups 24 does not divide/],
    ["bad sample_size", { sample_size: "big" }, /sample_size must be/],
  ];
  for (const [what, patch, re] of bad) {
    test(`clear error: ${what}`, () => {
      assert.throws(
        () => new AutoencoderKL({ ...base, ...patch }),
        (e: Error) => e instanceof VaeConfigError && re.test(e.message),
      );
    });
  }

  test("sample_size as a list tiles with its first entry", () => {
    const vae = new AutoencoderKL({ ...base, sample_size: [64, 48] });
    assert.deepEqual([vae.tileSampleMinSize, vae.tileLatentMinSize], [64, 16]);
  });
});

describe("AutoencoderKL weights", () => {
  const dir = mkdtempSync(join(tmpdir(), "sdx4-vae-"));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const src = SafetensorsFile.open(join(MODELS.tiny, "diffusion_pytorch_model.safetensors"));
  const all = Object.fromEntries(
    src.keys().map((k) => [k, { shape: src.info(k).shape, data: src.getFloat32(k) }]),
  );

  /** A copy of the tiny VAE folder with edited tensors (F32). */
  function variant(name: string, tensors: Record<string, { shape: number[]; data: Float32Array }>): string {
    const d = join(dir, name);
    mkdirSync(d);
    copyFileSync(join(MODELS.tiny, "config.json"), join(d, "config.json"));
    const names = Object.keys(tensors).sort();
    const header: Record<string, unknown> = { __metadata__: { format: "pt" } };
    let off = 0;
    for (const k of names) {
      const t = tensors[k]!;
      header[k] = { dtype: "F32", shape: t.shape, data_offsets: [off, off + t.data.byteLength] };
      off += t.data.byteLength;
    }
    let h = JSON.stringify(header);
    while (h.length % 8) h += " ";
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(h.length));
    const body = names.map((k) =>
      Buffer.from(tensors[k]!.data.buffer, tensors[k]!.data.byteOffset, tensors[k]!.data.byteLength),
    );
    writeFileSync(
      join(d, "diffusion_pytorch_model.safetensors"),
      Buffer.concat([len, Buffer.from(h), ...body]),
    );
    return d;
  }

  test("a missing, an extra and a mis-shaped tensor are listed in one error", async () => {
    const t = { ...all };
    delete t["decoder.conv_out.bias"];
    t["encoder.extra.weight"] = { shape: [2], data: new Float32Array(2) };
    t["quant_conv.bias"] = { shape: [4], data: new Float32Array(4) };
    const d = variant("broken", t);
    await assert.rejects(AutoencoderKL.fromPretrained(d), (e: Error) => {
      assert.match(e.message, /missing keys \(1\):\s+decoder\.conv_out\.bias/);
      assert.match(e.message, /shape mismatches \(1\):\s+quant_conv\.bias: checkpoint \[4\] vs model \[8\]/);
      assert.match(e.message, /unexpected keys \(1\):\s+encoder\.extra\.weight/);
      return true;
    });
  });

  test("pre-0.14 attention names (query/key/value/proj_attn) load like diffusers' conversion", async () => {
    const renames: Record<string, string> = {
      to_q: "query",
      to_k: "key",
      to_v: "value",
      "to_out.0": "proj_attn",
    };
    const t: typeof all = {};
    for (const [k, v] of Object.entries(all)) {
      const m = /^(.*\.mid_block\.attentions\.0)\.(to_q|to_k|to_v|to_out\.0)\.(weight|bias)$/.exec(k);
      t[m ? `${m[1]}.${renames[m[2]!]}.${m[3]}` : k] = v;
    }
    const d = variant("deprecated", t);
    const vae = await AutoencoderKL.fromPretrained(d, { runtime: host });
    assert.ok(vae.store.params.has("decoder.mid_block.attentions.0.proj_attn.weight"));
    const c = caseOf("tiny", "vae_decode");
    const out = await vae.decode(host32(tensorOf(group, c, "z")));
    assertClose(out.data as Float32Array, tensorOf(group, c, "sample").data, c.tolerance, "deprecated names");
    vae.release();
  });

  test("bad inputs are clear errors", async () => {
    const vae = await load("tiny");
    await assert.rejects(
      vae.decode({ type: "float32", dims: [1, 3, 4, 4], data: new Float32Array(48) }),
      /z must be float32 \[batch, 4, height, width\], got float32\[1, 3, 4, 4\]/,
    );
    await assert.rejects(
      vae.encode({ type: "float32", dims: [1, 3, 4], data: new Float32Array(12) }),
      /image must be float32/,
    );
    assert.throws(
      () =>
        new AutoencoderKL(
          JSON.parse(readFileSync(join(MODELS.tiny, "config.json"), "utf8")),
        ).buildDecodeGraph(),
      /no weights/,
    );
  });
});
