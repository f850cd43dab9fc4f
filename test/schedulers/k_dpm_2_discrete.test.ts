import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { SchedulerConfigError } from "../../src/schedulers/scheduler_utils.js";
import { KDPM2DiscreteScheduler } from "../../src/schedulers/scheduling_k_dpm_2_discrete.js";
import { fakeModel, runTrajectory, trajectoryCases } from "./harness.js";

const f32 = Math.fround;
const cases = trajectoryCases("kdpm2_").filter((c) => !c.name.startsWith("kdpm2_ancestral_"));
const X4 = {
  num_train_timesteps: 1000,
  beta_start: 0.0001,
  beta_end: 0.02,
  beta_schedule: "scaled_linear",
  prediction_type: "v_prediction",
  steps_offset: 1,
};
const make = (over: Record<string, unknown> = {}) => KDPM2DiscreteScheduler.fromConfig({ ...X4, ...over });
const sample = () => Float32Array.from({ length: 16 }, (_, i) => Math.cos(3 * i) * 4);

describe("KDPM2DiscreteScheduler golden trajectories", () => {
  it("has fixture cases", () => assert.equal(cases.length, 10));
  for (const c of cases) {
    it(c.name, () => runTrajectory(c, KDPM2DiscreteScheduler.fromConfig(c.params.config)));
  }
});

describe("KDPM2DiscreteScheduler config", () => {
  it("uses diffusers 0.23.0 defaults", () => {
    const s = new KDPM2DiscreteScheduler();
    assert.equal(s.config.beta_start, 0.00085);
    assert.equal(s.config.beta_schedule, "linear");
    assert.equal(s.config.use_karras_sigmas, false);
    assert.equal(s.order, 2);
    assert.equal(s.timesteps.length, 1999); // diffusers' __init__ runs set_timesteps(num_train_timesteps)
    assert.equal(s.numInferenceSteps, undefined);
  });

  it("rejects invalid values with a SchedulerConfigError naming the key", () => {
    const bad: [string, unknown][] = [
      ["beta_schedule", "exp"],
      ["prediction_type", "sample"], // NotImplementedError in diffusers' step(); rejected up front
      ["prediction_type", "v"],
      ["timestep_spacing", "log"],
      ["use_karras_sigmas", "false"],
      ["num_train_timesteps", 1],
      ["steps_offset", "1"],
    ];
    for (const [key, value] of bad) {
      assert.throws(
        () => make({ [key]: value }),
        (e: unknown) => e instanceof SchedulerConfigError && e.message.includes(`"${key}"`),
        `${key}=${JSON.stringify(value)}`,
      );
    }
  });
});

describe("KDPM2DiscreteScheduler schedule and steps", () => {
  it("interleaves interpolated timesteps (303.4489 for n=2) and repeats the sigmas", () => {
    const s = make();
    s.setTimesteps(2);
    assert.equal(s.timesteps.length, 3);
    assert.equal(s.timesteps[1], f32(303.4488830566406));
    assert.deepEqual([s.timesteps[0], s.timesteps[2]], [999, 0]);
    assert.equal(s.sigmas.length, 6);
    assert.ok(Number.isNaN(s.sigmasInterpol[0] as number)); // lerp(log s0, log 0 = -inf, 0.5), unused
    // the interpolated sigma is the geometric mean of its neighbours
    const gm = Math.sqrt((s.sigmas[0] as number) * (s.sigmas[1] as number));
    assert.ok(Math.abs((s.sigmasInterpol[1] as number) - gm) / gm < 1e-6);
  });

  it("karras timesteps are rounded float64 values, interpolated ones float32", () => {
    const s = make({ use_karras_sigmas: true });
    s.setTimesteps(5);
    for (let i = 0; i < s.timesteps.length; i += 2) assert.ok(Number.isInteger(s.timesteps[i]));
    for (let i = 1; i < s.timesteps.length; i += 2) {
      assert.equal(s.timesteps[i], f32(s.timesteps[i] as number));
      assert.ok(!Number.isInteger(s.timesteps[i]));
    }
  });

  it("runs every spacing / prediction combination to a finite sample", () => {
    for (const timestep_spacing of ["linspace", "leading", "trailing"]) {
      for (const prediction_type of ["epsilon", "v_prediction"]) {
        for (const use_karras_sigmas of [false, true]) {
          const s = make({ timestep_spacing, prediction_type, use_karras_sigmas });
          s.setTimesteps(7);
          let x: Float32Array = sample();
          for (const t of s.timesteps) x = s.step(fakeModel(s.scaleModelInput(x, t), t), t, x).prevSample;
          assert.ok(x.every(Number.isFinite), `${timestep_spacing} ${prediction_type} ${use_karras_sigmas}`);
        }
      }
    }
  });

  it("the second half restarts from the stored sample with the midpoint derivative", () => {
    const s = make({ prediction_type: "epsilon" });
    s.setTimesteps(3);
    const x0 = sample();
    const [t0, t1] = s.timesteps as [number, number];
    const x1 = s.step(
      x0.map((v) => v * 0.1),
      t0,
      x0,
    ).prevSample;
    assert.equal(s.stateInFirstOrder, false);
    const e2 = x1.map((v) => v * 0.2);
    const x2 = s.step(e2, t1, x1).prevSample;
    const si = s.sigmasInterpol[1] as number;
    const dt = f32((s.sigmas[1] as number) - (s.sigmas[0] as number));
    for (let i = 0; i < x0.length; i++) {
      const pred = f32((x1[i] as number) - f32(si * (e2[i] as number)));
      const d = f32(f32((x1[i] as number) - pred) / si);
      assert.equal(x2[i], f32((x0[i] as number) + f32(d * dt)));
    }
  });

  it("addNoise picks the occurrence diffusers' index_for_timestep picks", () => {
    const s = make();
    s.setTimesteps(3);
    const x = new Float32Array([1, 2]);
    const n = new Float32Array([1, 1]);
    const t1 = s.timesteps[1] as number;
    assert.equal(s.addNoise(x, n, [t1])[0], f32(1 + (s.sigmas[1] as number)));
    assert.throws(() => s.addNoise(x, n, [1.5]), RangeError);
    assert.throws(() => s.addNoise(x, new Float32Array(1), [t1]), RangeError);
  });
});

describe("KDPM2DiscreteScheduler bad inputs", () => {
  it("setTimesteps needs an integer in 1..num_train_timesteps", () => {
    const s = make();
    for (const n of [0, 1.5, 1001]) assert.throws(() => s.setTimesteps(n), RangeError, String(n));
  });

  it("step before setTimesteps, unknown timesteps, NaN output, overrun", () => {
    const s = make();
    assert.throws(() => s.step(sample(), 999, sample()), /setTimesteps/);
    s.setTimesteps(2);
    assert.throws(() => s.scaleModelInput(sample(), 303), /not in the schedule/);
    const bad = sample();
    bad[1] = Number.NaN;
    assert.throws(() => s.step(bad, 999, sample()), /modelOutput contains NaN/);
    let x: Float32Array = sample();
    for (const t of s.timesteps) x = s.step(fakeModel(s.scaleModelInput(x, t), t), t, x).prevSample;
    assert.throws(() => s.step(x, 0, x), /finished/);
  });
});
