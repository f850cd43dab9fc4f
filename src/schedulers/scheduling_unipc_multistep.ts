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

const NAME = "UniPCMultistepScheduler";
const f = Math.fround;

/** diffusers 0.23.0 `UniPCMultistepScheduler.__init__` defaults. */
export const UNIPC_MULTISTEP_DEFAULT_CONFIG = {
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

const PREDICTIONS = ["epsilon", "sample", "v_prediction"] as const;
const SPACINGS = ["linspace", "leading", "trailing"] as const;

/** The float32 scalars shared by UniP and UniC: see `multistep_uni_p_bh_update`. */
interface BhCoefficients {
  c0: number;
  c1: number;
  cB: number;
  d1s: Float32Array[];
  r: number[][];
  b: number[];
}

export class UniPCMultistepScheduler implements Scheduler {
  readonly order = 1;
  readonly initNoiseSigma = 1.0;
  readonly betas: Float32Array;
  readonly alphas: Float32Array;
  readonly alphasCumprod: Float32Array;
  timesteps: number[];
  sigmas: Float32Array = new Float32Array(0);
  numInferenceSteps: number | undefined = undefined;

  private readonly cfg: UniPCMultistepConfig;
  private readonly p: ReturnType<typeof parseConfig>;
  private modelOutputs: (Float32Array | null)[];
  private lowerOrderNums = 0;
  private lastSample: Float32Array | null = null;
  private thisOrder = 1;
  private stepIdx: number | undefined = undefined;

  static fromConfig(config?: SchedulerConfig): UniPCMultistepScheduler {
    return new UniPCMultistepScheduler(config);
  }

  constructor(config?: SchedulerConfig) {
    const cfg = mergeConfig({ ...UNIPC_MULTISTEP_DEFAULT_CONFIG }, config);
    const numTrain = intIn("num_train_timesteps", cfg.num_train_timesteps, 1);
    const tables = buildTables(cfg, numTrain);
    this.betas = tables.betas;
    this.alphas = tables.alphas;
    this.alphasCumprod = tables.alphasCumprod;
    this.p = parseConfig(cfg, numTrain);
    this.cfg = cfg;
    this.timesteps = Array.from({ length: numTrain }, (_, i) => numTrain - 1 - i);
    this.modelOutputs = new Array(this.p.order).fill(null);
  }

  get config(): Readonly<UniPCMultistepConfig> {
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
    let timesteps: number[];
    if (p.spacing === "linspace") {
      timesteps = npLinspace(0, p.numTrain - 1, n + 1)
        .map(roundHalfEven)
        .reverse()
        .slice(0, n);
    } else if (p.spacing === "leading") {
      const ratio = Math.floor(p.numTrain / (n + 1));
      timesteps = [];
      for (let i = n; i >= 1; i--) timesteps.push(i * ratio + p.stepsOffset);
    } else {
      timesteps = npArange(p.numTrain, 0, -(p.numTrain / n)).map((t) => roundHalfEven(t) - 1);
    }

    const table = sigmaTable(this.alphasCumprod);
    let sigmas: number[];
    if (p.karras) {
      const logSigmas = table.map((s) => f(Math.log(s)));
      const minInv = (table[0] as number) ** (1 / 7);
      const maxInv = (table[p.numTrain - 1] as number) ** (1 / 7);
      const s64 = npLinspace(0, 1, n).map((r) => (maxInv + r * (minInv - maxInv)) ** 7);
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
    this.lastSample = null;
    this.stepIdx = undefined;
  }

  scaleModelInput(sample: Float32Array, _timestep?: number): Float32Array {
    return sample;
  }

  step(
    modelOutput: Float32Array,
    timestep: number,
    sample: Float32Array,
    options: UniPCMultistepStepOptions = {},
  ): SchedulerOutput {
    const p = this.p;
    if (this.numInferenceSteps === undefined) {
      throw new Error(`${NAME}.step: call setTimesteps before step (numInferenceSteps is undefined)`);
    }
    checkFinite(NAME, "modelOutput", modelOutput);
    this.stepIdx = resolveStepIndex(this.timesteps, this.stepIdx, timestep);
    const idx = this.stepIdx;
    const useCorrector = idx > 0 && !p.disableCorrector.includes(idx - 1) && this.lastSample !== null;
    const m = this.convertModelOutput(modelOutput, sample, batchSizeOf(options.batchSize, sample.length));
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

  addNoise(originalSamples: Float32Array, noise: Float32Array, timesteps: readonly number[]): Float32Array {
    const { sigmas, numInferenceSteps: n, timesteps: schedule } = this;
    return addNoiseWith(sigmas, n, schedule, originalSamples, noise, timesteps);
  }

  private alphaSigmaAt(i: number): [number, number] {
    const s = this.sigmas[i];
    if (s === undefined) throw new Error(`${NAME}.step: no sigma at index ${i} (schedule exhausted)`);
    return alphaSigma(s);
  }

  private lambdaAt(i: number): number {
    const [a, s] = this.alphaSigmaAt(i);
    return f(f(Math.log(a)) - f(Math.log(s)));
  }

  private convertModelOutput(modelOutput: Float32Array, sample: Float32Array, batch: number): Float32Array {
    const p = this.p;
    const mo = sameLength(modelOutput, sample.length);
    const [a, s] = this.alphaSigmaAt(this.stepIdx as number);
    if (p.predictX0) {
      let x0: Float32Array;
      if (p.prediction === "epsilon") x0 = map2(sample, mo, (x, e) => f(f(x - f(s * e)) / a));
      else if (p.prediction === "sample") x0 = Float32Array.from(mo);
      else x0 = map2(sample, mo, (x, v) => f(f(a * x) - f(s * v)));
      return p.thresholding ? thresholdSample(x0, batch, p.ratio, p.sampleMax) : x0;
    }
    if (p.prediction === "epsilon") return Float32Array.from(mo);
    if (p.prediction === "sample") return map2(sample, mo, (x, x0) => f(f(x - f(a * x0)) / s));
    return map2(sample, mo, (x, v) => f(f(a * v) + f(s * x)));
  }

  /**
   * The B(h) coefficients for a step from sigmas[s0] to sigmas[t] of the given order, with the earlier model
   * outputs at sigmas[siOf(i)], i = 1..order-1 (the newest output, m0, is modelOutputs[-1]).
   */
  private bh(t: number, s0: number, order: number, siOf: (i: number) => number): BhCoefficients {
    const p = this.p;
    const [at, st] = this.alphaSigmaAt(t);
    const [as0, ss0] = this.alphaSigmaAt(s0);
    const lt = f(f(Math.log(at)) - f(Math.log(st)));
    const ls0 = f(f(Math.log(as0)) - f(Math.log(ss0)));
    const h = f(lt - ls0);
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
    order: intIn("solver_order", cfg.solver_order, 1),
    prediction: configOneOf(NAME, "prediction_type", cfg.prediction_type, PREDICTIONS),
    thresholding: bool("thresholding", cfg.thresholding),
    ratio: ratioIn("dynamic_thresholding_ratio", cfg.dynamic_thresholding_ratio),
    sampleMax: configNumber(NAME, "sample_max_value", cfg.sample_max_value),
    predictX0: bool("predict_x0", cfg.predict_x0),
    solver: configOneOf(NAME, "solver_type", cfg.solver_type, ["bh1", "bh2"] as const),
    lowerOrderFinal: bool("lower_order_final", cfg.lower_order_final),
    disableCorrector: dc as number[],
    karras: bool("use_karras_sigmas", cfg.use_karras_sigmas),
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
  cfg: UniPCMultistepConfig,
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
