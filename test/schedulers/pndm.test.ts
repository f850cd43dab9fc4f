import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { SchedulerConfigError } from "../../src/schedulers/scheduler_utils.js";
import { PNDMScheduler } from "../../src/schedulers/scheduling_pndm.js";
import { fakeModel, runTrajectory, trajectoryCases } from "./harness.js";

const cases = trajectoryCases("pndm_");

const BASE = {
  num_train_timesteps: 1000,
  beta_start: 0.0001,
  beta_end: 0.02,
  beta_schedule: "scaled_linear",
  prediction_type: "v_prediction",
  steps_offset: 1,
  set_alpha_to_one: false,
  skip_prk_steps: true,
};

const ramp = (n: number, scale = 0.01) => Float32Array.from({ length: n }, (_, i) => (i - n / 2) * scale);

/** Runs the whole denoising loop with the fixtures' fake model; returns the final sample. */
function denoise(s: PNDMScheduler, n: number): Float32Array {
  s.setTimesteps(n);
  let x: Float32Array = ramp(64, 0.05);
  for (const t of s.timesteps) x = s.step(fakeModel(s.scaleModelInput(x, t), t), t, x).prevSample;
  return x;
}

describe("PNDMScheduler golden trajectories", () => {
  it("has fixture cases", () => assert.equal(cases.length, 5));
  for (const c of cases) {
    it(c.name, () => runTrajectory(c, PNDMScheduler.fromConfig(c.params.config)));
  }
});

describe("PNDMScheduler config", () => {
  it("uses the diffusers 0.23.0 defaults and keeps unknown keys", () => {
    const s = PNDMScheduler.fromConfig({ clip_sample: false });
    assert.equal(s.config.skip_prk_steps, false);
    assert.equal(s.config.set_alpha_to_one, false);
    assert.equal(s.config.beta_schedule, "linear");
    assert.equal(s.config.clip_sample, false);
    assert.equal(s.finalAlphaCumprod, s.alphasCumprod[0]);
    assert.deepEqual(s.timesteps, []);
    assert.equal(s.numInferenceSteps, undefined);
  });
  const bad: [string, unknown][] = [
    ["beta_schedule", "sigmoid"],
    ["prediction_type", "sample"],
    ["timestep_spacing", "karras"],
    ["skip_prk_steps", "true"],
    ["set_alpha_to_one", null],
    ["num_train_timesteps", "1000"],
  ];
  for (const [key, value] of bad) {
    it(`rejects ${key}=${JSON.stringify(value)} naming the key`, () => {
      assert.throws(
        () => PNDMScheduler.fromConfig({ [key]: value }),
        (e: unknown) => e instanceof SchedulerConfigError && e.message.includes(`"${key}"`),
      );
    });
  }
});

describe("PNDMScheduler.setTimesteps", () => {
  it("skip_prk_steps repeats the second timestep", () => {
    const s = new PNDMScheduler(BASE);
    s.setTimesteps(5);
    assert.deepEqual(s.timesteps, [801, 601, 601, 401, 201, 1]);
    s.setTimesteps(1);
    assert.deepEqual(s.timesteps, [1]);
    const t = new PNDMScheduler({ ...BASE, timestep_spacing: "trailing" });
    t.setTimesteps(6);
    assert.deepEqual(t.timesteps, [999, 832, 832, 666, 499, 332, 166]);
  });
  it("PRK warm-up: 12 Runge-Kutta timesteps, then PLMS (values from diffusers 0.23.0)", () => {
    const s = new PNDMScheduler();
    s.setTimesteps(10);
    assert.deepEqual(s.prkTimesteps, [900, 850, 850, 800, 800, 750, 750, 700, 700, 650, 650, 600]);
    assert.deepEqual(s.plmsTimesteps, [600, 500, 400, 300, 200, 100, 0]);
    assert.equal(s.timesteps.length, 19);
  });
  it("PRK needs at least 4 inference steps (diffusers fails there too)", () => {
    assert.throws(() => new PNDMScheduler().setTimesteps(3), /skip_prk_steps/);
  });
  for (const n of [0, 1.5, 1001]) {
    it(`rejects numInferenceSteps=${n}`, () => {
      assert.throws(() => new PNDMScheduler(BASE).setTimesteps(n), RangeError);
    });
  }
});

describe("PNDMScheduler.step", () => {
  const x = ramp(64, 0.03);
  it("refuses to step before setTimesteps", () => {
    assert.throws(() => new PNDMScheduler(BASE).step(x, 801, x), /setTimesteps/);
  });
  it("refuses a timestep outside the schedule", () => {
    const s = new PNDMScheduler(BASE);
    s.setTimesteps(5);
    assert.throws(() => s.step(x, 800, x), /not in the schedule/);
  });
  it("reports NaN in the model output and refuses mismatched lengths", () => {
    const s = new PNDMScheduler(BASE);
    s.setTimesteps(5);
    const bad = x.slice();
    bad[0] = Number.NaN;
    assert.throws(() => s.step(bad, 801, x), /NaN at index 0/);
    assert.throws(() => s.step(x.subarray(1), 801, x), RangeError);
  });
  it("setTimesteps resets the multistep state, so a second run repeats the first", () => {
    const s = new PNDMScheduler(BASE);
    const a = denoise(s, 8);
    const b = denoise(s, 8);
    assert.deepEqual(a, b);
    assert.ok(a.every(Number.isFinite));
  });
  it("runs the PRK path (skip_prk_steps=false) for every spacing", () => {
    for (const spacing of ["leading", "linspace", "trailing"]) {
      const s = new PNDMScheduler({ ...BASE, skip_prk_steps: false, timestep_spacing: spacing });
      const out = denoise(s, 6);
      assert.ok(out.every(Number.isFinite), spacing);
      assert.equal(s.timesteps.length, 12 + 3);
    }
  });
});

describe("PNDMScheduler.addNoise", () => {
  it("uses one timestep per row and rejects bad timesteps", () => {
    const s = new PNDMScheduler(BASE);
    const x = ramp(6, 0.1);
    const out = s.addNoise(x, x, [0, 999]);
    assert.deepEqual(out.subarray(3), s.addNoise(x.subarray(3), x.subarray(3), [999]));
    assert.throws(() => s.addNoise(x, x, [1000]), RangeError);
    assert.throws(() => s.addNoise(x, x, [1, 2, 3, 4]), RangeError);
  });
});
