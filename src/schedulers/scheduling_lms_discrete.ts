/**
 * LMSDiscreteScheduler — diffusers 0.23.0 `scheduling_lms_discrete.py`: a linear multistep method on the
 * k-diffusion sigma parametrisation (Karras et al. 2022), optionally with Karras sigmas.
 *
 * Numerics follow the reference dtypes: the float32 torch tables give float32 training sigmas; timesteps are
 * numpy float32 (float64 with Karras sigmas, from `_sigma_to_t`); the inference sigmas are interpolated in
 * float64 by numpy and stored as float32. The LMS coefficients are integrals of Lagrange basis polynomials, which
 * diffusers computes with scipy.integrate.quad; here an adaptive Gauss-Kronrod (21-point) quadrature to ~1e-12.
 */
import { NOISE_SCHEDULE_DEFAULTS } from "./beta_schedules.js";
import {
  addNoiseBySigma,
  initNoiseSigmaOf,
  predictOriginalSample,
  scaleBySigma,
  sigmaSchedule,
  sigmaTables,
} from "./k_diffusion_common.js";
import type { Scheduler, SchedulerConfig, SchedulerOutput, SchedulerStepOptions } from "./scheduler_utils.js";
import {
  checkModelOutput,
  checkNumInferenceSteps,
  configBool,
  mergeConfig,
  parseScheduleConfig,
  stepIndexFor,
} from "./scheduler_utils.js";
import { sigmaToT, type TimestepSpacing } from "./timestep_spacing.js";
import { f32 } from "./torch_numerics.js";

const NAME = "LMSDiscreteScheduler";

export type LMSBetaSchedule = "linear" | "scaled_linear" | "squaredcos_cap_v2";
export type LMSPredictionType = "epsilon" | "sample" | "v_prediction";
export type LMSTimestepSpacing = TimestepSpacing;

/** diffusers 0.23.0 `LMSDiscreteScheduler.__init__` defaults. */
export const LMS_DEFAULT_CONFIG = {
  ...NOISE_SCHEDULE_DEFAULTS,
  use_karras_sigmas: false as boolean | null,
  prediction_type: "epsilon" as string,
  timestep_spacing: "linspace" as string,
  steps_offset: 0,
};

export type LMSConfig = typeof LMS_DEFAULT_CONFIG & SchedulerConfig;

export interface LMSStepOptions extends SchedulerStepOptions {
  /** The order of the linear multistep method (diffusers `order`, default 4). */
  order?: number;
}

export interface LMSSchedulerOutput extends SchedulerOutput {
  predOriginalSample: Float32Array;
}

// ---------------------------------------------------------------- quadrature

// Gauss-Kronrod 21-point rule (QUADPACK qk21): Kronrod abscissae (the odd ones are the 10-point Gauss nodes),
// Kronrod weights and the 10-point Gauss weights.
const XGK = [
  0.9956571630258081, 0.9739065285171717, 0.9301574913557082, 0.8650633666889845, 0.7808177265864169,
  0.6794095682990244, 0.5627571346686047, 0.4333953941292472, 0.2943928627014602, 0.14887433898163122, 0,
];
const WGK = [
  0.011694638867371874, 0.032558162307964725, 0.054755896574351995, 0.07503967481091996, 0.0931254545836976,
  0.10938715880229764, 0.12349197626206584, 0.13470921731147334, 0.14277593857706009, 0.14773910490133849,
  0.1494455540029169,
];
const WG = [
  0.06667134430868814, 0.1494513491505806, 0.21908636251598204, 0.26926671930999635, 0.29552422471475287,
];

/** One 21-point Gauss-Kronrod estimate on [a, b]: [integral, error estimate |K21 - G10|]. */
function gk21(fn: (x: number) => number, a: number, b: number): [number, number] {
  const c = 0.5 * (a + b);
  const h = 0.5 * (b - a);
  const fc = fn(c);
  let kronrod = fc * (WGK[10] as number);
  let gauss = 0;
  for (let j = 0; j < 10; j++) {
    const dx = h * (XGK[j] as number);
    const sum = fn(c - dx) + fn(c + dx);
    kronrod += (WGK[j] as number) * sum;
    if (j % 2 === 1) gauss += (WG[(j - 1) / 2] as number) * sum;
  }
  return [kronrod * h, Math.abs((kronrod - gauss) * h)];
}

/**
 * Adaptive Gauss-Kronrod quadrature: bisect the interval with the largest error estimate until the total error
 * estimate is below max(epsAbs, epsRel * |integral|). Exact (up to rounding) for polynomials of degree <= 31,
 * which covers every Lagrange basis polynomial of the LMS method.
 */
export function integrate(
  fn: (x: number) => number,
  a: number,
  b: number,
  epsRel = 1e-12,
  epsAbs = 1e-15,
  maxIntervals = 200,
): number {
  const parts: { a: number; b: number; value: number; err: number }[] = [];
  const [v0, e0] = gk21(fn, a, b);
  parts.push({ a, b, value: v0, err: e0 });
  for (;;) {
    let total = 0;
    let err = 0;
    let worst = 0;
    parts.forEach((p, i) => {
      total += p.value;
      err += p.err;
      if (p.err > (parts[worst] as { err: number }).err) worst = i;
    });
    if (err <= Math.max(epsAbs, epsRel * Math.abs(total)) || parts.length >= maxIntervals) return total;
    const p = parts[worst] as { a: number; b: number };
    const m = 0.5 * (p.a + p.b);
    const [v1, e1] = gk21(fn, p.a, m);
    const [v2, e2] = gk21(fn, m, p.b);
    parts.splice(worst, 1, { a: p.a, b: m, value: v1, err: e1 }, { a: m, b: p.b, value: v2, err: e2 });
  }
}

// ---------------------------------------------------------------- scheduler

function parseConfig(cfg: LMSConfig) {
  return {
    ...parseScheduleConfig(NAME, cfg, ["epsilon", "sample", "v_prediction"] as const),
    useKarras: configBool(NAME, "use_karras_sigmas", cfg.use_karras_sigmas, true),
  };
}

export class LMSDiscreteScheduler implements Scheduler {
  readonly config: Readonly<LMSConfig>;
  readonly order = 1;
  readonly betas: Float32Array;
  readonly alphas: Float32Array;
  readonly alphasCumprod: Float32Array;
  /** Inference sigmas (float32), one per timestep plus a final 0. */
  sigmas: Float32Array;
  private _timesteps: number[] = [];
  private _numInferenceSteps: number | undefined = undefined;
  private _stepIndex: number | undefined = undefined;
  private derivatives: Float32Array[] = [];
  private readonly p: ReturnType<typeof parseConfig>;
  /** Training sigmas sqrt((1 - a) / a) as float32, and their float32 logs (the float64 log, rounded). */
  private readonly tables: ReturnType<typeof sigmaTables>;

  static fromConfig(config?: SchedulerConfig): LMSDiscreteScheduler {
    return new LMSDiscreteScheduler(config);
  }

  constructor(config?: SchedulerConfig) {
    const c = mergeConfig(LMS_DEFAULT_CONFIG as LMSConfig, config);
    this.config = Object.freeze(c);
    this.p = parseConfig(c);
    const n = this.p.numTrain;
    this.tables = sigmaTables(NAME, c, n, { log: (x) => f32(Math.log(x)) });
    ({ betas: this.betas, alphas: this.alphas, alphasCumprod: this.alphasCumprod } = this.tables);
    this.sigmas = new Float32Array(0);
    // diffusers calls set_timesteps(num_train_timesteps) in __init__.
    this.setTimesteps(n);
  }

  get timesteps(): number[] {
    return this._timesteps;
  }

  get numInferenceSteps(): number | undefined {
    return this._numInferenceSteps;
  }

  /** The index of the next step (diffusers `step_index`); undefined until the first scaleModelInput / step. */
  get stepIndex(): number | undefined {
    return this._stepIndex;
  }

  /** max(sigmas) for linspace / trailing spacing, sqrt(max^2 + 1) for leading (float32). */
  get initNoiseSigma(): number {
    return initNoiseSigmaOf(this.sigmas, this.p.spacing);
  }

  setTimesteps(numInferenceSteps: number): void {
    checkNumInferenceSteps(NAME, numInferenceSteps, this.p.numTrain);
    const n = numInferenceSteps;
    this._numInferenceSteps = n;
    // this port's `_sigma_to_t` runs in float64 (the float32 numpy casts of the other schedulers are not applied)
    const karrasTimestep = (s: number) => sigmaToT(s, this.tables.logSigmas, "float64");
    const { timesteps: ts, sigmas } = sigmaSchedule(this.p, n, this.tables, { karrasTimestep });
    this.sigmas = Float32Array.from([...sigmas, 0]);
    this._timesteps = ts;
    this._stepIndex = undefined;
    this.derivatives = [];
  }

  /** sample / sqrt(sigma^2 + 1) (float32). */
  scaleModelInput(sample: Float32Array, timestep: number): Float32Array {
    this._stepIndex = stepIndexFor(NAME, "scaleModelInput", this._timesteps, this._stepIndex, timestep);
    return scaleBySigma(sample, this.sigmas[this._stepIndex] as number);
  }

  /** diffusers `get_lms_coefficient`: integral over [sigma_t, sigma_{t+1}] of the Lagrange basis polynomial. */
  getLmsCoefficient(order: number, t: number, currentOrder: number): number {
    const s = this.sigmas;
    const at = (i: number) => {
      const v = s[i];
      if (v === undefined) throw new RangeError(`${NAME}: sigma index ${i} is out of range`);
      return v;
    };
    const nodes: number[] = [];
    for (let k = 0; k < order; k++) nodes.push(at(t - k));
    const center = nodes[currentOrder] as number;
    const lmsDerivative = (tau: number) => {
      let prod = 1.0;
      for (let k = 0; k < order; k++) {
        if (k === currentOrder) continue;
        const node = nodes[k] as number;
        prod *= (tau - node) / (center - node);
      }
      return prod;
    };
    return integrate(lmsDerivative, at(t), at(t + 1));
  }

  step(
    modelOutput: Float32Array,
    timestep: number,
    sample: Float32Array,
    options: LMSStepOptions = {},
  ): LMSSchedulerOutput {
    const idx = stepIndexFor(NAME, "step", this._timesteps, this._stepIndex, timestep);
    checkModelOutput(NAME, modelOutput, sample);
    const maxOrder = options.order ?? 4;
    if (!Number.isInteger(maxOrder) || maxOrder < 1) {
      throw new RangeError(`${NAME}.step: order must be a positive integer, got ${maxOrder}`);
    }
    const sigma = this.sigmas[idx] as number;
    const len = sample.length;
    const x0 = predictOriginalSample(this.p.predictionType, modelOutput, sample, sigma);

    const derivative = new Float32Array(len);
    for (let i = 0; i < len; i++) derivative[i] = f32(f32((sample[i] as number) - (x0[i] as number)) / sigma);
    this.derivatives.push(derivative);
    if (this.derivatives.length > maxOrder) this.derivatives.shift();

    const order = Math.min(idx + 1, maxOrder);
    const coeffs: number[] = [];
    for (let k = 0; k < order; k++) coeffs.push(f32(this.getLmsCoefficient(order, idx, k)));
    // sample + sum(coeff * derivative for coeff, derivative in zip(coeffs, reversed(derivatives)))
    const acc = new Float32Array(len);
    const ders = [...this.derivatives].reverse();
    const terms = Math.min(coeffs.length, ders.length);
    for (let k = 0; k < terms; k++) {
      const c = coeffs[k] as number;
      const d = ders[k] as Float32Array;
      for (let i = 0; i < len; i++) {
        const term = f32(c * (d[i] as number));
        acc[i] = k === 0 ? term : f32((acc[i] as number) + term);
      }
    }
    const prev = new Float32Array(len);
    for (let i = 0; i < len; i++) prev[i] = f32((sample[i] as number) + (acc[i] as number));
    this._stepIndex = idx + 1;
    return { prevSample: prev, predOriginalSample: x0 };
  }

  /** diffusers `add_noise`: x + noise * sigma(t) (float32), one schedule timestep per row. */
  addNoise(originalSamples: Float32Array, noise: Float32Array, timesteps: readonly number[]): Float32Array {
    return addNoiseBySigma(NAME, originalSamples, noise, timesteps, (t) => {
      const j = this._timesteps.indexOf(t);
      if (j < 0) throw new RangeError(`${NAME}.addNoise: timestep ${t} is not in the schedule`);
      return this.sigmas[j] as number;
    });
  }
}
