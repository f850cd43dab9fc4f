import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Generator } from "../../src/random/generator.js";
import { SchedulerConfigError } from "../../src/schedulers/scheduler_utils.js";
import { DEISMultistepScheduler } from "../../src/schedulers/scheduling_deis_multistep.js";
import { runTrajectory, trajectoryCases } from "./harness.js";

const X4 = {
  num_train_timesteps: 1000,
  beta_start: 0.0001,
  beta_end: 0.02,
  beta_schedule: "scaled_linear",
  prediction_type: "v_prediction",
  steps_offset: 1,
};

describe("DEISMultistepScheduler golden trajectories (diffusers 0.23.0)", () => {
  const cases = trajectoryCases("deis_");
  it("has fixture cases", () => assert.equal(cases.length, 5));
  for (const c of cases) {
    it(c.name, () => runTrajectory(c, DEISMultistepScheduler.fromConfig(c.params.config)));
  }
});

function run(s: DEISMultistepScheduler, n: number): Float32Array {
  s.setTimesteps(n);
  let x = new Generator().manualSeed(3).randn([64]);
  for (const t of s.timesteps) {
    const eps = x.map((v) => 0.5 * v * Math.cos(t / 1000) + 0.1 * Math.sin(3 * v));
    x = s.step(eps, t, x).prevSample;
  }
  return x;
}

describe("DEISMultistepScheduler options", () => {
  it("timestep spacings", () => {
    const lead = new DEISMultistepScheduler({ ...X4, timestep_spacing: "leading" });
    lead.setTimesteps(4);
    assert.deepEqual(lead.timesteps, [801, 601, 401, 201]);
    const tr = new DEISMultistepScheduler({ ...X4, timestep_spacing: "trailing" });
    tr.setTimesteps(3);
    assert.deepEqual(tr.timesteps, [999, 666, 332]);
    const lin = new DEISMultistepScheduler(X4);
    lin.setTimesteps(1);
    assert.deepEqual(lin.timesteps, [999]);
    assert.equal(lin.sigmas.length, 2);
  });

  it("orders 1..3, every prediction type, Karras and thresholding run and stay finite", () => {
    for (const solver_order of [1, 2, 3]) {
      for (const prediction_type of ["epsilon", "v_prediction", "sample"]) {
        for (const use_karras_sigmas of [false, true]) {
          const cfg = { ...X4, solver_order, prediction_type, use_karras_sigmas, thresholding: true };
          const x = run(new DEISMultistepScheduler(cfg), 20);
          assert.ok(x.every(Number.isFinite), JSON.stringify(cfg));
        }
      }
    }
  });

  it("third order differs from second order once three outputs exist", () => {
    const a = run(new DEISMultistepScheduler({ ...X4, solver_order: 2 }), 20);
    const b = run(new DEISMultistepScheduler({ ...X4, solver_order: 3 }), 20);
    assert.ok(a.some((v, i) => v !== b[i]));
  });

  it("addNoise", () => {
    const s = new DEISMultistepScheduler(X4);
    s.setTimesteps(2);
    const out = s.addNoise(Float32Array.from([2, 2]), Float32Array.from([0, 0]), [999, 500]);
    assert.ok(out.every(Number.isFinite) && (out[0] as number) < (out[1] as number));
    assert.throws(() => s.addNoise(Float32Array.from([1, 1, 1]), Float32Array.from([0, 0, 0]), [999, 500]));
  });
});

describe("DEISMultistepScheduler bad inputs", () => {
  it("rejects bad config values with SchedulerConfigError naming the key", () => {
    const bad: [Record<string, unknown>, string][] = [
      [{ beta_schedule: "quadratic" }, "beta_schedule"],
      [{ prediction_type: "noise" }, "prediction_type"],
      [{ algorithm_type: "sde-dpmsolver++" }, "algorithm_type"],
      [{ solver_type: "euler" }, "solver_type"],
      [{ timestep_spacing: "karras" }, "timestep_spacing"],
      [{ solver_order: "2" }, "solver_order"],
      [{ steps_offset: 0.5 }, "steps_offset"],
      [{ beta_start: "small" }, "beta_start"],
    ];
    for (const [cfg, key] of bad) {
      assert.throws(
        () => DEISMultistepScheduler.fromConfig(cfg),
        (e: unknown) => e instanceof SchedulerConfigError && e.message.includes(key),
        key,
      );
    }
    const s = DEISMultistepScheduler.fromConfig({
      algorithm_type: "dpmsolver++",
      solver_type: "midpoint",
      z: 2,
    });
    assert.equal(s.config.algorithm_type, "deis");
    assert.equal(s.config.solver_type, "logrho");
    assert.equal(s.config["z"], 2);
  });

  it("rejects numInferenceSteps 0 / 1.5 / 1001", () => {
    const s = new DEISMultistepScheduler(X4);
    for (const n of [0, 1.5, 1001]) assert.throws(() => s.setTimesteps(n), RangeError);
  });

  it("step before setTimesteps, unknown timestep, NaN output", () => {
    const s = new DEISMultistepScheduler(X4);
    const x = new Float32Array(4);
    assert.throws(() => s.step(x, 999, x), /setTimesteps/);
    s.setTimesteps(3);
    assert.throws(() => s.step(x, 1000, x), /not in the schedule/);
    assert.throws(() => s.step(Float32Array.from([Number.NaN, 0, 0, 0]), 999, x), /NaN/);
  });
});
