/**
 * DDIMScheduler — diffusers 0.23.0 `scheduling_ddim.py` (Song et al., "Denoising Diffusion Implicit Models").
 *
 * Numerics follow the reference dtypes: the beta / alpha tables are float32 exactly as torch builds them
 * (float32 linspace, cumprod with a double accumulator), timesteps are numpy int64 values, and every per-step scalar
 * (alpha_prod_t ** 0.5, ...) is a float32 0-dim tensor in diffusers, so it is rounded to float32 here too.
 * Elementwise ops are float32 ops in torch (each rounded), reproduced with Math.fround.
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
  checkModelOutput,
  checkNumInferenceSteps,
  configBool,
  mergeConfig,
  parseScheduleConfig,
  stepNoise,
} from "./scheduler_utils.js";
import { spacedTimesteps, type TimestepSpacing } from "./timestep_spacing.js";
import { f32 } from "./torch_numerics.js";

const NAME = "DDIMScheduler";

export type DDIMBetaSchedule = "linear" | "scaled_linear" | "squaredcos_cap_v2";
export type DDIMPredictionType = "epsilon" | "sample" | "v_prediction";
export type DDIMTimestepSpacing = TimestepSpacing;

/** diffusers 0.23.0 `DDIMScheduler.__init__` defaults. */
export const DDIM_DEFAULT_CONFIG = {
  ...NOISE_SCHEDULE_DEFAULTS,
  clip_sample: true,
  set_alpha_to_one: true,
  steps_offset: 0,
  prediction_type: "epsilon" as string,
  thresholding: false,
  dynamic_thresholding_ratio: 0.995,
  clip_sample_range: 1.0,
  sample_max_value: 1.0,
  timestep_spacing: "leading" as string,
  rescale_betas_zero_snr: false,
};

export type DDIMConfig = typeof DDIM_DEFAULT_CONFIG & SchedulerConfig;

export interface DDIMStepOptions extends SchedulerStepOptions {
  /** Recompute the epsilon from the clipped x0 (diffusers `use_clipped_model_output`). */
  useClippedModelOutput?: boolean;
  /** Noise for eta > 0 instead of drawing it from `generator` or the default generator (`variance_noise`). */
  varianceNoise?: Float32Array;
  /** Batch size of the flat sample; only dynamic thresholding needs it (per-sample quantile). Default 1. */
  batchSize?: number;
}

export interface DDIMSchedulerOutput extends SchedulerOutput {
  predOriginalSample: Float32Array;
}

function parseConfig(cfg: DDIMConfig) {
  return {
    ...parseScheduleConfig(NAME, cfg, ["epsilon", "sample", "v_prediction"] as const),
    ...parseSampleClipping(NAME, cfg),
  };
}

export class DDIMScheduler implements Scheduler {
  readonly config: Readonly<DDIMConfig>;
  readonly order = 1;
  readonly initNoiseSigma = 1.0;
  readonly betas: Float32Array;
  readonly alphas: Float32Array;
  readonly alphasCumprod: Float32Array;
  readonly finalAlphaCumprod: number;
  private _timesteps: number[];
  private _numInferenceSteps: number | undefined = undefined;

  private readonly p: ReturnType<typeof parseConfig>;

  static fromConfig(config?: SchedulerConfig): DDIMScheduler {
    return new DDIMScheduler(config);
  }

  constructor(config?: SchedulerConfig) {
    const c = mergeConfig(DDIM_DEFAULT_CONFIG as DDIMConfig, config);
    this.config = Object.freeze(c);
    this.p = parseConfig(c);
    const n = this.p.numTrain;
    const setAlphaToOne = configBool(NAME, "set_alpha_to_one", c.set_alpha_to_one);
    const rescaleZeroSnr = configBool(NAME, "rescale_betas_zero_snr", c.rescale_betas_zero_snr);
    const tables = noiseSchedule(NAME, c, n, { rescaleZeroSnr });
    ({ betas: this.betas, alphas: this.alphas, alphasCumprod: this.alphasCumprod } = tables);
    this.finalAlphaCumprod = setAlphaToOne ? 1.0 : (this.alphasCumprod[0] as number);
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

  setTimesteps(numInferenceSteps: number): void {
    const { numTrain, spacing, stepsOffset } = this.p;
    checkNumInferenceSteps(NAME, numInferenceSteps, numTrain);
    this._numInferenceSteps = numInferenceSteps;
    this._timesteps = spacedTimesteps(spacing, numTrain, numInferenceSteps, stepsOffset, "int64");
  }

  private alphaAt(t: number): number {
    return alphaProdAt(NAME, this.alphasCumprod, t);
  }

  /** diffusers `_get_variance` (float32 scalars). */
  private getVariance(timestep: number, prevTimestep: number): number {
    const a = this.alphaAt(timestep);
    const ap = prevTimestep >= 0 ? this.alphaAt(prevTimestep) : this.finalAlphaCumprod;
    const b = f32(1 - a);
    const bp = f32(1 - ap);
    return f32(f32(bp / b) * f32(1 - f32(a / ap)));
  }

  step(
    modelOutput: Float32Array,
    timestep: number,
    sample: Float32Array,
    options: DDIMStepOptions = {},
  ): DDIMSchedulerOutput {
    const n = this._numInferenceSteps;
    if (n === undefined) {
      throw new Error(`${NAME}.step: numInferenceSteps is not set; call setTimesteps() before step()`);
    }
    if (!this._timesteps.includes(timestep)) {
      throw new RangeError(
        `${NAME}.step: timestep ${timestep} is not in the schedule (${this._timesteps.join(", ")})`,
      );
    }
    checkModelOutput(NAME, modelOutput, sample);
    const eta = options.eta ?? 0;
    if (!Number.isFinite(eta) || eta < 0) throw new RangeError(`${NAME}.step: eta must be >= 0, got ${eta}`);

    const prevTimestep = timestep - Math.floor(this.p.numTrain / n);
    const a = this.alphaAt(timestep);
    const ap = prevTimestep >= 0 ? this.alphaAt(prevTimestep) : this.finalAlphaCumprod;
    const b = f32(1 - a);
    const sa = f32(Math.sqrt(a));
    const sb = f32(Math.sqrt(b));
    const len = sample.length;

    let x0: Float32Array = new Float32Array(len);
    let epsPred = new Float32Array(len);
    for (let i = 0; i < len; i++) {
      const m = modelOutput[i] as number;
      const x = sample[i] as number;
      if (this.p.predictionType === "epsilon") {
        x0[i] = f32(f32(x - f32(sb * m)) / sa);
        epsPred[i] = m;
      } else if (this.p.predictionType === "sample") {
        x0[i] = m;
        epsPred[i] = f32(f32(x - f32(sa * m)) / sb);
      } else {
        x0[i] = f32(f32(sa * x) - f32(sb * m));
        epsPred[i] = f32(f32(sa * m) + f32(sb * x));
      }
    }

    x0 = clipPredictedSample(NAME, x0, this.p, options.batchSize);

    const variance = this.getVariance(timestep, prevTimestep);
    const std = f32(f32(eta) * f32(Math.sqrt(variance)));

    if (options.useClippedModelOutput) {
      epsPred = new Float32Array(len);
      for (let i = 0; i < len; i++) {
        epsPred[i] = f32(f32((sample[i] as number) - f32(sa * (x0[i] as number))) / sb);
      }
    }

    const dirCoeff = f32(Math.sqrt(f32(f32(1 - ap) - f32(std * std))));
    const sap = f32(Math.sqrt(ap));
    const prev = new Float32Array(len);
    for (let i = 0; i < len; i++) {
      prev[i] = f32(f32(sap * (x0[i] as number)) + f32(dirCoeff * (epsPred[i] as number)));
    }

    if (eta > 0) {
      let noise = options.varianceNoise;
      if (noise !== undefined && options.generator !== undefined) {
        throw new Error(`${NAME}.step: pass either generator or varianceNoise, not both`);
      }
      if (noise === undefined) noise = stepNoise(options.generator, len);
      if (noise.length !== len) {
        throw new RangeError(`${NAME}.step: varianceNoise length ${noise.length} != sample length ${len}`);
      }
      for (let i = 0; i < len; i++) prev[i] = f32((prev[i] as number) + f32(std * (noise[i] as number)));
    }
    return { prevSample: prev, predOriginalSample: x0 };
  }

  addNoise(originalSamples: Float32Array, noise: Float32Array, timesteps: readonly number[]): Float32Array {
    return addNoiseByAlphas(NAME, this.alphasCumprod, originalSamples, noise, timesteps);
  }

  /** diffusers `get_velocity`: sqrt(a_t) * noise - sqrt(1 - a_t) * sample, per-row timesteps. */
  getVelocity(sample: Float32Array, noise: Float32Array, timesteps: readonly number[]): Float32Array {
    return velocityByAlphas(NAME, this.alphasCumprod, sample, noise, timesteps);
  }
}
