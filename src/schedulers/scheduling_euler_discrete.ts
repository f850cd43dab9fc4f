/**
 * EulerDiscreteScheduler — diffusers 0.23.0 `scheduling_euler_discrete.py` (Karras et al. 2022, Algorithm 2,
 * k-diffusion's `sample_euler`).
 *
 * Numerics follow the reference dtypes:
 * - betas / alphas / alphas_cumprod / training sigmas are float32 torch tables (float32 linspace, cumprod with a
 *   double accumulator, `((1 - a) / a) ** 0.5` in float32);
 * - timesteps and the interpolated sigmas are numpy float64 / float32 exactly as diffusers builds them
 *   (`np.interp`, `_convert_to_karras`, `_sigma_to_t` with numpy 1.x value-based casting and numpy's AVX2
 *   float32 `log`), then stored as float32 `sigmas`;
 * - every per-step scalar is a float32 0-dim tensor and every elementwise op a float32 op, reproduced with
 *   Math.fround.
 * `step` draws `randn(sample.length)` from the generator at every call even when `sChurn` is 0 (as diffusers does);
 * the draw has no effect on the result then, and is skipped when no generator is passed.
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

const NAME = "EulerDiscreteScheduler";
const f32 = Math.fround;

export type EulerBetaSchedule = "linear" | "scaled_linear" | "squaredcos_cap_v2";
export type EulerPredictionType = "epsilon" | "v_prediction" | "sample" | "original_sample";
export type EulerTimestepSpacing = "linspace" | "leading" | "trailing";
export type EulerInterpolationType = "linear" | "log_linear";

/** diffusers 0.23.0 `EulerDiscreteScheduler.__init__` defaults. */
export const EULER_DISCRETE_DEFAULT_CONFIG = {
  num_train_timesteps: 1000,
  beta_start: 0.0001,
  beta_end: 0.02,
  beta_schedule: "linear" as string,
  trained_betas: null as number[] | null,
  prediction_type: "epsilon" as string,
  interpolation_type: "linear" as string,
  use_karras_sigmas: false as boolean | null,
  timestep_spacing: "linspace" as string,
  steps_offset: 0,
};

export type EulerDiscreteConfig = typeof EULER_DISCRETE_DEFAULT_CONFIG & SchedulerConfig;

export interface EulerDiscreteStepOptions extends SchedulerStepOptions {
  /** diffusers `s_churn` (default 0): stochasticity; gamma = min(sChurn / (len(sigmas) - 1), sqrt(2) - 1). */
  sChurn?: number;
  /** diffusers `s_tmin` (default 0): churn only where sTmin <= sigma <= sTmax. */
  sTmin?: number;
  /** diffusers `s_tmax` (default +Infinity). */
  sTmax?: number;
  /** diffusers `s_noise` (default 1): scale of the churn noise. */
  sNoise?: number;
}

export interface EulerDiscreteSchedulerOutput extends SchedulerOutput {
  predOriginalSample: Float32Array;
}

// ---------------------------------------------------------------- config checks

function configBool(key: string, v: unknown): boolean {
  if (v === null || v === undefined) return false; // diffusers' Optional[bool]: None is falsy
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

/** fma(a, b, c) rounded once to float32, for float32 a, b, c (the product is exact in double). */
function fmaF32(a: number, b: number, c: number): number {
  const p = a * b;
  const s = p + c;
  const r = f32(s);
  if (r === s) return r;
  const bb = s - p;
  const err = p - (s - bb) + (c - bb); // s + err == p + c exactly
  if (err === 0) return r;
  const other = 2 * s - r; // a float32 only when s is exactly halfway between r and its neighbour
  if (f32(other) !== other) return r;
  return err > 0 === other > r ? other : r;
}

/**
 * torch.linspace(start, end, steps, dtype=float32) as torch 1.13's CPU kernel (AVX2 build) computes it: float32
 * step; the first half counts up from `start`, the second half down from `end`, each base contracted to one FMA;
 * whole 16-element chunks go through the 8-lane path (`base + k*step`), the tail is scalar.
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
  const at = (idx: number) => (idx < halfway ? fmaF32(step, idx, s) : fmaF32(-step, steps - idx - 1, e));
  const vecEnd = steps - (steps % 16);
  for (let i = 0; i < steps; i++) {
    const k = i % 8;
    out[i] = i < vecEnd ? (k === 0 ? at(i) : f32(at(i - k) + f32(k * step))) : at(i);
  }
  return out;
}

/** diffusers `betas_for_alpha_bar` (cosine), float64 then float32. */
function betasForAlphaBar(n: number, maxBeta = 0.999): Float32Array {
  const alphaBar = (t: number) => Math.cos((((t + 0.008) / 1.008) * Math.PI) / 2) ** 2;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.min(1 - alphaBar((i + 1) / n) / alphaBar(i / n), maxBeta);
  return out;
}

/** torch.cumprod on a float32 CPU tensor: the running product is kept in double, each output rounded. */
function cumprodF32(a: Float32Array): Float32Array {
  const out = new Float32Array(a.length);
  let p = 1;
  for (let i = 0; i < a.length; i++) {
    p *= a[i] as number;
    out[i] = p;
  }
  return out;
}

/** `((1 - alphas_cumprod) / alphas_cumprod) ** 0.5`, float32 tensor ops (ascending in t). */
function trainSigmas(alphasCumprod: Float32Array): Float32Array {
  const out = new Float32Array(alphasCumprod.length);
  for (let i = 0; i < out.length; i++) {
    const a = alphasCumprod[i] as number;
    out[i] = Math.sqrt(f32(f32(1 - a) / a));
  }
  return out;
}

// ---------------------------------------------------------------- numpy helpers

/** numpy round-half-to-even (np.round / rint). */
function rint(x: number): number {
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** np.linspace(start, stop, num) in float64: i*step + start, last element = stop. */
function npLinspace(start: number, stop: number, num: number): number[] {
  const div = num - 1;
  const delta = stop - start;
  const step = delta / div;
  const out: number[] = [];
  for (let i = 0; i < num; i++) {
    if (div <= 0) out.push(i * delta + start);
    else out.push(step === 0 ? (i / div) * delta + start : i * step + start);
  }
  if (num > 1) out[num - 1] = stop;
  return out;
}

/** np.arange(start, stop, step) for floats: length ceil((stop-start)/step), a[i] = start + i*(a[1]-a[0]). */
function npArange(start: number, stop: number, step: number): number[] {
  const len = Math.max(0, Math.ceil((stop - start) / step));
  const second = start + step;
  const delta = second - start;
  const out: number[] = [];
  for (let i = 0; i < len; i++) out.push(i === 0 ? start : i === 1 ? second : start + i * delta);
  return out;
}

/** The float32 timesteps of `set_timesteps` for each `timestep_spacing` (values as JS numbers). */
function spacedTimesteps(
  spacing: "linspace" | "leading" | "trailing",
  numTrain: number,
  n: number,
  offset: number,
): number[] {
  if (spacing === "linspace")
    return npLinspace(0, numTrain - 1, n)
      .map(f32)
      .reverse();
  if (spacing === "leading") {
    const ratio = Math.floor(numTrain / n);
    const out: number[] = [];
    for (let i = n - 1; i >= 0; i--) out.push(f32(f32(i * ratio) + f32(offset)));
    return out;
  }
  return npArange(numTrain, 0, -(numTrain / n)).map((t) => f32(f32(rint(t)) - 1));
}

/** np.interp(x, arange(len(fp)), fp) in float64 (numpy's formula: slope*(x - xp[j]) + fp[j]). */
function npInterp(x: readonly number[], fp: Float32Array): number[] {
  const last = fp.length - 1;
  return x.map((v) => {
    if (Number.isNaN(v)) return v;
    if (v <= 0) return fp[0] as number;
    if (v >= last) return fp[last] as number;
    const j = Math.floor(v);
    const y0 = fp[j] as number;
    if (j === v) return y0;
    const y1 = fp[j + 1] as number;
    return (y1 - y0) * (v - j) + y0;
  });
}

const F32_BUF = new Float32Array(1);
const U32_BUF = new Uint32Array(F32_BUF.buffer);
const LOG_PF = [
  0, 0.9999999999999998, 2.112677543073053, 1.4800006335765066, 0.3808837741388408, 0.02589979117907923,
].map(f32);
const LOG_QF = [
  1, 2.612677543073109, 2.4530060717847366, 0.9864942958519419, 0.15464763749839067, 0.005875095403124574,
].map(f32);
const SQRT1_2_F = f32(Math.SQRT1_2);
const LN2_F = f32(Math.LN2);

/**
 * numpy's float32 `log` (the AVX2/FMA3 kernel of loops_exponent_log.dispatch.c.src, up to 3.83 ulp from the
 * correctly rounded value); diffusers' `log_sigmas = np.log(sigmas)` runs through it. Bit-exact port.
 */
function npLogF32(x: number): number {
  if (Number.isNaN(x) || x < 0) return Number.NaN;
  if (x === 0) return Number.NEGATIVE_INFINITY;
  if (x === Number.POSITIVE_INFINITY) return x;
  let adj = 0;
  if (x < 1.1754943508222875e-38) {
    x = f32(x * 2 ** 100);
    adj = 100;
  }
  F32_BUF[0] = x;
  const bits = U32_BUF[0] as number;
  let e = (bits >>> 23) - 126 - adj;
  U32_BUF[0] = (bits & 0x7fffff) | (126 << 23);
  let m = F32_BUF[0] as number;
  if (m <= SQRT1_2_F) {
    m = f32(m + m);
    e -= 1;
  }
  const y = f32(m - 1);
  let num = LOG_PF[5] as number;
  let den = LOG_QF[5] as number;
  for (let k = 4; k >= 0; k--) {
    num = fmaF32(num, y, LOG_PF[k] as number);
    den = fmaF32(den, y, LOG_QF[k] as number);
  }
  return fmaF32(e, LN2_F, f32(num / den));
}

/** diffusers `_convert_to_karras` (rho = 7), float64. */
function karrasSigmas(inSigmas: ArrayLike<number>, n: number): number[] {
  const sigmaMin = inSigmas[inSigmas.length - 1] as number;
  const sigmaMax = inSigmas[0] as number;
  const rho = 7;
  const minInvRho = sigmaMin ** (1 / rho);
  const maxInvRho = sigmaMax ** (1 / rho);
  return npLinspace(0, 1, n).map((r) => (maxInvRho + r * (minInvRho - maxInvRho)) ** rho);
}

/**
 * diffusers `_sigma_to_t` for a float64 sigma and the float32 `log_sigmas` table, with numpy 1.x value-based
 * casting: the float64 log is cast to float32 against the float32 arrays, `w` is float32, and
 * `(1 - w) * low_idx + w * high_idx` is float64 (float32 times int64).
 */
function sigmaToT(sigma: number, logSigmas: Float32Array): number {
  const logSigma = f32(Math.log(Math.max(sigma, 1e-10)));
  let low = 0;
  for (let i = 0; i < logSigmas.length; i++) if (logSigma >= (logSigmas[i] as number)) low = i;
  low = Math.min(low, logSigmas.length - 2);
  const lo = logSigmas[low] as number;
  const hi = logSigmas[low + 1] as number;
  let w = f32(f32(lo - logSigma) / f32(lo - hi));
  w = Number.isNaN(w) ? w : Math.min(Math.max(w, 0), 1);
  return f32(1 - w) * low + w * (low + 1);
}

/**
 * torch's float32 `exp` (SLEEF `xexpf`, Sleef_expf8_u10 of the AVX2 build, FMA everywhere), bit-exact port;
 * used by `interpolation_type="log_linear"`.
 */
function torchExpF32(d: number): number {
  if (Number.isNaN(d)) return d;
  if (d < -104) return 0;
  if (d > 100) return Number.POSITIVE_INFINITY;
  const q = rint(f32(d * f32(Math.LOG2E)));
  let s = fmaF32(q, f32(-0.693145751953125), d);
  s = fmaF32(q, f32(-0.000001428606765330187), s);
  let u = f32(0.00019852761761285365);
  u = fmaF32(u, s, f32(0.0013930435525253415));
  u = fmaF32(u, s, f32(0.008333360776305199));
  u = fmaF32(u, s, f32(0.041666485369205475));
  u = fmaF32(u, s, f32(0.1666666716337204));
  u = fmaF32(u, s, 0.5);
  u = f32(1 + fmaF32(f32(s * s), u, s));
  const h = q >> 1;
  return f32(f32(u * 2 ** h) * 2 ** (q - h));
}

function maxF32(a: Float32Array): number {
  let m = Number.NEGATIVE_INFINITY;
  for (const v of a) {
    if (Number.isNaN(v)) return v;
    if (v > m) m = v;
  }
  return m;
}

// ---------------------------------------------------------------- the scheduler

export class EulerDiscreteScheduler implements Scheduler {
  readonly config: Readonly<EulerDiscreteConfig>;
  readonly order = 1;
  readonly betas: Float32Array;
  readonly alphas: Float32Array;
  readonly alphasCumprod: Float32Array;
  /** Inference sigmas (float32), one per timestep plus the final 0; the full training table until setTimesteps. */
  sigmas: Float32Array;
  /** float32 values (float64 with use_karras_sigmas), as diffusers' `scheduler.timesteps`. */
  timesteps: number[];
  numInferenceSteps: number | undefined = undefined;

  private readonly numTrain: number;
  private readonly predictionType: EulerPredictionType;
  private readonly spacing: EulerTimestepSpacing;
  private readonly interpolation: EulerInterpolationType;
  private readonly useKarras: boolean;
  private readonly stepsOffset: number;
  private readonly trainSigmaTable: Float32Array;
  private readonly logSigmas: Float32Array;
  private timestepSet = new Set<number>();
  private stepIndexValue: number | undefined = undefined;

  static fromConfig(config?: SchedulerConfig): EulerDiscreteScheduler {
    return new EulerDiscreteScheduler(config);
  }

  constructor(config?: SchedulerConfig) {
    const cfg = mergeConfig(EULER_DISCRETE_DEFAULT_CONFIG, config) as EulerDiscreteConfig;
    this.config = Object.freeze({ ...cfg });
    this.numTrain = configInt("num_train_timesteps", cfg.num_train_timesteps, 1);
    this.predictionType = configOneOf(NAME, "prediction_type", cfg.prediction_type, [
      "epsilon",
      "v_prediction",
      "sample",
      "original_sample",
    ] as const);
    this.spacing = configOneOf(NAME, "timestep_spacing", cfg.timestep_spacing, [
      "linspace",
      "leading",
      "trailing",
    ] as const);
    this.interpolation = configOneOf(NAME, "interpolation_type", cfg.interpolation_type, [
      "linear",
      "log_linear",
    ] as const);
    this.useKarras = configBool("use_karras_sigmas", cfg.use_karras_sigmas);
    this.stepsOffset = configInt("steps_offset", cfg.steps_offset, 0);

    this.betas = this.makeBetas(cfg);
    this.alphas = this.betas.map((b) => 1 - b);
    this.alphasCumprod = cumprodF32(this.alphas);
    this.trainSigmaTable = trainSigmas(this.alphasCumprod);
    this.logSigmas = this.trainSigmaTable.map(npLogF32);

    // diffusers' state after __init__: the reversed training sigmas + [0], timesteps N-1 .. 0 (float64)
    const n = this.numTrain;
    this.sigmas = new Float32Array(n + 1);
    for (let i = 0; i < n; i++) this.sigmas[i] = this.trainSigmaTable[n - 1 - i] as number;
    this.timesteps = npLinspace(0, n - 1, n).reverse();
  }

  private makeBetas(cfg: EulerDiscreteConfig): Float32Array {
    const n = this.numTrain;
    if (cfg.trained_betas !== null && cfg.trained_betas !== undefined) {
      const tb = cfg.trained_betas as unknown;
      if (!Array.isArray(tb) && !ArrayBuffer.isView(tb)) {
        throw new SchedulerConfigError(NAME, "trained_betas", "must be an array of numbers or null");
      }
      const arr = Array.from(tb as ArrayLike<unknown>, (v) => configFinite("trained_betas", v));
      if (arr.length !== n) {
        throw new SchedulerConfigError(NAME, "trained_betas", `has ${arr.length} values, expected ${n}`);
      }
      return Float32Array.from(arr);
    }
    const schedule = configOneOf(NAME, "beta_schedule", cfg.beta_schedule, [
      "linear",
      "scaled_linear",
      "squaredcos_cap_v2",
    ] as const);
    const b0 = configFinite("beta_start", cfg.beta_start);
    const b1 = configFinite("beta_end", cfg.beta_end);
    if (schedule === "linear") return torchLinspaceF32(b0, b1, n);
    if (schedule === "scaled_linear")
      return torchLinspaceF32(Math.sqrt(b0), Math.sqrt(b1), n).map((v) => v * v);
    return betasForAlphaBar(n);
  }

  /** diffusers `init_noise_sigma`: max sigma (linspace / trailing) or sqrt(max^2 + 1) (leading), float32. */
  get initNoiseSigma(): number {
    const m = maxF32(this.sigmas);
    if (this.spacing === "linspace" || this.spacing === "trailing") return m;
    return f32(Math.sqrt(f32(f32(m * m) + 1)));
  }

  /** Index into `sigmas` of the next step (undefined until the first scaleModelInput / step). */
  get stepIndex(): number | undefined {
    return this.stepIndexValue;
  }

  setTimesteps(numInferenceSteps: number): void {
    checkNumInferenceSteps(NAME, numInferenceSteps, this.numTrain);
    const n = numInferenceSteps;
    let timesteps = spacedTimesteps(this.spacing, this.numTrain, n, this.stepsOffset);
    const table = this.trainSigmaTable;

    let sigmas: number[];
    if (this.interpolation === "linear") {
      sigmas = npInterp(timesteps, table);
    } else {
      const hi = npLogF32(table[table.length - 1] as number);
      const lo = npLogF32(table[0] as number);
      sigmas = Array.from(torchLinspaceF32(hi, lo, n + 1), torchExpF32);
    }
    if (this.useKarras) {
      sigmas = karrasSigmas(sigmas, n);
      timesteps = sigmas.map((s) => sigmaToT(s, this.logSigmas));
    }
    this.sigmas = Float32Array.from([...sigmas, 0]);
    this.timesteps = timesteps;
    this.timestepSet = new Set(timesteps);
    this.numInferenceSteps = n;
    this.stepIndexValue = undefined;
  }

  private ensureStepIndex(timestep: number, caller: string): number {
    if (this.numInferenceSteps === undefined) {
      throw new Error(`${NAME}.${caller}: call setTimesteps(numInferenceSteps) first`);
    }
    if (!this.timestepSet.has(timestep)) {
      throw new RangeError(
        `${NAME}.${caller}: timestep ${timestep} is not in the schedule (pass one of scheduler.timesteps)`,
      );
    }
    if (this.stepIndexValue === undefined) {
      // diffusers `_init_step_index`: the second match if the timestep occurs twice, else the first
      const idx: number[] = [];
      this.timesteps.forEach((t, i) => {
        if (t === timestep) idx.push(i);
      });
      this.stepIndexValue = (idx.length > 1 ? idx[1] : idx[0]) as number;
    }
    if (this.stepIndexValue >= this.timesteps.length) {
      throw new RangeError(`${NAME}.${caller}: the schedule is finished; call setTimesteps again`);
    }
    return this.stepIndexValue;
  }

  /** sample / sqrt(sigma^2 + 1), float32. */
  scaleModelInput(sample: Float32Array, timestep: number): Float32Array {
    const sigma = this.sigmas[this.ensureStepIndex(timestep, "scaleModelInput")] as number;
    const d = f32(Math.sqrt(f32(f32(sigma * sigma) + 1)));
    const out = new Float32Array(sample.length);
    for (let i = 0; i < sample.length; i++) out[i] = (sample[i] as number) / d;
    return out;
  }

  step(
    modelOutput: Float32Array,
    timestep: number,
    sample: Float32Array,
    options: EulerDiscreteStepOptions = {},
  ): EulerDiscreteSchedulerOutput {
    const si = this.ensureStepIndex(timestep, "step");
    if (modelOutput.length !== sample.length) {
      throw new RangeError(
        `${NAME}.step: modelOutput has ${modelOutput.length} values, sample ${sample.length}`,
      );
    }
    checkFinite(NAME, "modelOutput", modelOutput);
    const sChurn = options.sChurn ?? 0;
    const sTmin = options.sTmin ?? 0;
    const sTmax = options.sTmax ?? Number.POSITIVE_INFINITY;
    const sNoise = options.sNoise ?? 1;
    const sigma = this.sigmas[si] as number;
    const gamma =
      f32(sTmin) <= sigma && sigma <= f32(sTmax)
        ? Math.min(sChurn / (this.sigmas.length - 1), 2 ** 0.5 - 1)
        : 0;

    // diffusers draws randn(model_output.shape) on every step, whether or not gamma > 0
    let noise: Float32Array | undefined;
    if (options.generator) noise = options.generator.randn([sample.length]);
    else if (gamma > 0) {
      throw new Error(`${NAME}.step: sChurn > 0 draws noise; pass options.generator`);
    }
    const sigmaHat = f32(sigma * f32(gamma + 1));

    const n = sample.length;
    let x = sample;
    if (gamma > 0 && noise) {
      const amp = f32(Math.sqrt(f32(f32(sigmaHat * sigmaHat) - f32(sigma * sigma))));
      const sn = f32(sNoise);
      x = new Float32Array(n);
      for (let i = 0; i < n; i++) x[i] = (sample[i] as number) + f32(f32((noise[i] as number) * sn) * amp);
    }

    const pred = new Float32Array(n);
    const pt = this.predictionType;
    if (pt === "sample" || pt === "original_sample") pred.set(modelOutput);
    else if (pt === "epsilon") {
      for (let i = 0; i < n; i++) pred[i] = (x[i] as number) - f32(sigmaHat * (modelOutput[i] as number));
    } else {
      const s2p1 = f32(f32(sigma * sigma) + 1);
      const cOut = f32(-sigma / f32(Math.sqrt(s2p1)));
      for (let i = 0; i < n; i++) {
        pred[i] = f32((modelOutput[i] as number) * cOut) + f32((x[i] as number) / s2p1);
      }
    }

    const dt = f32((this.sigmas[si + 1] as number) - sigmaHat);
    const prev = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      const xi = x[i] as number;
      const derivative = f32(f32(xi - (pred[i] as number)) / sigmaHat);
      prev[i] = xi + f32(derivative * dt);
    }
    this.stepIndexValue = si + 1;
    return { prevSample: prev, predOriginalSample: pred };
  }

  /** original + noise * sigma(t) per row; each timestep must occur exactly once in the schedule. */
  addNoise(originalSamples: Float32Array, noise: Float32Array, timesteps: readonly number[]): Float32Array {
    if (noise.length !== originalSamples.length) {
      throw new RangeError(
        `${NAME}.addNoise: noise has ${noise.length} values, samples ${originalSamples.length}`,
      );
    }
    if (timesteps.length === 0 || originalSamples.length % timesteps.length !== 0) {
      throw new RangeError(
        `${NAME}.addNoise: ${timesteps.length} timesteps do not divide ${originalSamples.length} values into rows`,
      );
    }
    const rowLen = originalSamples.length / timesteps.length;
    const out = new Float32Array(originalSamples.length);
    timesteps.forEach((t, r) => {
      const idx: number[] = [];
      this.timesteps.forEach((s, i) => {
        if (s === t) idx.push(i);
      });
      if (idx.length !== 1) {
        throw new RangeError(
          `${NAME}.addNoise: timestep ${t} occurs ${idx.length} times in the schedule (needs exactly one)`,
        );
      }
      const sigma = this.sigmas[idx[0] as number] as number;
      for (let i = r * rowLen; i < (r + 1) * rowLen; i++) {
        out[i] = (originalSamples[i] as number) + f32((noise[i] as number) * sigma);
      }
    });
    return out;
  }
}
