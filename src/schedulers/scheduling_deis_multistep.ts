/**
 * DEISMultistepScheduler — diffusers 0.23.0 `scheduling_deis_multistep.py` (DEIS, Zhang & Chen 2022,
 * log-rho multistep solver of orders 1..3).
 *
 * Numerics follow the reference dtypes: torch float32 tables (8-wide vectorised linspace with a fused base,
 * cumprod accumulated in double), numpy float64 timesteps and Karras sigmas (half-to-even rounding), float32
 * sigmas. Every per-step scalar is a float32 0-dim tensor in diffusers (the log-rho integrals go through
 * numpy's float32 log and stay float32), and every elementwise op a float32 op: both are reproduced with
 * Math.fround after each operation.
 */
import { NOISE_SCHEDULE_DEFAULTS } from "./beta_schedules.js";
import {
  alphaSigmaAt,
  dataPrediction,
  lambdaOf,
  map2,
  noisePrediction,
  parseSolverConfig,
  sameLength,
  solverSchedule,
} from "./dpm_solver_common.js";
import type { Scheduler, SchedulerConfig, SchedulerOutput, SchedulerStepOptions } from "./scheduler_utils.js";
import {
  batchSizeOf,
  checkFinite,
  checkNumInferenceSteps,
  configInt,
  configOneOf,
  stepIndexFor,
} from "./scheduler_utils.js";
import { SolverSchedulerBase } from "./solver_scheduler_base.js";
import { TIMESTEP_SPACINGS } from "./timestep_spacing.js";
import { f32 as f, thresholdSample } from "./torch_numerics.js";

const NAME = "DEISMultistepScheduler";

/** diffusers 0.23.0 `DEISMultistepScheduler.__init__` defaults. */
export const DEIS_MULTISTEP_DEFAULT_CONFIG = {
  ...NOISE_SCHEDULE_DEFAULTS,
  solver_order: 2,
  prediction_type: "epsilon" as string,
  thresholding: false,
  dynamic_thresholding_ratio: 0.995,
  sample_max_value: 1.0,
  algorithm_type: "deis" as string,
  solver_type: "logrho" as string,
  lower_order_final: true,
  use_karras_sigmas: false as boolean | null,
  timestep_spacing: "linspace" as string,
  steps_offset: 0,
};

export type DEISMultistepConfig = typeof DEIS_MULTISTEP_DEFAULT_CONFIG & SchedulerConfig;

export interface DEISMultistepStepOptions extends SchedulerStepOptions {
  /** Batch size of the flat sample: dynamic thresholding works per row. Default 1. */
  batchSize?: number;
}

export class DEISMultistepScheduler
  extends SolverSchedulerBase<DEISMultistepConfig, ReturnType<typeof parseConfig>>
  implements Scheduler
{
  private lowerOrderNums = 0;

  static fromConfig(config?: SchedulerConfig): DEISMultistepScheduler {
    return new DEISMultistepScheduler(config);
  }

  constructor(config?: SchedulerConfig) {
    super(NAME, DEIS_MULTISTEP_DEFAULT_CONFIG, config, parseConfig);
  }

  setTimesteps(numInferenceSteps: number): void {
    const p = this.p;
    const n = numInferenceSteps;
    checkNumInferenceSteps(NAME, n, p.numTrain);
    ({ timesteps: this.timesteps, sigmas: this.sigmas } = solverSchedule(p, n, this.alphasCumprod));
    this.numInferenceSteps = this.timesteps.length;
    this.modelOutputs = new Array(p.order).fill(null);
    this.lowerOrderNums = 0;
    this.stepIdx = undefined;
  }

  step(
    modelOutput: Float32Array,
    timestep: number,
    sample: Float32Array,
    options: DEISMultistepStepOptions = {},
  ): SchedulerOutput {
    const p = this.p;
    checkFinite(NAME, "modelOutput", modelOutput);
    const ready = this.numInferenceSteps !== undefined;
    this.stepIdx = stepIndexFor(NAME, "step", this.timesteps, this.stepIdx, timestep, ready);
    const idx = this.stepIdx;
    const nT = this.timesteps.length;
    const lowerOrderFinal = idx === nT - 1 && p.lowerOrderFinal && nT < 15;
    const lowerOrderSecond = idx === nT - 2 && p.lowerOrderFinal && nT < 15;

    const m = this.convertModelOutput(
      modelOutput,
      sample,
      batchSizeOf(NAME, options.batchSize, sample.length),
    );
    for (let i = 0; i < p.order - 1; i++) this.modelOutputs[i] = this.modelOutputs[i + 1] ?? null;
    this.modelOutputs[p.order - 1] = m;

    let prev: Float32Array;
    if (p.order === 1 || this.lowerOrderNums < 1 || lowerOrderFinal) {
      prev = this.firstOrderUpdate(m, sample);
    } else if (p.order === 2 || this.lowerOrderNums < 2 || lowerOrderSecond) {
      prev = this.secondOrderUpdate(sample);
    } else {
      prev = this.thirdOrderUpdate(sample);
    }
    if (this.lowerOrderNums < p.order) this.lowerOrderNums++;
    this.stepIdx = idx + 1;
    return { prevSample: prev };
  }

  /** x0 from the model output (thresholded if configured), then DEIS' epsilon = (x - alpha_t x0) / sigma_t. */
  private convertModelOutput(modelOutput: Float32Array, sample: Float32Array, batch: number): Float32Array {
    const p = this.p;
    const mo = sameLength(NAME, modelOutput, sample.length);
    const [a, s] = alphaSigmaAt(NAME, this.sigmas, this.stepIdx as number);
    let x0 = dataPrediction(p.prediction, mo, sample, a, s);
    if (p.thresholding) x0 = thresholdSample(x0, batch, p.ratio, p.sampleMax);
    return noisePrediction("sample", x0, sample, a, s);
  }

  /** alpha, sigma and rho = sigma / alpha (float32) at sigmas[stepIndex + 1 - k], k = 0 (target), 1, 2, 3. */
  private point(k: number): { a: number; s: number; rho: number } {
    const [a, s] = alphaSigmaAt(NAME, this.sigmas, (this.stepIdx as number) + 1 - k);
    return { a, s, rho: f(s / a) };
  }

  private firstOrderUpdate(m: Float32Array, x: Float32Array): Float32Array {
    const t = this.point(0);
    const s0 = this.point(1);
    const h = f(lambdaOf(t.a, t.s) - lambdaOf(s0.a, s0.s));
    const c0 = f(t.a / s0.a);
    const c1 = f(t.s * f(f(Math.exp(h)) - 1));
    return map2(x, m, (xi, mi) => f(f(c0 * xi) - f(c1 * mi)));
  }

  private secondOrderUpdate(x: Float32Array): Float32Array {
    const p = this.p;
    const [t, s0, s1] = [this.point(0), this.point(1), this.point(2)];
    const m0 = this.modelOutputs[p.order - 1] as Float32Array;
    const m1 = this.modelOutputs[p.order - 2] as Float32Array;
    // ind_fn(t, b, c) = t * (-log(c) + log(t) - 1) / (log(b) - log(c)), all float32.
    const ind = (tt: number, b: number, c: number) => {
      const [lt, lb, lc] = [lg(tt), lg(b), lg(c)];
      return f(f(tt * f(f(-lc + lt) - 1)) / f(lb - lc));
    };
    const c1 = f(ind(t.rho, s0.rho, s1.rho) - ind(s0.rho, s0.rho, s1.rho));
    const c2 = f(ind(t.rho, s1.rho, s0.rho) - ind(s0.rho, s1.rho, s0.rho));
    return alphaTimes(t.a, s0.a, x, [c1, m0], [c2, m1]);
  }

  private thirdOrderUpdate(x: Float32Array): Float32Array {
    const p = this.p;
    const [t, s0, s1, s2] = [this.point(0), this.point(1), this.point(2), this.point(3)];
    const m0 = this.modelOutputs[p.order - 1] as Float32Array;
    const m1 = this.modelOutputs[p.order - 2] as Float32Array;
    const m2 = this.modelOutputs[p.order - 3] as Float32Array;
    // ind_fn(t, b, c, d): the log-rho Lagrange integral of diffusers, evaluated in float32 in its op order.
    const ind = (tt: number, b: number, c: number, d: number) => {
      const [lt, lb, lc, ld] = [lg(tt), lg(b), lg(c), lg(d)];
      let num = f(f(lc * f(f(ld - lt) + 1)) - f(ld * lt));
      num = f(f(f(f(num + ld) + f(lt * lt)) - f(2 * lt)) + 2);
      return f(f(tt * num) / f(f(lb - lc) * f(lb - ld)));
    };
    const [r, r0, r1, r2] = [t.rho, s0.rho, s1.rho, s2.rho];
    const c1 = f(ind(r, r0, r1, r2) - ind(r0, r0, r1, r2));
    const c2 = f(ind(r, r1, r2, r0) - ind(r0, r1, r2, r0));
    const c3 = f(ind(r, r2, r0, r1) - ind(r0, r2, r0, r1));
    return alphaTimes(t.a, s0.a, x, [c1, m0], [c2, m1], [c3, m2]);
  }
}

/** numpy float32 log of a float32 0-dim tensor. */
function lg(x: number): number {
  return f(Math.log(x));
}

/** alpha_t * (x / alpha_s0 + c1 * m1 + c2 * m2 + ...), left to right in float32. */
function alphaTimes(
  at: number,
  as0: number,
  x: Float32Array,
  ...terms: [number, Float32Array][]
): Float32Array {
  const out = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) {
    let acc = f((x[i] as number) / as0);
    for (const [c, a] of terms) acc = f(acc + f(c * (a[i] as number)));
    out[i] = f(at * acc);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// Config parsing
// ---------------------------------------------------------------------------------------------------------

function parseConfig(cfg: DEISMultistepConfig, numTrain: number) {
  // diffusers maps the other solvers' names onto its own (register_to_config).
  if (cfg.algorithm_type === "dpmsolver" || cfg.algorithm_type === "dpmsolver++") cfg.algorithm_type = "deis";
  if (["midpoint", "heun", "bh1", "bh2"].includes(cfg.solver_type)) cfg.solver_type = "logrho";
  return {
    numTrain,
    ...parseSolverConfig(NAME, cfg),
    algorithm: configOneOf(NAME, "algorithm_type", cfg.algorithm_type, ["deis"] as const),
    solver: configOneOf(NAME, "solver_type", cfg.solver_type, ["logrho"] as const),
    spacing: configOneOf(NAME, "timestep_spacing", cfg.timestep_spacing, TIMESTEP_SPACINGS),
    stepsOffset: configInt(NAME, "steps_offset", cfg.steps_offset),
  };
}
