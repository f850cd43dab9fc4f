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
 * `step` draws `randn(sample.length)` at every call even when `sChurn` is 0, as diffusers does (the draw has no
 * effect on the result then): from `options.generator`, else from torch's global generator (`defaultGenerator`).
 */
import { NOISE_SCHEDULE_DEFAULTS } from "./beta_schedules.js";
import {
  addNoiseBySigma,
  initialSchedule,
  predictOriginalSample,
  scaleBySigma,
  sigmaSchedule,
} from "./k_diffusion_common.js";
import { npLogF32 } from "./numpy_numerics.js";
import type { Scheduler, SchedulerConfig, SchedulerOutput, SchedulerStepOptions } from "./scheduler_utils.js";
import {
  checkModelOutput,
  checkNumInferenceSteps,
  configBool,
  configOneOf,
  parseScheduleConfig,
  stepNoise,
  uniqueIndexOf,
} from "./scheduler_utils.js";
import { SigmaSchedulerBase } from "./sigma_scheduler_base.js";
import type { TimestepSpacing } from "./timestep_spacing.js";
import { f32, torchExpF32, torchLinspaceF32 } from "./torch_numerics.js";

const NAME = "EulerDiscreteScheduler";

export type EulerBetaSchedule = "linear" | "scaled_linear" | "squaredcos_cap_v2";
export type EulerPredictionType = "epsilon" | "v_prediction" | "sample" | "original_sample";
export type EulerTimestepSpacing = TimestepSpacing;
export type EulerInterpolationType = "linear" | "log_linear";

/** diffusers 0.23.0 `EulerDiscreteScheduler.__init__` defaults. */
export const EULER_DISCRETE_DEFAULT_CONFIG = {
  ...NOISE_SCHEDULE_DEFAULTS,
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

const PREDICTIONS = ["epsilon", "v_prediction", "sample", "original_sample"] as const;

function parseConfig(cfg: EulerDiscreteConfig) {
  return {
    ...parseScheduleConfig(NAME, cfg, PREDICTIONS),
    interpolation: configOneOf(NAME, "interpolation_type", cfg.interpolation_type, [
      "linear",
      "log_linear",
    ] as const),
    useKarras: configBool(NAME, "use_karras_sigmas", cfg.use_karras_sigmas, true),
  };
}

export class EulerDiscreteScheduler
  extends SigmaSchedulerBase<EulerDiscreteConfig, ReturnType<typeof parseConfig>>
  implements Scheduler
{
  // sigmas: one float32 inference sigma per timestep plus the final 0; timesteps: float32 values (float64 with
  // use_karras_sigmas), as diffusers' `scheduler.timesteps`.
  readonly order = 1;

  static fromConfig(config?: SchedulerConfig): EulerDiscreteScheduler {
    return new EulerDiscreteScheduler(config);
  }

  constructor(config?: SchedulerConfig) {
    super(NAME, EULER_DISCRETE_DEFAULT_CONFIG, config, parseConfig);
    ({ sigmas: this.sigmas, timesteps: this.timesteps } = initialSchedule(this.tables));
  }

  /** Index into `sigmas` of the next step (undefined until the first scaleModelInput / step). */
  setTimesteps(numInferenceSteps: number): void {
    checkNumInferenceSteps(NAME, numInferenceSteps, this.p.numTrain);
    const n = numInferenceSteps;
    let logLinear: number[] | undefined;
    if (this.p.interpolation === "log_linear") {
      // torch.linspace(log(sigmas[-1]), log(sigmas[0]), n + 1).exp(), float32 (log_sigmas are numpy's)
      const table = this.tables.trainSigmas;
      const hi = npLogF32(table[table.length - 1] as number);
      const lo = npLogF32(table[0] as number);
      logLinear = Array.from(torchLinspaceF32(hi, lo, n + 1), torchExpF32);
    }
    const { timesteps, sigmas } = sigmaSchedule(this.p, n, this.tables, { sigmas: logLinear });
    this.sigmas = Float32Array.from([...sigmas, 0]);
    this.timesteps = timesteps;
    this.numInferenceSteps = n;
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
    options: EulerDiscreteStepOptions = {},
  ): EulerDiscreteSchedulerOutput {
    const si = this.ensureStepIndex(timestep, "step");
    checkModelOutput(NAME, modelOutput, sample);
    const sChurn = options.sChurn ?? 0;
    const sTmin = options.sTmin ?? 0;
    const sTmax = options.sTmax ?? Number.POSITIVE_INFINITY;
    const sNoise = options.sNoise ?? 1;
    const sigma = this.sigmas[si] as number;
    const gamma =
      f32(sTmin) <= sigma && sigma <= f32(sTmax)
        ? Math.min(sChurn / (this.sigmas.length - 1), 2 ** 0.5 - 1)
        : 0;

    // diffusers draws randn(model_output.shape) on every step, whether or not gamma > 0 (from torch's global
    // generator when none is passed)
    const noise = stepNoise(options.generator, sample.length);
    const sigmaHat = f32(sigma * f32(gamma + 1));

    const n = sample.length;
    let x = sample;
    if (gamma > 0) {
      const amp = f32(Math.sqrt(f32(f32(sigmaHat * sigmaHat) - f32(sigma * sigma))));
      const sn = f32(sNoise);
      x = new Float32Array(n);
      for (let i = 0; i < n; i++) x[i] = (sample[i] as number) + f32(f32((noise[i] as number) * sn) * amp);
    }
    // x0: the epsilon term uses sigma_hat, the v_prediction term sigma (as diffusers)
    const pred = predictOriginalSample(this.p.predictionType, modelOutput, x, sigma, sigmaHat);

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
    return addNoiseBySigma(NAME, originalSamples, noise, timesteps, (t) => {
      return this.sigmas[uniqueIndexOf(NAME, this.timesteps, t)] as number;
    });
  }
}
