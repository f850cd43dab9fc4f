/**
 * KDPM2AncestralDiscreteScheduler — diffusers 0.23.0 `scheduling_k_dpm_2_ancestral_discrete.py` (k-diffusion's
 * `sample_dpm_2_ancestral`).
 *
 * Order 2: `timesteps` holds 2n-1 entries [t0, ti0, t1, ti1, ...] where ti are the (non-integer) timesteps of
 * the interpolated sigmas exp((log s(i) + log sigma_down(i)) / 2); the first call of a pair steps to the
 * midpoint and stores the sample, the second completes the step to sigma_down from the stored sample and adds
 * sigma_up * noise. Every call draws `randn(sample.length)` from the generator, so a generator is required.
 * Numerics follow the reference dtypes: float32 torch tables, numpy float32 timesteps (float64, rounded, with
 * use_karras_sigmas), float32 `sigmas` / `sigmasInterpol` built with torch float32 log / lerp / exp, the
 * interpolated timesteps from `_sigma_to_t` evaluated on torch float32 tensors, and float32 per-step scalars
 * and elementwise ops (Math.fround). The float32 arithmetic matters: for some schedules (n=2 with the x4 config)
 * sigma_down(0) is exactly 0 in float32, torch.lerp(log s, -inf, 0.5) is NaN, and so are the interpolated
 * timestep and every later sample; this port reproduces that (and then reports the NaN model output).
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

const NAME = "KDPM2AncestralDiscreteScheduler";
const f32 = Math.fround;

export type KDPM2AncestralPredictionType = "epsilon" | "v_prediction";
export type KDPM2AncestralTimestepSpacing = "linspace" | "leading" | "trailing";

/** diffusers 0.23.0 `KDPM2AncestralDiscreteScheduler.__init__` defaults. */
export const KDPM2_ANCESTRAL_DISCRETE_DEFAULT_CONFIG = {
  num_train_timesteps: 1000,
  beta_start: 0.00085,
  beta_end: 0.012,
  beta_schedule: "linear" as string,
  trained_betas: null as number[] | null,
  use_karras_sigmas: false as boolean | null,
  prediction_type: "epsilon" as string,
  timestep_spacing: "linspace" as string,
  steps_offset: 0,
};

export type KDPM2AncestralDiscreteConfig = typeof KDPM2_ANCESTRAL_DISCRETE_DEFAULT_CONFIG & SchedulerConfig;

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

/**
 * betas (float32, per `trained_betas` / `beta_schedule`), alphas = 1 - betas, alphas_cumprod (torch.cumprod on
 * float32 keeps a double accumulator) and the training sigmas `((1 - a) / a) ** 0.5`, all float32 tensor ops.
 */
function trainTables(cfg: SchedulerConfig, n: number) {
  let betas: Float32Array;
  if (cfg.trained_betas !== null && cfg.trained_betas !== undefined) {
    const tb = cfg.trained_betas as unknown;
    if (!Array.isArray(tb) && !ArrayBuffer.isView(tb)) {
      throw new SchedulerConfigError(NAME, "trained_betas", "must be an array of numbers or null");
    }
    betas = Float32Array.from(tb as ArrayLike<unknown>, (v) => configFinite("trained_betas", v));
    if (betas.length !== n) {
      throw new SchedulerConfigError(NAME, "trained_betas", `has ${betas.length} values, expected ${n}`);
    }
  } else {
    const schedule = configOneOf(NAME, "beta_schedule", cfg.beta_schedule, [
      "linear",
      "scaled_linear",
      "squaredcos_cap_v2",
    ] as const);
    const b0 = configFinite("beta_start", cfg.beta_start);
    const b1 = configFinite("beta_end", cfg.beta_end);
    if (schedule === "linear") betas = torchLinspaceF32(b0, b1, n);
    else if (schedule === "scaled_linear")
      betas = torchLinspaceF32(Math.sqrt(b0), Math.sqrt(b1), n).map((v) => v * v);
    else betas = betasForAlphaBar(n);
  }
  const alphas = betas.map((b) => 1 - b);
  const alphasCumprod = new Float32Array(n);
  const sigmas = new Float32Array(n);
  let p = 1;
  for (let i = 0; i < n; i++) {
    p *= alphas[i] as number;
    const a = f32(p);
    alphasCumprod[i] = a;
    sigmas[i] = Math.sqrt(f32(f32(1 - a) / a));
  }
  return { betas, alphas, alphasCumprod, sigmas };
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
  // np.arange(N, 0, -N/n): length ceil(N / (N/n)), a[i] = N + i*(a[1] - a[0]); then round, float32, - 1
  const step = -(numTrain / n);
  const delta = numTrain + step - numTrain;
  const len = Math.max(0, Math.ceil(-numTrain / step));
  return Array.from({ length: len }, (_, i) => (i === 1 ? numTrain + step : numTrain + i * delta)).map((t) =>
    f32(f32(rint(t)) - 1),
  );
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
 * diffusers `_sigma_to_t` (log-sigma interpolation into the training `log_sigmas`, float32). For the float64
 * sigmas of `set_timesteps`, numpy 1.x value-based casting makes the log and `w` float32 and
 * `(1 - w) * low_idx + w * high_idx` float64. For the interpolated sigmas (float32 0-dim torch tensors),
 * `np.log(np.maximum(sigma, 1e-10))` is float64 wrapped back into a tensor, and the rest is torch float32
 * (`torchF32`).
 */
function sigmaToT(sigma: number, logSigmas: Float32Array, torchF32 = false): number {
  const logSigma = f32(Math.log(Math.max(sigma, 1e-10)));
  let low = 0;
  for (let i = 0; i < logSigmas.length; i++) if (logSigma >= (logSigmas[i] as number)) low = i;
  low = Math.min(low, logSigmas.length - 2);
  const lo = logSigmas[low] as number;
  const hi = logSigmas[low + 1] as number;
  let w = f32(f32(lo - logSigma) / f32(lo - hi));
  w = Number.isNaN(w) ? w : Math.min(Math.max(w, 0), 1);
  if (torchF32) return f32(f32(f32(1 - w) * low) + f32(w * (low + 1)));
  return f32(1 - w) * low + w * (low + 1);
}

/** torch `max()` of a float32 tensor (NaN-propagating). */
function maxF32(a: Float32Array): number {
  return a.reduce((m, v) => (Number.isNaN(m) || v <= m ? m : v), Number.NEGATIVE_INFINITY);
}

// ---------------------------------------------------------------- torch float32 helpers

// torch's float32 `log` / `exp` run SLEEF's u10 kernels on every element (AVX2 build, FMA everywhere); the
// ports below are bit-exact (within 1 ulp of the correctly rounded value, like SLEEF).

/** fma(-a, b, c) */
const fnmaF32 = (a: number, b: number, c: number) => fmaF32(-a, b, c);

/** SLEEF `xlogf_u1` (Sleef_logf8_u10, AVX2). */
function torchLogF32(d: number): number {
  if (Number.isNaN(d) || d < 0) return Number.NaN;
  if (d === 0) return Number.NEGATIVE_INFINITY;
  if (d === Number.POSITIVE_INFINITY) return d;
  const tiny = d < 1.1754943508222875e-38;
  if (tiny) d = f32(d * 2 ** 64);
  F32_BUF[0] = f32(d * f32(1 / 0.75));
  let e = (((U32_BUF[0] as number) >>> 23) & 0xff) - 0x7f;
  F32_BUF[0] = d;
  U32_BUF[0] = ((U32_BUF[0] as number) - (e << 23)) >>> 0;
  const m = F32_BUF[0] as number;
  if (tiny) e -= 64;
  // s = (ln2_hi, ln2_lo) * e
  const l2h = f32(0.6931471824645996);
  const l2l = f32(-1.904654323148236e-9);
  let sx = f32(l2h * e);
  let sy = fmaF32(l2l, e, fmaF32(l2h, e, -sx));
  // x = (m - 1) / (m + 1) in double-float
  const nx = f32(m - 1);
  let v = f32(nx + 1);
  const ny = f32(f32(-1 - f32(nx - v)) + f32(m - v));
  const dx = f32(m + 1);
  v = f32(dx - 1);
  const dy = f32(f32(1 - f32(dx - v)) + f32(m - v));
  const t0 = f32(1 / dx);
  const qx = f32(nx * t0);
  const u = fmaF32(t0, nx, -qx);
  const w = fnmaF32(dy, t0, fnmaF32(dx, t0, 1));
  const qy = fmaF32(qx, w, fmaF32(ny, t0, u));
  const x2 = f32(qx * qx);
  let t = fmaF32(f32(0.3027294874), x2, f32(0.3996108174));
  t = fmaF32(t, x2, f32(0.666669488));
  // s = s + 2x (double-float add), then + x^3 * t
  const x2x = f32(qx * 2);
  const x2y = f32(qy * 2);
  let ss = f32(sx + x2x);
  sy = f32(f32(f32(f32(sx - ss) + x2x) + sy) + x2y);
  sx = ss;
  const tail = f32(f32(x2 * qx) * t);
  ss = f32(sx + tail);
  sy = f32(f32(f32(sx - ss) + tail) + sy);
  return f32(ss + sy);
}

/** SLEEF `xexpf` (Sleef_expf8_u10, AVX2). */
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

/**
 * torch.lerp(start, end, 0.5) on float32: weight >= 0.5 evaluates `end - (end - start) * (1 - weight)`, so a
 * -inf end gives NaN (the reference's NaN for KDPM2-Ancestral n=2 comes from here).
 */
function lerpHalfF32(start: number, end: number): number {
  return f32(end - f32(end - start) * 0.5);
}

/** torch.cat([x[:1], x[1:].repeat_interleave(2), x[-1:]]). */
function repeatInner(x: ArrayLike<number>): Float32Array {
  const out = new Float32Array(2 * x.length);
  out[0] = x[0] as number;
  for (let i = 1; i < x.length; i++) {
    out[2 * i - 1] = x[i] as number;
    out[2 * i] = x[i] as number;
  }
  out[out.length - 1] = x[x.length - 1] as number;
  return out;
}

// ---------------------------------------------------------------- the scheduler

export class KDPM2AncestralDiscreteScheduler implements Scheduler {
  readonly config: Readonly<KDPM2AncestralDiscreteConfig>;
  readonly order = 2;
  readonly betas: Float32Array;
  readonly alphas: Float32Array;
  readonly alphasCumprod: Float32Array;
  /** float32, 2n+2 entries: cat(s[:1], s[1:] twice each, s[-1:]) of s = [s0 .. s(n-1), 0]. */
  sigmas: Float32Array = new Float32Array(0);
  /** float32 interpolated sigmas, same layout as `sigmas` (the last two base entries are 0). */
  sigmasInterpol: Float32Array = new Float32Array(0);
  /** float32 ancestral noise scales, same layout as `sigmas` (the last base entry is NaN, as in the reference). */
  sigmasUp: Float32Array = new Float32Array(0);
  /** float32 deterministic targets, same layout as `sigmas`. */
  sigmasDown: Float32Array = new Float32Array(0);
  /** 2n-1 entries [t0, ti0, t1, ...]: float32 values (float64 with use_karras_sigmas). */
  timesteps: number[] = [];
  numInferenceSteps: number | undefined = undefined;
  /** log of the training sigmas (numpy float32 log), diffusers `log_sigmas`. */
  readonly logSigmas: Float32Array;

  private readonly numTrain: number;
  private readonly predictionType: KDPM2AncestralPredictionType;
  private readonly spacing: KDPM2AncestralTimestepSpacing;
  private readonly useKarras: boolean;
  private readonly stepsOffset: number;
  private readonly trainSigmaTable: Float32Array;
  private timestepSet = new Set<number>();
  private stepIndexValue: number | undefined = undefined;
  private indexCounter = new Map<number, number>();
  private storedSample: Float32Array | null = null;

  static fromConfig(config?: SchedulerConfig): KDPM2AncestralDiscreteScheduler {
    return new KDPM2AncestralDiscreteScheduler(config);
  }

  constructor(config?: SchedulerConfig) {
    const cfg = mergeConfig(KDPM2_ANCESTRAL_DISCRETE_DEFAULT_CONFIG, config) as KDPM2AncestralDiscreteConfig;
    this.config = Object.freeze({ ...cfg });
    this.numTrain = configInt("num_train_timesteps", cfg.num_train_timesteps, 2);
    if (cfg.prediction_type === "sample") {
      // diffusers accepts it in __init__ but raises NotImplementedError in step(); fail early instead
      throw new SchedulerConfigError(
        NAME,
        "prediction_type",
        'is "sample", which this scheduler does not implement',
      );
    }
    this.predictionType = configOneOf(NAME, "prediction_type", cfg.prediction_type, [
      "epsilon",
      "v_prediction",
    ] as const);
    this.spacing = configOneOf(NAME, "timestep_spacing", cfg.timestep_spacing, [
      "linspace",
      "leading",
      "trailing",
    ] as const);
    this.useKarras = configBool("use_karras_sigmas", cfg.use_karras_sigmas);
    this.stepsOffset = configInt("steps_offset", cfg.steps_offset, 0);

    const tables = trainTables(cfg, this.numTrain);
    this.betas = tables.betas;
    this.alphas = tables.alphas;
    this.alphasCumprod = tables.alphasCumprod;
    this.trainSigmaTable = tables.sigmas;
    this.logSigmas = this.trainSigmaTable.map(npLogF32);
    // diffusers' __init__ calls set_timesteps(num_train_timesteps); numInferenceSteps stays unset here so that
    // step() before setTimesteps() is reported
    this.buildSchedule(this.numTrain);
  }

  /** diffusers `init_noise_sigma`: max sigma (linspace / trailing) or sqrt(max^2 + 1) (leading), float32. */
  get initNoiseSigma(): number {
    const m = maxF32(this.sigmas);
    if (this.spacing === "linspace" || this.spacing === "trailing") return m;
    return f32(Math.sqrt(f32(f32(m * m) + 1)));
  }

  /** Index into `timesteps` of the next step (undefined until the first scaleModelInput / step). */
  get stepIndex(): number | undefined {
    return this.stepIndexValue;
  }

  /** True when the next step is the first half (to the interpolated sigma) of a pair. */
  get stateInFirstOrder(): boolean {
    return this.storedSample === null;
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
      timesteps = sigmas.map((s) => rint(sigmaToT(s, this.logSigmas)));
    }
    const s32 = Float32Array.from([...sigmas, 0]);
    const len = s32.length;
    // sigmas_up / sigmas_down from sigmas_next = roll(-1) with a final 0, float32 tensor ops
    const up = new Float32Array(len);
    const down = new Float32Array(len);
    for (let i = 0; i < len; i++) {
      const s = s32[i] as number;
      const sn = i + 1 < len ? (s32[i + 1] as number) : 0;
      const sn2 = f32(sn * sn);
      const s2 = f32(s * s);
      up[i] = Math.sqrt(f32(f32(sn2 * f32(s2 - sn2)) / s2));
      down[i] = Math.sqrt(f32(sn2 - f32((up[i] as number) * (up[i] as number))));
    }
    down[len - 1] = 0;
    // sigmas.log().lerp(sigmas_down.log(), 0.5).exp(), the last two set to 0
    const interp = new Float32Array(len);
    for (let i = 0; i < len; i++) {
      interp[i] = torchExpF32(lerpHalfF32(torchLogF32(s32[i] as number), torchLogF32(down[i] as number)));
    }
    interp.fill(0, Math.max(0, len - 2));
    this.sigmas = repeatInner(s32);
    this.sigmasInterpol = repeatInner(interp);
    this.sigmasUp = repeatInner(up);
    this.sigmasDown = repeatInner(down);
    const ts: number[] = [timesteps[0] as number];
    for (let i = 1; i < len - 1; i++) {
      ts.push(sigmaToT(interp[i - 1] as number, this.logSigmas, true), timesteps[i] as number);
    }
    this.timesteps = ts;
    this.timestepSet = new Set(ts);
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

  /** sample / sqrt(sigma^2 + 1) with the interpolated sigma in the second half of a pair, float32. */
  scaleModelInput(sample: Float32Array, timestep: number): Float32Array {
    const si = this.ensureStepIndex(timestep, "scaleModelInput");
    const sigma = (this.stateInFirstOrder ? this.sigmas[si] : this.sigmasInterpol[si - 1]) as number;
    const d = f32(Math.sqrt(f32(f32(sigma * sigma) + 1)));
    const out = new Float32Array(sample.length);
    for (let i = 0; i < sample.length; i++) out[i] = (sample[i] as number) / d;
    return out;
  }

  /** One half of a DPM-2 ancestral pair; draws `randn(sample.length)` from `options.generator` on every call. */
  step(
    modelOutput: Float32Array,
    timestep: number,
    sample: Float32Array,
    options: SchedulerStepOptions = {},
  ): SchedulerOutput {
    const si = this.ensureStepIndex(timestep, "step");
    if (modelOutput.length !== sample.length) {
      throw new RangeError(
        `${NAME}.step: modelOutput has ${modelOutput.length} values, sample ${sample.length}`,
      );
    }
    checkFinite(NAME, "modelOutput", modelOutput);
    if (!options.generator) throw new Error(`${NAME}.step: every step draws noise; pass options.generator`);
    this.indexCounter.set(timestep, (this.indexCounter.get(timestep) ?? 0) + 1);
    const first = this.stateInFirstOrder;
    const k = first ? si : si - 1;
    const sigma = this.sigmas[k] as number; // sigma_hat == sigma (gamma = 0)
    const sigmaInterpol = this.sigmasInterpol[k] as number;
    const sigmaUp = this.sigmasUp[k] as number;
    const sigmaDown = this.sigmasDown[si - 1] as number; // used by the second half only
    const sigmaInput = first ? sigma : sigmaInterpol;
    const n = sample.length;
    const noise = options.generator.randn([n]);

    const pred = new Float32Array(n);
    if (this.predictionType === "epsilon") {
      for (let i = 0; i < n; i++)
        pred[i] = (sample[i] as number) - f32(sigmaInput * (modelOutput[i] as number));
    } else {
      const s2p1 = f32(f32(sigmaInput * sigmaInput) + 1);
      const cOut = f32(-sigmaInput / f32(Math.sqrt(s2p1)));
      for (let i = 0; i < n; i++) {
        pred[i] = f32((modelOutput[i] as number) * cOut) + f32((sample[i] as number) / s2p1);
      }
    }

    const prev = new Float32Array(n);
    if (first) {
      // DPM-Solver-2, first half: Euler step to the interpolated sigma
      const dt = f32(sigmaInterpol - sigma);
      for (let i = 0; i < n; i++) {
        const x = sample[i] as number;
        prev[i] = x + f32(f32(f32(x - (pred[i] as number)) / sigma) * dt);
      }
      this.storedSample = sample;
    } else {
      // second half: the derivative at the midpoint applied from the stored sample, down to sigma_down, plus
      // sigma_up * noise
      const dt = f32(sigmaDown - sigma);
      const x0 = this.storedSample as Float32Array;
      for (let i = 0; i < n; i++) {
        const derivative = f32(f32((sample[i] as number) - (pred[i] as number)) / sigmaInterpol);
        prev[i] = f32((x0[i] as number) + f32(derivative * dt)) + f32((noise[i] as number) * sigmaUp);
      }
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
    const rows = timesteps.length;
    if (noise.length !== originalSamples.length || rows === 0 || originalSamples.length % rows !== 0) {
      throw new RangeError(
        `${NAME}.addNoise: ${originalSamples.length} samples, ${noise.length} noise values and ${rows} timesteps do not match`,
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
