import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Generator } from "../../src/random/generator.js";
import { SchedulerConfigError } from "../../src/schedulers/scheduler_utils.js";
import { DPMSolverSinglestepScheduler } from "../../src/schedulers/scheduling_dpmsolver_singlestep.js";
import { runTrajectory, trajectoryCases } from "./harness.js";

const X4 = {
  num_train_timesteps: 1000,
  beta_start: 0.0001,
  beta_end: 0.02,
  beta_schedule: "scaled_linear",
  prediction_type: "v_prediction",
  steps_offset: 1,
};

describe("DPMSolverSinglestepScheduler golden trajectories (diffusers 0.23.0)", () => {
  const cases = trajectoryCases("dpm_singlestep_");
  it("has fixture cases", () => assert.equal(cases.length, 5));
  for (const c of cases) {
    it(c.name, () => runTrajectory(c, DPMSolverSinglestepScheduler.fromConfig(c.params.config)));
  }
});

function run(s: DPMSolverSinglestepScheduler, n: number): Float32Array {
  s.setTimesteps(n);
  let x = new Generator().manualSeed(3).randn([64]);
  for (const t of s.timesteps) {
    const eps = x.map((v) => 0.5 * v * Math.cos(t / 1000) + 0.1 * Math.sin(3 * v));
    x = s.step(eps, t, x).prevSample;
  }
  return x;
}

describe("DPMSolverSinglestepScheduler options", () => {
  it("ignores steps_offset / timestep_spacing: linspace(0, 999, n+1) rounded", () => {
    const s = new DPMSolverSinglestepScheduler({ ...X4, timestep_spacing: "leading" });
    s.setTimesteps(4);
    assert.deepEqual(s.timesteps, [999, 749, 500, 250]);
    assert.deepEqual(Array.from(s.sigmas.slice(4)), [s.sigmas[4]]);
  });

  it("order lists follow get_order_list", () => {
    const s = new DPMSolverSinglestepScheduler({ solver_order: 3 });
    assert.deepEqual(s.getOrderList(6), [1, 2, 3, 1, 2, 1]);
    assert.deepEqual(s.getOrderList(7), [1, 2, 3, 1, 2, 3, 1]);
    assert.deepEqual(s.getOrderList(5), [1, 2, 3, 1, 2]);
    const s2 = new DPMSolverSinglestepScheduler({ solver_order: 2 });
    assert.deepEqual(s2.getOrderList(5), [1, 2, 1, 2, 1]);
    const s3 = new DPMSolverSinglestepScheduler({ solver_order: 3, lower_order_final: false });
    assert.deepEqual(s3.getOrderList(6), [1, 2, 3, 1, 2, 3]);
    s3.setTimesteps(7); // uneven: diffusers switches lower_order_final on
    assert.equal(s3.config.lower_order_final, true);
    assert.deepEqual(s3.orderList, [1, 2, 3, 1, 2, 3, 1]);
  });

  it("every algorithm / solver / order / prediction combination runs and stays finite", () => {
    for (const algorithm_type of ["dpmsolver++", "dpmsolver"]) {
      for (const solver_type of ["midpoint", "heun"]) {
        for (const solver_order of [1, 2, 3]) {
          for (const prediction_type of ["epsilon", "v_prediction", "sample"]) {
            const cfg = { ...X4, algorithm_type, solver_type, solver_order, prediction_type };
            const x = run(new DPMSolverSinglestepScheduler({ ...cfg, thresholding: true }), 7);
            assert.ok(x.every(Number.isFinite), JSON.stringify(cfg));
          }
        }
      }
    }
    const k = new DPMSolverSinglestepScheduler({ ...X4, use_karras_sigmas: true });
    assert.ok(run(k, 10).every(Number.isFinite));
    assert.ok(k.timesteps.every(Number.isInteger));
  });

  it("addNoise follows the per-row timesteps", () => {
    const s = new DPMSolverSinglestepScheduler(X4);
    s.setTimesteps(2);
    const out = s.addNoise(Float32Array.from([1, 1]), Float32Array.from([0, 0]), [999, 500]);
    const sig = s.sigmas[1] as number;
    assert.ok(Math.abs((out[1] as number) - 1 / Math.sqrt(sig * sig + 1)) < 1e-6);
    assert.throws(() => s.addNoise(Float32Array.from([1]), Float32Array.from([0]), [3]), /exactly once/);
  });
});

describe("DPMSolverSinglestepScheduler bad inputs", () => {
  it("rejects bad config values with SchedulerConfigError naming the key", () => {
    const bad: [Record<string, unknown>, string][] = [
      [{ beta_schedule: "cosine" }, "beta_schedule"],
      [{ prediction_type: "x0" }, "prediction_type"],
      [{ algorithm_type: "sde-dpmsolver++" }, "algorithm_type"],
      [{ solver_type: "rk4" }, "solver_type"],
      [{ solver_order: 4 }, "solver_order"],
      [{ solver_order: 0 }, "solver_order"],
      [{ lambda_min_clipped: null }, "lambda_min_clipped"],
      [{ thresholding: 1 }, "thresholding"],
    ];
    for (const [cfg, key] of bad) {
      assert.throws(
        () => DPMSolverSinglestepScheduler.fromConfig(cfg),
        (e: unknown) => e instanceof SchedulerConfigError && e.message.includes(key),
        key,
      );
    }
    const s = DPMSolverSinglestepScheduler.fromConfig({ algorithm_type: "deis", solver_type: "bh2", x: 1 });
    assert.equal(s.config.algorithm_type, "dpmsolver++");
    assert.equal(s.config.solver_type, "midpoint");
    assert.equal(s.config["x"], 1);
  });

  it("rejects numInferenceSteps 0 / 1.5 / 1001", () => {
    const s = new DPMSolverSinglestepScheduler(X4);
    for (const n of [0, 1.5, 1001]) assert.throws(() => s.setTimesteps(n), RangeError);
  });

  it("step before setTimesteps, unknown timestep, NaN output, exhausted schedule", () => {
    const s = new DPMSolverSinglestepScheduler(X4);
    const x = new Float32Array(4);
    assert.throws(() => s.step(x, 999, x), /setTimesteps/);
    s.setTimesteps(1);
    assert.throws(() => s.step(x, 5, x), /not in the schedule/);
    assert.throws(() => s.step(Float32Array.from([0, 0, Number.POSITIVE_INFINITY, 0]), 999, x), /Infinity/);
    s.step(x, 999, x);
    assert.throws(() => s.step(x, 999, x), /steps are done/);
  });
});
