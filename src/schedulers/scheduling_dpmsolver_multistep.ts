/**
 * DPMSolverMultistepScheduler — diffusers 0.23.0 `scheduling_dpmsolver_multistep.py`
 * (DPM-Solver / DPM-Solver++, Lu et al. 2022; "DPM++ 2M" with the defaults, "DPM++ 2M SDE" with
 * algorithm_type "sde-dpmsolver++").
 *
 * Numerics follow the reference dtypes:
 * - betas: torch float32 linspace (8-wide vectorised kernel, fused base) squared; alphas_cumprod accumulated in
 *   double as torch's CPU cumprod does, then stored as float32;
 * - timesteps / Karras / Lu sigmas: numpy float64 (half-to-even rounding), sigmas stored as float32;
 * - every per-step scalar (alpha_t, lambda_t, h, ...) is a float32 0-dim tensor in diffusers, and every
 *   elementwise op a float32 op: both are reproduced with Math.fround after each operation.
 * The SDE variants draw `randn(sample.length)` every step: from `options.generator`, else from torch's global
 * generator (`defaultGenerator`), as diffusers does.
 */
import { NOISE_SCHEDULE_DEFAULTS } from "./beta_schedules.js";
import {
  alphaSigmaAt,
  clippedCount,
  dataPrediction,
  firstHalfRows,
  lambdaOf,
  lambdaTable,
  lin,
  noisePrediction,
  parseDpmSolverKeys,
  parseSolverConfig,
  sameLength,
  solverSchedule,
} from "./dpm_solver_common.js";
import type { Scheduler, SchedulerConfig, SchedulerOutput, SchedulerStepOptions } from "./scheduler_utils.js";
import {
  batchSizeOf,
  checkFinite,
  checkNumInferenceSteps,
  configBool,
  configInt,
  configOneOf,
  stepIndexFor,
  stepNoise,
} from "./scheduler_utils.js";
import { SolverSchedulerBase } from "./solver_scheduler_base.js";
import { TIMESTEP_SPACINGS } from "./timestep_spacing.js";
import { f32 as f, thresholdSample } from "./torch_numerics.js";

const NAME = "DPMSolverMultistepScheduler";

/** diffusers 0.23.0 `DPMSolverMultistepScheduler.__init__` defaults. */
export const DPMSOLVER_MULTISTEP_DEFAULT_CONFIG = {
  ...NOISE_SCHEDULE_DEFAULTS,
  solver_order: 2,
  prediction_type: "epsilon" as string,
  thresholding: false,
  dynamic_thresholding_ratio: 0.995,
  sample_max_value: 1.0,
  algorithm_type: "dpmsolver++" as string,
  solver_type: "midpoint" as string,
  lower_order_final: true,
  euler_at_final: false,
  use_karras_sigmas: false as boolean | null,
  use_lu_lambdas: false as boolean | null,
  lambda_min_clipped: Number.NEGATIVE_INFINITY as number | string,
  variance_type: null as string | null,
  timestep_spacing: "linspace" as string,
  steps_offset: 0,
};

export type DPMSolverMultistepConfig = typeof DPMSOLVER_MULTISTEP_DEFAULT_CONFIG & SchedulerConfig;

export interface DPMSolverMultistepStepOptions extends SchedulerStepOptions {
  /** Batch size of the flat sample: dynamic thresholding and learned-variance slicing work per row. Default 1. */
  batchSize?: number;
}

const ALGORITHMS = ["dpmsolver", "dpmsolver++", "sde-dpmsolver", "sde-dpmsolver++"] as const;

export class DPMSolverMultistepScheduler
  extends SolverSchedulerBase<DPMSolverMultistepConfig, ReturnType<typeof parseConfig>>
  implements Scheduler
{
  /** log(sqrt(alphas_cumprod)) - log(sqrt(1 - alphas_cumprod)) in float32, as diffusers' lambda_t. */
  readonly lambdaT: Float32Array;

  private lowerOrderNums = 0;

  static fromConfig(config?: SchedulerConfig): DPMSolverMultistepScheduler {
    return new DPMSolverMultistepScheduler(config);
  }

  constructor(config?: SchedulerConfig) {
    super(NAME, DPMSOLVER_MULTISTEP_DEFAULT_CONFIG, config, parseConfig);
    this.lambdaT = lambdaTable(this.alphasCumprod);
  }

  setTimesteps(numInferenceSteps: number): void {
    const p = this.p;
    const n = numInferenceSteps;
    checkNumInferenceSteps(NAME, n, p.numTrain);
    const last = p.numTrain - clippedCount(this.lambdaT, p.lambdaMin);
    ({ timesteps: this.timesteps, sigmas: this.sigmas } = solverSchedule(p, n, this.alphasCumprod, last));
    this.numInferenceSteps = this.timesteps.length;
    this.modelOutputs = new Array(p.order).fill(null);
    this.lowerOrderNums = 0;
    this.stepIdx = undefined;
  }

  step(
    modelOutput: Float32Array,
    timestep: number,
    sample: Float32Array,
    options: DPMSolverMultistepStepOptions = {},
  ): SchedulerOutput {
    const p = this.p;
    checkFinite(NAME, "modelOutput", modelOutput);
    const ready = this.numInferenceSteps !== undefined;
    this.stepIdx = stepIndexFor(NAME, "step", this.timesteps, this.stepIdx, timestep, ready);
    const idx = this.stepIdx;
    const nT = this.timesteps.length;
    const batch = batchSizeOf(NAME, options.batchSize, sample.length);
    const lowerOrderFinal = idx === nT - 1 && (p.eulerAtFinal || (p.lowerOrderFinal && nT < 15));
    const lowerOrderSecond = idx === nT - 2 && p.lowerOrderFinal && nT < 15;

    const m = this.convertModelOutput(modelOutput, sample, batch);
    for (let i = 0; i < p.order - 1; i++) this.modelOutputs[i] = this.modelOutputs[i + 1] ?? null;
    this.modelOutputs[p.order - 1] = m;

    let noise: Float32Array | undefined;
    if (p.algorithm === "sde-dpmsolver" || p.algorithm === "sde-dpmsolver++") {
      noise = stepNoise(options.generator, sample.length);
    }

    let prev: Float32Array;
    if (p.order === 1 || this.lowerOrderNums < 1 || lowerOrderFinal) {
      prev = this.firstOrderUpdate(m, sample, noise);
    } else if (p.order === 2 || this.lowerOrderNums < 2 || lowerOrderSecond) {
      prev = this.secondOrderUpdate(sample, noise);
    } else {
      prev = this.thirdOrderUpdate(sample);
    }
    if (this.lowerOrderNums < p.order) this.lowerOrderNums++;
    this.stepIdx = idx + 1;
    return { prevSample: prev };
  }

  private convertModelOutput(modelOutput: Float32Array, sample: Float32Array, batch: number): Float32Array {
    const p = this.p;
    const n = sample.length;
    const [a, s] = alphaSigmaAt(NAME, this.sigmas, this.stepIdx as number);
    const mo =
      p.prediction === "epsilon" && p.learnedVariance
        ? firstHalfRows(NAME, modelOutput, n, batch)
        : sameLength(NAME, modelOutput, n);
    if (p.algorithm === "dpmsolver++" || p.algorithm === "sde-dpmsolver++") {
      const x0 = dataPrediction(p.prediction, mo, sample, a, s);
      return p.thresholding ? thresholdSample(x0, batch, p.ratio, p.sampleMax) : x0;
    }
    let eps = noisePrediction(p.prediction, mo, sample, a, s);
    if (p.thresholding) {
      const x0 = thresholdSample(dataPrediction("epsilon", eps, sample, a, s), batch, p.ratio, p.sampleMax);
      eps = noisePrediction("sample", x0, sample, a, s);
    }
    return eps;
  }

  /** alpha, sigma and lambda (float32) at sigmas[stepIndex + 1 - k] for k = 0 (target), 1, 2, 3. */
  private point(k: number): { a: number; s: number; l: number } {
    const [a, s] = alphaSigmaAt(NAME, this.sigmas, (this.stepIdx as number) + 1 - k);
    return { a, s, l: lambdaOf(a, s) };
  }

  private firstOrderUpdate(m: Float32Array, x: Float32Array, noise: Float32Array | undefined): Float32Array {
    const t = this.point(0);
    const s0 = this.point(1);
    const h = f(t.l - s0.l);
    const alg = this.p.algorithm;
    if (alg === "dpmsolver++") return lin(x, f(t.s / s0.s), [-f(t.a * f(f(Math.exp(-h)) - 1)), m]);
    if (alg === "dpmsolver") return lin(x, f(t.a / s0.a), [-f(t.s * f(f(Math.exp(h)) - 1)), m]);
    const z = noise as Float32Array;
    if (alg === "sde-dpmsolver++") {
      const e2 = f(Math.exp(f(-2 * h)));
      const cn = f(t.s * f(Math.sqrt(f(1 - e2))));
      return lin(x, f(f(t.s / s0.s) * f(Math.exp(-h))), [f(t.a * f(1 - e2)), m], [cn, z]);
    }
    const cn = f(t.s * f(Math.sqrt(f(f(Math.exp(f(2 * h))) - 1))));
    return lin(x, f(t.a / s0.a), [-f(2 * f(t.s * f(f(Math.exp(h)) - 1))), m], [cn, z]);
  }

  private secondOrderUpdate(x: Float32Array, noise: Float32Array | undefined): Float32Array {
    const p = this.p;
    const [t, s0, s1] = [this.point(0), this.point(1), this.point(2)];
    const m0 = this.modelOutputs[p.order - 1] as Float32Array;
    const m1 = this.modelOutputs[p.order - 2] as Float32Array;
    const h = f(t.l - s0.l);
    const inv = f(1 / f(f(s0.l - s1.l) / h));
    const d1 = m0.map((a, i) => f(inv * f(a - (m1[i] as number))));
    const mid = p.solver === "midpoint";
    if (p.algorithm === "dpmsolver++") {
      const em1 = f(f(Math.exp(-h)) - 1);
      const c1 = f(t.a * em1);
      const c2 = mid ? -f(0.5 * c1) : f(t.a * f(f(em1 / h) + 1));
      return lin(x, f(t.s / s0.s), [-c1, m0], [c2, d1]);
    }
    if (p.algorithm === "dpmsolver") {
      const em1 = f(f(Math.exp(h)) - 1);
      const c1 = f(t.s * em1);
      const c2 = mid ? f(0.5 * c1) : f(t.s * f(f(em1 / h) - 1));
      return lin(x, f(t.a / s0.a), [-c1, m0], [-c2, d1]);
    }
    const z = noise as Float32Array;
    if (p.algorithm === "sde-dpmsolver++") {
      const e2 = f(Math.exp(f(-2 * h)));
      const c1 = f(t.a * f(1 - e2));
      const c2 = mid ? f(0.5 * c1) : f(t.a * f(f(f(1 - e2) / f(-2 * h)) + 1));
      const cn = f(t.s * f(Math.sqrt(f(1 - e2))));
      return lin(x, f(f(t.s / s0.s) * f(Math.exp(-h))), [c1, m0], [c2, d1], [cn, z]);
    }
    const em1 = f(f(Math.exp(h)) - 1);
    const c2 = mid ? f(t.s * em1) : f(2 * f(t.s * f(f(em1 / h) - 1)));
    const cn = f(t.s * f(Math.sqrt(f(f(Math.exp(f(2 * h))) - 1))));
    return lin(x, f(t.a / s0.a), [-f(2 * f(t.s * em1)), m0], [-c2, d1], [cn, z]);
  }

  private thirdOrderUpdate(x: Float32Array): Float32Array {
    const p = this.p;
    if (p.algorithm !== "dpmsolver++" && p.algorithm !== "dpmsolver") {
      // diffusers 0.23.0 has no SDE third-order update (it fails with UnboundLocalError there).
      throw new Error(
        `${NAME}.step: third-order updates are not defined for algorithm_type "${p.algorithm}" in diffusers ` +
          "0.23.0; use solver_order <= 2 with the SDE variants",
      );
    }
    const [t, s0, s1, s2] = [this.point(0), this.point(1), this.point(2), this.point(3)];
    const m0 = this.modelOutputs[p.order - 1] as Float32Array;
    const m1 = this.modelOutputs[p.order - 2] as Float32Array;
    const m2 = this.modelOutputs[p.order - 3] as Float32Array;
    const h = f(t.l - s0.l);
    const r0 = f(f(s0.l - s1.l) / h);
    const r1 = f(f(s1.l - s2.l) / h);
    const [i0, i1, rs] = [f(1 / r0), f(1 / r1), f(r0 + r1)];
    const [k1, k2] = [f(r0 / rs), f(1 / rs)];
    const d1 = new Float32Array(x.length);
    const d2 = new Float32Array(x.length);
    for (let i = 0; i < x.length; i++) {
      const b = m1[i] as number;
      const d10 = f(i0 * f((m0[i] as number) - b));
      const diff = f(d10 - f(i1 * f(b - (m2[i] as number))));
      d1[i] = f(d10 + f(k1 * diff));
      d2[i] = f(k2 * diff);
    }
    const hh = f(h * h);
    if (p.algorithm === "dpmsolver++") {
      const em1 = f(f(Math.exp(-h)) - 1);
      const c2 = f(t.a * f(f(em1 / h) + 1));
      const c3 = f(t.a * f(f(f(em1 + h) / hh) - 0.5));
      return lin(x, f(t.s / s0.s), [-f(t.a * em1), m0], [c2, d1], [-c3, d2]);
    }
    const em1 = f(f(Math.exp(h)) - 1);
    const c2 = f(t.s * f(f(em1 / h) - 1));
    const c3 = f(t.s * f(f(f(em1 - h) / hh) - 0.5));
    return lin(x, f(t.a / s0.a), [-f(t.s * em1), m0], [-c2, d1], [-c3, d2]);
  }
}

// ---------------------------------------------------------------------------------------------------------
// Config parsing
// ---------------------------------------------------------------------------------------------------------

function parseConfig(cfg: DPMSolverMultistepConfig, numTrain: number) {
  const { varianceType: vt, ...keys } = parseDpmSolverKeys(NAME, cfg);
  return {
    numTrain,
    ...parseSolverConfig(NAME, cfg),
    ...keys,
    algorithm: configOneOf(NAME, "algorithm_type", cfg.algorithm_type, ALGORITHMS),
    eulerAtFinal: configBool(NAME, "euler_at_final", cfg.euler_at_final, true),
    lu: configBool(NAME, "use_lu_lambdas", cfg.use_lu_lambdas, true),
    learnedVariance: vt === "learned" || vt === "learned_range",
    spacing: configOneOf(NAME, "timestep_spacing", cfg.timestep_spacing, TIMESTEP_SPACINGS),
    stepsOffset: configInt(NAME, "steps_offset", cfg.steps_offset),
  };
}
