/**
 * DPMSolverSinglestepScheduler — diffusers 0.23.0 `scheduling_dpmsolver_singlestep.py` (singlestep DPM-Solver /
 * DPM-Solver++, Lu et al. 2022). A k-th order step spends k model evaluations: the orders follow
 * `get_order_list` (e.g. [1, 2, 1, 2, ...] for solver_order 2) and every higher-order step restarts from the
 * sample saved at the last first-order step.
 *
 * It has no `timestep_spacing` / `steps_offset`: timesteps are always
 * `linspace(0, num_train_timesteps - 1 - clipped_idx, n + 1).round()[::-1][:-1]`.
 *
 * Numerics follow the reference dtypes: torch float32 tables (8-wide vectorised linspace with a fused base,
 * cumprod accumulated in double), numpy float64 timesteps and Karras sigmas (half-to-even rounding), float32
 * sigmas; every per-step scalar is a float32 0-dim tensor and every elementwise op a float32 op in diffusers,
 * reproduced with Math.fround after each operation.
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
  configOneOf,
  SchedulerConfigError,
  stepIndexFor,
} from "./scheduler_utils.js";
import { SolverSchedulerBase } from "./solver_scheduler_base.js";
import { f32 as f, thresholdSample } from "./torch_numerics.js";

const NAME = "DPMSolverSinglestepScheduler";

/** diffusers 0.23.0 `DPMSolverSinglestepScheduler.__init__` defaults. */
export const DPMSOLVER_SINGLESTEP_DEFAULT_CONFIG = {
  ...NOISE_SCHEDULE_DEFAULTS,
  solver_order: 2,
  prediction_type: "epsilon" as string,
  thresholding: false,
  dynamic_thresholding_ratio: 0.995,
  sample_max_value: 1.0,
  algorithm_type: "dpmsolver++" as string,
  solver_type: "midpoint" as string,
  lower_order_final: true,
  use_karras_sigmas: false as boolean | null,
  lambda_min_clipped: Number.NEGATIVE_INFINITY as number | string,
  variance_type: null as string | null,
};

export type DPMSolverSinglestepConfig = typeof DPMSOLVER_SINGLESTEP_DEFAULT_CONFIG & SchedulerConfig;

export interface DPMSolverSinglestepStepOptions extends SchedulerStepOptions {
  /** Batch size of the flat sample: dynamic thresholding and learned-variance slicing work per row. Default 1. */
  batchSize?: number;
}

export class DPMSolverSinglestepScheduler
  extends SolverSchedulerBase<DPMSolverSinglestepConfig, ReturnType<typeof parseConfig>>
  implements Scheduler
{
  /** log(sqrt(alphas_cumprod)) - log(sqrt(1 - alphas_cumprod)) in float32, as diffusers' lambda_t. */
  readonly lambdaT: Float32Array;
  /** The order of each step (diffusers `order_list`). */
  orderList: number[];

  private savedSample: Float32Array | null = null;

  static fromConfig(config?: SchedulerConfig): DPMSolverSinglestepScheduler {
    return new DPMSolverSinglestepScheduler(config);
  }

  constructor(config?: SchedulerConfig) {
    super(NAME, DPMSOLVER_SINGLESTEP_DEFAULT_CONFIG, config, parseConfig);
    this.lambdaT = lambdaTable(this.alphasCumprod);
    this.orderList = this.getOrderList(this.p.numTrain);
  }

  /** diffusers `get_order_list`: the solver order of each of `steps` steps. */
  getOrderList(steps: number): number[] {
    const order = this.p.order;
    const rep = (pattern: number[], times: number) => Array.from({ length: times }, () => pattern).flat();
    if (this.p.lowerOrderFinal) {
      if (order === 3) {
        if (steps % 3 === 0) return [...rep([1, 2, 3], steps / 3 - 1), 1, 2, 1];
        if (steps % 3 === 1) return [...rep([1, 2, 3], Math.floor(steps / 3)), 1];
        return [...rep([1, 2, 3], Math.floor(steps / 3)), 1, 2];
      }
      if (order === 2) return [...rep([1, 2], Math.floor(steps / 2)), ...(steps % 2 === 0 ? [] : [1])];
      return rep([1], steps);
    }
    if (order === 3) return rep([1, 2, 3], Math.floor(steps / 3));
    if (order === 2) return rep([1, 2], Math.floor(steps / 2));
    return rep([1], steps);
  }

  setTimesteps(numInferenceSteps: number): void {
    const p = this.p;
    const n = numInferenceSteps;
    checkNumInferenceSteps(NAME, n, p.numTrain);
    this.numInferenceSteps = n;
    // no timestep_spacing here: always linspace(0, N - 1 - clipped, n + 1).round()[::-1][:-1]
    const last = p.numTrain - clippedCount(this.lambdaT, p.lambdaMin);
    ({ timesteps: this.timesteps, sigmas: this.sigmas } = solverSchedule(p, n, this.alphasCumprod, last));
    this.modelOutputs = new Array(p.order).fill(null);
    this.savedSample = null;
    if (!p.lowerOrderFinal && n % p.order !== 0) {
      // diffusers warns and switches lower_order_final on for good (register_to_config).
      p.lowerOrderFinal = true;
      this.cfg.lower_order_final = true;
    }
    this.orderList = this.getOrderList(n);
    this.stepIdx = undefined;
  }

  step(
    modelOutput: Float32Array,
    timestep: number,
    sample: Float32Array,
    options: DPMSolverSinglestepStepOptions = {},
  ): SchedulerOutput {
    const p = this.p;
    checkFinite(NAME, "modelOutput", modelOutput);
    const ready = this.numInferenceSteps !== undefined;
    this.stepIdx = stepIndexFor(NAME, "step", this.timesteps, this.stepIdx, timestep, ready);
    const idx = this.stepIdx;
    const batch = batchSizeOf(NAME, options.batchSize, sample.length);
    const m = this.convertModelOutput(modelOutput, sample, batch);
    for (let i = 0; i < p.order - 1; i++) this.modelOutputs[i] = this.modelOutputs[i + 1] ?? null;
    this.modelOutputs[p.order - 1] = m;

    let order = this.orderList[idx] ?? 1;
    while (order > 1 && !this.modelOutputs[p.order - order]) order--;
    if (order === 1) this.savedSample = sample;
    const x = this.savedSample as Float32Array;
    let prev: Float32Array;
    if (order === 1) prev = this.firstOrderUpdate(m, x);
    else if (order === 2) prev = this.secondOrderUpdate(x);
    else prev = this.thirdOrderUpdate(x);
    this.stepIdx = idx + 1;
    return { prevSample: prev };
  }

  private convertModelOutput(modelOutput: Float32Array, sample: Float32Array, batch: number): Float32Array {
    const p = this.p;
    const n = sample.length;
    const [a, s] = alphaSigmaAt(NAME, this.sigmas, this.stepIdx as number);
    const mo =
      p.prediction === "epsilon" && p.learnedRange ? firstHalfRows(NAME, modelOutput, n, batch) : modelOutput;
    sameLength(NAME, mo, n);
    if (p.algorithm === "dpmsolver++") {
      const x0 = dataPrediction(p.prediction, mo, sample, a, s);
      return p.thresholding ? thresholdSample(x0, batch, p.ratio, p.sampleMax) : x0;
    }
    // diffusers' singlestep "dpmsolver" branch does not threshold.
    return noisePrediction(p.prediction, mo, sample, a, s);
  }

  /** alpha, sigma and lambda (float32) at sigmas[stepIndex + 1 - k] for k = 0 (target), 1, 2, 3. */
  private point(k: number): { a: number; s: number; l: number } {
    const [a, s] = alphaSigmaAt(NAME, this.sigmas, (this.stepIdx as number) + 1 - k);
    return { a, s, l: lambdaOf(a, s) };
  }

  private firstOrderUpdate(m: Float32Array, x: Float32Array): Float32Array {
    const t = this.point(0);
    const s0 = this.point(1);
    const h = f(t.l - s0.l);
    if (this.p.algorithm === "dpmsolver++") {
      return lin(x, f(t.s / s0.s), [-f(t.a * f(f(Math.exp(-h)) - 1)), m]);
    }
    return lin(x, f(t.a / s0.a), [-f(t.s * f(f(Math.exp(h)) - 1)), m]);
  }

  /** Second order from the sample saved at sigmas[stepIndex - 1], using the last two model outputs. */
  private secondOrderUpdate(x: Float32Array): Float32Array {
    const p = this.p;
    const [t, s0, s1] = [this.point(0), this.point(1), this.point(2)];
    const m0 = this.modelOutputs[p.order - 1] as Float32Array;
    const m1 = this.modelOutputs[p.order - 2] as Float32Array;
    const h = f(t.l - s1.l);
    const inv = f(1 / f(f(s0.l - s1.l) / h));
    const d1 = m0.map((a, i) => f(inv * f(a - (m1[i] as number))));
    const mid = p.solver === "midpoint";
    if (p.algorithm === "dpmsolver++") {
      const em1 = f(f(Math.exp(-h)) - 1);
      const c1 = f(t.a * em1);
      const c2 = mid ? -f(0.5 * c1) : f(t.a * f(f(em1 / h) + 1));
      return lin(x, f(t.s / s1.s), [-c1, m1], [c2, d1]);
    }
    const em1 = f(f(Math.exp(h)) - 1);
    const c1 = f(t.s * em1);
    const c2 = mid ? f(0.5 * c1) : f(t.s * f(f(em1 / h) - 1));
    return lin(x, f(t.a / s1.a), [-c1, m1], [-c2, d1]);
  }

  /** Third order from the sample saved at sigmas[stepIndex - 2], using the last three model outputs. */
  private thirdOrderUpdate(x: Float32Array): Float32Array {
    const p = this.p;
    const [t, s0, s1, s2] = [this.point(0), this.point(1), this.point(2), this.point(3)];
    const m0 = this.modelOutputs[p.order - 1] as Float32Array;
    const m1 = this.modelOutputs[p.order - 2] as Float32Array;
    const m2 = this.modelOutputs[p.order - 3] as Float32Array;
    const h = f(t.l - s2.l);
    const r0 = f(f(s0.l - s2.l) / h);
    const r1 = f(f(s1.l - s2.l) / h);
    const [i0, i1, rd] = [f(1 / r0), f(1 / r1), f(r0 - r1)];
    const n = x.length;
    const d11 = new Float32Array(n);
    const d1 = new Float32Array(n);
    const d2 = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      const c = m2[i] as number;
      const a10 = f(i1 * f((m1[i] as number) - c));
      const a11 = f(i0 * f((m0[i] as number) - c));
      d11[i] = a11;
      d1[i] = f(f(f(r0 * a10) - f(r1 * a11)) / rd);
      d2[i] = f(f(2 * f(a11 - a10)) / rd);
    }
    const mid = p.solver === "midpoint";
    const hh = f(h * h);
    if (p.algorithm === "dpmsolver++") {
      const em1 = f(f(Math.exp(-h)) - 1);
      const c0 = f(t.s / s2.s);
      const c1 = -f(t.a * em1);
      const c2 = f(t.a * f(f(em1 / h) + 1));
      if (mid) return lin(x, c0, [c1, m2], [c2, d11]);
      return lin(x, c0, [c1, m2], [c2, d1], [-f(t.a * f(f(f(em1 + h) / hh) - 0.5)), d2]);
    }
    const em1 = f(f(Math.exp(h)) - 1);
    const c0 = f(t.a / s2.a);
    const c1 = -f(t.s * em1);
    const c2 = -f(t.s * f(f(em1 / h) - 1));
    if (mid) return lin(x, c0, [c1, m2], [c2, d11]);
    return lin(x, c0, [c1, m2], [c2, d1], [-f(t.s * f(f(f(em1 - h) / hh) - 0.5)), d2]);
  }
}

// ---------------------------------------------------------------------------------------------------------
// Config parsing
// ---------------------------------------------------------------------------------------------------------

function parseConfig(cfg: DPMSolverSinglestepConfig, numTrain: number) {
  const { varianceType: vt, ...keys } = parseDpmSolverKeys(NAME, cfg);
  const common = parseSolverConfig(NAME, cfg);
  if (common.order > 3) {
    throw new SchedulerConfigError(NAME, "solver_order", `must be 1, 2 or 3, got ${common.order}`);
  }
  return {
    numTrain,
    ...common,
    ...keys,
    algorithm: configOneOf(NAME, "algorithm_type", cfg.algorithm_type, ["dpmsolver", "dpmsolver++"] as const),
    learnedRange: vt === "learned_range",
  };
}
