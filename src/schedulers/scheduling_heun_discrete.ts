/**
 * HeunDiscreteScheduler — diffusers 0.23.0 `scheduling_heun_discrete.py` (Karras et al. 2022, Algorithm 1:
 * Heun's 2nd-order method).
 *
 * Order 2: `timesteps` holds 2n-1 entries (every timestep after the first is repeated); the first call of a pair
 * is an Euler step that stores the derivative, dt and sample, the second averages the two derivatives.
 * Numerics follow the reference dtypes: float32 torch tables (betas, alphas_cumprod, training sigmas), numpy
 * float32 timesteps (float64 with use_karras_sigmas, from `_sigma_to_t` under numpy 1.x casting and numpy's AVX2
 * float32 `log`), float32 `sigmas`, float32 0-dim per-step scalars and float32 elementwise ops (Math.fround).
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

const NAME = "HeunDiscreteScheduler";
const f32 = Math.fround;

export type HeunPredictionType = "epsilon" | "v_prediction" | "sample";
export type HeunTimestepSpacing = "linspace" | "leading" | "trailing";

/** diffusers 0.23.0 `HeunDiscreteScheduler.__init__` defaults. */
export const HEUN_DISCRETE_DEFAULT_CONFIG = {
  num_train_timesteps: 1000,
  beta_start: 0.00085,
  beta_end: 0.012,
  beta_schedule: "linear" as string,
  trained_betas: null as number[] | null,
  prediction_type: "epsilon" as string,
  use_karras_sigmas: false as boolean | null,
  clip_sample: false as boolean | null,
  clip_sample_range: 1,
  timestep_spacing: "linspace" as string,
  steps_offset: 0,
};

export type HeunDiscreteConfig = typeof HEUN_DISCRETE_DEFAULT_CONFIG & SchedulerConfig;

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

/** diffusers `betas_for_alpha_bar` ("cosine" or "exp" alpha_bar), float64 then float32. */
function betasForAlphaBar(n: number, type: "cosine" | "exp", maxBeta = 0.999): Float32Array {
  const alphaBar =
    type === "cosine"
      ? (t: number) => Math.cos((((t + 0.008) / 1.008) * Math.PI) / 2) ** 2
      : (t: number) => Math.exp(t * -12);
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

function maxF32(a: Float32Array): number {
  let m = Number.NEGATIVE_INFINITY;
  for (const v of a) {
    if (Number.isNaN(v)) return v;
    if (v > m) m = v;
  }
  return m;
}

// ---------------------------------------------------------------- the scheduler

export class HeunDiscreteScheduler implements Scheduler {
  readonly config: Readonly<HeunDiscreteConfig>;
  readonly order = 2;
  readonly betas: Float32Array;
  readonly alphas: Float32Array;
  readonly alphasCumprod: Float32Array;
  /** float32, 2n entries: [s0, s1, s1, ..., s(n-1), s(n-1), 0]. */
  sigmas: Float32Array = new Float32Array(0);
  /** 2n-1 entries [t0, t1, t1, ...]: float32 values (float64 with use_karras_sigmas). */
  timesteps: number[] = [];
  numInferenceSteps: number | undefined = undefined;

  private readonly numTrain: number;
  private readonly predictionType: HeunPredictionType;
  private readonly spacing: HeunTimestepSpacing;
  private readonly useKarras: boolean;
  private readonly clipSample: boolean;
  private readonly clipSampleRange: number;
  private readonly stepsOffset: number;
  private readonly trainSigmaTable: Float32Array;
  private readonly logSigmas: Float32Array;
  private timestepSet = new Set<number>();
  private stepIndexValue: number | undefined = undefined;
  private indexCounter = new Map<number, number>();
  private prevDerivative: Float32Array | null = null;
  private dt: number | null = null;
  private storedSample: Float32Array | null = null;

  static fromConfig(config?: SchedulerConfig): HeunDiscreteScheduler {
    return new HeunDiscreteScheduler(config);
  }

  constructor(config?: SchedulerConfig) {
    const cfg = mergeConfig(HEUN_DISCRETE_DEFAULT_CONFIG, config) as HeunDiscreteConfig;
    this.config = Object.freeze({ ...cfg });
    this.numTrain = configInt("num_train_timesteps", cfg.num_train_timesteps, 1);
    this.predictionType = configOneOf(NAME, "prediction_type", cfg.prediction_type, [
      "epsilon",
      "v_prediction",
      "sample",
    ] as const);
    this.spacing = configOneOf(NAME, "timestep_spacing", cfg.timestep_spacing, [
      "linspace",
      "leading",
      "trailing",
    ] as const);
    this.useKarras = configBool("use_karras_sigmas", cfg.use_karras_sigmas);
    this.clipSample = configBool("clip_sample", cfg.clip_sample);
    this.clipSampleRange = configFinite("clip_sample_range", cfg.clip_sample_range);
    this.stepsOffset = configInt("steps_offset", cfg.steps_offset, 0);

    this.betas = this.makeBetas(cfg);
    this.alphas = this.betas.map((b) => 1 - b);
    this.alphasCumprod = cumprodF32(this.alphas);
    this.trainSigmaTable = trainSigmas(this.alphasCumprod);
    this.logSigmas = this.trainSigmaTable.map(npLogF32);
    // diffusers' __init__ calls set_timesteps(num_train_timesteps); numInferenceSteps stays unset here so that
    // step() before setTimesteps() is reported
    this.buildSchedule(this.numTrain);
  }

  private makeBetas(cfg: HeunDiscreteConfig): Float32Array {
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
      "exp",
    ] as const);
    const b0 = configFinite("beta_start", cfg.beta_start);
    const b1 = configFinite("beta_end", cfg.beta_end);
    if (schedule === "linear") return torchLinspaceF32(b0, b1, n);
    if (schedule === "scaled_linear")
      return torchLinspaceF32(Math.sqrt(b0), Math.sqrt(b1), n).map((v) => v * v);
    return betasForAlphaBar(n, schedule === "exp" ? "exp" : "cosine");
  }

  /** diffusers `init_noise_sigma`: max sigma (linspace / trailing) or sqrt(max^2 + 1) (leading), float32. */
  get initNoiseSigma(): number {
    const m = maxF32(this.sigmas);
    if (this.spacing === "linspace" || this.spacing === "trailing") return m;
    return f32(Math.sqrt(f32(f32(m * m) + 1)));
  }

  /** Index into `timesteps` / `sigmas` of the next step (undefined until the first scaleModelInput / step). */
  get stepIndex(): number | undefined {
    return this.stepIndexValue;
  }

  /** True when the next step is the first (Euler) half of a Heun pair. */
  get stateInFirstOrder(): boolean {
    return this.dt === null;
  }

  setTimesteps(numInferenceSteps: number): void {
    checkNumInferenceSteps(NAME, numInferenceSteps, this.numTrain);
    this.buildSchedule(numInferenceSteps);
    this.numInferenceSteps = numInferenceSteps;
  }

  private buildSchedule(n: number): void {
    let timesteps = spacedTimesteps(this.spacing, this.numTrain, n, this.stepsOffset);
    let sigmas = npInterp(timesteps, this.trainSigmaTable);
    if (this.useKarras) {
      sigmas = karrasSigmas(sigmas, n);
      timesteps = sigmas.map((s) => sigmaToT(s, this.logSigmas));
    }
    const s32 = Float32Array.from([...sigmas, 0]);
    const sig: number[] = [s32[0] as number];
    for (let i = 1; i < s32.length - 1; i++) sig.push(s32[i] as number, s32[i] as number);
    sig.push(s32[s32.length - 1] as number);
    this.sigmas = Float32Array.from(sig);
    const ts: number[] = [timesteps[0] as number];
    for (let i = 1; i < timesteps.length; i++) ts.push(timesteps[i] as number, timesteps[i] as number);
    this.timesteps = ts;
    this.timestepSet = new Set(ts);
    this.prevDerivative = null;
    this.dt = null;
    this.storedSample = null;
    this.stepIndexValue = undefined;
    this.indexCounter = new Map();
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
      const idx = this.indicesOf(timestep);
      this.stepIndexValue = (idx.length > 1 ? idx[1] : idx[0]) as number;
    }
    if (this.stepIndexValue >= this.timesteps.length) {
      throw new RangeError(`${NAME}.${caller}: the schedule is finished; call setTimesteps again`);
    }
    return this.stepIndexValue;
  }

  private indicesOf(timestep: number): number[] {
    const idx: number[] = [];
    this.timesteps.forEach((t, i) => {
      if (t === timestep) idx.push(i);
    });
    return idx;
  }

  /** sample / sqrt(sigma^2 + 1), float32. */
  scaleModelInput(sample: Float32Array, timestep: number): Float32Array {
    const sigma = this.sigmas[this.ensureStepIndex(timestep, "scaleModelInput")] as number;
    const d = f32(Math.sqrt(f32(f32(sigma * sigma) + 1)));
    const out = new Float32Array(sample.length);
    for (let i = 0; i < sample.length; i++) out[i] = (sample[i] as number) / d;
    return out;
  }

  /** One half of a Heun pair (no randomness: `options` is accepted for the common interface and ignored). */
  step(
    modelOutput: Float32Array,
    timestep: number,
    sample: Float32Array,
    _options: SchedulerStepOptions = {},
  ): SchedulerOutput {
    const si = this.ensureStepIndex(timestep, "step");
    if (modelOutput.length !== sample.length) {
      throw new RangeError(
        `${NAME}.step: modelOutput has ${modelOutput.length} values, sample ${sample.length}`,
      );
    }
    checkFinite(NAME, "modelOutput", modelOutput);
    const first = this.stateInFirstOrder;
    this.indexCounter.set(timestep, (this.indexCounter.get(timestep) ?? 0) + 1);
    const sigma = this.sigmas[first ? si : si - 1] as number; // sigma_hat == sigma (gamma = 0)
    const sigmaNext = this.sigmas[first ? si + 1 : si] as number;
    const sigmaInput = first ? sigma : sigmaNext;
    const n = sample.length;

    const pred = new Float32Array(n);
    if (this.predictionType === "epsilon") {
      for (let i = 0; i < n; i++)
        pred[i] = (sample[i] as number) - f32(sigmaInput * (modelOutput[i] as number));
    } else if (this.predictionType === "v_prediction") {
      const s2p1 = f32(f32(sigmaInput * sigmaInput) + 1);
      const cOut = f32(-sigmaInput / f32(Math.sqrt(s2p1)));
      for (let i = 0; i < n; i++) {
        pred[i] = f32((modelOutput[i] as number) * cOut) + f32((sample[i] as number) / s2p1);
      }
    } else pred.set(modelOutput);
    if (this.clipSample) {
      const r = f32(this.clipSampleRange);
      for (let i = 0; i < n; i++) pred[i] = Math.min(Math.max(pred[i] as number, -r), r);
    }

    const prev = new Float32Array(n);
    if (first) {
      const derivative = new Float32Array(n);
      const dt = f32(sigmaNext - sigma);
      for (let i = 0; i < n; i++) {
        const x = sample[i] as number;
        derivative[i] = f32(x - (pred[i] as number)) / sigma;
        prev[i] = x + f32((derivative[i] as number) * dt);
      }
      this.prevDerivative = derivative;
      this.dt = dt;
      this.storedSample = sample;
    } else {
      const d1 = this.prevDerivative as Float32Array;
      const dt = this.dt as number;
      const x0 = this.storedSample as Float32Array;
      for (let i = 0; i < n; i++) {
        const d2 = f32(f32((sample[i] as number) - (pred[i] as number)) / sigmaNext);
        const derivative = f32(f32((d1[i] as number) + d2) / 2);
        prev[i] = (x0[i] as number) + f32(derivative * dt);
      }
      this.prevDerivative = null;
      this.dt = null;
      this.storedSample = null;
    }
    this.stepIndexValue = si + 1;
    return { prevSample: prev };
  }

  /**
   * original + noise * sigma(t) per row. Like diffusers' `index_for_timestep`: before any step, a repeated
   * timestep maps to its second occurrence; after steps, to the occurrence given by how often it was stepped.
   */
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
      const idx = this.indicesOf(t);
      const pos = this.indexCounter.size === 0 ? (idx.length > 1 ? 1 : 0) : (this.indexCounter.get(t) ?? 0);
      const k = idx[pos];
      if (k === undefined) {
        throw new RangeError(`${NAME}.addNoise: timestep ${t} has no occurrence #${pos} in the schedule`);
      }
      const sigma = this.sigmas[k] as number;
      for (let i = r * rowLen; i < (r + 1) * rowLen; i++) {
        out[i] = (originalSamples[i] as number) + f32((noise[i] as number) * sigma);
      }
    });
    return out;
  }
}
