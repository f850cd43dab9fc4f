/**
 * Runs one scheduler trajectory fixture exactly as the reference loop did (see test/fixtures/README.md):
 *   x = x_init; g = Generator().manualSeed(1234)
 *   for t in timesteps: mi = scaleModelInput(x, t); eps = fake(mi, t); x = step(eps, t, x, {eta, generator: g})
 * and checks timesteps, sigmas, initNoiseSigma and every recorded model input / output / sample.
 */
import assert from "node:assert/strict";
import { Generator } from "../../src/random/generator.js";
import type { Scheduler } from "../../src/schedulers/scheduler_utils.js";
import {
  assertClose,
  type FixtureCase,
  type FixtureGroup,
  loadGroup,
  tensorOf,
} from "../helpers/fixtures.js";

const f = Math.fround;

/** eps = f32(f32(f32(a)*mi) * c) + f32(f32(b) * sin_f32(f32(w)*mi)), c = f32(cos(t/1000)). */
export function fakeModel(
  mi: Float32Array,
  t: number,
  fn?: { a?: number; b?: number; w?: number },
): Float32Array {
  const a = f(fn?.a ?? 0.5);
  const b = f(fn?.b ?? 0.1);
  const w = f(fn?.w ?? 3);
  const c = f(Math.cos(t / 1000));
  const out = new Float32Array(mi.length);
  for (let i = 0; i < mi.length; i++) {
    const x = mi[i] as number;
    out[i] = f(f(f(a * x) * c) + f(b * f(Math.sin(f(w * x)))));
  }
  return out;
}

export function schedulerGroup(): FixtureGroup {
  return loadGroup("schedulers");
}

export function trajectoryCases(prefix: string): FixtureCase[] {
  return schedulerGroup().cases.filter((c) => c.params.kind === "trajectory" && c.name.startsWith(prefix));
}

export function runTrajectory(c: FixtureCase, scheduler: Scheduler): void {
  const g = schedulerGroup();
  const p = c.params;
  const tol = c.tolerance;
  scheduler.setTimesteps(p.num_inference_steps);
  const ts = tensorOf(g, c, "timesteps").data;
  assertClose(scheduler.timesteps, ts, { atol: 1e-6, rtol: 1e-6 }, `${c.name} timesteps`);
  if (c.tensors.sigmas) {
    const sig = (scheduler as unknown as { sigmas: ArrayLike<number> }).sigmas;
    assertClose(sig, tensorOf(g, c, "sigmas").data, { atol: 1e-6, rtol: 1e-6 }, `${c.name} sigmas`);
  }
  assertClose(
    [scheduler.initNoiseSigma],
    [p.init_noise_sigma],
    { atol: 1e-6, rtol: 1e-6 },
    `${c.name} initNoiseSigma`,
  );

  const recorded = tensorOf(g, c, "recorded_steps").data;
  const mis = tensorOf(g, c, "model_inputs").data;
  const eps = tensorOf(g, c, "model_outputs").data;
  const samples = tensorOf(g, c, "samples").data;
  const n = 256;
  let x: Float32Array = tensorOf(g, c, "x_init").data;
  const gen = new Generator().manualSeed(p.generator_seed ?? 1234);
  const stepKwargs = (p.step_kwargs ?? {}) as { eta?: number };
  let k = 0;
  scheduler.timesteps.forEach((t, i) => {
    const mi = scheduler.scaleModelInput(x, t);
    const out = fakeModel(mi, t, p.model_fn);
    x = scheduler.step(out, t, x, { ...stepKwargs, generator: gen }).prevSample;
    if (k < recorded.length && recorded[k] === i) {
      assertClose(mi, mis.subarray(k * n, (k + 1) * n), tol, `${c.name} model_input step ${i}`);
      assertClose(out, eps.subarray(k * n, (k + 1) * n), tol, `${c.name} model_output step ${i}`);
      assertClose(x, samples.subarray(k * n, (k + 1) * n), tol, `${c.name} sample step ${i}`);
      k++;
    }
  });
  assert.equal(k, recorded.length, `${c.name}: recorded every step`);
}
