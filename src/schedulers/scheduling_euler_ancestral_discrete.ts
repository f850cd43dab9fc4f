/**
 * EulerAncestralDiscreteScheduler — diffusers 0.23.0 `scheduling_euler_ancestral_discrete.py` (k-diffusion's
 * `sample_euler_ancestral`).
 *
 * Numerics follow the reference dtypes: float32 torch tables (betas, alphas_cumprod, training sigmas), numpy
 * float32/float64 timesteps and `np.interp` sigmas stored as float32, float32 0-dim per-step scalars and float32
 * elementwise ops (reproduced with Math.fround). Every `step` draws `randn(sample.length)` from the generator, so
 * a generator is required.
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

const NAME = "EulerAncestralDiscreteScheduler";
const f32 = Math.fround;

export type EulerAncestralPredictionType = "epsilon" | "v_prediction";
export type EulerAncestralTimestepSpacing = "linspace" | "leading" | "trailing";

/** diffusers 0.23.0 `EulerAncestralDiscreteScheduler.__init__` defaults. */
export const EULER_ANCESTRAL_DISCRETE_DEFAULT_CONFIG = {
  num_train_timesteps: 1000,
  beta_start: 0.0001,
  beta_end: 0.02,
  beta_schedule: "linear" as string,
  trained_betas: null as number[] | null,
  prediction_type: "epsilon" as string,
  timestep_spacing: "linspace" as string,
  steps_offset: 0,
};

export type EulerAncestralDiscreteConfig = typeof EULER_ANCESTRAL_DISCRETE_DEFAULT_CONFIG & SchedulerConfig;

export interface EulerAncestralDiscreteSchedulerOutput extends SchedulerOutput {
  predOriginalSample: Float32Array;
}

// ---------------------------------------------------------------- config checks

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

function maxF32(a: Float32Array): number {
  let m = Number.NEGATIVE_INFINITY;
  for (const v of a) {
    if (Number.isNaN(v)) return v;
    if (v > m) m = v;
  }
  return m;
}

// ---------------------------------------------------------------- the scheduler

export class EulerAncestralDiscreteScheduler implements Scheduler {
  readonly config: Readonly<EulerAncestralDiscreteConfig>;
  readonly order = 1;
  readonly betas: Float32Array;
  readonly alphas: Float32Array;
  readonly alphasCumprod: Float32Array;
  /** Inference sigmas (float32), one per timestep plus the final 0; the full training table until setTimesteps. */
  sigmas: Float32Array;
  /** float32 values, as diffusers' `scheduler.timesteps`. */
  timesteps: number[];
  numInferenceSteps: number | undefined = undefined;

  private readonly numTrain: number;
  private readonly predictionType: EulerAncestralPredictionType;
  private readonly spacing: EulerAncestralTimestepSpacing;
  private readonly stepsOffset: number;
  private readonly trainSigmaTable: Float32Array;
  private timestepSet = new Set<number>();
  private stepIndexValue: number | undefined = undefined;

  static fromConfig(config?: SchedulerConfig): EulerAncestralDiscreteScheduler {
    return new EulerAncestralDiscreteScheduler(config);
  }

  constructor(config?: SchedulerConfig) {
    const cfg = mergeConfig(EULER_ANCESTRAL_DISCRETE_DEFAULT_CONFIG, config) as EulerAncestralDiscreteConfig;
    this.config = Object.freeze({ ...cfg });
    this.numTrain = configInt("num_train_timesteps", cfg.num_train_timesteps, 1);
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
    this.stepsOffset = configInt("steps_offset", cfg.steps_offset, 0);

    this.betas = this.makeBetas(cfg);
    this.alphas = this.betas.map((b) => 1 - b);
    this.alphasCumprod = cumprodF32(this.alphas);
    this.trainSigmaTable = trainSigmas(this.alphasCumprod);

    // diffusers' state after __init__: the reversed training sigmas + [0], timesteps N-1 .. 0 (float64)
    const n = this.numTrain;
    this.sigmas = new Float32Array(n + 1);
    for (let i = 0; i < n; i++) this.sigmas[i] = this.trainSigmaTable[n - 1 - i] as number;
    this.timesteps = npLinspace(0, n - 1, n).reverse();
  }

  private makeBetas(cfg: EulerAncestralDiscreteConfig): Float32Array {
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
    const timesteps = spacedTimesteps(this.spacing, this.numTrain, numInferenceSteps, this.stepsOffset);
    this.sigmas = Float32Array.from([...npInterp(timesteps, this.trainSigmaTable), 0]);
    this.timesteps = timesteps;
    this.timestepSet = new Set(timesteps);
    this.numInferenceSteps = numInferenceSteps;
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
    options: SchedulerStepOptions = {},
  ): EulerAncestralDiscreteSchedulerOutput {
    const si = this.ensureStepIndex(timestep, "step");
    if (modelOutput.length !== sample.length) {
      throw new RangeError(
        `${NAME}.step: modelOutput has ${modelOutput.length} values, sample ${sample.length}`,
      );
    }
    checkFinite(NAME, "modelOutput", modelOutput);
    if (!options.generator) throw new Error(`${NAME}.step: every step draws noise; pass options.generator`);
    const n = sample.length;
    const sigma = this.sigmas[si] as number;

    const pred = new Float32Array(n);
    if (this.predictionType === "epsilon") {
      for (let i = 0; i < n; i++) pred[i] = (sample[i] as number) - f32(sigma * (modelOutput[i] as number));
    } else {
      const s2p1 = f32(f32(sigma * sigma) + 1);
      const cOut = f32(-sigma / f32(Math.sqrt(s2p1)));
      for (let i = 0; i < n; i++) {
        pred[i] = f32((modelOutput[i] as number) * cOut) + f32((sample[i] as number) / s2p1);
      }
    }

    // sigma_up = (to^2 * (from^2 - to^2) / from^2) ** 0.5, sigma_down = (to^2 - up^2) ** 0.5, float32 0-dim
    const sigmaTo = this.sigmas[si + 1] as number;
    const to2 = f32(sigmaTo * sigmaTo);
    const from2 = f32(sigma * sigma);
    const sigmaUp = f32(Math.sqrt(f32(f32(to2 * f32(from2 - to2)) / from2)));
    const sigmaDown = f32(Math.sqrt(f32(to2 - f32(sigmaUp * sigmaUp))));
    const dt = f32(sigmaDown - sigma);

    const noise = options.generator.randn([n]);
    const prev = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      const x = sample[i] as number;
      const derivative = f32(f32(x - (pred[i] as number)) / sigma);
      prev[i] = f32(x + f32(derivative * dt)) + f32((noise[i] as number) * sigmaUp);
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
