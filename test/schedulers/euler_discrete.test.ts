import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { defaultGenerator, manualSeed } from "../../src/random/default_generator.js";
import { Generator } from "../../src/random/generator.js";
import { SchedulerConfigError } from "../../src/schedulers/scheduler_utils.js";
import { EulerDiscreteScheduler } from "../../src/schedulers/scheduling_euler_discrete.js";
import { fakeModel, runTrajectory, schedulerGroup, trajectoryCases } from "./harness.js";

const f32 = Math.fround;
const cases = trajectoryCases("euler_").filter((c) => !c.name.startsWith("euler_ancestral_"));
/** The x4 upscaler scheduler config (as in the fixtures). */
const X4 = {
  num_train_timesteps: 1000,
  beta_start: 0.0001,
  beta_end: 0.02,
  beta_schedule: "scaled_linear",
  prediction_type: "v_prediction",
  steps_offset: 1,
};
const make = (over: Record<string, unknown> = {}) => EulerDiscreteScheduler.fromConfig({ ...X4, ...over });
const sample = () => Float32Array.from({ length: 32 }, (_, i) => Math.sin(i) * 3);

describe("EulerDiscreteScheduler golden trajectories", () => {
  it("has fixture cases", () => assert.equal(cases.length, 25));
  for (const c of cases) {
    it(c.name, () => runTrajectory(c, EulerDiscreteScheduler.fromConfig(c.params.config)));
  }
});

describe("EulerDiscreteScheduler config", () => {
  it("uses diffusers 0.23.0 defaults and keeps unknown keys", () => {
    const s = EulerDiscreteScheduler.fromConfig({
      clip_sample: false,
      _class_name: "X",
      _diffusers_version: "0",
    });
    assert.equal(s.config.beta_schedule, "linear");
    assert.equal(s.config.prediction_type, "epsilon");
    assert.equal(s.config.interpolation_type, "linear");
    assert.equal(s.config.timestep_spacing, "linspace");
    assert.equal(s.config.steps_offset, 0);
    assert.equal(s.config.clip_sample, false);
    assert.equal(s.config._class_name, "X");
    assert.equal("_diffusers_version" in s.config, false);
    assert.equal(s.order, 1);
  });

  it("builds the float32 tables the reference builds", () => {
    const g = schedulerGroup();
    const c = g.get("ddpm_low_res_tables");
    const s = make();
    for (const role of ["betas", "alphas", "alphas_cumprod"] as const) {
      const exp = g.tensors.getFloat32(c.tensors[role] as string);
      const got = role === "betas" ? s.betas : role === "alphas" ? s.alphas : s.alphasCumprod;
      assert.deepEqual(Array.from(got), Array.from(exp), role);
    }
  });

  it("rejects invalid values with a SchedulerConfigError naming the key", () => {
    const bad: [string, unknown][] = [
      ["beta_schedule", "cosine"],
      ["prediction_type", "eps"],
      ["timestep_spacing", "uniform"],
      ["interpolation_type", "cubic"],
      ["use_karras_sigmas", "yes"],
      ["num_train_timesteps", 0],
      ["num_train_timesteps", 10.5],
      ["steps_offset", -1],
      ["beta_start", "abc"],
      ["trained_betas", [0.1, 0.2]],
      ["trained_betas", "0.1"],
    ];
    for (const [key, value] of bad) {
      assert.throws(
        () => make({ [key]: value }),
        (e: unknown) => e instanceof SchedulerConfigError && e.message.includes(`"${key}"`),
        `${key}=${JSON.stringify(value)}`,
      );
    }
  });

  it("accepts trained_betas of the right length (beta_schedule then unused)", () => {
    const s = EulerDiscreteScheduler.fromConfig({
      num_train_timesteps: 4,
      trained_betas: [0.1, 0.2, 0.3, 0.4],
      beta_schedule: "whatever",
    });
    assert.deepEqual(Array.from(s.betas), [0.1, 0.2, 0.3, 0.4].map(f32));
  });
});

describe("EulerDiscreteScheduler schedules", () => {
  it("matches numpy for leading / trailing spacing (incl. np.arange's extra element)", () => {
    const t3 = make({ timestep_spacing: "trailing" });
    t3.setTimesteps(3);
    assert.deepEqual(t3.timesteps, [999, 666, 332]);
    const l3 = make({ timestep_spacing: "leading" });
    l3.setTimesteps(3);
    assert.deepEqual(l3.timesteps, [667, 334, 1]);
    assert.equal(l3.initNoiseSigma, f32(Math.sqrt(f32(f32(3.12342954 ** 2) + 1))));
    const t61 = make({ timestep_spacing: "trailing" });
    t61.setTimesteps(61); // np.arange(1000, 0, -1000/61) has 62 elements, the last rounds to 0 -> -1
    assert.equal(t61.timesteps.length, 62);
    assert.equal(t61.timesteps[61], -1);
  });

  it("n=1 linspace gives [0] with sigma 0.01 and init_noise_sigma 0.01", () => {
    const s = make();
    s.setTimesteps(1);
    assert.deepEqual(s.timesteps, [0]);
    assert.equal(s.sigmas.length, 2);
    assert.ok(Math.abs(s.initNoiseSigma - 0.0100013297) < 1e-9);
  });

  it("log_linear interpolation: n+1 log-spaced sigmas plus 0, as diffusers 0.23.0", () => {
    const s = make({ interpolation_type: "log_linear" });
    s.setTimesteps(5);
    assert.equal(s.timesteps.length, 5);
    assert.equal(s.sigmas.length, 7);
    assert.ok(Math.abs((s.sigmas[0] as number) - 36.9119) < 1e-3); // sigma_max of the training table
    assert.ok(Math.abs((s.sigmas[5] as number) - 0.0100013) < 1e-6); // sigma_min, not 0
    assert.equal(s.sigmas[6], 0);
    const karras = make({ interpolation_type: "log_linear", use_karras_sigmas: true });
    karras.setTimesteps(5);
    assert.equal(karras.sigmas.length, 6);
  });
});

describe("EulerDiscreteScheduler step", () => {
  it("draws randn(sample) from the generator on every step, even with sChurn = 0", () => {
    const s = make();
    s.setTimesteps(4);
    const g = new Generator().manualSeed(7);
    const x = sample();
    const t = s.timesteps[0] as number;
    s.step(fakeModel(s.scaleModelInput(x, t), t), t, x, { generator: g });
    const ref = new Generator().manualSeed(7);
    ref.randn([x.length]);
    assert.deepEqual(Array.from(g.randn([3])), Array.from(ref.randn([3])));
  });

  it("without a generator, every step draws from the default generator (torch's global RNG)", () => {
    const s = make();
    s.setTimesteps(4);
    const x = sample();
    const t = s.timesteps[0] as number;
    manualSeed(21);
    const out = s.step(fakeModel(s.scaleModelInput(x, t), t), t, x);
    assert.equal(out.prevSample.length, x.length);
    assert.ok(out.predOriginalSample instanceof Float32Array);
    // the unchurned step still consumed randn(sample) from the default generator, as diffusers does
    const ref = new Generator().manualSeed(21);
    ref.randn([x.length]);
    assert.deepEqual(Array.from(defaultGenerator.randn([3])), Array.from(ref.randn([3])));
    const churned = (generator?: Generator) => {
      const s2 = make();
      s2.setTimesteps(4);
      return s2.step(fakeModel(x, t), t, x, { sChurn: 10, generator }).prevSample;
    };
    manualSeed(22);
    assert.deepEqual(churned(), churned(new Generator().manualSeed(22)));
  });

  it("sChurn adds eps * sqrt(sigma_hat^2 - sigma^2) before the Euler step", () => {
    const s = make({ prediction_type: "epsilon" });
    s.setTimesteps(4);
    const x = sample();
    const eps = x.map((v) => v * 0.1);
    const t = s.timesteps[0] as number;
    const out = s.step(eps, t, x, { generator: new Generator().manualSeed(3), sChurn: 100, sNoise: 0.5 });
    const noise = new Generator().manualSeed(3).randn([x.length]);
    const sigma = s.sigmas[0] as number;
    const gamma = Math.SQRT2 - 1; // min(100 / 4, sqrt(2) - 1)
    const sigmaHat = f32(sigma * f32(gamma + 1));
    const amp = f32(Math.sqrt(f32(f32(sigmaHat * sigmaHat) - f32(sigma * sigma))));
    const dt = f32((s.sigmas[1] as number) - sigmaHat);
    for (let i = 0; i < x.length; i++) {
      const xi = f32((x[i] as number) + f32(f32((noise[i] as number) * 0.5) * amp));
      const pred = f32(xi - f32(sigmaHat * (eps[i] as number)));
      const exp = f32(xi + f32(f32(f32(xi - pred) / sigmaHat) * dt));
      assert.equal(out.prevSample[i], exp);
    }
    // outside [sTmin, sTmax] there is no churn
    const s3 = make({ prediction_type: "epsilon" });
    s3.setTimesteps(4);
    const plain = make({ prediction_type: "epsilon" });
    plain.setTimesteps(4);
    const a = s3.step(eps, t, x, { generator: new Generator(), sChurn: 100, sTmax: 1 });
    const b = plain.step(eps, t, x);
    assert.deepEqual(Array.from(a.prevSample), Array.from(b.prevSample));
  });

  it("addNoise uses sigma(t) per row", () => {
    const s = make();
    s.setTimesteps(5);
    const x = new Float32Array([1, 2, 3, 4]);
    const n = new Float32Array([1, 1, 1, 1]);
    const t0 = s.timesteps[0] as number;
    const t2 = s.timesteps[2] as number;
    const out = s.addNoise(x, n, [t0, t2]);
    assert.equal(out[0], f32(1 + (s.sigmas[0] as number)));
    assert.equal(out[3], f32(4 + (s.sigmas[2] as number)));
    assert.throws(() => s.addNoise(x, n, [123.5]), RangeError);
    assert.throws(() => s.addNoise(x, n, [t0, t0, t0]), RangeError);
  });
});

describe("EulerDiscreteScheduler bad inputs", () => {
  it("setTimesteps needs an integer in 1..num_train_timesteps", () => {
    const s = make();
    for (const n of [0, 1.5, 1001, -1, Number.NaN])
      assert.throws(() => s.setTimesteps(n), RangeError, String(n));
  });

  it("scaleModelInput / step before setTimesteps are errors", () => {
    const s = make();
    assert.throws(() => s.scaleModelInput(sample(), 999), /setTimesteps/);
    assert.throws(() => s.step(sample(), 999, sample()), /setTimesteps/);
  });

  it("a timestep outside the schedule is an error", () => {
    const s = make();
    s.setTimesteps(5);
    assert.throws(() => s.scaleModelInput(sample(), 500), /not in the schedule/);
    assert.throws(() => s.step(sample(), 998, sample()), /not in the schedule/);
  });

  it("NaN / Inf model output and mismatched lengths are reported", () => {
    const s = make();
    s.setTimesteps(5);
    const t = s.timesteps[0] as number;
    const bad = sample();
    bad[3] = Number.NaN;
    assert.throws(() => s.step(bad, t, sample()), /modelOutput contains NaN/);
    bad[3] = Number.POSITIVE_INFINITY;
    assert.throws(() => s.step(bad, t, sample()), /modelOutput contains Infinity/);
    assert.throws(() => s.step(new Float32Array(3), t, sample()), RangeError);
  });

  it("stepping past the end of the schedule is an error", () => {
    const s = make();
    s.setTimesteps(2);
    let x: Float32Array = sample();
    for (const t of s.timesteps) x = s.step(fakeModel(s.scaleModelInput(x, t), t), t, x).prevSample;
    assert.throws(() => s.step(x, s.timesteps[1] as number, x), /finished/);
  });
});
