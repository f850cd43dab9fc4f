/**
 * EulerAncestralDiscreteScheduler — diffusers 0.23.0 `scheduling_euler_ancestral_discrete.py` (k-diffusion's
 * `sample_euler_ancestral`).
 *
 * Numerics follow the reference dtypes: float32 torch tables (betas, alphas_cumprod, training sigmas), numpy
 * float32/float64 timesteps and `np.interp` sigmas stored as float32, float32 0-dim per-step scalars and float32
 * elementwise ops (reproduced with Math.fround). Every `step` draws `randn(sample.length)`: from
 * `options.generator`, else from torch's global generator (`defaultGenerator`), as diffusers does.
 */
import { NOISE_SCHEDULE_DEFAULTS } from "./beta_schedules.js";
import {
  addNoiseBySigma,
  initialSchedule,
  predictOriginalSample,
  scaleBySigma,
  sigmaSchedule,
} from "./k_diffusion_common.js";
import type { Scheduler, SchedulerConfig, SchedulerOutput, SchedulerStepOptions } from "./scheduler_utils.js";
import {
  checkModelOutput,
  checkNumInferenceSteps,
  parseScheduleConfig,
  stepNoise,
  uniqueIndexOf,
} from "./scheduler_utils.js";
import { SigmaSchedulerBase } from "./sigma_scheduler_base.js";
import type { TimestepSpacing } from "./timestep_spacing.js";
import { f32 } from "./torch_numerics.js";

const NAME = "EulerAncestralDiscreteScheduler";

export type EulerAncestralPredictionType = "epsilon" | "v_prediction";
export type EulerAncestralTimestepSpacing = TimestepSpacing;

/** diffusers 0.23.0 `EulerAncestralDiscreteScheduler.__init__` defaults. */
export const EULER_ANCESTRAL_DISCRETE_DEFAULT_CONFIG = {
  ...NOISE_SCHEDULE_DEFAULTS,
  prediction_type: "epsilon" as string,
  timestep_spacing: "linspace" as string,
  steps_offset: 0,
};

export type EulerAncestralDiscreteConfig = typeof EULER_ANCESTRAL_DISCRETE_DEFAULT_CONFIG & SchedulerConfig;

export interface EulerAncestralDiscreteSchedulerOutput extends SchedulerOutput {
  predOriginalSample: Float32Array;
}

export class EulerAncestralDiscreteScheduler
  extends SigmaSchedulerBase<
    EulerAncestralDiscreteConfig,
    ReturnType<typeof parseScheduleConfig<EulerAncestralPredictionType>>
  >
  implements Scheduler
{
  // sigmas: one float32 inference sigma per timestep plus the final 0; timesteps: float32 values.
  readonly order = 1;

  static fromConfig(config?: SchedulerConfig): EulerAncestralDiscreteScheduler {
    return new EulerAncestralDiscreteScheduler(config);
  }

  constructor(config?: SchedulerConfig) {
    super(NAME, EULER_ANCESTRAL_DISCRETE_DEFAULT_CONFIG, config, (cfg) =>
      parseScheduleConfig(NAME, cfg, ["epsilon", "v_prediction"] as const),
    );
    ({ sigmas: this.sigmas, timesteps: this.timesteps } = initialSchedule(this.tables));
  }

  /** Index into `sigmas` of the next step (undefined until the first scaleModelInput / step). */
  setTimesteps(numInferenceSteps: number): void {
    checkNumInferenceSteps(NAME, numInferenceSteps, this.p.numTrain);
    const { timesteps, sigmas } = sigmaSchedule(this.p, numInferenceSteps, this.tables);
    this.sigmas = Float32Array.from([...sigmas, 0]);
    this.timesteps = timesteps;
    this.numInferenceSteps = numInferenceSteps;
    this.stepIndexValue = undefined;
  }

  /** sample / sqrt(sigma^2 + 1), float32. */
  scaleModelInput(sample: Float32Array, timestep: number): Float32Array {
    return scaleBySigma(sample, this.sigmas[this.ensureStepIndex(timestep, "scaleModelInput")] as number);
  }

  step(
    modelOutput: Float32Array,
    timestep: number,
    sample: Float32Array,
    options: SchedulerStepOptions = {},
  ): EulerAncestralDiscreteSchedulerOutput {
    const si = this.ensureStepIndex(timestep, "step");
    checkModelOutput(NAME, modelOutput, sample);
    const n = sample.length;
    const sigma = this.sigmas[si] as number;
    const pred = predictOriginalSample(this.p.predictionType, modelOutput, sample, sigma);

    // sigma_up = (to^2 * (from^2 - to^2) / from^2) ** 0.5, sigma_down = (to^2 - up^2) ** 0.5, float32 0-dim
    const sigmaTo = this.sigmas[si + 1] as number;
    const to2 = f32(sigmaTo * sigmaTo);
    const from2 = f32(sigma * sigma);
    const sigmaUp = f32(Math.sqrt(f32(f32(to2 * f32(from2 - to2)) / from2)));
    const sigmaDown = f32(Math.sqrt(f32(to2 - f32(sigmaUp * sigmaUp))));
    const dt = f32(sigmaDown - sigma);

    const noise = stepNoise(options.generator, n);
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
    return addNoiseBySigma(NAME, originalSamples, noise, timesteps, (t) => {
      return this.sigmas[uniqueIndexOf(NAME, this.timesteps, t)] as number;
    });
  }
}
