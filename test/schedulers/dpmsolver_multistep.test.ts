import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { manualSeed } from "../../src/random/default_generator.js";
import { Generator } from "../../src/random/generator.js";
import { SchedulerConfigError } from "../../src/schedulers/scheduler_utils.js";
import { DPMSolverMultistepScheduler } from "../../src/schedulers/scheduling_dpmsolver_multistep.js";
import { runTrajectory, trajectoryCases } from "./harness.js";

const X4 = {
  num_train_timesteps: 1000,
  beta_start: 0.0001,
  beta_end: 0.02,
  beta_schedule: "scaled_linear",
  prediction_type: "v_prediction",
  steps_offset: 1,
  clip_sample: false,
  set_alpha_to_one: false,
};

describe("DPMSolverMultistepScheduler golden trajectories (diffusers 0.23.0)", () => {
  const cases = trajectoryCases("dpmpp_multistep_");
  it("has fixture cases", () => assert.ok(cases.length === 20));
  for (const c of cases) {
    it(c.name, () => runTrajectory(c, DPMSolverMultistepScheduler.fromConfig(c.params.config)));
  }
});

/** Runs n steps of the fake loop; returns the final sample. */
function run(s: DPMSolverMultistepScheduler, n: number, seed = 3): Float32Array {
  s.setTimesteps(n);
  let x = new Generator().manualSeed(seed).randn([64]);
  const g = new Generator().manualSeed(1234);
  for (const t of s.timesteps) {
    const eps = x.map((v) => 0.5 * v * Math.cos(t / 1000) + 0.1 * Math.sin(3 * v));
    x = s.step(eps, t, x, { generator: g }).prevSample;
  }
  return x;
}

describe("DPMSolverMultistepScheduler options", () => {
  it("timestep spacings, offsets and clipping", () => {
    const s = new DPMSolverMultistepScheduler({ ...X4, timestep_spacing: "leading" });
    s.setTimesteps(4);
    assert.deepEqual(s.timesteps, [801, 601, 401, 201]);
    const tr = new DPMSolverMultistepScheduler({ ...X4, timestep_spacing: "trailing" });
    tr.setTimesteps(3);
    assert.deepEqual(tr.timesteps, [999, 666, 332]);
    const lin = new DPMSolverMultistepScheduler(X4);
    lin.setTimesteps(4);
    assert.deepEqual(lin.timesteps, [999, 749, 500, 250]);
    assert.equal(lin.sigmas.length, 5);
    const clipped = new DPMSolverMultistepScheduler({ ...X4, lambda_min_clipped: -3 });
    clipped.setTimesteps(4);
    assert.ok((clipped.timesteps[0] as number) < 999);
  });

  it("Lu lambdas give integer, decreasing timesteps", () => {
    const s = new DPMSolverMultistepScheduler({ ...X4, use_lu_lambdas: true });
    s.setTimesteps(10);
    assert.equal(s.timesteps.length, 10);
    assert.ok(
      s.timesteps.every((t, i) => Number.isInteger(t) && (i === 0 || t <= (s.timesteps[i - 1] as number))),
    );
    assert.equal(s.sigmas[10], s.sigmas[9]);
  });

  it("every algorithm / solver / order combination runs and stays finite", () => {
    for (const algorithm_type of ["dpmsolver++", "dpmsolver", "sde-dpmsolver++", "sde-dpmsolver"]) {
      for (const solver_type of ["midpoint", "heun"]) {
        for (const solver_order of [1, 2, 3]) {
          for (const prediction_type of ["epsilon", "v_prediction", "sample"]) {
            const s = new DPMSolverMultistepScheduler({
              ...X4,
              algorithm_type,
              solver_type,
              solver_order,
              prediction_type,
              thresholding: prediction_type === "sample",
              lower_order_final: false,
            });
            const sde = algorithm_type.startsWith("sde");
            if (sde && solver_order === 3) {
              assert.throws(() => run(s, 6), /third-order/);
              continue;
            }
            const x = run(s, 6);
            assert.ok(
              x.every(Number.isFinite),
              `${algorithm_type} ${solver_type} ${solver_order} ${prediction_type}`,
            );
          }
        }
      }
    }
  });

  it("maps deis / logrho onto dpmsolver++ / midpoint as diffusers does", () => {
    const s = new DPMSolverMultistepScheduler({ algorithm_type: "deis", solver_type: "logrho" });
    assert.equal(s.config.algorithm_type, "dpmsolver++");
    assert.equal(s.config.solver_type, "midpoint");
    assert.equal(s.config.lambda_min_clipped, Number.NEGATIVE_INFINITY);
  });

  it("karras n=1 is an identity step", () => {
    const s = new DPMSolverMultistepScheduler({ ...X4, use_karras_sigmas: true });
    s.setTimesteps(1);
    const x = Float32Array.from([0.5, -1, 2]);
    const out = s.step(Float32Array.from([0.1, 0.2, 0.3]), s.timesteps[0] as number, x).prevSample;
    assert.deepEqual(Array.from(out), Array.from(x));
  });

  it("SDE steps without a generator draw from the default generator (torch's global RNG)", () => {
    const a = new DPMSolverMultistepScheduler({ ...X4, algorithm_type: "sde-dpmsolver++" });
    const b = new DPMSolverMultistepScheduler({ ...X4, algorithm_type: "sde-dpmsolver++" });
    a.setTimesteps(4);
    b.setTimesteps(4);
    const x = Float32Array.from([0.5, -1, 2, 0.25]);
    const eps = Float32Array.from([0.1, 0.2, 0.3, -0.4]);
    const t = a.timesteps[0] as number;
    manualSeed(17);
    const viaDefault = a.step(eps, t, x).prevSample;
    assert.deepEqual(viaDefault, b.step(eps, t, x, { generator: new Generator().manualSeed(17) }).prevSample);
  });

  it("addNoise uses alpha_t / sigma_t of the step's sigma per row", () => {
    const s = new DPMSolverMultistepScheduler(X4);
    s.setTimesteps(4);
    const x = Float32Array.from([1, 1, 1, 1]);
    const z = Float32Array.from([0, 0, 1, 1]);
    const out = s.addNoise(x, z, [999, 250]);
    const sig = s.sigmas[0] as number;
    const a = 1 / Math.sqrt(sig * sig + 1);
    assert.ok(Math.abs((out[0] as number) - a) < 1e-6);
    assert.throws(() => s.addNoise(x, z, [998]), /exactly once/);
    assert.throws(() => new DPMSolverMultistepScheduler().addNoise(x, z, [1]), /setTimesteps/);
  });

  it("thresholding and learned variance follow the rows of batchSize", () => {
    const s = new DPMSolverMultistepScheduler({
      ...X4,
      prediction_type: "epsilon",
      variance_type: "learned_range",
      thresholding: true,
      sample_max_value: 2,
    });
    s.setTimesteps(3);
    const x = Float32Array.from([3, -3, 0.5, 0.1]);
    const mo = Float32Array.from([0.1, 0.2, 9, 9, 0.3, 0.4, 9, 9]);
    const out = s.step(mo, 999, x, { batchSize: 2 }).prevSample;
    assert.equal(out.length, 4);
    assert.ok(out.every(Number.isFinite));
    assert.throws(() => s.step(mo.subarray(0, 4), 666, x, { batchSize: 2 }), /learned variance/);
  });
});

describe("DPMSolverMultistepScheduler bad inputs", () => {
  it("rejects bad config values with SchedulerConfigError naming the key", () => {
    const bad: [Record<string, unknown>, string][] = [
      [{ beta_schedule: "cosine" }, "beta_schedule"],
      [{ prediction_type: "eps" }, "prediction_type"],
      [{ timestep_spacing: "uniform" }, "timestep_spacing"],
      [{ algorithm_type: "dpm" }, "algorithm_type"],
      [{ solver_type: "rk4" }, "solver_type"],
      [{ solver_order: 0 }, "solver_order"],
      [{ solver_order: 1.5 }, "solver_order"],
      [{ num_train_timesteps: 0 }, "num_train_timesteps"],
      [{ lambda_min_clipped: "low" }, "lambda_min_clipped"],
      [{ use_karras_sigmas: "yes" }, "use_karras_sigmas"],
      [{ dynamic_thresholding_ratio: 2 }, "dynamic_thresholding_ratio"],
      [{ trained_betas: [0.1, 0.2] }, "trained_betas"],
      [{ variance_type: 3 }, "variance_type"],
    ];
    for (const [cfg, key] of bad) {
      assert.throws(
        () => DPMSolverMultistepScheduler.fromConfig(cfg),
        (e: unknown) => e instanceof SchedulerConfigError && e.message.includes(key),
        key,
      );
    }
    // unknown keys are kept and ignored; variance_type strings other than learned* are ignored as in diffusers
    const s = DPMSolverMultistepScheduler.fromConfig({ foo: 1, variance_type: "fixed_small" });
    assert.equal(s.config["foo"], 1);
  });

  it("rejects numInferenceSteps 0 / 1.5 / 1001", () => {
    const s = new DPMSolverMultistepScheduler(X4);
    for (const n of [0, 1.5, 1001, -1, Number.NaN]) assert.throws(() => s.setTimesteps(n), RangeError);
  });

  it("step before setTimesteps, unknown timestep, NaN output, exhausted schedule", () => {
    const s = new DPMSolverMultistepScheduler(X4);
    const x = new Float32Array(4);
    assert.throws(() => s.step(x, 999, x), /setTimesteps/);
    s.setTimesteps(2);
    assert.throws(() => s.step(x, 998, x), /not in the schedule/);
    assert.throws(() => s.step(Float32Array.from([0, Number.NaN, 0, 0]), 999, x), /NaN/);
    assert.throws(() => s.step(new Float32Array(3), 999, x), /elements/);
    s.step(x, 999, x);
    s.step(x, 500, x);
    assert.throws(() => s.step(x, 500, x), /steps are done/);
  });
});
