/**
 * UNet2DConditionModel against the golden fixtures recorded with diffusers 0.23.0 (test/fixtures/components, every
 * m_unet_* case: basic, batch-2 non-square with per-row timesteps, float timestep, odd size, FreeU (incl. the
 * 16x24 `_b` roles), attention slicing) for the tiny model and, when ../shared/fixtures is present, the twin.
 * Also: memory-efficient attention and "max" / numeric slicing reproduce the basic case, options toggled back give
 * the basic result again, and the host-side timestep / class-label handling (numbers, broadcasting, errors).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { UNet2DConditionModel } from "../../src/models/unet/unet_2d_condition.js";
import type { HostTensor } from "../../src/runtime/host_tensor.js";
import { RuntimeHost } from "../../src/runtime/worker_host.js";
import { assertClose, FIXTURES, type FixtureCase, loadGroup, SHARED_FIXTURES } from "../helpers/fixtures.js";

const group = loadGroup("components");
// A worker-backed host: the runtime path the pipeline uses.
const host = new RuntimeHost();
after(() => host.close());

const MODELS = {
  tiny: join(FIXTURES, "models/tiny-upscaler/unet"),
  twin: SHARED_FIXTURES ? join(SHARED_FIXTURES, "models/twin-upscaler/unet") : undefined,
};

/** A fixture tensor in its own dtype (int64 timesteps / class labels, float32 otherwise). */
function hostTensorOf(c: FixtureCase, role: string): HostTensor {
  const key = c.tensors[role];
  if (!key) throw new Error(`case ${c.name} has no role ${role}`);
  const info = group.tensors.info(key);
  const data = group.tensors.getTyped(key);
  if (info.dtype === "I64") return { type: "int64", dims: [...info.shape], data: data as BigInt64Array };
  if (info.dtype === "F32") return { type: "float32", dims: [...info.shape], data: data as Float32Array };
  throw new Error(`${key}: unexpected dtype ${info.dtype}`);
}

/** Runs the UNet on a case's inputs (role suffix "" or "_b"). */
function run(unet: UNet2DConditionModel, c: FixtureCase, suffix = ""): Promise<HostTensor> {
  return unet.forward({
    sample: hostTensorOf(c, `sample${suffix}`),
    timestep: hostTensorOf(c, `timestep${suffix}`),
    encoderHiddenStates: hostTensorOf(c, `encoder_hidden_states${suffix}`),
    classLabels: hostTensorOf(c, `class_labels${suffix}`),
  });
}

function check(out: HostTensor, c: FixtureCase, role: string, label = `${c.name}/${role}`): void {
  const want = hostTensorOf(c, role);
  assert.deepEqual(out.dims, want.dims, `${label}: shape`);
  assertClose(out.data as Float32Array, want.data as Float32Array, c.tolerance, label);
}

for (const m of ["tiny", "twin"] as const) {
  const skip = MODELS[m] === undefined ? "twin model not present (../shared/fixtures)" : false;
  const caseOf = (name: string) => group.get(`${m}_unet_${name}`);

  describe(`UNet2DConditionModel golden (${m})`, () => {
    let unet: UNet2DConditionModel | undefined;
    const model = async () => {
      unet ??= await UNet2DConditionModel.fromPretrained(MODELS[m] as string, { runtime: host });
      return unet;
    };
    after(() => unet?.release());

    for (const name of ["basic", "batch2_nonsquare", "float_timestep", "odd_size"]) {
      test(`${m}_unet_${name}`, { skip }, async () => {
        const c = caseOf(name);
        const u = await model();
        if (c.params.default_overall_up_factor !== undefined) {
          assert.equal(u.defaultOverallUpFactor, c.params.default_overall_up_factor);
        }
        check(await run(u, c), c, "out");
      });
    }

    test(`${m}_unet_freeu (32x32 and the 16x24 batch: non-power-of-2 FFT)`, { skip }, async () => {
      const c = caseOf("freeu");
      const u = await model();
      u.enableFreeU(c.params.freeu);
      try {
        check(await run(u, c), c, "out");
        check(await run(u, c, "_b"), c, "out_b");
      } finally {
        u.disableFreeU();
      }
      // Disabled again: the basic result.
      const basic = caseOf("basic");
      check(await run(u, basic), basic, "out", `${m}: after disableFreeU`);
    });

    test(`${m}_unet_attention_slicing ("auto")`, { skip }, async () => {
      const c = caseOf("attention_slicing");
      assert.equal(c.params.slice_size, "auto");
      const u = await model();
      u.setAttentionSlice("auto");
      try {
        check(await run(u, c), c, "out");
        // diffusers: bitwise equal to the basic case; here within the same tolerance.
        const basic = caseOf("basic");
        check(await run(u, basic), basic, "out", `${m}: sliced vs basic`);
        u.setAttentionSlice("max");
        check(await run(u, c), c, "out", `${m}: slice "max"`);
        u.setAttentionSlice(3);
        check(await run(u, c), c, "out", `${m}: slice 3 (uneven last slice)`);
      } finally {
        u.setAttentionSlice(null);
      }
    });

    test(`${m}: memory-efficient attention matches the basic case`, { skip }, async () => {
      const u = await model();
      u.enableMemoryEfficientAttention();
      try {
        const basic = caseOf("basic");
        check(await run(u, basic), basic, "out", `${m}: memory-efficient basic`);
        const b2 = caseOf("batch2_nonsquare");
        check(await run(u, b2), b2, "out", `${m}: memory-efficient batch2_nonsquare`);
      } finally {
        u.disableMemoryEfficientAttention();
      }
    });
  });
}

for (const m of ["tiny", "twin"] as const) {
  const skip = MODELS[m] === undefined ? "twin model not present (../shared/fixtures)" : false;
  test(`${m}: every 3x3 conv on Winograd and 1x1 on MatMul (convAlgorithm "winograd"; filters folded or per run) matches the goldens`, {
    skip,
  }, async () => {
    for (const winogradFilters of ["session", "run"] as const) {
      const u = await UNet2DConditionModel.fromPretrained(MODELS[m] as string, {
        runtime: host,
        runtimeOptions: { convAlgorithm: "winograd", winogradFilters },
      });
      try {
        for (const name of ["basic", "batch2_nonsquare", "odd_size"]) {
          const c = group.get(`${m}_unet_${name}`);
          check(await run(u, c), c, "out", `${c.name} (winograd, filters at ${winogradFilters})`);
        }
      } finally {
        await u.release();
      }
    }
  });
}

describe("UNet2DConditionModel inputs (tiny)", () => {
  let unet: UNet2DConditionModel | undefined;
  const model = async () => {
    unet ??= await UNet2DConditionModel.fromPretrained(MODELS.tiny, { runtime: host });
    return unet;
  };
  after(() => unet?.release());

  test("a scalar number timestep and a number class label equal the tensor forms", async () => {
    const c = group.get("tiny_unet_float_timestep");
    const u = await model();
    const out = await u.forward({
      sample: hostTensorOf(c, "sample"),
      timestep: 512.25,
      encoderHiddenStates: hostTensorOf(c, "encoder_hidden_states"),
      classLabels: 20,
    });
    check(out, c, "out");
  });

  test("a single timestep / label is broadcast to the batch; per-row values are used per row", async () => {
    const c = group.get("tiny_unet_batch2_nonsquare");
    const u = await model();
    const full = await run(u, c);
    // Row 0 alone (timestep 999, label 0) equals row 0 of the batch.
    const sample = hostTensorOf(c, "sample");
    const ehs = hostTensorOf(c, "encoder_hidden_states");
    const half = (t: HostTensor): HostTensor => ({
      type: "float32",
      dims: [1, ...t.dims.slice(1)],
      data: (t.data as Float32Array).slice(0, (t.data as Float32Array).length / 2),
    });
    const row0 = await u.forward({
      sample: half(sample),
      timestep: 999n,
      encoderHiddenStates: half(ehs),
      classLabels: [0],
    });
    const n = (row0.data as Float32Array).length;
    assertClose(row0.data as Float32Array, (full.data as Float32Array).slice(0, n), c.tolerance, "row 0");
    // Both rows with one broadcast timestep and label.
    const both = await u.forward({ sample, timestep: 1, encoderHiddenStates: ehs, classLabels: 99 });
    const len = (both.data as Float32Array).length;
    assertClose(
      (both.data as Float32Array).slice(len / 2),
      (full.data as Float32Array).slice(len / 2),
      c.tolerance,
      "row 1 (timestep 1, label 99)",
    );
  });

  test("inputs above 256² latents run on the large-maps graph (built once per size class)", async () => {
    const c = group.get("tiny_unet_basic");
    const u = await UNet2DConditionModel.fromPretrained(MODELS.tiny, { runtime: host });
    const built: boolean[] = [];
    const build = u.buildGraph.bind(u);
    u.buildGraph = (o = {}) => {
      built.push(o.largeMaps === true);
      return build(o);
    };
    const ehs = hostTensorOf(c, "encoder_hidden_states");
    const channels = hostTensorOf(c, "sample").dims[1] as number;
    const sample = (h: number, w: number): HostTensor => ({
      type: "float32",
      dims: [1, channels, h, w],
      data: new Float32Array(channels * h * w).fill(0.5),
    });
    try {
      const inputs = (h: number, w: number) => ({
        sample: sample(h, w),
        timestep: 10,
        encoderHiddenStates: ehs,
        classLabels: 20,
      });
      const small = await u.forward(inputs(8, 8));
      const large = await u.forward(inputs(16, 4100));
      assert.deepEqual(large.dims.slice(2), [16, 4100]);
      assert.ok((large.data as Float32Array).every(Number.isFinite));
      assert.deepEqual((await u.forward(inputs(8, 8))).data, small.data);
      assert.deepEqual(built, [false, true, false]);
    } finally {
      u.release();
    }
  });

  test("invalid class labels and timesteps are clear errors", async () => {
    const c = group.get("tiny_unet_basic");
    const u = await model();
    const base = {
      sample: hostTensorOf(c, "sample"),
      timestep: 10,
      encoderHiddenStates: hostTensorOf(c, "encoder_hidden_states"),
    };
    await assert.rejects(
      u.forward({ ...base, classLabels: 100 }),
      /class_labels: 100 .*num_class_embeds=100/,
    );
    await assert.rejects(u.forward({ ...base, classLabels: -1 }), /class_labels: -1/);
    await assert.rejects(u.forward({ ...base }), /class_labels should be provided/);
    await assert.rejects(u.forward({ ...base, classLabels: 1, timestep: [1, 2, 3] }), /timestep: 3 values/);
  });
});
