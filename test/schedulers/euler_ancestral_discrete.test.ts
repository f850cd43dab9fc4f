import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { manualSeed } from "../../src/random/default_generator.js";
import { Generator } from "../../src/random/generator.js";
import { SchedulerConfigError } from "../../src/schedulers/scheduler_utils.js";
import { EulerAncestralDiscreteScheduler } from "../../src/schedulers/scheduling_euler_ancestral_discrete.js";
import { fakeModel, runTrajectory, trajectoryCases } from "./harness.js";

const f32 = Math.fround;
const cases = trajectoryCases("euler_ancestral_");
const X4 = {
  num_train_timesteps: 1000,
  beta_start: 0.0001,
  beta_end: 0.02,
  beta_schedule: "scaled_linear",
  prediction_type: "v_prediction",
  steps_offset: 1,
};
const make = (over: Record<string, unknown> = {}) =>
  EulerAncestralDiscreteScheduler.fromConfig({ ...X4, ...over });
const sample = () => Float32Array.from({ length: 32 }, (_, i) => Math.cos(i) * 2);

describe("EulerAncestralDiscreteScheduler golden trajectories", () => {
  it("has fixture cases", () => assert.equal(cases.length, 5));
  for (const c of cases) {
    it(c.name, () => runTrajectory(c, EulerAncestralDiscreteScheduler.fromConfig(c.params.config)));
  }
});

describe("EulerAncestralDiscreteScheduler config", () => {
  it("uses diffusers 0.23.0 defaults and keeps unknown keys", () => {
    const s = EulerAncestralDiscreteScheduler.fromConfig({ use_karras_sigmas: true });
    assert.equal(s.config.beta_schedule, "linear");
    assert.equal(s.config.prediction_type, "epsilon");
    assert.equal(s.config.timestep_spacing, "linspace");
    assert.equal(s.config.use_karras_sigmas, true); // not a parameter of this class: kept, ignored
    assert.equal(s.order, 1);
  });

  it("rejects invalid values with a SchedulerConfigError naming the key", () => {
    const bad: [string, unknown][] = [
      ["beta_schedule", "exp"],
      ["prediction_type", "sample"], // diffusers raises NotImplementedError in step(); rejected up front
      ["prediction_type", "x0"],
      ["timestep_spacing", "karras"],
      ["num_train_timesteps", -5],
      ["steps_offset", 0.5],
      ["beta_end", Number.NaN],
      ["trained_betas", [0.1]],
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

describe("EulerAncestralDiscreteScheduler step", () => {
  it("is the ancestral Euler step with sigma_up noise drawn from the generator", () => {
    const s = make({ prediction_type: "epsilon" });
    s.setTimesteps(3);
    const x = sample();
    const eps = x.map((v) => v * 0.2);
    const t = s.timesteps[1] as number;
    // start mid-schedule: the first call with t locates its index (diffusers `_init_step_index`)
    const out = s.step(eps, t, x, { generator: new Generator().manualSeed(11) });
    const noise = new Generator().manualSeed(11).randn([x.length]);
    const from = s.sigmas[1] as number;
    const to = s.sigmas[2] as number;
    const to2 = f32(to * to);
    const from2 = f32(from * from);
    const up = f32(Math.sqrt(f32(f32(to2 * f32(from2 - to2)) / from2)));
    const down = f32(Math.sqrt(f32(to2 - f32(up * up))));
    for (let i = 0; i < x.length; i++) {
      const xi = x[i] as number;
      const pred = f32(xi - f32(from * (eps[i] as number)));
      const d = f32(f32(xi - pred) / from);
      const exp = f32(f32(xi + f32(d * f32(down - from))) + f32((noise[i] as number) * up));
      assert.equal(out.prevSample[i], exp);
      assert.equal(out.predOriginalSample[i], pred);
    }
    assert.equal(s.stepIndex, 2);
  });

  it("without a generator, every step draws its noise from the default generator (torch's global RNG)", () => {
    const a = make();
    const b = make();
    a.setTimesteps(3);
    b.setTimesteps(3);
    const t = a.timesteps[0] as number;
    manualSeed(9);
    const viaDefault = a.step(sample(), t, sample()).prevSample;
    const viaGen = b.step(sample(), t, sample(), { generator: new Generator().manualSeed(9) }).prevSample;
    assert.deepEqual(viaDefault, viaGen);
  });

  it("addNoise uses sigma(t) per row", () => {
    const s = make();
    s.setTimesteps(4);
    const x = new Float32Array([0.5, -0.5]);
    const out = s.addNoise(x, new Float32Array([2, 2]), [s.timesteps[3] as number]);
    assert.equal(out[0], f32(0.5 + f32(2 * (s.sigmas[3] as number))));
    assert.throws(() => s.addNoise(x, new Float32Array(3), [s.timesteps[0] as number]), RangeError);
  });
});

describe("EulerAncestralDiscreteScheduler bad inputs", () => {
  it("setTimesteps needs an integer in 1..num_train_timesteps", () => {
    const s = make();
    for (const n of [0, 1.5, 1001]) assert.throws(() => s.setTimesteps(n), RangeError, String(n));
  });

  it("step before setTimesteps, unknown timesteps, NaN output, overrun", () => {
    const s = make();
    const g = new Generator().manualSeed(0);
    assert.throws(() => s.step(sample(), 999, sample(), { generator: g }), /setTimesteps/);
    s.setTimesteps(2);
    assert.throws(() => s.step(sample(), 500, sample(), { generator: g }), /not in the schedule/);
    const bad = sample();
    bad[0] = Number.NaN;
    assert.throws(() => s.step(bad, 999, sample(), { generator: g }), /modelOutput contains NaN/);
    let x: Float32Array = sample();
    for (const t of s.timesteps) {
      x = s.step(fakeModel(s.scaleModelInput(x, t), t), t, x, { generator: g }).prevSample;
    }
    assert.throws(() => s.step(x, 0, x, { generator: g }), /finished/);
  });
});
