import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Generator } from "../../src/random/generator.js";
import { SchedulerConfigError } from "../../src/schedulers/scheduler_utils.js";
import { UniPCMultistepScheduler } from "../../src/schedulers/scheduling_unipc_multistep.js";
import { runTrajectory, trajectoryCases } from "./harness.js";

const X4 = {
  num_train_timesteps: 1000,
  beta_start: 0.0001,
  beta_end: 0.02,
  beta_schedule: "scaled_linear",
  prediction_type: "v_prediction",
  steps_offset: 1,
};

describe("UniPCMultistepScheduler golden trajectories (diffusers 0.23.0)", () => {
  const cases = trajectoryCases("unipc_");
  it("has fixture cases", () => assert.equal(cases.length, 5));
  for (const c of cases) {
    it(c.name, () => runTrajectory(c, UniPCMultistepScheduler.fromConfig(c.params.config)));
  }
});

function run(s: UniPCMultistepScheduler, n: number): Float32Array {
  s.setTimesteps(n);
  let x = new Generator().manualSeed(3).randn([64]);
  for (const t of s.timesteps) {
    const eps = x.map((v) => 0.5 * v * Math.cos(t / 1000) + 0.1 * Math.sin(3 * v));
    x = s.step(eps, t, x).prevSample;
  }
  return x;
}

describe("UniPCMultistepScheduler options", () => {
  it("timestep spacings", () => {
    const lead = new UniPCMultistepScheduler({ ...X4, timestep_spacing: "leading" });
    lead.setTimesteps(4);
    assert.deepEqual(lead.timesteps, [801, 601, 401, 201]);
    const tr = new UniPCMultistepScheduler({ ...X4, timestep_spacing: "trailing" });
    tr.setTimesteps(3);
    assert.deepEqual(tr.timesteps, [999, 666, 332]);
  });

  it("bh1/bh2, predict_x0, orders 1..4, prediction types, Karras run and stay finite", () => {
    for (const solver_type of ["bh1", "bh2"]) {
      for (const predict_x0 of [true, false]) {
        for (const solver_order of [1, 2, 3, 4]) {
          for (const prediction_type of ["epsilon", "v_prediction", "sample"]) {
            const cfg = { ...X4, solver_type, predict_x0, solver_order, prediction_type, thresholding: true };
            const x = run(new UniPCMultistepScheduler(cfg), 12);
            assert.ok(x.every(Number.isFinite), JSON.stringify(cfg));
          }
        }
      }
    }
    const k = new UniPCMultistepScheduler({ ...X4, use_karras_sigmas: true, solver_order: 3 });
    assert.ok(run(k, 10).every(Number.isFinite));
  });

  it("disable_corrector and lower_order_final change the result", () => {
    const base = run(new UniPCMultistepScheduler(X4), 8);
    const noCorr = run(new UniPCMultistepScheduler({ ...X4, disable_corrector: [0, 1, 2] }), 8);
    assert.ok(base.some((v, i) => v !== noCorr[i]));
    const o3 = run(new UniPCMultistepScheduler({ ...X4, solver_order: 3 }), 8);
    const o3n = run(new UniPCMultistepScheduler({ ...X4, solver_order: 3, lower_order_final: false }), 8);
    assert.ok(o3.some((v, i) => v !== o3n[i]));
  });

  it("addNoise", () => {
    const s = new UniPCMultistepScheduler(X4);
    s.setTimesteps(2);
    const out = s.addNoise(Float32Array.from([2, 2]), Float32Array.from([0, 0]), [999, 500]);
    assert.ok((out[0] as number) < (out[1] as number));
  });
});

describe("UniPCMultistepScheduler bad inputs", () => {
  it("rejects bad config values with SchedulerConfigError naming the key", () => {
    const bad: [Record<string, unknown>, string][] = [
      [{ beta_schedule: "sigmoid" }, "beta_schedule"],
      [{ prediction_type: "flow" }, "prediction_type"],
      [{ solver_type: "bh3" }, "solver_type"],
      [{ timestep_spacing: "even" }, "timestep_spacing"],
      [{ solver_order: -1 }, "solver_order"],
      [{ predict_x0: "true" }, "predict_x0"],
      [{ disable_corrector: [0.5] }, "disable_corrector"],
      [{ solver_p: { _class_name: "DDIMScheduler" } }, "solver_p"],
    ];
    for (const [cfg, key] of bad) {
      assert.throws(
        () => UniPCMultistepScheduler.fromConfig(cfg),
        (e: unknown) => e instanceof SchedulerConfigError && e.message.includes(key),
        key,
      );
    }
    const s = UniPCMultistepScheduler.fromConfig({ solver_type: "midpoint", algorithm_type: "dpmsolver++" });
    assert.equal(s.config.solver_type, "bh2");
    assert.equal(s.config["algorithm_type"], "dpmsolver++");
  });

  it("rejects numInferenceSteps 0 / 1.5 / 1001", () => {
    const s = new UniPCMultistepScheduler(X4);
    for (const n of [0, 1.5, 1001]) assert.throws(() => s.setTimesteps(n), RangeError);
  });

  it("step before setTimesteps, unknown timestep, NaN output", () => {
    const s = new UniPCMultistepScheduler(X4);
    const x = new Float32Array(4);
    assert.throws(() => s.step(x, 999, x), /setTimesteps/);
    s.setTimesteps(3);
    assert.throws(() => s.step(x, 17, x), /not in the schedule/);
    assert.throws(() => s.step(Float32Array.from([0, 0, 0, Number.NaN]), 999, x), /NaN/);
  });
});
