import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { SchedulerConfigError } from "../../src/schedulers/scheduler_utils.js";
import { integrate, LMSDiscreteScheduler } from "../../src/schedulers/scheduling_lms_discrete.js";
import { runTrajectory, trajectoryCases } from "./harness.js";

const cases = trajectoryCases("lms_");

const BASE = {
  num_train_timesteps: 1000,
  beta_start: 0.0001,
  beta_end: 0.02,
  beta_schedule: "scaled_linear",
  prediction_type: "v_prediction",
  steps_offset: 1,
};

const ramp = (n: number, scale = 0.01) => Float32Array.from({ length: n }, (_, i) => (i - n / 2) * scale);

function near(
  actual: readonly number[] | Float32Array,
  expected: readonly number[],
  rtol: number,
  atol = 0,
): void {
  assert.equal(actual.length, expected.length);
  expected.forEach((e, i) => {
    const a = actual[i] as number;
    assert.ok(Math.abs(a - e) <= atol + rtol * Math.abs(e), `[${i}] ${a} vs ${e}`);
  });
}

describe("LMSDiscreteScheduler golden trajectories", () => {
  it("has fixture cases", () => assert.equal(cases.length, 10));
  for (const c of cases) {
    it(c.name, () => runTrajectory(c, LMSDiscreteScheduler.fromConfig(c.params.config)));
  }
});

describe("LMSDiscreteScheduler config", () => {
  it("uses the diffusers 0.23.0 defaults; the constructor sets the full training schedule", () => {
    const s = LMSDiscreteScheduler.fromConfig({ clip_sample: false });
    assert.equal(s.config.timestep_spacing, "linspace");
    assert.equal(s.config.use_karras_sigmas, false);
    assert.equal(s.config.clip_sample, false);
    assert.equal(s.numInferenceSteps, 1000);
    assert.equal(s.timesteps.length, 1000);
    assert.equal(s.sigmas.length, 1001);
  });
  const bad: [string, unknown][] = [
    ["beta_schedule", "sigmoid"],
    ["prediction_type", "flow"],
    ["timestep_spacing", "trailling"],
    ["use_karras_sigmas", "yes"],
    ["num_train_timesteps", 0],
    ["beta_end", "nan"],
  ];
  for (const [key, value] of bad) {
    it(`rejects ${key}=${JSON.stringify(value)} naming the key`, () => {
      assert.throws(
        () => LMSDiscreteScheduler.fromConfig({ [key]: value }),
        (e: unknown) => e instanceof SchedulerConfigError && e.message.includes(`"${key}"`),
      );
    });
  }
});

describe("LMSDiscreteScheduler.setTimesteps (values from diffusers 0.23.0)", () => {
  it("linspace: float32 timesteps, interpolated sigmas, init_noise_sigma = sigma_max", () => {
    const s = new LMSDiscreteScheduler(BASE);
    s.setTimesteps(4);
    assert.deepEqual(s.timesteps, [999, 666, 333, 0]);
    near(s.sigmas, [36.911922454833984, 3.106935501098633, 0.6949505805969238, 0.010001329705119133, 0], 0);
    assert.ok(s.sigmas instanceof Float32Array);
    assert.equal(s.initNoiseSigma, Math.fround(36.911922454833984));
  });
  it("use_karras_sigmas: float64 timesteps from _sigma_to_t", () => {
    const s = new LMSDiscreteScheduler({ ...BASE, use_karras_sigmas: true });
    s.setTimesteps(4);
    near(s.timesteps, [999.0, 775.7416988356176, 259.37454119082145, 0.0], 1e-9, 1e-9);
    near(
      s.sigmas,
      [36.911922454833984, 5.911686420440674, 0.49134117364883423, 0.010001329705119133, 0],
      1e-7,
    );
  });
  it("leading: init_noise_sigma = sqrt(sigma_max^2 + 1)", () => {
    const s = new LMSDiscreteScheduler({ ...BASE, timestep_spacing: "leading" });
    s.setTimesteps(4);
    assert.deepEqual(s.timesteps, [751, 501, 251, 1]);
    const m = s.sigmas[0] as number;
    assert.equal(s.initNoiseSigma, Math.fround(Math.sqrt(Math.fround(Math.fround(m * m) + 1))));
  });
  for (const n of [0, 1.5, 1001]) {
    it(`rejects numInferenceSteps=${n}`, () => {
      assert.throws(() => new LMSDiscreteScheduler(BASE).setTimesteps(n), RangeError);
    });
  }
});

describe("LMS coefficients", () => {
  it("adaptive Gauss-Kronrod quadrature is accurate to ~1e-12", () => {
    assert.ok(Math.abs(integrate(Math.sin, 0, Math.PI) - 2) < 1e-13);
    assert.ok(Math.abs(integrate((x) => x ** 3 - 2 * x, -1, 3) - 12) < 1e-12);
    assert.ok(Math.abs(integrate((x) => 1 / x, 1, 1000) - Math.log(1000)) < 1e-10);
    assert.ok(
      Math.abs(integrate((x) => Math.exp(-x * x), 2, -2) + Math.sqrt(Math.PI) * 0.9953222650189527) < 1e-12,
    );
  });
  it("match scipy.integrate.quad in diffusers 0.23.0", () => {
    const s = new LMSDiscreteScheduler(BASE);
    s.setTimesteps(4);
    const want = [
      [-33.80498695373535],
      [-2.498032574705332, 0.08604753497438895],
      [-0.7899075365717313, 0.1055079154513269, -0.0005496251261124652],
      [-0.010092025315440619, 9.574889950847035e-5, -5.055816125792077e-6, 2.3761633125135676e-9],
    ];
    want.forEach((row, t) => {
      near(
        row.map((_, k) => s.getLmsCoefficient(row.length, t, k)),
        row,
        1e-5,
      );
    });
  });
  it("sum to sigma_{t+1} - sigma_t (the Lagrange basis sums to 1)", () => {
    const s = new LMSDiscreteScheduler({ ...BASE, use_karras_sigmas: true });
    s.setTimesteps(20);
    for (const t of [3, 10, 19]) {
      const sum = [0, 1, 2, 3].reduce((acc, k) => acc + s.getLmsCoefficient(4, t, k), 0);
      const width = (s.sigmas[t + 1] as number) - (s.sigmas[t] as number);
      assert.ok(Math.abs(sum - width) < 1e-12 * Math.max(1, Math.abs(width)), `t=${t}: ${sum} vs ${width}`);
    }
  });
});

describe("LMSDiscreteScheduler.step", () => {
  const x = ramp(64, 0.1);
  it("steps with the training schedule before setTimesteps (diffusers sets it in __init__)", () => {
    const s = new LMSDiscreteScheduler(BASE);
    const out = s.step(ramp(64), s.timesteps[0] as number, x);
    assert.equal(out.prevSample.length, 64);
    assert.equal(s.stepIndex, 1);
  });
  it("refuses timesteps outside the schedule", () => {
    const s = new LMSDiscreteScheduler(BASE);
    s.setTimesteps(4);
    assert.throws(() => s.scaleModelInput(x, 998), /not in the schedule/);
    assert.throws(() => s.step(x, 998, x), /not in the schedule/);
    assert.throws(() => s.addNoise(x, x, [998]), /not in the schedule/);
  });
  it("reports NaN in the model output; refuses a bad order and mismatched lengths", () => {
    const s = new LMSDiscreteScheduler(BASE);
    s.setTimesteps(4);
    const bad = x.slice();
    bad[7] = Number.NaN;
    assert.throws(() => s.step(bad, 999, x), /NaN at index 7/);
    assert.throws(() => s.step(x, 999, x, { order: 0 }), RangeError);
    assert.throws(() => s.step(x.subarray(1), 999, x), RangeError);
  });
  it("refuses to step past the end of the schedule", () => {
    const s = new LMSDiscreteScheduler(BASE);
    s.setTimesteps(2);
    let y: Float32Array = x;
    for (const t of s.timesteps) y = s.step(ramp(64), t, s.scaleModelInput(y, t)).prevSample;
    assert.throws(() => s.step(ramp(64), 0, y), /steps are done/);
    s.setTimesteps(2);
    assert.equal(s.stepIndex, undefined);
  });
  it("addNoise adds noise * sigma(t) per row", () => {
    const s = new LMSDiscreteScheduler(BASE);
    s.setTimesteps(4);
    const noise = ramp(64, -0.02);
    const out = s.addNoise(x, noise, [999, 0]);
    const sigma = s.sigmas[3] as number;
    assert.equal(out[40], Math.fround((x[40] as number) + Math.fround((noise[40] as number) * sigma)));
  });
});
