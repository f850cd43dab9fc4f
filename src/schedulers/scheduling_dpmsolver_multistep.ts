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
 */
import { Generator } from "../random/generator.js";
import {
  checkFinite,
  checkNumInferenceSteps,
  configNumber,
  configOneOf,
  mergeConfig,
  type Scheduler,
  type SchedulerConfig,
  SchedulerConfigError,
  type SchedulerOutput,
  type SchedulerStepOptions,
} from "./scheduler_utils.js";

const NAME = "DPMSolverMultistepScheduler";
const f = Math.fround;

/** diffusers 0.23.0 `DPMSolverMultistepScheduler.__init__` defaults. */
export const DPMSOLVER_MULTISTEP_DEFAULT_CONFIG = {
  num_train_timesteps: 1000,
  beta_start: 0.0001,
  beta_end: 0.02,
  beta_schedule: "linear" as string,
  trained_betas: null as number[] | null,
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

const PREDICTIONS = ["epsilon", "sample", "v_prediction"] as const;
const ALGORITHMS = ["dpmsolver", "dpmsolver++", "sde-dpmsolver", "sde-dpmsolver++"] as const;
const SPACINGS = ["linspace", "leading", "trailing"] as const;

export class DPMSolverMultistepScheduler implements Scheduler {
  readonly order = 1;
  readonly initNoiseSigma = 1.0;
  readonly betas: Float32Array;
  readonly alphas: Float32Array;
  readonly alphasCumprod: Float32Array;
  /** log(sqrt(alphas_cumprod)) - log(sqrt(1 - alphas_cumprod)) in float32, as diffusers' lambda_t. */
  readonly lambdaT: Float32Array;
  timesteps: number[];
  sigmas: Float32Array = new Float32Array(0);
  numInferenceSteps: number | undefined = undefined;

  private cfg: DPMSolverMultistepConfig;
  private readonly p: ReturnType<typeof parseConfig>;
  private modelOutputs: (Float32Array | null)[];
  private lowerOrderNums = 0;
  private stepIdx: number | undefined = undefined;
  private fallbackGenerator: Generator | undefined;

  static fromConfig(config?: SchedulerConfig): DPMSolverMultistepScheduler {
    return new DPMSolverMultistepScheduler(config);
  }

  constructor(config?: SchedulerConfig) {
    const cfg = mergeConfig({ ...DPMSOLVER_MULTISTEP_DEFAULT_CONFIG }, config);
    const numTrain = intIn("num_train_timesteps", cfg.num_train_timesteps, 1);
    const tables = buildTables(cfg, numTrain);
    this.betas = tables.betas;
    this.alphas = tables.alphas;
    this.alphasCumprod = tables.alphasCumprod;
    this.lambdaT = tables.alphasCumprod.map(
      (ac) => f(Math.log(f(Math.sqrt(ac)))) - f(Math.log(f(Math.sqrt(f(1 - ac))))),
    );
    this.p = parseConfig(cfg, numTrain);
    this.cfg = cfg;
    this.timesteps = Array.from({ length: numTrain }, (_, i) => numTrain - 1 - i);
    this.modelOutputs = new Array(this.p.order).fill(null);
  }

  get config(): Readonly<DPMSolverMultistepConfig> {
    return this.cfg;
  }

  /** Index of the next step (diffusers `step_index`); undefined until the first step. */
  get stepIndex(): number | undefined {
    return this.stepIdx;
  }

  setTimesteps(numInferenceSteps: number): void {
    const p = this.p;
    const n = numInferenceSteps;
    checkNumInferenceSteps(NAME, n, p.numTrain);
    // searchsorted(flip(lambda_t), lambda_min_clipped): how many lambdas lie below the clip (float32 compare).
    const clip = f(p.lambdaMin);
    let clippedIdx = 0;
    for (let i = 0; i < p.numTrain; i++) if ((this.lambdaT[i] as number) < clip) clippedIdx++;
    const lastTimestep = p.numTrain - clippedIdx;

    let timesteps: number[];
    if (p.spacing === "linspace") {
      timesteps = npLinspace(0, lastTimestep - 1, n + 1)
        .map(roundHalfEven)
        .reverse()
        .slice(0, n);
    } else if (p.spacing === "leading") {
      const ratio = Math.floor(lastTimestep / (n + 1));
      timesteps = [];
      for (let i = n; i >= 1; i--) timesteps.push(i * ratio + p.stepsOffset);
    } else {
      timesteps = npArange(lastTimestep, 0, -(p.numTrain / n)).map((t) => roundHalfEven(t) - 1);
    }

    const table = sigmaTable(this.alphasCumprod);
    let sigmas: number[];
    if (p.karras || p.lu) {
      const logSigmas = table.map((s) => f(Math.log(s)));
      const ramp = npLinspace(0, 1, n);
      let s64: number[];
      if (p.karras) {
        const minInv = (table[0] as number) ** (1 / 7);
        const maxInv = (table[p.numTrain - 1] as number) ** (1 / 7);
        s64 = ramp.map((r) => (maxInv + r * (minInv - maxInv)) ** 7);
      } else {
        const lmin = logSigmas[0] as number;
        const lmax = logSigmas[p.numTrain - 1] as number;
        s64 = ramp.map((r) => Math.exp(lmax + r * (lmin - lmax)));
      }
      timesteps = s64.map((s) => roundHalfEven(sigmaToT(s, logSigmas)));
      sigmas = [...s64, s64[s64.length - 1] as number];
    } else {
      sigmas = timesteps.map((t) => table[Math.min(Math.max(t, 0), p.numTrain - 1)] as number);
      sigmas.push(table[0] as number);
    }
    this.sigmas = Float32Array.from(sigmas);
    this.timesteps = timesteps;
    this.numInferenceSteps = timesteps.length;
    this.modelOutputs = new Array(p.order).fill(null);
    this.lowerOrderNums = 0;
    this.stepIdx = undefined;
  }

  scaleModelInput(sample: Float32Array, _timestep?: number): Float32Array {
    return sample;
  }

  step(
    modelOutput: Float32Array,
    timestep: number,
    sample: Float32Array,
    options: DPMSolverMultistepStepOptions = {},
  ): SchedulerOutput {
    const p = this.p;
    if (this.numInferenceSteps === undefined) {
      throw new Error(`${NAME}.step: call setTimesteps before step (numInferenceSteps is undefined)`);
    }
    checkFinite(NAME, "modelOutput", modelOutput);
    this.stepIdx = resolveStepIndex(this.timesteps, this.stepIdx, timestep);
    const idx = this.stepIdx;
    const nT = this.timesteps.length;
    const batch = batchSizeOf(options.batchSize, sample.length);
    const lowerOrderFinal = idx === nT - 1 && (p.eulerAtFinal || (p.lowerOrderFinal && nT < 15));
    const lowerOrderSecond = idx === nT - 2 && p.lowerOrderFinal && nT < 15;

    const m = this.convertModelOutput(modelOutput, sample, batch);
    for (let i = 0; i < p.order - 1; i++) this.modelOutputs[i] = this.modelOutputs[i + 1] ?? null;
    this.modelOutputs[p.order - 1] = m;

    let noise: Float32Array | undefined;
    if (p.algorithm === "sde-dpmsolver" || p.algorithm === "sde-dpmsolver++") {
      noise = (options.generator ?? this.defaultGenerator()).randn([sample.length]);
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

  addNoise(originalSamples: Float32Array, noise: Float32Array, timesteps: readonly number[]): Float32Array {
    const { sigmas, numInferenceSteps: n, timesteps: schedule } = this;
    return addNoiseWith(sigmas, n, schedule, originalSamples, noise, timesteps);
  }

  private defaultGenerator(): Generator {
    this.fallbackGenerator ??= new Generator().manualSeed(Math.floor(Math.random() * 2 ** 32));
    return this.fallbackGenerator;
  }

  private alphaSigmaAt(i: number): [number, number] {
    const s = this.sigmas[i];
    if (s === undefined) throw new Error(`${NAME}.step: no sigma at index ${i} (schedule exhausted)`);
    return alphaSigma(s);
  }

  private convertModelOutput(modelOutput: Float32Array, sample: Float32Array, batch: number): Float32Array {
    const p = this.p;
    const n = sample.length;
    const [a, s] = this.alphaSigmaAt(this.stepIdx as number);
    if (p.algorithm === "dpmsolver++" || p.algorithm === "sde-dpmsolver++") {
      let x0: Float32Array;
      if (p.prediction === "epsilon") {
        const mo = p.learnedVariance ? firstHalfRows(modelOutput, n, batch) : sameLength(modelOutput, n);
        x0 = map2(sample, mo, (x, e) => f(f(x - f(s * e)) / a));
      } else if (p.prediction === "sample") {
        x0 = Float32Array.from(sameLength(modelOutput, n));
      } else {
        x0 = map2(sample, sameLength(modelOutput, n), (x, v) => f(f(a * x) - f(s * v)));
      }
      return p.thresholding ? thresholdSample(x0, batch, p.ratio, p.sampleMax) : x0;
    }
    let eps: Float32Array;
    if (p.prediction === "epsilon") {
      eps = Float32Array.from(
        p.learnedVariance ? firstHalfRows(modelOutput, n, batch) : sameLength(modelOutput, n),
      );
    } else if (p.prediction === "sample") {
      eps = map2(sample, sameLength(modelOutput, n), (x, x0) => f(f(x - f(a * x0)) / s));
    } else {
      eps = map2(sample, sameLength(modelOutput, n), (x, v) => f(f(a * v) + f(s * x)));
    }
    if (p.thresholding) {
      let x0 = map2(sample, eps, (x, e) => f(f(x - f(s * e)) / a));
      x0 = thresholdSample(x0, batch, p.ratio, p.sampleMax);
      eps = map2(sample, x0, (x, y) => f(f(x - f(a * y)) / s));
    }
    return eps;
  }

  /** alpha, sigma and lambda (float32) at sigmas[stepIndex + 1 - k] for k = 0 (target), 1, 2, 3. */
  private point(k: number): { a: number; s: number; l: number } {
    const [a, s] = this.alphaSigmaAt((this.stepIdx as number) + 1 - k);
    return { a, s, l: f(f(Math.log(a)) - f(Math.log(s))) };
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
  // diffusers maps the other solvers' names onto its own (register_to_config).
  if (cfg.algorithm_type === "deis") cfg.algorithm_type = "dpmsolver++";
  if (["logrho", "bh1", "bh2"].includes(cfg.solver_type)) cfg.solver_type = "midpoint";
  const vt = cfg.variance_type;
  if (vt !== null && vt !== undefined && typeof vt !== "string") {
    throw new SchedulerConfigError(
      NAME,
      "variance_type",
      `must be a string or null, got ${JSON.stringify(vt)}`,
    );
  }
  const lambdaMin = configNumber(NAME, "lambda_min_clipped", cfg.lambda_min_clipped);
  if (Number.isNaN(lambdaMin)) throw new SchedulerConfigError(NAME, "lambda_min_clipped", "must not be NaN");
  cfg.lambda_min_clipped = lambdaMin;
  return {
    numTrain,
    order: intIn("solver_order", cfg.solver_order, 1),
    prediction: configOneOf(NAME, "prediction_type", cfg.prediction_type, PREDICTIONS),
    thresholding: bool("thresholding", cfg.thresholding),
    ratio: ratioIn("dynamic_thresholding_ratio", cfg.dynamic_thresholding_ratio),
    sampleMax: configNumber(NAME, "sample_max_value", cfg.sample_max_value),
    algorithm: configOneOf(NAME, "algorithm_type", cfg.algorithm_type, ALGORITHMS),
    solver: configOneOf(NAME, "solver_type", cfg.solver_type, ["midpoint", "heun"] as const),
    lowerOrderFinal: bool("lower_order_final", cfg.lower_order_final),
    eulerAtFinal: bool("euler_at_final", cfg.euler_at_final),
    karras: bool("use_karras_sigmas", cfg.use_karras_sigmas),
    lu: bool("use_lu_lambdas", cfg.use_lu_lambdas),
    lambdaMin,
    learnedVariance: vt === "learned" || vt === "learned_range",
    spacing: configOneOf(NAME, "timestep_spacing", cfg.timestep_spacing, SPACINGS),
    stepsOffset: intIn("steps_offset", cfg.steps_offset, Number.NEGATIVE_INFINITY),
  };
}

function bool(key: string, v: unknown): boolean {
  if (v === null || v === undefined) return false;
  if (typeof v === "boolean") return v;
  throw new SchedulerConfigError(NAME, key, `must be a boolean, got ${JSON.stringify(v)}`);
}

function intIn(key: string, v: unknown, min: number): number {
  if (typeof v === "number" && Number.isInteger(v) && v >= min) return v;
  const range = Number.isFinite(min) ? ` >= ${min}` : "";
  throw new SchedulerConfigError(NAME, key, `must be an integer${range}, got ${JSON.stringify(v)}`);
}

function ratioIn(key: string, v: unknown): number {
  const r = configNumber(NAME, key, v);
  if (!(r >= 0 && r <= 1)) throw new SchedulerConfigError(NAME, key, `must be in [0, 1], got ${r}`);
  return r;
}

// ---------------------------------------------------------------------------------------------------------
// Tables (torch float32 semantics)
// ---------------------------------------------------------------------------------------------------------

/** torch 1.13 CPU float32 linspace: 8-wide vectors whose base start+step*idx is fused, then base + j*step. */
function torchLinspaceF32(start: number, end: number, steps: number): Float32Array {
  const out = new Float32Array(steps);
  const s = f(start);
  const e = f(end);
  if (steps === 1) {
    out[0] = s;
    return out;
  }
  const step = f(f(e - s) / (steps - 1));
  const half = Math.floor(steps / 2);
  const at = (i: number) => (i < half ? f(s + step * i) : f(e - step * (steps - i - 1)));
  let i = 0;
  for (; i <= steps - 16; i += 8) {
    const base = at(i);
    for (let j = 0; j < 8; j++) out[i + j] = f(base + f(j * step));
  }
  for (; i < steps; i++) out[i] = at(i);
  return out;
}

function buildTables(
  cfg: DPMSolverMultistepConfig,
  numTrain: number,
): { betas: Float32Array; alphas: Float32Array; alphasCumprod: Float32Array } {
  let betas: Float32Array;
  const tb = cfg.trained_betas;
  if (tb !== null && tb !== undefined) {
    if (!Array.isArray(tb) || tb.length !== numTrain || !tb.every((b) => typeof b === "number")) {
      throw new SchedulerConfigError(NAME, "trained_betas", `must be null or ${numTrain} numbers`);
    }
    betas = Float32Array.from(tb);
  } else {
    const schedule = configOneOf(NAME, "beta_schedule", cfg.beta_schedule, [
      "linear",
      "scaled_linear",
      "squaredcos_cap_v2",
    ] as const);
    const b0 = configNumber(NAME, "beta_start", cfg.beta_start);
    const b1 = configNumber(NAME, "beta_end", cfg.beta_end);
    if (schedule === "linear") {
      betas = torchLinspaceF32(b0, b1, numTrain);
    } else if (schedule === "scaled_linear") {
      betas = torchLinspaceF32(b0 ** 0.5, b1 ** 0.5, numTrain).map((x) => f(x * x));
    } else {
      const ab = (t: number) => Math.cos((((t + 0.008) / 1.008) * Math.PI) / 2) ** 2;
      betas = new Float32Array(numTrain);
      for (let i = 0; i < numTrain; i++) {
        betas[i] = Math.min(1 - ab((i + 1) / numTrain) / ab(i / numTrain), 0.999);
      }
    }
  }
  const alphas = betas.map((b) => f(1 - b));
  // torch's CPU cumprod accumulates float32 inputs in double.
  const alphasCumprod = new Float32Array(numTrain);
  let acc = 1;
  for (let i = 0; i < numTrain; i++) {
    acc *= alphas[i] as number;
    alphasCumprod[i] = acc;
  }
  return { betas, alphas, alphasCumprod };
}

/** ((1 - alphas_cumprod) / alphas_cumprod) ** 0.5 in float32. */
function sigmaTable(alphasCumprod: Float32Array): number[] {
  return Array.from(alphasCumprod, (ac) => f(Math.sqrt(f(f(1 - ac) / ac))));
}

function alphaSigma(sigma: number): [number, number] {
  const a = f(1 / f(Math.sqrt(f(f(sigma * sigma) + 1))));
  return [a, f(sigma * a)];
}

// ---------------------------------------------------------------------------------------------------------
// numpy float64 helpers
// ---------------------------------------------------------------------------------------------------------

function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** np.linspace(start, stop, num) (endpoint included). */
function npLinspace(start: number, stop: number, num: number): number[] {
  if (num === 1) return [start];
  const step = (stop - start) / (num - 1);
  const out = Array.from({ length: num }, (_, i) => i * step + start);
  out[num - 1] = stop;
  return out;
}

/** np.arange(start, stop, step) for floats: start, start + step, then start + i * delta. */
function npArange(start: number, stop: number, step: number): number[] {
  const len = Math.max(0, Math.ceil((stop - start) / step));
  const out: number[] = [];
  if (len === 0) return out;
  const next = start + step;
  const delta = next - start;
  out.push(start);
  if (len > 1) out.push(next);
  for (let i = 2; i < len; i++) out.push(start + i * delta);
  return out;
}

/**
 * diffusers `_sigma_to_t` with numpy 1.x value-based casting: log_sigmas is float32, so the float64 log_sigma
 * is rounded to float32 for the distance test and the weight, and only the final blend is float64.
 */
function sigmaToT(sigma: number, logSigmas: number[]): number {
  const ls = f(Math.log(Math.max(sigma, 1e-10)));
  let low = 0;
  for (let i = 0; i < logSigmas.length; i++) if (ls >= (logSigmas[i] as number)) low = i;
  low = Math.min(low, logSigmas.length - 2);
  const lo = logSigmas[low] as number;
  const hi = logSigmas[low + 1] as number;
  const w = Math.min(Math.max(f(f(lo - ls) / f(lo - hi)), 0), 1);
  return f(1 - w) * low + w * (low + 1);
}

// ---------------------------------------------------------------------------------------------------------
// Step helpers
// ---------------------------------------------------------------------------------------------------------

/**
 * diffusers `_init_step_index` (first call: the first match, or the second when the timestep repeats), then
 * its internal counter. A timestep that is not in the schedule is an error here (diffusers silently jumps to
 * the last step).
 */
function resolveStepIndex(timesteps: number[], current: number | undefined, t: number): number {
  const first = timesteps.indexOf(t);
  if (first < 0) {
    throw new RangeError(`${NAME}.step: timestep ${t} is not in the schedule [${timesteps.join(", ")}]`);
  }
  if (current !== undefined) {
    if (current >= timesteps.length) {
      throw new RangeError(`${NAME}.step: all ${timesteps.length} steps are done; call setTimesteps again`);
    }
    return current;
  }
  const second = timesteps.indexOf(t, first + 1);
  return second >= 0 ? second : first;
}

function batchSizeOf(batch: number | undefined, n: number): number {
  const b = batch ?? 1;
  if (!Number.isInteger(b) || b < 1 || n % b !== 0) {
    throw new RangeError(`${NAME}.step: batchSize ${b} does not divide the sample length ${n}`);
  }
  return b;
}

function sameLength(a: Float32Array, n: number): Float32Array {
  if (a.length !== n) {
    throw new RangeError(`${NAME}.step: modelOutput has ${a.length} elements, sample has ${n}`);
  }
  return a;
}

/** model_output[:, :C] for a learned-variance output with 2C channels (rows = batch). */
function firstHalfRows(a: Float32Array, n: number, batch: number): Float32Array {
  if (a.length !== 2 * n) {
    throw new RangeError(
      `${NAME}.step: learned variance expects modelOutput with twice the sample's channels (${2 * n} ` +
        `elements), got ${a.length}`,
    );
  }
  const row = n / batch;
  const out = new Float32Array(n);
  for (let b = 0; b < batch; b++) out.set(a.subarray(2 * b * row, 2 * b * row + row), b * row);
  return out;
}

/** diffusers `_threshold_sample`: per-row torch.quantile(|x|, ratio) clamped to [1, max], clamp and divide. */
function thresholdSample(x: Float32Array, batch: number, ratio: number, sampleMax: number): Float32Array {
  const out = new Float32Array(x.length);
  const row = x.length / batch;
  const rank = f(f(ratio) * (row - 1));
  const lo = Math.trunc(rank);
  const hi = Math.ceil(rank);
  const w = f(rank - lo);
  for (let b = 0; b < batch; b++) {
    const r = x.subarray(b * row, (b + 1) * row);
    const sorted = Float32Array.from(r, Math.abs).sort();
    const vlo = sorted[lo] as number;
    const vhi = sorted[hi] as number;
    const q = Math.abs(w) < 0.5 ? f(vlo + f(w * f(vhi - vlo))) : f(vhi - f(f(vhi - vlo) * f(1 - w)));
    const s = Math.min(Math.max(q, 1), f(sampleMax));
    for (let i = 0; i < row; i++) out[b * row + i] = f(Math.min(Math.max(r[i] as number, -s), s) / s);
  }
  return out;
}

function addNoiseWith(
  sigmas: Float32Array,
  numInferenceSteps: number | undefined,
  schedule: number[],
  original: Float32Array,
  noise: Float32Array,
  timesteps: readonly number[],
): Float32Array {
  if (numInferenceSteps === undefined) {
    throw new Error(`${NAME}.addNoise: call setTimesteps first (the sigmas are built there)`);
  }
  if (noise.length !== original.length) {
    throw new RangeError(`${NAME}.addNoise: noise has ${noise.length} elements, samples ${original.length}`);
  }
  if (timesteps.length === 0 || original.length % timesteps.length !== 0) {
    throw new RangeError(`${NAME}.addNoise: ${timesteps.length} timesteps do not divide ${original.length}`);
  }
  const row = original.length / timesteps.length;
  const out = new Float32Array(original.length);
  timesteps.forEach((t, b) => {
    const first = schedule.indexOf(t);
    if (first < 0 || schedule.indexOf(t, first + 1) >= 0) {
      throw new RangeError(
        `${NAME}.addNoise: timestep ${t} must occur exactly once in the schedule [${schedule.join(", ")}]`,
      );
    }
    const [a, s] = alphaSigma(sigmas[first] as number);
    for (let i = b * row; i < (b + 1) * row; i++) {
      out[i] = f(f(a * (original[i] as number)) + f(s * (noise[i] as number)));
    }
  });
  return out;
}

function map2(a: Float32Array, b: Float32Array, fn: (x: number, y: number) => number): Float32Array {
  return a.map((x, i) => fn(x, b[i] as number));
}

/**
 * c0 * x + c1 * a1 + c2 * a2 + ... evaluated as torch does it, left to right with float32 rounding after every
 * product and every sum (a subtraction is the sum with the negated, exactly representable coefficient).
 */
function lin(x: Float32Array, c0: number, ...terms: [number, Float32Array][]): Float32Array {
  const out = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) {
    let acc = f(c0 * (x[i] as number));
    for (const [c, a] of terms) acc = f(acc + f(c * (a[i] as number)));
    out[i] = acc;
  }
  return out;
}
