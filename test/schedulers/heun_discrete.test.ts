import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { SchedulerConfigError } from "../../src/schedulers/scheduler_utils.js";
import { HeunDiscreteScheduler } from "../../src/schedulers/scheduling_heun_discrete.js";
import { fakeModel, runTrajectory, trajectoryCases } from "./harness.js";

const f32 = Math.fround;
const cases = trajectoryCases("heun_");
const X4 = {
  num_train_timesteps: 1000,
  beta_start: 0.0001,
  beta_end: 0.02,
  beta_schedule: "scaled_linear",
  prediction_type: "v_prediction",
  steps_offset: 1,
};
const make = (over: Record<string, unknown> = {}) => HeunDiscreteScheduler.fromConfig({ ...X4, ...over });
const sample = () => Float32Array.from({ length: 16 }, (_, i) => Math.sin(2 * i) * 5);

describe("HeunDiscreteScheduler golden trajectories", () => {
  it("has fixture cases", () => assert.equal(cases.length, 10));
  for (const c of cases) {
    it(c.name, () => runTrajectory(c, HeunDiscreteScheduler.fromConfig(c.params.config)));
  }
});

describe("HeunDiscreteScheduler config", () => {
  it("uses diffusers 0.23.0 defaults", () => {
    const s = new HeunDiscreteScheduler();
    assert.equal(s.config.beta_start, 0.00085);
    assert.equal(s.config.beta_end, 0.012);
    assert.equal(s.config.clip_sample, false);
    assert.equal(s.config.clip_sample_range, 1);
    assert.equal(s.order, 2);
    // like diffusers' __init__ (set_timesteps(num_train_timesteps)): 1999 timesteps, 2000 sigmas
    assert.equal(s.timesteps.length, 1999);
    assert.equal(s.sigmas.length, 2000);
    assert.equal(s.numInferenceSteps, undefined);
  });

  it("accepts every beta_schedule of the class (incl. exp)", () => {
    for (const b of ["linear", "scaled_linear", "squaredcos_cap_v2", "exp"]) {
      const s = make({ beta_schedule: b });
      assert.ok(
        s.betas.every((v) => v > 0 && v < 1),
        b,
      );
    }
  });

  it("rejects invalid values with a SchedulerConfigError naming the key", () => {
    const bad: [string, unknown][] = [
      ["beta_schedule", "quadratic"],
      ["prediction_type", "velocity"],
      ["timestep_spacing", "uniform"],
      ["use_karras_sigmas", 1],
      ["clip_sample", "true"],
      ["clip_sample_range", "big"],
      ["num_train_timesteps", 2.5],
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

describe("HeunDiscreteScheduler schedule and steps", () => {
  it("repeats every timestep after the first and alternates Euler / Heun halves", () => {
    const s = make();
    s.setTimesteps(4);
    assert.deepEqual(s.timesteps, [999, 666, 666, 333, 333, 0, 0]);
    assert.equal(s.sigmas.length, 8);
    assert.equal(s.sigmas[1], s.sigmas[2]);
    assert.equal(s.sigmas[7], 0);
    let x: Float32Array = sample();
    const states: boolean[] = [];
    for (const t of s.timesteps) {
      states.push(s.stateInFirstOrder);
      x = s.step(fakeModel(s.scaleModelInput(x, t), t), t, x).prevSample;
    }
    assert.deepEqual(states, [true, false, true, false, true, false, true]);
    assert.ok(x.every(Number.isFinite));
  });

  it("the second half averages the derivatives and restarts from the stored sample", () => {
    const s = make({ prediction_type: "epsilon" });
    s.setTimesteps(3);
    const x0 = sample();
    const e1 = x0.map((v) => v * 0.3);
    const [t0, t1] = s.timesteps as [number, number];
    const x1 = s.step(e1, t0, x0).prevSample;
    const e2 = x1.map((v) => v * 0.25);
    const x2 = s.step(e2, t1, x1).prevSample;
    const s0 = s.sigmas[0] as number;
    const s1 = s.sigmas[1] as number;
    const dt = f32(s1 - s0);
    for (let i = 0; i < x0.length; i++) {
      const d1 = f32(f32((x0[i] as number) - f32((x0[i] as number) - f32(s0 * (e1[i] as number)))) / s0);
      const d2 = f32(f32((x1[i] as number) - f32((x1[i] as number) - f32(s1 * (e2[i] as number)))) / s1);
      assert.equal(x2[i], f32((x0[i] as number) + f32(f32(f32(d1 + d2) / 2) * dt)));
    }
  });

  it("clip_sample clamps the predicted x0 (prediction_type sample)", () => {
    const s = make({ prediction_type: "sample", clip_sample: true, clip_sample_range: 0.5 });
    s.setTimesteps(2);
    const x = new Float32Array([10, -10, 0.1]);
    const out = s.step(new Float32Array([3, -3, 0.2]), 999, x).prevSample;
    const s0 = s.sigmas[0] as number;
    const dt = f32((s.sigmas[1] as number) - s0);
    const expected = [0.5, -0.5, 0.2].map((p, i) =>
      f32((x[i] as number) + f32(f32(f32((x[i] as number) - f32(p)) / s0) * dt)),
    );
    assert.deepEqual(Array.from(out), expected);
  });

  it("addNoise: a repeated timestep maps to its second occurrence before stepping", () => {
    const s = make({ use_karras_sigmas: true });
    s.setTimesteps(3);
    const x = new Float32Array([1, 1]);
    const n = new Float32Array([1, 1]);
    const t1 = s.timesteps[1] as number;
    assert.equal(s.addNoise(x, n, [t1])[0], f32(1 + (s.sigmas[2] as number)));
    assert.equal(s.addNoise(x, n, [s.timesteps[0] as number])[0], f32(1 + (s.sigmas[0] as number)));
    assert.throws(() => s.addNoise(x, n, [12.25]), RangeError);
  });
});

describe("HeunDiscreteScheduler bad inputs", () => {
  it("setTimesteps needs an integer in 1..num_train_timesteps", () => {
    const s = make();
    for (const n of [0, 1.5, 1001]) assert.throws(() => s.setTimesteps(n), RangeError, String(n));
  });

  it("step before setTimesteps, unknown timesteps, NaN output, overrun", () => {
    const s = make();
    assert.throws(() => s.step(sample(), 999, sample()), /setTimesteps/);
    assert.throws(() => s.scaleModelInput(sample(), 999), /setTimesteps/);
    s.setTimesteps(2);
    assert.throws(() => s.step(sample(), 998, sample()), /not in the schedule/);
    const bad = sample();
    bad[5] = Number.NEGATIVE_INFINITY;
    assert.throws(() => s.step(bad, 999, sample()), /modelOutput contains -Infinity/);
    let x: Float32Array = sample();
    for (const t of s.timesteps) x = s.step(fakeModel(s.scaleModelInput(x, t), t), t, x).prevSample;
    assert.throws(() => s.step(x, 0, x), /finished/);
  });
});
