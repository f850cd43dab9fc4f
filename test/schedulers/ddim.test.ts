import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { manualSeed } from "../../src/random/default_generator.js";
import { Generator } from "../../src/random/generator.js";
import { SchedulerConfigError } from "../../src/schedulers/scheduler_utils.js";
import { DDIMScheduler } from "../../src/schedulers/scheduling_ddim.js";
import { runTrajectory, trajectoryCases } from "./harness.js";

const cases = trajectoryCases("ddim_");

/** The x4 upscaler's scheduler config (the fixtures' base). */
const BASE = {
  num_train_timesteps: 1000,
  beta_start: 0.0001,
  beta_end: 0.02,
  beta_schedule: "scaled_linear",
  prediction_type: "v_prediction",
  steps_offset: 1,
  clip_sample: false,
  set_alpha_to_one: false,
};

const ramp = (n: number, scale = 0.01) => Float32Array.from({ length: n }, (_, i) => (i - n / 2) * scale);

describe("DDIMScheduler golden trajectories", () => {
  it("has fixture cases", () => assert.equal(cases.length, 25));
  for (const c of cases) {
    it(c.name, () => runTrajectory(c, DDIMScheduler.fromConfig(c.params.config)));
  }
});

describe("DDIMScheduler config", () => {
  it("uses the diffusers 0.23.0 defaults and keeps unknown keys", () => {
    const s = DDIMScheduler.fromConfig({
      skip_prk_steps: true,
      _class_name: "DDIMScheduler",
      _diffusers_version: "x",
    });
    assert.equal(s.config.beta_schedule, "linear");
    assert.equal(s.config.clip_sample, true);
    assert.equal(s.config.set_alpha_to_one, true);
    assert.equal(s.config.timestep_spacing, "leading");
    assert.equal(s.config.skip_prk_steps, true);
    assert.equal(s.config._class_name, "DDIMScheduler");
    assert.equal(s.config._diffusers_version, undefined);
    assert.equal(s.finalAlphaCumprod, 1);
    assert.equal(s.initNoiseSigma, 1);
    assert.equal(s.order, 1);
    assert.equal(s.numInferenceSteps, undefined);
    assert.equal(s.timesteps.length, 1000);
    assert.equal(s.timesteps[0], 999);
    assert.ok(s.betas instanceof Float32Array && s.alphasCumprod instanceof Float32Array);
  });

  it("set_alpha_to_one=false uses alphas_cumprod[0] as the final alpha", () => {
    const s = new DDIMScheduler(BASE);
    assert.equal(s.finalAlphaCumprod, s.alphasCumprod[0]);
  });

  it("takes trained_betas verbatim (as float32)", () => {
    const betas = Array.from({ length: 10 }, (_, i) => 0.001 * (i + 1));
    const s = new DDIMScheduler({ num_train_timesteps: 10, trained_betas: betas, beta_schedule: "ignored" });
    assert.deepEqual(Array.from(s.betas), betas.map(Math.fround));
  });

  it("rescale_betas_zero_snr gives a zero terminal alpha_cumprod", () => {
    const s = new DDIMScheduler({ ...BASE, rescale_betas_zero_snr: true });
    assert.equal(s.alphasCumprod[999], 0);
    assert.equal(s.betas[999], 1);
  });

  const bad: [string, unknown][] = [
    ["beta_schedule", "cosine"],
    ["prediction_type", "eps"],
    ["timestep_spacing", "uniform"],
    ["clip_sample", "yes"],
    ["num_train_timesteps", 0],
    ["num_train_timesteps", 10.5],
    ["steps_offset", -1],
    ["beta_start", "-inf"],
    ["trained_betas", [0.1, 0.2]],
    ["dynamic_thresholding_ratio", 2],
  ];
  for (const [key, value] of bad) {
    it(`rejects ${key}=${JSON.stringify(value)} naming the key`, () => {
      assert.throws(
        () => DDIMScheduler.fromConfig({ [key]: value }),
        (e: unknown) => e instanceof SchedulerConfigError && e.message.includes(`"${key}"`),
      );
    });
  }
});

describe("DDIMScheduler.setTimesteps", () => {
  it("leading adds steps_offset", () => {
    const s = new DDIMScheduler(BASE);
    s.setTimesteps(7);
    assert.deepEqual(s.timesteps, [853, 711, 569, 427, 285, 143, 1]);
    assert.equal(s.numInferenceSteps, 7);
  });
  it("trailing rounds half to even like numpy", () => {
    const s = new DDIMScheduler({ ...BASE, timestep_spacing: "trailing" });
    s.setTimesteps(16);
    assert.deepEqual(
      s.timesteps,
      [999, 937, 874, 811, 749, 687, 624, 561, 499, 437, 374, 311, 249, 187, 124, 61],
    );
  });
  it("linspace", () => {
    const s = new DDIMScheduler({ ...BASE, timestep_spacing: "linspace" });
    s.setTimesteps(8);
    assert.deepEqual(s.timesteps, [999, 856, 714, 571, 428, 285, 143, 0]);
  });
  for (const n of [0, 1.5, 1001, -1, Number.NaN]) {
    it(`rejects numInferenceSteps=${n}`, () => {
      assert.throws(() => new DDIMScheduler(BASE).setTimesteps(n), RangeError);
    });
  }
  it("accepts numInferenceSteps = num_train_timesteps", () => {
    const s = new DDIMScheduler(BASE);
    s.setTimesteps(1000);
    assert.equal(s.timesteps.length, 1000);
  });
});

describe("DDIMScheduler.step bad inputs", () => {
  const x = ramp(64);
  it("refuses to step before setTimesteps", () => {
    assert.throws(() => new DDIMScheduler(BASE).step(x, 999, x), /setTimesteps/);
  });
  it("refuses a timestep outside the schedule", () => {
    const s = new DDIMScheduler(BASE);
    s.setTimesteps(10);
    assert.throws(() => s.step(x, 500, x), /not in the schedule/);
  });
  it("reports NaN / Inf in the model output", () => {
    const s = new DDIMScheduler(BASE);
    s.setTimesteps(10);
    const bad = x.slice();
    bad[3] = Number.NaN;
    assert.throws(() => s.step(bad, 901, x), /NaN at index 3/);
    bad[3] = Number.POSITIVE_INFINITY;
    assert.throws(() => s.step(bad, 901, x), /Infinity at index 3/);
  });
  it("refuses mismatched lengths", () => {
    const s = new DDIMScheduler(BASE);
    s.setTimesteps(10);
    assert.throws(() => s.step(x.subarray(1), 901, x), RangeError);
  });
  it("eta > 0 takes a generator or varianceNoise, not both", () => {
    const s = new DDIMScheduler(BASE);
    s.setTimesteps(10);
    const g = new Generator().manualSeed(0);
    assert.throws(() => s.step(x, 901, x, { eta: 1, generator: g, varianceNoise: x }), /not both/);
    assert.throws(() => s.step(x, 901, x, { eta: -1 }), RangeError);
  });
});

describe("DDIMScheduler.step options", () => {
  it("eta > 0 without a generator draws from the default generator (torch's global RNG)", () => {
    const s = new DDIMScheduler(BASE);
    s.setTimesteps(10);
    const eps = ramp(64, 0.02);
    const y = ramp(64, 0.03);
    manualSeed(11);
    const viaDefault = s.step(eps, 901, y, { eta: 1 }).prevSample;
    const viaGen = s.step(eps, 901, y, { eta: 1, generator: new Generator().manualSeed(11) }).prevSample;
    assert.deepEqual(viaDefault, viaGen);
  });
  it("eta > 0 with varianceNoise equals drawing the same noise from the generator", () => {
    const x = ramp(256, 0.02);
    const eps = ramp(256, 0.005);
    const a = new DDIMScheduler(BASE);
    const b = new DDIMScheduler(BASE);
    a.setTimesteps(10);
    b.setTimesteps(10);
    const noise = new Generator().manualSeed(7).randn([256]);
    const viaNoise = a.step(eps, 901, x, { eta: 0.5, varianceNoise: noise }).prevSample;
    const viaGen = b.step(eps, 901, x, { eta: 0.5, generator: new Generator().manualSeed(7) }).prevSample;
    assert.deepEqual(viaNoise, viaGen);
    const deterministic = b.step(eps, 901, x).prevSample;
    assert.notDeepEqual(viaNoise, deterministic);
  });

  it("dynamic thresholding: per-sample 99.5% quantile of |x0|, clamped to [1, sample_max_value]", () => {
    // Reference values from diffusers 0.23.0's _threshold_sample on the same input (batch 2).
    const s = new DDIMScheduler({ prediction_type: "sample", thresholding: true, sample_max_value: 3.0 });
    s.setTimesteps(10);
    const mo = Float32Array.from({ length: 256 }, (_, i) => Math.fround((i - 128) * Math.fround(0.03)));
    for (let i = 128; i < 256; i++) mo[i] = Math.fround((mo[i] as number) * 0.5);
    const out = s.step(mo, s.timesteps[0] as number, new Float32Array(256), { batchSize: 2 });
    const got = [0, 1, 100, 127, 128, 200, 255].map((i) => out.predOriginalSample[i] as number);
    const want = [-1.0, -1.0, -0.2800000011920929, -0.009999999776482582, 0.0, 0.5697780251502991, 1.0];
    got.forEach((g, k) => {
      assert.ok(Math.abs(g - (want[k] as number)) < 1e-6, `${k}: ${g} vs ${want[k]}`);
    });
    assert.throws(
      () => s.step(mo, s.timesteps[0] as number, new Float32Array(256), { batchSize: 3 }),
      RangeError,
    );
  });

  it("clip_sample clamps x0 to clip_sample_range; use_clipped_model_output recomputes epsilon", () => {
    const s = new DDIMScheduler({ prediction_type: "sample", clip_sample: true, clip_sample_range: 0.5 });
    s.setTimesteps(10);
    const mo = ramp(64, 0.05);
    const x = ramp(64, 0.02);
    const out = s.step(mo, 900, x);
    assert.ok(out.predOriginalSample.every((v) => Math.abs(v) <= 0.5));
    const clipped = s.step(mo, 900, x, { useClippedModelOutput: true });
    assert.notDeepEqual(clipped.prevSample, out.prevSample);
  });
});

describe("DDIMScheduler.addNoise / getVelocity", () => {
  it("uses one timestep per row", () => {
    const s = new DDIMScheduler(BASE);
    const x = ramp(8, 0.1);
    const n = ramp(8, -0.05);
    const both = s.addNoise(x, n, [10, 500]);
    assert.deepEqual(both.subarray(0, 4), s.addNoise(x.subarray(0, 4), n.subarray(0, 4), [10]));
    assert.deepEqual(both.subarray(4), s.addNoise(x.subarray(4), n.subarray(4), [500]));
    const a = s.alphasCumprod[10] as number;
    const want = Math.fround(
      Math.fround(Math.fround(Math.sqrt(a)) * (x[0] as number)) +
        Math.fround(Math.fround(Math.sqrt(Math.fround(1 - a))) * (n[0] as number)),
    );
    assert.equal(both[0], want);
    assert.equal(s.getVelocity(x, n, [10, 500]).length, 8);
  });
  it("rejects bad timesteps and shapes", () => {
    const s = new DDIMScheduler(BASE);
    const x = ramp(8);
    assert.throws(() => s.addNoise(x, x, [1000]), RangeError);
    assert.throws(() => s.addNoise(x, x, [1.5]), RangeError);
    assert.throws(() => s.addNoise(x, x, [1, 2, 3]), RangeError);
    assert.throws(() => s.addNoise(x, x.subarray(1), [1]), RangeError);
  });
});
