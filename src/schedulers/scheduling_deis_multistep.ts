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

const NAME = "DEISMultistepScheduler";
const f = Math.fround;

/** diffusers 0.23.0 `DEISMultistepScheduler.__init__` defaults. */
export const DEIS_MULTISTEP_DEFAULT_CONFIG = {
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

const PREDICTIONS = ["epsilon", "sample", "v_prediction"] as const;
const SPACINGS = ["linspace", "leading", "trailing"] as const;

export class DEISMultistepScheduler implements Scheduler {
  readonly order = 1;
  readonly initNoiseSigma = 1.0;
  readonly betas: Float32Array;
  readonly alphas: Float32Array;
  readonly alphasCumprod: Float32Array;
  timesteps: number[];
  sigmas: Float32Array = new Float32Array(0);
  numInferenceSteps: number | undefined = undefined;

  private readonly cfg: DEISMultistepConfig;
  private readonly p: ReturnType<typeof parseConfig>;
  private modelOutputs: (Float32Array | null)[];
  private lowerOrderNums = 0;
  private stepIdx: number | undefined = undefined;

  static fromConfig(config?: SchedulerConfig): DEISMultistepScheduler {
    return new DEISMultistepScheduler(config);
  }

  constructor(config?: SchedulerConfig) {
    const cfg = mergeConfig({ ...DEIS_MULTISTEP_DEFAULT_CONFIG }, config);
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

  get config(): Readonly<DEISMultistepConfig> {
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
    this.stepIdx = undefined;
  }

  scaleModelInput(sample: Float32Array, _timestep?: number): Float32Array {
    return sample;
  }

  step(
    modelOutput: Float32Array,
    timestep: number,
    sample: Float32Array,
    options: DEISMultistepStepOptions = {},
  ): SchedulerOutput {
    const p = this.p;
    if (this.numInferenceSteps === undefined) {
      throw new Error(`${NAME}.step: call setTimesteps before step (numInferenceSteps is undefined)`);
    }
    checkFinite(NAME, "modelOutput", modelOutput);
    this.stepIdx = resolveStepIndex(this.timesteps, this.stepIdx, timestep);
    const idx = this.stepIdx;
    const nT = this.timesteps.length;
    const lowerOrderFinal = idx === nT - 1 && p.lowerOrderFinal && nT < 15;
    const lowerOrderSecond = idx === nT - 2 && p.lowerOrderFinal && nT < 15;

    const m = this.convertModelOutput(modelOutput, sample, batchSizeOf(options.batchSize, sample.length));
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

  addNoise(originalSamples: Float32Array, noise: Float32Array, timesteps: readonly number[]): Float32Array {
    const { sigmas, numInferenceSteps: n, timesteps: schedule } = this;
    return addNoiseWith(sigmas, n, schedule, originalSamples, noise, timesteps);
  }

  private alphaSigmaAt(i: number): [number, number] {
    const s = this.sigmas[i];
    if (s === undefined) throw new Error(`${NAME}.step: no sigma at index ${i} (schedule exhausted)`);
    return alphaSigma(s);
  }

  /** x0 from the model output (thresholded if configured), then DEIS' epsilon = (x - alpha_t x0) / sigma_t. */
  private convertModelOutput(modelOutput: Float32Array, sample: Float32Array, batch: number): Float32Array {
    const p = this.p;
    const mo = sameLength(modelOutput, sample.length);
    const [a, s] = this.alphaSigmaAt(this.stepIdx as number);
    let x0: Float32Array;
    if (p.prediction === "epsilon") x0 = map2(sample, mo, (x, e) => f(f(x - f(s * e)) / a));
    else if (p.prediction === "sample") x0 = mo;
    else x0 = map2(sample, mo, (x, v) => f(f(a * x) - f(s * v)));
    if (p.thresholding) x0 = thresholdSample(x0, batch, p.ratio, p.sampleMax);
    return map2(sample, x0, (x, y) => f(f(x - f(a * y)) / s));
  }

  /** alpha, sigma and rho = sigma / alpha (float32) at sigmas[stepIndex + 1 - k], k = 0 (target), 1, 2, 3. */
  private point(k: number): { a: number; s: number; rho: number } {
    const [a, s] = this.alphaSigmaAt((this.stepIdx as number) + 1 - k);
    return { a, s, rho: f(s / a) };
  }

  private firstOrderUpdate(m: Float32Array, x: Float32Array): Float32Array {
    const t = this.point(0);
    const s0 = this.point(1);
    const lt = f(f(Math.log(t.a)) - f(Math.log(t.s)));
    const ls = f(f(Math.log(s0.a)) - f(Math.log(s0.s)));
    const h = f(lt - ls);
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
    order: intIn("solver_order", cfg.solver_order, 1),
    prediction: configOneOf(NAME, "prediction_type", cfg.prediction_type, PREDICTIONS),
    thresholding: bool("thresholding", cfg.thresholding),
    ratio: ratioIn("dynamic_thresholding_ratio", cfg.dynamic_thresholding_ratio),
    sampleMax: configNumber(NAME, "sample_max_value", cfg.sample_max_value),
    algorithm: configOneOf(NAME, "algorithm_type", cfg.algorithm_type, ["deis"] as const),
    solver: configOneOf(NAME, "solver_type", cfg.solver_type, ["logrho"] as const),
    lowerOrderFinal: bool("lower_order_final", cfg.lower_order_final),
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
  cfg: DEISMultistepConfig,
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
