/**
 * UniPCMultistepScheduler — diffusers 0.23.0 `scheduling_unipc_multistep.py` (UniPC, Zhao et al. 2023): a
 * multistep predictor (UniP, B(h) = bh1 / bh2) followed at the next step by a corrector (UniC) that reuses the
 * new model output, for data (predict_x0) or noise prediction. `solver_p` (an external predictor scheduler) is
 * not supported.
 *
 * Numerics follow the reference dtypes: torch float32 tables (8-wide vectorised linspace with a fused base,
 * cumprod accumulated in double), numpy float64 timesteps and Karras sigmas (half-to-even rounding), float32
 * sigmas. Every per-step scalar (lambda, h, h_phi_k, B(h), r_k, the rho coefficients of the small float32
 * linear solve) is a float32 tensor in diffusers and every elementwise op a float32 op: both are reproduced
 * with Math.fround after each operation.
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
  configBool,
  configInt,
  configOneOf,
  SchedulerConfigError,
  stepIndexFor,
} from "./scheduler_utils.js";
import { SolverSchedulerBase } from "./solver_scheduler_base.js";
import { TIMESTEP_SPACINGS } from "./timestep_spacing.js";
import { f32 as f, thresholdSample } from "./torch_numerics.js";

const NAME = "UniPCMultistepScheduler";

/** diffusers 0.23.0 `UniPCMultistepScheduler.__init__` defaults. */
export const UNIPC_MULTISTEP_DEFAULT_CONFIG = {
  ...NOISE_SCHEDULE_DEFAULTS,
  solver_order: 2,
  prediction_type: "epsilon" as string,
  thresholding: false,
  dynamic_thresholding_ratio: 0.995,
  sample_max_value: 1.0,
  predict_x0: true,
  solver_type: "bh2" as string,
  lower_order_final: true,
  disable_corrector: [] as number[],
  solver_p: null as unknown,
  use_karras_sigmas: false as boolean | null,
  timestep_spacing: "linspace" as string,
  steps_offset: 0,
};

export type UniPCMultistepConfig = typeof UNIPC_MULTISTEP_DEFAULT_CONFIG & SchedulerConfig;

export interface UniPCMultistepStepOptions extends SchedulerStepOptions {
  /** Batch size of the flat sample: dynamic thresholding works per row. Default 1. */
  batchSize?: number;
}

/** The float32 scalars shared by UniP and UniC: see `multistep_uni_p_bh_update`. */
interface BhCoefficients {
  c0: number;
  c1: number;
  cB: number;
  d1s: Float32Array[];
  r: number[][];
  b: number[];
}

export class UniPCMultistepScheduler
  extends SolverSchedulerBase<UniPCMultistepConfig, ReturnType<typeof parseConfig>>
  implements Scheduler
{
  private lowerOrderNums = 0;
  private lastSample: Float32Array | null = null;
  private thisOrder = 1;

  static fromConfig(config?: SchedulerConfig): UniPCMultistepScheduler {
    return new UniPCMultistepScheduler(config);
  }

  constructor(config?: SchedulerConfig) {
    super(NAME, UNIPC_MULTISTEP_DEFAULT_CONFIG, config, parseConfig);
  }

  setTimesteps(numInferenceSteps: number): void {
    const p = this.p;
    const n = numInferenceSteps;
    checkNumInferenceSteps(NAME, n, p.numTrain);
    ({ timesteps: this.timesteps, sigmas: this.sigmas } = solverSchedule(p, n, this.alphasCumprod));
    this.numInferenceSteps = this.timesteps.length;
    this.modelOutputs = new Array(p.order).fill(null);
    this.lowerOrderNums = 0;
    this.lastSample = null;
    this.stepIdx = undefined;
  }

  step(
    modelOutput: Float32Array,
    timestep: number,
    sample: Float32Array,
    options: UniPCMultistepStepOptions = {},
  ): SchedulerOutput {
    const p = this.p;
    checkFinite(NAME, "modelOutput", modelOutput);
    const ready = this.numInferenceSteps !== undefined;
    this.stepIdx = stepIndexFor(NAME, "step", this.timesteps, this.stepIdx, timestep, ready);
    const idx = this.stepIdx;
    const useCorrector = idx > 0 && !p.disableCorrector.includes(idx - 1) && this.lastSample !== null;
    const m = this.convertModelOutput(
      modelOutput,
      sample,
      batchSizeOf(NAME, options.batchSize, sample.length),
    );
    let x = sample;
    if (useCorrector) x = this.correctorUpdate(m, this.lastSample as Float32Array, this.thisOrder);

    for (let i = 0; i < p.order - 1; i++) this.modelOutputs[i] = this.modelOutputs[i + 1] ?? null;
    this.modelOutputs[p.order - 1] = m;

    const order = p.lowerOrderFinal ? Math.min(p.order, this.timesteps.length - idx) : p.order;
    this.thisOrder = Math.min(order, this.lowerOrderNums + 1); // warmup for multistep
    this.lastSample = x;
    const prev = this.predictorUpdate(x, this.thisOrder);
    if (this.lowerOrderNums < p.order) this.lowerOrderNums++;
    this.stepIdx = idx + 1;
    return { prevSample: prev };
  }

  private lambdaAt(i: number): number {
    const [a, s] = alphaSigmaAt(NAME, this.sigmas, i);
    return lambdaOf(a, s);
  }

  private convertModelOutput(modelOutput: Float32Array, sample: Float32Array, batch: number): Float32Array {
    const p = this.p;
    const mo = sameLength(NAME, modelOutput, sample.length);
    const [a, s] = alphaSigmaAt(NAME, this.sigmas, this.stepIdx as number);
    if (p.predictX0) {
      const x0 = dataPrediction(p.prediction, mo, sample, a, s);
      return p.thresholding ? thresholdSample(x0, batch, p.ratio, p.sampleMax) : x0;
    }
    return noisePrediction(p.prediction, mo, sample, a, s);
  }

  /**
   * The B(h) coefficients for a step from sigmas[s0] to sigmas[t] of the given order, with the earlier model
   * outputs at sigmas[siOf(i)], i = 1..order-1 (the newest output, m0, is modelOutputs[-1]).
   */
  private bh(t: number, s0: number, order: number, siOf: (i: number) => number): BhCoefficients {
    const p = this.p;
    const [at, st] = alphaSigmaAt(NAME, this.sigmas, t);
    const [as0, ss0] = alphaSigmaAt(NAME, this.sigmas, s0);
    const ls0 = lambdaOf(as0, ss0);
    const h = f(lambdaOf(at, st) - ls0);
    const m0 = this.modelOutputs[p.order - 1] as Float32Array;
    const rks: number[] = [];
    const d1s: Float32Array[] = [];
    for (let i = 1; i < order; i++) {
      const mi = this.modelOutputs[p.order - 1 - i] as Float32Array;
      const rk = f(f(this.lambdaAt(siOf(i)) - ls0) / h);
      rks.push(rk);
      d1s.push(map2(mi, m0, (a, b) => f(f(a - b) / rk)));
    }
    rks.push(1);
    const hh = p.predictX0 ? -h : h;
    const hPhi1 = f(Math.expm1(hh));
    let hPhiK = f(f(hPhi1 / hh) - 1);
    const bH = p.solver === "bh1" ? hh : f(Math.expm1(hh));
    const r: number[][] = [];
    const b: number[] = [];
    let factorial = 1;
    for (let i = 1; i <= order; i++) {
      r.push(rks.map((x) => torchPow(x, i - 1)));
      b.push(f(f(hPhiK * factorial) / bH));
      factorial *= i + 1;
      hPhiK = f(f(hPhiK / hh) - f(1 / factorial));
    }
    // x_t_ = c0 * x - c1 * m0; x_t = x_t_ - cB * (sum_k rho_k D1_k [+ rho_last D1_t])
    const c0 = p.predictX0 ? f(st / ss0) : f(at / as0);
    const c1 = f((p.predictX0 ? at : st) * hPhi1);
    const cB = f((p.predictX0 ? at : st) * bH);
    return { c0, c1, cB, d1s, r, b };
  }

  /** UniP: predicts sigmas[stepIndex + 1] from the (corrected) sample at sigmas[stepIndex]. */
  private predictorUpdate(x: Float32Array, order: number): Float32Array {
    const idx = this.stepIdx as number;
    const { c0, c1, cB, d1s, r, b } = this.bh(idx + 1, idx, order, (i) => idx - i);
    let rhos: number[] = [];
    if (d1s.length > 0) {
      rhos =
        order === 2
          ? [0.5]
          : solveF32(
              r.slice(0, -1).map((row) => row.slice(0, -1)),
              b.slice(0, -1),
            );
    }
    const m0 = this.modelOutputs[this.p.order - 1] as Float32Array;
    const out = new Float32Array(x.length);
    for (let i = 0; i < x.length; i++) {
      const base = f(f(c0 * (x[i] as number)) - f(c1 * (m0[i] as number)));
      if (d1s.length === 0) {
        out[i] = base;
        continue;
      }
      let res = f((rhos[0] as number) * ((d1s[0] as Float32Array)[i] as number));
      for (let k = 1; k < d1s.length; k++)
        res = f(res + f((rhos[k] as number) * ((d1s[k] as Float32Array)[i] as number)));
      out[i] = f(base - f(cB * res));
    }
    return out;
  }

  /** UniC: corrects the sample at sigmas[stepIndex] predicted by the previous step, using the new output. */
  private correctorUpdate(modelT: Float32Array, last: Float32Array, order: number): Float32Array {
    const idx = this.stepIdx as number;
    const { c0, c1, cB, d1s, r, b } = this.bh(idx, idx - 1, order, (i) => idx - (i + 1));
    const rhos = order === 1 ? [0.5] : solveF32(r, b);
    const rhoT = rhos[rhos.length - 1] as number;
    const m0 = this.modelOutputs[this.p.order - 1] as Float32Array;
    const out = new Float32Array(last.length);
    for (let i = 0; i < last.length; i++) {
      const m0i = m0[i] as number;
      const base = f(f(c0 * (last[i] as number)) - f(c1 * m0i));
      let res = 0;
      for (let k = 0; k < d1s.length; k++) {
        const term = f((rhos[k] as number) * ((d1s[k] as Float32Array)[i] as number));
        res = k === 0 ? term : f(res + term);
      }
      const corr = f(res + f(rhoT * f((modelT[i] as number) - m0i)));
      out[i] = f(base - f(cB * corr));
    }
    return out;
  }
}

/** torch.pow(float32 tensor, integer exponent): 0 -> 1, 1 -> x, 2 -> x*x, 3 -> x*x*x, else powf. */
function torchPow(x: number, e: number): number {
  if (e === 0) return 1;
  if (e === 1) return x;
  if (e === 2) return f(x * x);
  if (e === 3) return f(f(x * x) * x);
  return f(x ** e);
}

/** torch.linalg.solve for the small float32 system: LU with partial pivoting (LAPACK sgesv order). */
function solveF32(a: number[][], rhs: number[]): number[] {
  const n = rhs.length;
  const m = a.map((row) => [...row]);
  const b = [...rhs];
  for (let k = 0; k < n; k++) {
    let piv = k;
    for (let i = k + 1; i < n; i++) {
      if (Math.abs((m[i] as number[])[k] as number) > Math.abs((m[piv] as number[])[k] as number)) piv = i;
    }
    if ((m[piv] as number[])[k] === 0) {
      throw new RangeError(`${NAME}.step: singular UniPC system (repeated sigmas in the schedule?)`);
    }
    [m[k], m[piv]] = [m[piv] as number[], m[k] as number[]];
    [b[k], b[piv]] = [b[piv] as number, b[k] as number];
    const rk = m[k] as number[];
    const inv = f(1 / (rk[k] as number));
    for (let i = k + 1; i < n; i++) {
      const ri = m[i] as number[];
      const l = f((ri[k] as number) * inv);
      for (let j = k + 1; j < n; j++) ri[j] = f((ri[j] as number) - f(l * (rk[j] as number)));
      b[i] = f((b[i] as number) - f(l * (b[k] as number)));
    }
  }
  const x = new Array<number>(n).fill(0);
  for (let k = n - 1; k >= 0; k--) {
    const rk = m[k] as number[];
    let v = b[k] as number;
    for (let j = k + 1; j < n; j++) v = f(v - f((rk[j] as number) * (x[j] as number)));
    x[k] = f(v / (rk[k] as number));
  }
  return x;
}

// ---------------------------------------------------------------------------------------------------------
// Config parsing
// ---------------------------------------------------------------------------------------------------------

function parseConfig(cfg: UniPCMultistepConfig, numTrain: number) {
  // diffusers maps the other solvers' names onto its own (register_to_config).
  if (["midpoint", "heun", "logrho"].includes(cfg.solver_type)) cfg.solver_type = "bh2";
  if (cfg.solver_p !== null && cfg.solver_p !== undefined) {
    throw new SchedulerConfigError(NAME, "solver_p", "is not supported (only null)");
  }
  const dc = cfg.disable_corrector ?? [];
  if (!Array.isArray(dc) || !dc.every((v) => Number.isInteger(v))) {
    throw new SchedulerConfigError(
      NAME,
      "disable_corrector",
      `must be a list of step indices, got ${JSON.stringify(dc)}`,
    );
  }
  return {
    numTrain,
    ...parseSolverConfig(NAME, cfg),
    predictX0: configBool(NAME, "predict_x0", cfg.predict_x0, true),
    solver: configOneOf(NAME, "solver_type", cfg.solver_type, ["bh1", "bh2"] as const),
    disableCorrector: dc as number[],
    spacing: configOneOf(NAME, "timestep_spacing", cfg.timestep_spacing, TIMESTEP_SPACINGS),
    stepsOffset: configInt(NAME, "steps_offset", cfg.steps_offset),
  };
}
