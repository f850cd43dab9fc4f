/**
 * DDPMScheduler — diffusers 0.23.0 `scheduling_ddpm.py` (Ho et al., "Denoising Diffusion Probabilistic Models").
 * Also the x4 upscaler's `low_res_scheduler`: its tables and `addNoise` (the noise_level step) are float32 exactly
 * as torch computes them (float32 linspace, cumprod with a double accumulator, float32 sqrt and products).
 *
 * Numerics follow the reference dtypes: timesteps are numpy int64 values; every per-step scalar is a float32 0-dim
 * tensor in diffusers and is rounded to float32 here; elementwise ops are float32 ops, each rounded (Math.fround).
 */
import type { Generator } from "../random/generator.js";
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

const NAME = "DDPMScheduler";
const f32 = Math.fround;

export type DDPMBetaSchedule = "linear" | "scaled_linear" | "squaredcos_cap_v2" | "sigmoid";
export type DDPMPredictionType = "epsilon" | "sample" | "v_prediction";
export type DDPMTimestepSpacing = "leading" | "trailing" | "linspace";
export type DDPMVarianceType =
  | "fixed_small"
  | "fixed_small_log"
  | "fixed_large"
  | "fixed_large_log"
  | "learned"
  | "learned_range";

/** diffusers 0.23.0 `DDPMScheduler.__init__` defaults. */
export const DDPM_DEFAULT_CONFIG = {
  num_train_timesteps: 1000,
  beta_start: 0.0001,
  beta_end: 0.02,
  beta_schedule: "linear" as string,
  trained_betas: null as number[] | null,
  variance_type: "fixed_small" as string,
  clip_sample: true,
  prediction_type: "epsilon" as string,
  thresholding: false,
  dynamic_thresholding_ratio: 0.995,
  clip_sample_range: 1.0,
  sample_max_value: 1.0,
  timestep_spacing: "leading" as string,
  steps_offset: 0,
};

export type DDPMConfig = typeof DDPM_DEFAULT_CONFIG & SchedulerConfig;

export interface DDPMStepOptions extends SchedulerStepOptions {
  /**
   * Batch size of the flat sample (default 1). Needed for dynamic thresholding (per-sample quantile) and for
   * splitting a `learned` / `learned_range` model output of 2*C channels into (model output, predicted variance).
   */
  batchSize?: number;
}

export interface DDPMSchedulerOutput extends SchedulerOutput {
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

// ---------------------------------------------------------------- dynamic thresholding

/** torch.quantile(abs(x_row), ratio) per batch row (linear interpolation, float32), then clamp and scale. */
function thresholdSample(x: Float32Array, batchSize: number, ratio: number, maxValue: number): Float32Array {
  if (!Number.isInteger(batchSize) || batchSize < 1 || x.length % batchSize !== 0) {
    throw new RangeError(
      `${NAME}.step: batchSize ${batchSize} does not divide the sample length ${x.length}`,
    );
  }
  const rowLen = x.length / batchSize;
  const out = new Float32Array(x.length);
  const q = f32(ratio);
  const rank = f32(q * (rowLen - 1));
  const below = Math.trunc(rank);
  const above = Math.ceil(rank);
  const w = f32(rank - below);
  for (let b = 0; b < batchSize; b++) {
    const row = x.subarray(b * rowLen, (b + 1) * rowLen);
    const sorted = Float32Array.from(row, Math.abs).sort();
    const lo = sorted[below] as number;
    const hi = sorted[above] as number;
    let s = Math.abs(w) < 0.5 ? f32(lo + f32(w * f32(hi - lo))) : f32(hi - f32(f32(hi - lo) * f32(1 - w)));
    if (Number.isNaN(lo) || Number.isNaN(hi)) s = Number.NaN;
    s = Math.min(Math.max(s, 1), f32(maxValue));
    for (let i = 0; i < rowLen; i++) {
      const v = row[i] as number;
      out[b * rowLen + i] = f32(Math.min(Math.max(v, -s), s) / s);
    }
  }
  return out;
}

// ---------------------------------------------------------------- scheduler

export class DDPMScheduler implements Scheduler {
  readonly config: Readonly<DDPMConfig>;
  readonly order = 1;
  readonly initNoiseSigma = 1.0;
  readonly betas: Float32Array;
  readonly alphas: Float32Array;
  readonly alphasCumprod: Float32Array;
  readonly varianceType: DDPMVarianceType;
  private _timesteps: number[];
  private _numInferenceSteps: number | undefined = undefined;
  private customTimesteps = false;

  private readonly numTrainTimesteps: number;
  private readonly predictionType: DDPMPredictionType;
  private readonly timestepSpacing: DDPMTimestepSpacing;
  private readonly stepsOffset: number;
  private readonly clipSample: boolean;
  private readonly clipSampleRange: number;
  private readonly thresholding: boolean;
  private readonly dynamicThresholdingRatio: number;
  private readonly sampleMaxValue: number;

  static fromConfig(config?: SchedulerConfig): DDPMScheduler {
    return new DDPMScheduler(config);
  }

  constructor(config?: SchedulerConfig) {
    const c = mergeConfig(DDPM_DEFAULT_CONFIG as DDPMConfig, config);
    this.config = Object.freeze(c);
    const n = configInt("num_train_timesteps", c.num_train_timesteps, 1);
    this.numTrainTimesteps = n;
    const betaStart = configFinite("beta_start", c.beta_start);
    const betaEnd = configFinite("beta_end", c.beta_end);
    this.varianceType = configOneOf(NAME, "variance_type", c.variance_type, [
      "fixed_small",
      "fixed_small_log",
      "fixed_large",
      "fixed_large_log",
      "learned",
      "learned_range",
    ] as const);
    this.predictionType = configOneOf(NAME, "prediction_type", c.prediction_type, [
      "epsilon",
      "sample",
      "v_prediction",
    ] as const);
    this.timestepSpacing = configOneOf(NAME, "timestep_spacing", c.timestep_spacing, [
      "leading",
      "trailing",
      "linspace",
    ] as const);
    this.stepsOffset = configInt("steps_offset", c.steps_offset, 0);
    this.clipSample = configBool("clip_sample", c.clip_sample);
    this.clipSampleRange = configFinite("clip_sample_range", c.clip_sample_range);
    this.thresholding = configBool("thresholding", c.thresholding);
    this.dynamicThresholdingRatio = configFinite("dynamic_thresholding_ratio", c.dynamic_thresholding_ratio);
    if (this.dynamicThresholdingRatio < 0 || this.dynamicThresholdingRatio > 1) {
      throw new SchedulerConfigError(NAME, "dynamic_thresholding_ratio", "must be in [0, 1]");
    }
    this.sampleMaxValue = configFinite("sample_max_value", c.sample_max_value);

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
        "sigmoid",
      ] as const);
      if (schedule === "linear") betas = torchLinspaceF32(betaStart, betaEnd, n);
      else if (schedule === "scaled_linear") {
        betas = torchLinspaceF32(betaStart ** 0.5, betaEnd ** 0.5, n).map((b) => f32(b * b));
      } else if (schedule === "squaredcos_cap_v2") betas = betasForAlphaBar(n);
      else {
        // torch.sigmoid(torch.linspace(-6, 6, n)) * (beta_end - beta_start) + beta_start, all float32
        const scale = f32(betaEnd - betaStart);
        const shift = f32(betaStart);
        betas = torchLinspaceF32(-6, 6, n).map((x) =>
          f32(f32(f32(1 / f32(1 + f32(Math.exp(-x)))) * scale) + shift),
        );
      }
    }
    this.betas = betas;
    this.alphas = betas.map((b) => f32(1 - b));
    this.alphasCumprod = cumprodF32(this.alphas);
    this._timesteps = Array.from({ length: n }, (_, i) => n - 1 - i);
  }

  get timesteps(): number[] {
    return this._timesteps;
  }

  get numInferenceSteps(): number | undefined {
    return this._numInferenceSteps;
  }

  scaleModelInput(sample: Float32Array, _timestep?: number): Float32Array {
    return sample;
  }

  /**
   * `setTimesteps(n)` spaces n timesteps per `timestep_spacing`; `setTimesteps(undefined, timesteps)` uses custom
   * timesteps (strictly descending integers, the first below num_train_timesteps), as diffusers allows.
   */
  setTimesteps(numInferenceSteps: number | undefined, timesteps?: readonly number[]): void {
    const N = this.numTrainTimesteps;
    if (timesteps !== undefined) {
      if (numInferenceSteps !== undefined) {
        throw new Error(`${NAME}.setTimesteps: pass either numInferenceSteps or custom timesteps, not both`);
      }
      if (timesteps.length === 0) throw new RangeError(`${NAME}.setTimesteps: custom timesteps are empty`);
      timesteps.forEach((t, i) => {
        if (!Number.isInteger(t) || t < 0 || t >= N) {
          throw new RangeError(`${NAME}.setTimesteps: custom timestep ${t} is not an integer in 0..${N - 1}`);
        }
        if (i > 0 && t >= (timesteps[i - 1] as number)) {
          throw new RangeError(`${NAME}.setTimesteps: custom timesteps must be in descending order`);
        }
      });
      this._timesteps = [...timesteps];
      this._numInferenceSteps = timesteps.length;
      this.customTimesteps = true;
      return;
    }
    if (numInferenceSteps === undefined) {
      throw new RangeError(`${NAME}.setTimesteps: numInferenceSteps or custom timesteps must be given`);
    }
    checkNumInferenceSteps(NAME, numInferenceSteps, N);
    const n = numInferenceSteps;
    this._numInferenceSteps = n;
    this.customTimesteps = false;
    let ts: number[];
    if (this.timestepSpacing === "linspace") {
      ts = npLinspace(0, N - 1, n)
        .map(rint)
        .reverse();
    } else if (this.timestepSpacing === "leading") {
      const ratio = Math.floor(N / n);
      ts = Array.from({ length: n }, (_, i) => (n - 1 - i) * ratio + this.stepsOffset);
    } else {
      ts = npArange(N, 0, -N / n).map((t) => rint(t) - 1);
    }
    this._timesteps = ts;
  }

  /** diffusers `previous_timestep`: the next custom timestep (-1 after the last), else t - N // n. */
  previousTimestep(timestep: number): number {
    if (this.customTimesteps) {
      const i = this._timesteps.indexOf(timestep);
      return i === this._timesteps.length - 1 ? -1 : (this._timesteps[i + 1] as number);
    }
    const n = this._numInferenceSteps ?? this.numTrainTimesteps;
    return timestep - Math.floor(this.numTrainTimesteps / n);
  }

  private alphaAt(t: number): number {
    const v = this.alphasCumprod[t];
    if (v === undefined)
      throw new RangeError(`${NAME}: timestep ${t} is outside 0..${this.numTrainTimesteps - 1}`);
    return v;
  }

  step(
    modelOutput: Float32Array,
    timestep: number,
    sample: Float32Array,
    options: DDPMStepOptions = {},
  ): DDPMSchedulerOutput {
    const t = timestep;
    if (!this._timesteps.includes(t)) {
      throw new RangeError(
        `${NAME}.step: timestep ${t} is not in the schedule (${this._timesteps.join(", ")})`,
      );
    }
    checkFinite(NAME, "modelOutput", modelOutput);
    const len = sample.length;
    const batchSize = options.batchSize ?? 1;
    if (!Number.isInteger(batchSize) || batchSize < 1 || len % batchSize !== 0) {
      throw new RangeError(`${NAME}.step: batchSize ${batchSize} does not divide the sample length ${len}`);
    }
    const prevT = this.previousTimestep(t);

    // A learned-variance model outputs 2*C channels: split along dim 1 into (model output, predicted variance).
    let eps = modelOutput;
    let predictedVariance: Float32Array | undefined;
    const learned = this.varianceType === "learned" || this.varianceType === "learned_range";
    if (learned && modelOutput.length === 2 * len) {
      const row = len / batchSize;
      eps = new Float32Array(len);
      predictedVariance = new Float32Array(len);
      for (let b = 0; b < batchSize; b++) {
        eps.set(modelOutput.subarray(2 * b * row, (2 * b + 1) * row), b * row);
        predictedVariance.set(modelOutput.subarray((2 * b + 1) * row, (2 * b + 2) * row), b * row);
      }
    } else if (modelOutput.length !== len) {
      throw new RangeError(`${NAME}.step: modelOutput length ${modelOutput.length} != sample length ${len}`);
    }

    const a = this.alphaAt(t);
    const ap = prevT >= 0 ? this.alphaAt(prevT) : 1.0;
    const b = f32(1 - a);
    const bp = f32(1 - ap);
    const curAlpha = f32(a / ap);
    const curBeta = f32(1 - curAlpha);
    const sa = f32(Math.sqrt(a));
    const sb = f32(Math.sqrt(b));

    let x0: Float32Array = new Float32Array(len);
    for (let i = 0; i < len; i++) {
      const m = eps[i] as number;
      const x = sample[i] as number;
      if (this.predictionType === "epsilon") x0[i] = f32(f32(x - f32(sb * m)) / sa);
      else if (this.predictionType === "sample") x0[i] = m;
      else x0[i] = f32(f32(sa * x) - f32(sb * m));
    }
    if (this.thresholding) {
      x0 = thresholdSample(x0, batchSize, this.dynamicThresholdingRatio, this.sampleMaxValue);
    } else if (this.clipSample) {
      const r = f32(this.clipSampleRange);
      for (let i = 0; i < len; i++) x0[i] = Math.min(Math.max(x0[i] as number, -r), r);
    }

    const x0Coeff = f32(f32(f32(Math.sqrt(ap)) * curBeta) / b);
    const xCoeff = f32(f32(f32(Math.sqrt(curAlpha)) * bp) / b);
    const prev = new Float32Array(len);
    for (let i = 0; i < len; i++) {
      prev[i] = f32(f32(x0Coeff * (x0[i] as number)) + f32(xCoeff * (sample[i] as number)));
    }

    if (t > 0) {
      const noise = drawNoise(options.generator, len);
      // diffusers `_get_variance` (float32 scalars), then the per-type scaling of the noise in `step`.
      const variance = Math.max(f32(f32(bp / b) * curBeta), f32(1e-20));
      const vt = this.varianceType;
      let std: ((i: number) => number) | undefined;
      if (vt === "fixed_small_log") {
        const s = f32(Math.exp(f32(0.5 * f32(Math.log(variance)))));
        std = () => s;
      } else if (vt === "fixed_small" || vt === "fixed_large" || vt === "fixed_large_log") {
        const v = vt === "fixed_small" ? variance : vt === "fixed_large" ? curBeta : f32(Math.log(curBeta));
        const s = f32(Math.sqrt(v)); // fixed_large_log: sqrt(log(beta)) is NaN in diffusers 0.23.0 too
        std = () => s;
      } else {
        if (predictedVariance === undefined) {
          throw new RangeError(
            `${NAME}.step: variance_type "${vt}" needs a model output of twice the sample's channels ` +
              `(${2 * len} values), got ${modelOutput.length}`,
          );
        }
        const pv = predictedVariance;
        if (vt === "learned") std = (i) => f32(Math.sqrt(pv[i] as number));
        else {
          const minLog = f32(Math.log(variance));
          const maxLog = f32(Math.log(curBeta));
          std = (i) => {
            const frac = f32(f32((pv[i] as number) + 1) / 2);
            const v = f32(f32(frac * maxLog) + f32(f32(1 - frac) * minLog));
            return f32(Math.exp(f32(0.5 * v)));
          };
        }
      }
      for (let i = 0; i < len; i++) prev[i] = f32((prev[i] as number) + f32(std(i) * (noise[i] as number)));
    }
    return { prevSample: prev, predOriginalSample: x0 };
  }

  /**
   * diffusers `add_noise`: sqrt(a_t) * x + sqrt(1 - a_t) * noise in float32, one timestep per row
   * (rows = length / timesteps.length). This is the upscale pipeline's noise_level step.
   */
  addNoise(originalSamples: Float32Array, noise: Float32Array, timesteps: readonly number[]): Float32Array {
    const [sa, sb, rowLen] = rowCoefficients(
      this.alphasCumprod,
      originalSamples,
      noise,
      timesteps,
      "addNoise",
    );
    const out = new Float32Array(originalSamples.length);
    for (let i = 0; i < out.length; i++) {
      const r = Math.floor(i / rowLen);
      out[i] = f32(
        f32((sa[r] as number) * (originalSamples[i] as number)) +
          f32((sb[r] as number) * (noise[i] as number)),
      );
    }
    return out;
  }

  /** diffusers `get_velocity`: sqrt(a_t) * noise - sqrt(1 - a_t) * sample, one timestep per row. */
  getVelocity(sample: Float32Array, noise: Float32Array, timesteps: readonly number[]): Float32Array {
    const [sa, sb, rowLen] = rowCoefficients(this.alphasCumprod, sample, noise, timesteps, "getVelocity");
    const out = new Float32Array(sample.length);
    for (let i = 0; i < out.length; i++) {
      const r = Math.floor(i / rowLen);
      out[i] = f32(
        f32((sa[r] as number) * (noise[i] as number)) - f32((sb[r] as number) * (sample[i] as number)),
      );
    }
    return out;
  }
}

function drawNoise(generator: Generator | undefined, len: number): Float32Array {
  if (generator === undefined) {
    throw new Error(`${NAME}.step: every step with t > 0 draws noise; pass options.generator`);
  }
  return generator.randn([len]);
}

function rowCoefficients(
  alphasCumprod: Float32Array,
  x: Float32Array,
  noise: Float32Array,
  timesteps: readonly number[],
  what: string,
): [Float32Array, Float32Array, number] {
  if (x.length !== noise.length) {
    throw new RangeError(`${NAME}.${what}: lengths differ (${x.length} vs ${noise.length})`);
  }
  if (timesteps.length === 0 || x.length % timesteps.length !== 0) {
    throw new RangeError(
      `${NAME}.${what}: ${timesteps.length} timesteps do not split ${x.length} values into rows`,
    );
  }
  const sa = new Float32Array(timesteps.length);
  const sb = new Float32Array(timesteps.length);
  timesteps.forEach((t, r) => {
    const a = Number.isInteger(t) ? alphasCumprod[t] : undefined;
    if (a === undefined) {
      throw new RangeError(
        `${NAME}.${what}: timestep ${t} is not an integer in 0..${alphasCumprod.length - 1}`,
      );
    }
    sa[r] = Math.sqrt(a);
    sb[r] = Math.sqrt(f32(1 - a));
  });
  return [sa, sb, x.length / timesteps.length];
}
