import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { manualSeed } from "../../src/random/default_generator.js";
import { Generator } from "../../src/random/generator.js";
import { SchedulerConfigError } from "../../src/schedulers/scheduler_utils.js";
import { DDPMScheduler } from "../../src/schedulers/scheduling_ddpm.js";
import { assertClose, tensorOf } from "../helpers/fixtures.js";
import { runTrajectory, schedulerGroup, trajectoryCases } from "./harness.js";

const cases = trajectoryCases("ddpm_");
const group = schedulerGroup();

const BASE = {
  num_train_timesteps: 1000,
  beta_start: 0.0001,
  beta_end: 0.02,
  beta_schedule: "scaled_linear",
  prediction_type: "v_prediction",
  steps_offset: 1,
  clip_sample: false,
};

const ramp = (n: number, scale = 0.01) => Float32Array.from({ length: n }, (_, i) => (i - n / 2) * scale);

describe("DDPMScheduler golden trajectories", () => {
  it("has fixture cases", () => assert.equal(cases.length, 5));
  for (const c of cases) {
    it(c.name, () => runTrajectory(c, DDPMScheduler.fromConfig(c.params.config)));
  }
});

describe("DDPMScheduler as the upscaler's low_res_scheduler", () => {
  it("ddpm_low_res_tables: betas, alphas, alphas_cumprod", () => {
    const c = group.get("ddpm_low_res_tables");
    const s = DDPMScheduler.fromConfig(c.params.config);
    assertClose(s.betas, tensorOf(group, c, "betas").data, c.tolerance, "betas");
    assertClose(s.alphas, tensorOf(group, c, "alphas").data, c.tolerance, "alphas");
    assertClose(s.alphasCumprod, tensorOf(group, c, "alphas_cumprod").data, c.tolerance, "alphas_cumprod");
  });

  const addNoiseCases = group.cases.filter((c) => c.params.kind === "add_noise");
  it("has the add_noise cases", () => assert.equal(addNoiseCases.length, 8));
  for (const c of addNoiseCases) {
    it(c.name, () => {
      const s = DDPMScheduler.fromConfig(c.params.config);
      const image = tensorOf(group, c, "image").data;
      const noise = tensorOf(group, c, "noise").data;
      const timesteps = Array.from(tensorOf(group, c, "timesteps").data);
      const noisy = s.addNoise(image, noise, timesteps);
      assertClose(noisy, tensorOf(group, c, "noisy").data, c.tolerance, c.name);
    });
  }

  it("addNoise rejects bad timesteps and shapes", () => {
    const s = new DDPMScheduler(BASE);
    const x = ramp(12);
    assert.throws(() => s.addNoise(x, x, [1000]), RangeError);
    assert.throws(() => s.addNoise(x, x, [-1]), RangeError);
    assert.throws(() => s.addNoise(x, x, [0.5]), RangeError);
    assert.throws(() => s.addNoise(x, x, [1, 2, 3, 4, 5]), RangeError);
    assert.throws(() => s.addNoise(x, x, []), RangeError);
    assert.throws(() => s.addNoise(x, x.subarray(2), [1]), RangeError);
  });
});

describe("DDPMScheduler config", () => {
  it("uses the diffusers 0.23.0 defaults and keeps unknown keys", () => {
    const s = DDPMScheduler.fromConfig({ set_alpha_to_one: false });
    assert.equal(s.config.beta_schedule, "linear");
    assert.equal(s.config.variance_type, "fixed_small");
    assert.equal(s.config.clip_sample, true);
    assert.equal(s.config.steps_offset, 0);
    assert.equal(s.config.set_alpha_to_one, false);
    assert.equal(s.initNoiseSigma, 1);
    assert.equal(s.timesteps.length, 1000);
  });

  it("supports the sigmoid and squaredcos_cap_v2 beta schedules", () => {
    const sig = new DDPMScheduler({ beta_schedule: "sigmoid" });
    const sigmoid = (v: number) => 1 / (1 + Math.exp(-v));
    assert.ok(Math.abs((sig.betas[0] as number) - (sigmoid(-6) * 0.0199 + 0.0001)) < 1e-9);
    assert.ok(Math.abs((sig.betas[999] as number) - (sigmoid(6) * 0.0199 + 0.0001)) < 1e-8);
    const cos = new DDPMScheduler({ beta_schedule: "squaredcos_cap_v2" });
    assert.equal(cos.betas[999], Math.fround(0.999));
    assert.ok((cos.betas[0] as number) > 0);
  });

  const bad: [string, unknown][] = [
    ["beta_schedule", "quadratic"],
    ["variance_type", "fixed"],
    ["prediction_type", "v"],
    ["timestep_spacing", "even"],
    ["thresholding", 1],
    ["num_train_timesteps", -5],
    ["steps_offset", 0.5],
    ["clip_sample_range", "inf"],
    ["trained_betas", "0.1,0.2"],
  ];
  for (const [key, value] of bad) {
    it(`rejects ${key}=${JSON.stringify(value)} naming the key`, () => {
      assert.throws(
        () => DDPMScheduler.fromConfig({ [key]: value }),
        (e: unknown) => e instanceof SchedulerConfigError && e.message.includes(`"${key}"`),
      );
    });
  }
});

describe("DDPMScheduler.setTimesteps", () => {
  for (const n of [0, 1.5, 1001]) {
    it(`rejects numInferenceSteps=${n}`, () => {
      assert.throws(() => new DDPMScheduler(BASE).setTimesteps(n), RangeError);
    });
  }
  it("leading / trailing / linspace", () => {
    const s = new DDPMScheduler(BASE);
    s.setTimesteps(4);
    assert.deepEqual(s.timesteps, [751, 501, 251, 1]);
    const t = new DDPMScheduler({ ...BASE, timestep_spacing: "trailing" });
    t.setTimesteps(3);
    assert.deepEqual(t.timesteps, [999, 666, 332]);
    const l = new DDPMScheduler({ ...BASE, timestep_spacing: "linspace" });
    l.setTimesteps(5);
    assert.deepEqual(l.timesteps, [999, 749, 500, 250, 0]);
  });
  it("custom timesteps: descending, below num_train_timesteps, exclusive with numInferenceSteps", () => {
    const s = new DDPMScheduler(BASE);
    s.setTimesteps(undefined, [900, 500, 10]);
    assert.deepEqual(s.timesteps, [900, 500, 10]);
    assert.equal(s.previousTimestep(900), 500);
    assert.equal(s.previousTimestep(10), -1);
    assert.throws(() => s.setTimesteps(undefined, [10, 500]), /descending/);
    assert.throws(() => s.setTimesteps(undefined, [1000, 5]), RangeError);
    assert.throws(() => s.setTimesteps(3, [900, 5]), /not both/);
    assert.throws(() => s.setTimesteps(undefined), RangeError);
  });
});

describe("DDPMScheduler.step", () => {
  const x = ramp(64, 0.03);
  const eps = ramp(64, 0.01);

  it("steps with the training schedule before setTimesteps (as diffusers does)", () => {
    const s = new DDPMScheduler(BASE);
    assert.equal(s.previousTimestep(999), 998);
    const out = s.step(eps, 0, x); // t = 0 draws no noise
    assert.equal(out.prevSample.length, 64);
  });
  it("refuses a timestep outside the schedule", () => {
    const s = new DDPMScheduler(BASE);
    s.setTimesteps(10);
    assert.throws(
      () => s.step(eps, 900, x, { generator: new Generator().manualSeed(0) }),
      /not in the schedule/,
    );
  });
  it("reports NaN in the model output", () => {
    const s = new DDPMScheduler(BASE);
    s.setTimesteps(10);
    const bad = eps.slice();
    bad[10] = Number.NaN;
    assert.throws(() => s.step(bad, 901, x), /NaN at index 10/);
  });
  it("draws from the default generator without one (torch's global RNG) and refuses mismatched lengths", () => {
    const s = new DDPMScheduler(BASE);
    s.setTimesteps(10);
    manualSeed(5);
    const viaDefault = s.step(eps, 901, x).prevSample;
    assert.deepEqual(
      viaDefault,
      s.step(eps, 901, x, { generator: new Generator().manualSeed(5) }).prevSample,
    );
    assert.throws(
      () => s.step(eps.subarray(4), 901, x, { generator: new Generator().manualSeed(0) }),
      RangeError,
    );
  });
  it("learned / learned_range split a 2C-channel model output per batch row", () => {
    const s = new DDPMScheduler({ ...BASE, variance_type: "learned_range" });
    s.setTimesteps(10);
    const twice = new Float32Array(128);
    for (let b = 0; b < 2; b++) {
      twice.set(eps.subarray(b * 32, (b + 1) * 32), b * 64);
      twice.fill(0.25, b * 64 + 32, b * 64 + 64);
    }
    const split = s.step(twice, 901, x, { generator: new Generator().manualSeed(3), batchSize: 2 });
    assert.equal(split.prevSample.length, 64);
    const plain = new DDPMScheduler(BASE);
    plain.setTimesteps(10);
    const same = plain.step(eps, 901, x, { generator: new Generator().manualSeed(3) });
    assert.deepEqual(split.predOriginalSample, same.predOriginalSample);
    // without the variance channels, learned_range has nothing to scale the noise with
    assert.throws(
      () => s.step(eps, 901, x, { generator: new Generator().manualSeed(3) }),
      /twice the sample/,
    );
  });
  it("fixed_small draws one randn of the sample's size per step with t > 0", () => {
    const s = new DDPMScheduler(BASE);
    s.setTimesteps(2);
    const g = new Generator().manualSeed(5);
    s.step(eps, 501, x, { generator: g });
    s.step(eps, 1, x, { generator: g });
    const reference = new Generator().manualSeed(5);
    reference.randn([64]);
    reference.randn([64]);
    assert.deepEqual(g.randn([16]), reference.randn([16]));
  });
});
