/**
 * LMSDiscreteScheduler — diffusers 0.23.0 `scheduling_lms_discrete.py`: a linear multistep method on the
 * k-diffusion sigma parametrisation (Karras et al. 2022), optionally with Karras sigmas.
 *
 * Numerics follow the reference dtypes: the float32 torch tables give float32 training sigmas; timesteps are
 * numpy float32 (float64 with Karras sigmas, from `_sigma_to_t`); the inference sigmas are interpolated in
 * float64 by numpy and stored as float32. The LMS coefficients are integrals of Lagrange basis polynomials, which
 * diffusers computes with scipy.integrate.quad; here an adaptive Gauss-Kronrod (21-point) quadrature to ~1e-12.
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

const NAME = "LMSDiscreteScheduler";
const f32 = Math.fround;

export type LMSBetaSchedule = "linear" | "scaled_linear" | "squaredcos_cap_v2";
export type LMSPredictionType = "epsilon" | "sample" | "v_prediction";
export type LMSTimestepSpacing = "linspace" | "leading" | "trailing";

/** diffusers 0.23.0 `LMSDiscreteScheduler.__init__` defaults. */
export const LMS_DEFAULT_CONFIG = {
  num_train_timesteps: 1000,
  beta_start: 0.0001,
  beta_end: 0.02,
  beta_schedule: "linear" as string,
  trained_betas: null as number[] | null,
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

// ---------------------------------------------------------------- config checks

function configBool(key: string, v: unknown): boolean {
  if (typeof v === "boolean") return v;
  throw new SchedulerConfigError(NAME, key, `must be a boolean, got ${JSON.stringify(v)}`);
}

function configInt(key: string, v: unknown, min: number): number {
  const n = configNumber(NAME, key, v);
  if (!Number.isSafeInteger(n) || n < min) {
    throw new SchedulerConfigError(NAME, key, `must be an integer >= ${min}, got ${JSON.stringify(v)}`);
  }
  return n;
}

function configFinite(key: string, v: unknown): number {
  const n = configNumber(NAME, key, v);
  if (!Number.isFinite(n)) throw new SchedulerConfigError(NAME, key, `must be a finite number, got ${v}`);
  return n;
}

// ---------------------------------------------------------------- float32 tables (torch semantics)

/**
 * torch.linspace(start, end, steps, dtype=float32) as torch 1.13's CPU kernel computes it: float32 step; the
 * first half counts up from `start`, the second half down from `end`; blocks of 8 (the AVX2 vector path, whole
 * 16-element chunks only) start at `start + step*idx` (contracted to one FMA by the compiler) and add `k*step`;
 * the tail is scalar. This reproduces the recorded float32 tables bit for bit.
 */
function torchLinspaceF32(start: number, end: number, steps: number): Float32Array {
  const out = new Float32Array(steps);
  const s = f32(start);
  const e = f32(end);
  if (steps === 1) {
    out[0] = s;
    return out;
  }
  const step = f32(f32(e - s) / (steps - 1));
  const halfway = Math.floor(steps / 2);
  // fma(a, b, c) for float32 a, b and an integer b < 2^29: the product is exact in double.
  const at = (idx: number) => (idx < halfway ? f32(s + step * idx) : f32(e - step * (steps - idx - 1)));
  const vecEnd = steps - (steps % 16);
  for (let i = 0; i < steps; i++) {
    if (i < vecEnd) {
      const k = i % 8;
      out[i] = f32(at(i - k) + f32(k * step));
    } else out[i] = at(i);
  }
  return out;
}

/** diffusers `betas_for_alpha_bar` (cosine), computed in float64, returned as float32. */
function betasForAlphaBar(n: number, maxBeta = 0.999): Float32Array {
  const alphaBar = (t: number) => {
    const c = Math.cos((((t + 0.008) / 1.008) * Math.PI) / 2);
    return c * c;
  };
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    out[i] = Math.min(1 - alphaBar((i + 1) / n) / alphaBar(i / n), maxBeta);
  }
  return out;
}

/** torch.cumprod on a float32 CPU tensor: the running product is kept in double (acc_type), each output rounded. */
function cumprodF32(a: Float32Array): Float32Array {
  const out = new Float32Array(a.length);
  let p = 1;
  for (let i = 0; i < a.length; i++) {
    p *= a[i] as number;
    out[i] = p;
  }
  return out;
}

// ---------------------------------------------------------------- numpy helpers (float64)

/** numpy round-half-to-even (np.round / rint). */
function rint(x: number): number {
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** np.linspace(start, stop, num) in float64, numpy's formula (i*step + start, last element = stop). */
function npLinspace(start: number, stop: number, num: number): number[] {
  const div = num - 1;
  const delta = stop - start;
  const out: number[] = [];
  const step = div > 0 ? delta / div : Number.NaN;
  for (let i = 0; i < num; i++) {
    if (div > 0) out.push(step === 0 ? (i / div) * delta + start : i * step + start);
    else out.push(i * delta + start);
  }
  if (num > 1) out[num - 1] = stop;
  return out;
}

/** np.arange(start, stop, step) for floats: length ceil((stop-start)/step), a[i] = start + i*(a[1]-a[0]). */
function npArange(start: number, stop: number, step: number): number[] {
  const len = Math.max(0, Math.ceil((stop - start) / step));
  const delta = start + step - start;
  const out: number[] = [];
  for (let i = 0; i < len; i++) out.push(i === 0 ? start : i === 1 ? start + step : start + i * delta);
  return out;
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
  /** Training sigmas sqrt((1 - a) / a) as float32, and their float32 logs (numpy `np.log` on float32). */
  private readonly trainSigmas: Float32Array;
  private readonly logSigmas: Float32Array;

  private readonly numTrainTimesteps: number;
  private readonly useKarrasSigmas: boolean;
  private readonly predictionType: LMSPredictionType;
  private readonly timestepSpacing: LMSTimestepSpacing;
  private readonly stepsOffset: number;

  static fromConfig(config?: SchedulerConfig): LMSDiscreteScheduler {
    return new LMSDiscreteScheduler(config);
  }

  constructor(config?: SchedulerConfig) {
    const c = mergeConfig(LMS_DEFAULT_CONFIG as LMSConfig, config);
    this.config = Object.freeze(c);
    const n = configInt("num_train_timesteps", c.num_train_timesteps, 1);
    this.numTrainTimesteps = n;
    const betaStart = configFinite("beta_start", c.beta_start);
    const betaEnd = configFinite("beta_end", c.beta_end);
    this.useKarrasSigmas =
      c.use_karras_sigmas === null ? false : configBool("use_karras_sigmas", c.use_karras_sigmas);
    this.predictionType = configOneOf(NAME, "prediction_type", c.prediction_type, [
      "epsilon",
      "sample",
      "v_prediction",
    ] as const);
    this.timestepSpacing = configOneOf(NAME, "timestep_spacing", c.timestep_spacing, [
      "linspace",
      "leading",
      "trailing",
    ] as const);
    this.stepsOffset = configInt("steps_offset", c.steps_offset, 0);

    let betas: Float32Array;
    if (c.trained_betas !== null && c.trained_betas !== undefined) {
      const tb = c.trained_betas as unknown;
      if (
        !Array.isArray(tb) ||
        tb.length !== n ||
        !tb.every((v) => typeof v === "number" && Number.isFinite(v))
      ) {
        throw new SchedulerConfigError(NAME, "trained_betas", `must be null or ${n} finite numbers`);
      }
      betas = Float32Array.from(tb as number[]);
    } else {
      const schedule = configOneOf(NAME, "beta_schedule", c.beta_schedule, [
        "linear",
        "scaled_linear",
        "squaredcos_cap_v2",
      ] as const);
      if (schedule === "linear") betas = torchLinspaceF32(betaStart, betaEnd, n);
      else if (schedule === "scaled_linear") {
        betas = torchLinspaceF32(betaStart ** 0.5, betaEnd ** 0.5, n).map((b) => f32(b * b));
      } else betas = betasForAlphaBar(n);
    }
    this.betas = betas;
    this.alphas = betas.map((b) => f32(1 - b));
    this.alphasCumprod = cumprodF32(this.alphas);
    this.trainSigmas = this.alphasCumprod.map((a) => f32(Math.sqrt(f32(f32(1 - a) / a))));
    this.logSigmas = this.trainSigmas.map((s) => f32(Math.log(s)));
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
    let m = Number.NEGATIVE_INFINITY;
    for (const s of this.sigmas) m = Math.max(m, s);
    if (this.timestepSpacing === "linspace" || this.timestepSpacing === "trailing") return m;
    return f32(Math.sqrt(f32(f32(m * m) + 1)));
  }

  setTimesteps(numInferenceSteps: number): void {
    const N = this.numTrainTimesteps;
    checkNumInferenceSteps(NAME, numInferenceSteps, N);
    const n = numInferenceSteps;
    this._numInferenceSteps = n;
    // float32 timesteps, as numpy builds them
    let ts: number[];
    if (this.timestepSpacing === "linspace") {
      ts = npLinspace(0, N - 1, n)
        .map(f32)
        .reverse();
    } else if (this.timestepSpacing === "leading") {
      const ratio = Math.floor(N / n);
      ts = Array.from({ length: n }, (_, i) => f32((n - 1 - i) * ratio + this.stepsOffset));
    } else {
      ts = npArange(N, 0, -N / n).map((t) => f32(f32(rint(t)) - 1));
    }
    // np.interp(timesteps, arange(N), sigmas) in float64
    const sig = this.trainSigmas;
    let sigmas = ts.map((t) => {
      if (t <= 0) return sig[0] as number;
      if (t >= N - 1) return sig[N - 1] as number;
      const j = Math.floor(t);
      if (j === t) return sig[j] as number;
      const lo = sig[j] as number;
      return ((sig[j + 1] as number) - lo) * (t - j) + lo;
    });
    if (this.useKarrasSigmas) {
      sigmas = this.convertToKarras(sigmas, n);
      ts = sigmas.map((s) => this.sigmaToT(s));
    }
    this.sigmas = Float32Array.from([...sigmas, 0]);
    this._timesteps = ts;
    this._stepIndex = undefined;
    this.derivatives = [];
  }

  /** diffusers `_convert_to_karras` (rho = 7), float64. */
  private convertToKarras(inSigmas: number[], n: number): number[] {
    const sigmaMin = inSigmas[inSigmas.length - 1] as number;
    const sigmaMax = inSigmas[0] as number;
    const rho = 7.0;
    const minInvRho = sigmaMin ** (1 / rho);
    const maxInvRho = sigmaMax ** (1 / rho);
    return npLinspace(0, 1, n).map((r) => (maxInvRho + r * (minInvRho - maxInvRho)) ** rho);
  }

  /** diffusers `_sigma_to_t`: interpolate log-sigma between the two training sigmas around it (float64). */
  private sigmaToT(sigma: number): number {
    const logSigma = Math.log(Math.max(sigma, 1e-10));
    const ls = this.logSigmas;
    // low_idx = argmax(cumsum(log_sigma - log_sigmas >= 0)), clipped to len - 2
    let count = 0;
    let best = -1;
    let lowIdx = 0;
    for (let i = 0; i < ls.length; i++) {
      if (logSigma - (ls[i] as number) >= 0) count++;
      if (count > best) {
        best = count;
        lowIdx = i;
      }
    }
    lowIdx = Math.min(lowIdx, ls.length - 2);
    const highIdx = lowIdx + 1;
    const low = ls[lowIdx] as number;
    const high = ls[highIdx] as number;
    let w = (low - logSigma) / (low - high);
    w = Math.min(Math.max(w, 0), 1);
    return (1 - w) * lowIdx + w * highIdx;
  }

  private initStepIndex(timestep: number): void {
    const matches: number[] = [];
    this._timesteps.forEach((t, i) => {
      if (t === timestep) matches.push(i);
    });
    if (matches.length === 0) {
      throw new RangeError(
        `${NAME}: timestep ${timestep} is not in the schedule (${this._timesteps.join(", ")})`,
      );
    }
    // diffusers takes the second match when a timestep occurs twice (img2img starting mid-schedule).
    this._stepIndex = (matches.length > 1 ? matches[1] : matches[0]) as number;
  }

  private checkTimestep(timestep: number, what: string): void {
    if (!this._timesteps.includes(timestep)) {
      throw new RangeError(`${NAME}.${what}: timestep ${timestep} is not in the schedule`);
    }
  }

  /** sample / sqrt(sigma^2 + 1) (float32). */
  scaleModelInput(sample: Float32Array, timestep: number): Float32Array {
    this.checkTimestep(timestep, "scaleModelInput");
    if (this._stepIndex === undefined) this.initStepIndex(timestep);
    const sigma = this.sigmas[this._stepIndex as number];
    if (sigma === undefined || this._stepIndex === this._timesteps.length) {
      throw new RangeError(`${NAME}.scaleModelInput: all ${this._timesteps.length} steps are done`);
    }
    const c = f32(Math.sqrt(f32(f32(sigma * sigma) + 1)));
    return sample.map((x) => f32(x / c));
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
    this.checkTimestep(timestep, "step");
    if (modelOutput.length !== sample.length) {
      throw new RangeError(
        `${NAME}.step: modelOutput length ${modelOutput.length} != sample length ${sample.length}`,
      );
    }
    checkFinite(NAME, "modelOutput", modelOutput);
    const maxOrder = options.order ?? 4;
    if (!Number.isInteger(maxOrder) || maxOrder < 1) {
      throw new RangeError(`${NAME}.step: order must be a positive integer, got ${maxOrder}`);
    }
    if (this._stepIndex === undefined) this.initStepIndex(timestep);
    const idx = this._stepIndex as number;
    if (idx >= this._timesteps.length) {
      throw new RangeError(
        `${NAME}.step: all ${this._timesteps.length} steps are done; call setTimesteps() again`,
      );
    }
    const sigma = this.sigmas[idx] as number;
    const len = sample.length;

    const x0 = new Float32Array(len);
    if (this.predictionType === "epsilon") {
      for (let i = 0; i < len; i++)
        x0[i] = f32((sample[i] as number) - f32(sigma * (modelOutput[i] as number)));
    } else if (this.predictionType === "v_prediction") {
      const s2p1 = f32(f32(sigma * sigma) + 1);
      const c = f32(-sigma / f32(Math.sqrt(s2p1)));
      for (let i = 0; i < len; i++) {
        x0[i] = f32(f32((modelOutput[i] as number) * c) + f32((sample[i] as number) / s2p1));
      }
    } else x0.set(modelOutput);

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
    const x = originalSamples;
    if (x.length !== noise.length) {
      throw new RangeError(`${NAME}.addNoise: lengths differ (${x.length} vs ${noise.length})`);
    }
    if (timesteps.length === 0 || x.length % timesteps.length !== 0) {
      throw new RangeError(
        `${NAME}.addNoise: ${timesteps.length} timesteps do not split ${x.length} values into rows`,
      );
    }
    const rowLen = x.length / timesteps.length;
    const out = new Float32Array(x.length);
    timesteps.forEach((t, r) => {
      const j = this._timesteps.indexOf(t);
      if (j < 0) throw new RangeError(`${NAME}.addNoise: timestep ${t} is not in the schedule`);
      const sigma = this.sigmas[j] as number;
      for (let i = r * rowLen; i < (r + 1) * rowLen; i++) {
        out[i] = f32((x[i] as number) + f32((noise[i] as number) * sigma));
      }
    });
    return out;
  }
}
