import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { manualSeed } from "../../src/random/default_generator.js";
import { Generator } from "../../src/random/generator.js";
import { SchedulerConfigError } from "../../src/schedulers/scheduler_utils.js";
import { KDPM2AncestralDiscreteScheduler } from "../../src/schedulers/scheduling_k_dpm_2_ancestral_discrete.js";
import { fakeModel, runTrajectory, trajectoryCases } from "./harness.js";

const f32 = Math.fround;
const cases = trajectoryCases("kdpm2_ancestral_");
const X4 = {
  num_train_timesteps: 1000,
  beta_start: 0.0001,
  beta_end: 0.02,
  beta_schedule: "scaled_linear",
  prediction_type: "v_prediction",
  steps_offset: 1,
};
const make = (over: Record<string, unknown> = {}) =>
  KDPM2AncestralDiscreteScheduler.fromConfig({ ...X4, ...over });
const sample = () => Float32Array.from({ length: 16 }, (_, i) => Math.sin(5 * i) * 3);

describe("KDPM2AncestralDiscreteScheduler golden trajectories", () => {
  it("has fixture cases (n=2 is omitted by the reference: it produces NaN)", () =>
    assert.equal(cases.length, 4));
  for (const c of cases) {
    it(c.name, () => runTrajectory(c, KDPM2AncestralDiscreteScheduler.fromConfig(c.params.config)));
  }
});

describe("KDPM2AncestralDiscreteScheduler config", () => {
  it("uses diffusers 0.23.0 defaults", () => {
    const s = new KDPM2AncestralDiscreteScheduler();
    assert.equal(s.config.beta_start, 0.00085);
    assert.equal(s.config.beta_end, 0.012);
    assert.equal(s.config.prediction_type, "epsilon");
    assert.equal(s.order, 2);
  });

  it("rejects invalid values with a SchedulerConfigError naming the key", () => {
    const bad: [string, unknown][] = [
      ["beta_schedule", "sigmoid"],
      ["prediction_type", "sample"],
      ["timestep_spacing", "even"],
      ["use_karras_sigmas", 0],
      ["num_train_timesteps", "1000"],
      ["trained_betas", { length: 3 }],
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

describe("KDPM2AncestralDiscreteScheduler schedule and steps", () => {
  it("reproduces the reference float32 NaN for n=2 and reports the NaN model output", () => {
    const s = make();
    s.setTimesteps(2);
    // sigma_down(0) is exactly 0 in float32, lerp(log s0, -inf, 0.5) is NaN, so is the interpolated timestep
    assert.equal(s.sigmasDown[0], 0);
    assert.equal(s.timesteps.length, 3);
    assert.ok(Number.isNaN(s.timesteps[1] as number));
    const g = new Generator().manualSeed(1234);
    let x: Float32Array = sample();
    const t0 = s.timesteps[0] as number;
    x = s.step(fakeModel(s.scaleModelInput(x, t0), t0), t0, x, { generator: g }).prevSample;
    const t1 = s.timesteps[1] as number;
    const mi = s.scaleModelInput(x, t1);
    assert.ok(mi.every(Number.isNaN));
    assert.throws(() => s.step(fakeModel(mi, t1), t1, x, { generator: g }), /modelOutput contains NaN/);
  });

  it("has the expected layout for n=5", () => {
    const s = make();
    s.setTimesteps(5);
    assert.equal(s.timesteps.length, 9);
    assert.deepEqual(
      s.timesteps.filter((_, i) => i % 2 === 0),
      [999, 749.25, 499.5, 249.75, 0],
    );
    for (const a of [s.sigmas, s.sigmasInterpol, s.sigmasUp, s.sigmasDown]) assert.equal(a.length, 12);
    assert.equal(s.sigmasInterpol[9], 0); // the last two base entries are zeroed
  });

  it("second half: midpoint derivative down to sigma_down plus sigma_up * noise", () => {
    const s = make({ prediction_type: "epsilon" });
    s.setTimesteps(4);
    const g = new Generator().manualSeed(5);
    const x0 = sample();
    const [t0, t1] = s.timesteps as [number, number];
    const x1 = s.step(
      x0.map((v) => v * 0.1),
      t0,
      x0,
      { generator: g },
    ).prevSample;
    const e2 = x1.map((v) => v * 0.2);
    const x2 = s.step(e2, t1, x1, { generator: g }).prevSample;
    const ref = new Generator().manualSeed(5);
    ref.randn([x0.length]); // the first half draws too
    const noise = ref.randn([x0.length]);
    const si = s.sigmasInterpol[0] as number;
    const dt = f32((s.sigmasDown[0] as number) - (s.sigmas[0] as number));
    const up = s.sigmasUp[0] as number;
    for (let i = 0; i < x0.length; i++) {
      const pred = f32((x1[i] as number) - f32(si * (e2[i] as number)));
      const d = f32(f32((x1[i] as number) - pred) / si);
      assert.equal(x2[i], f32(f32((x0[i] as number) + f32(d * dt)) + f32((noise[i] as number) * up)));
    }
  });

  it("runs every spacing / prediction combination to a finite sample", () => {
    for (const timestep_spacing of ["linspace", "leading", "trailing"]) {
      for (const prediction_type of ["epsilon", "v_prediction"]) {
        for (const use_karras_sigmas of [false, true]) {
          const s = make({ timestep_spacing, prediction_type, use_karras_sigmas });
          s.setTimesteps(6);
          const g = new Generator().manualSeed(1);
          let x: Float32Array = sample();
          for (const t of s.timesteps) {
            x = s.step(fakeModel(s.scaleModelInput(x, t), t), t, x, { generator: g }).prevSample;
          }
          assert.ok(x.every(Number.isFinite), `${timestep_spacing} ${prediction_type} ${use_karras_sigmas}`);
        }
      }
    }
  });
});

describe("KDPM2AncestralDiscreteScheduler bad inputs", () => {
  it("setTimesteps needs an integer in 1..num_train_timesteps", () => {
    const s = make();
    for (const n of [0, 1.5, 1001]) assert.throws(() => s.setTimesteps(n), RangeError, String(n));
  });

  it("without a generator, steps draw from the default generator (torch's global RNG)", () => {
    const a = make();
    const b = make();
    a.setTimesteps(3);
    b.setTimesteps(3);
    const g = new Generator().manualSeed(4);
    manualSeed(4);
    for (const t of a.timesteps.slice(0, 2)) {
      const viaDefault = a.step(sample(), t, sample()).prevSample;
      assert.deepEqual(viaDefault, b.step(sample(), t, sample(), { generator: g }).prevSample);
    }
  });

  it("step before setTimesteps, unknown timesteps, NaN output, overrun", () => {
    const s = make();
    const g = new Generator().manualSeed(0);
    assert.throws(() => s.step(sample(), 999, sample(), { generator: g }), /setTimesteps/);
    s.setTimesteps(3);
    assert.throws(() => s.step(sample(), 500, sample(), { generator: g }), /not in the schedule/);
    const bad = sample();
    bad[2] = Number.NaN;
    assert.throws(() => s.step(bad, 999, sample(), { generator: g }), /modelOutput contains NaN/);
    let x: Float32Array = sample();
    for (const t of s.timesteps) {
      x = s.step(fakeModel(s.scaleModelInput(x, t), t), t, x, { generator: g }).prevSample;
    }
    assert.throws(() => s.step(x, 0, x, { generator: g }), /finished/);
  });
});
