/**
 * DDPMScheduler — diffusers 0.23.0 `scheduling_ddpm.py` (Ho et al., "Denoising Diffusion Probabilistic Models").
 * Also the x4 upscaler's `low_res_scheduler`: its tables and `addNoise` (the noise_level step) are float32 exactly
 * as torch computes them (float32 linspace, cumprod with a double accumulator, float32 sqrt and products).
 *
 * Numerics follow the reference dtypes: timesteps are numpy int64 values; every per-step scalar is a float32 0-dim
 * tensor in diffusers and is rounded to float32 here; elementwise ops are float32 ops, each rounded (Math.fround).
 */
import { NOISE_SCHEDULE_DEFAULTS, noiseSchedule } from "./beta_schedules.js";
import {
  addNoiseByAlphas,
  alphaProdAt,
  clipPredictedSample,
  parseSampleClipping,
  velocityByAlphas,
} from "./ddpm_common.js";
import type { Scheduler, SchedulerConfig, SchedulerOutput, SchedulerStepOptions } from "./scheduler_utils.js";
import {
  batchSizeOf,
  checkFinite,
  checkNumInferenceSteps,
  configOneOf,
  mergeConfig,
  parseScheduleConfig,
  stepNoise,
} from "./scheduler_utils.js";
import { spacedTimesteps, type TimestepSpacing } from "./timestep_spacing.js";
import { f32 } from "./torch_numerics.js";

const NAME = "DDPMScheduler";

export type DDPMBetaSchedule = "linear" | "scaled_linear" | "squaredcos_cap_v2" | "sigmoid";
export type DDPMPredictionType = "epsilon" | "sample" | "v_prediction";
export type DDPMTimestepSpacing = TimestepSpacing;
export type DDPMVarianceType =
  | "fixed_small"
  | "fixed_small_log"
  | "fixed_large"
  | "fixed_large_log"
  | "learned"
  | "learned_range";

/** diffusers 0.23.0 `DDPMScheduler.__init__` defaults. */
export const DDPM_DEFAULT_CONFIG = {
  ...NOISE_SCHEDULE_DEFAULTS,
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

const VARIANCE_TYPES = [
  "fixed_small",
  "fixed_small_log",
  "fixed_large",
  "fixed_large_log",
  "learned",
  "learned_range",
] as const;

function parseConfig(cfg: DDPMConfig) {
  return {
    ...parseScheduleConfig(NAME, cfg, ["epsilon", "sample", "v_prediction"] as const),
    ...parseSampleClipping(NAME, cfg),
  };
}

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

  private readonly p: ReturnType<typeof parseConfig>;

  static fromConfig(config?: SchedulerConfig): DDPMScheduler {
    return new DDPMScheduler(config);
  }

  constructor(config?: SchedulerConfig) {
    const c = mergeConfig(DDPM_DEFAULT_CONFIG as DDPMConfig, config);
    this.config = Object.freeze(c);
    this.varianceType = configOneOf(NAME, "variance_type", c.variance_type, VARIANCE_TYPES);
    this.p = parseConfig(c);
    const n = this.p.numTrain;
    const schedules = ["linear", "scaled_linear", "squaredcos_cap_v2", "sigmoid"] as const;
    const tables = noiseSchedule(NAME, c, n, { schedules });
    ({ betas: this.betas, alphas: this.alphas, alphasCumprod: this.alphasCumprod } = tables);
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
    const { numTrain: N, spacing, stepsOffset } = this.p;
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
    this._numInferenceSteps = numInferenceSteps;
    this.customTimesteps = false;
    this._timesteps = spacedTimesteps(spacing, N, numInferenceSteps, stepsOffset, "int64");
  }

  /** diffusers `previous_timestep`: the next custom timestep (-1 after the last), else t - N // n. */
  previousTimestep(timestep: number): number {
    if (this.customTimesteps) {
      const i = this._timesteps.indexOf(timestep);
      return i === this._timesteps.length - 1 ? -1 : (this._timesteps[i + 1] as number);
    }
    const n = this._numInferenceSteps ?? this.p.numTrain;
    return timestep - Math.floor(this.p.numTrain / n);
  }

  private alphaAt(t: number): number {
    return alphaProdAt(NAME, this.alphasCumprod, t);
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
    const batchSize = batchSizeOf(NAME, options.batchSize, len);
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
      if (this.p.predictionType === "epsilon") x0[i] = f32(f32(x - f32(sb * m)) / sa);
      else if (this.p.predictionType === "sample") x0[i] = m;
      else x0[i] = f32(f32(sa * x) - f32(sb * m));
    }
    x0 = clipPredictedSample(NAME, x0, this.p, batchSize);

    const x0Coeff = f32(f32(f32(Math.sqrt(ap)) * curBeta) / b);
    const xCoeff = f32(f32(f32(Math.sqrt(curAlpha)) * bp) / b);
    const prev = new Float32Array(len);
    for (let i = 0; i < len; i++) {
      prev[i] = f32(f32(x0Coeff * (x0[i] as number)) + f32(xCoeff * (sample[i] as number)));
    }

    if (t > 0) {
      const noise = stepNoise(options.generator, len);
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
    return addNoiseByAlphas(NAME, this.alphasCumprod, originalSamples, noise, timesteps);
  }

  /** diffusers `get_velocity`: sqrt(a_t) * noise - sqrt(1 - a_t) * sample, one timestep per row. */
  getVelocity(sample: Float32Array, noise: Float32Array, timesteps: readonly number[]): Float32Array {
    return velocityByAlphas(NAME, this.alphasCumprod, sample, noise, timesteps);
  }
}
