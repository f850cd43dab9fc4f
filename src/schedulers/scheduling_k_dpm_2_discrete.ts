/**
 * KDPM2DiscreteScheduler — diffusers 0.23.0 `scheduling_k_dpm_2_discrete.py` (k-diffusion's `sample_dpm_2`,
 * DPM-Solver-2 with the midpoint in log-sigma).
 *
 * Order 2: `timesteps` holds 2n-1 entries [t0, ti1, t1, ti2, t2, ...] where ti are the (non-integer) timesteps
 * of the interpolated sigmas exp((log s(i-1) + log s(i)) / 2); the first call of a pair steps to the midpoint
 * and stores the sample, the second completes the step from the stored sample.
 * Numerics follow the reference dtypes: float32 torch tables, numpy float32 timesteps (float64, rounded, with
 * use_karras_sigmas), float32 `sigmas` / `sigmasInterpol` built with torch float32 log / lerp / exp, the
 * interpolated timesteps from `_sigma_to_t` evaluated on torch float32 tensors, and float32 per-step scalars
 * and elementwise ops (Math.fround).
 */
import { NOISE_SCHEDULE_DEFAULTS } from "./beta_schedules.js";
import {
  addNoiseBySigma,
  indexForTimestep,
  predictOriginalSample,
  repeatInner,
  scaleBySigma,
  sigmaSchedule,
} from "./k_diffusion_common.js";
import type { Scheduler, SchedulerConfig, SchedulerOutput, SchedulerStepOptions } from "./scheduler_utils.js";
import {
  checkModelOutput,
  checkNumInferenceSteps,
  configBool,
  parseScheduleConfig,
} from "./scheduler_utils.js";
import { SigmaSchedulerBase } from "./sigma_scheduler_base.js";
import { sigmaToT, type TimestepSpacing } from "./timestep_spacing.js";
import { f32, lerpHalfF32, rint, torchExpF32, torchLogF32 } from "./torch_numerics.js";

const NAME = "KDPM2DiscreteScheduler";

export type KDPM2PredictionType = "epsilon" | "v_prediction";
export type KDPM2TimestepSpacing = TimestepSpacing;

/** diffusers 0.23.0 `KDPM2DiscreteScheduler.__init__` defaults. */
export const KDPM2_DISCRETE_DEFAULT_CONFIG = {
  ...NOISE_SCHEDULE_DEFAULTS,
  beta_start: 0.00085,
  beta_end: 0.012,
  use_karras_sigmas: false as boolean | null,
  prediction_type: "epsilon" as string,
  timestep_spacing: "linspace" as string,
  steps_offset: 0,
};

export type KDPM2DiscreteConfig = typeof KDPM2_DISCRETE_DEFAULT_CONFIG & SchedulerConfig;

function parseConfig(cfg: KDPM2DiscreteConfig) {
  return {
    ...parseScheduleConfig(NAME, cfg, ["epsilon", "v_prediction"] as const, 2),
    useKarras: configBool(NAME, "use_karras_sigmas", cfg.use_karras_sigmas, true),
  };
}

export class KDPM2DiscreteScheduler
  extends SigmaSchedulerBase<KDPM2DiscreteConfig, ReturnType<typeof parseConfig>>
  implements Scheduler
{
  // sigmas: 2n+2 float32 entries cat(s[:1], s[1:] twice each, s[-1:]) of s = [s0 .. s(n-1), 0]; timesteps: 2n-1
  // entries [t0, ti1, t1, ...] with interpolated ti (float32 values, float64 with use_karras_sigmas).
  readonly order = 2;
  /** float32 interpolated sigmas, same layout as `sigmas` (entry 0 is NaN, as in the reference). */
  sigmasInterpol: Float32Array = new Float32Array(0);
  /** log of the training sigmas (numpy float32 log), diffusers `log_sigmas`. */
  readonly logSigmas: Float32Array;

  private indexCounter = new Map<number, number>();
  private storedSample: Float32Array | null = null;

  static fromConfig(config?: SchedulerConfig): KDPM2DiscreteScheduler {
    return new KDPM2DiscreteScheduler(config);
  }

  constructor(config?: SchedulerConfig) {
    super(NAME, KDPM2_DISCRETE_DEFAULT_CONFIG, config, parseConfig);
    this.logSigmas = this.tables.logSigmas;
    // diffusers' __init__ calls set_timesteps(num_train_timesteps); numInferenceSteps stays unset here so that
    // step() before setTimesteps() is reported
    this.buildSchedule(this.p.numTrain);
  }

  /** True when the next step is the first half (to the interpolated sigma) of a pair. */
  get stateInFirstOrder(): boolean {
    return this.storedSample === null;
  }

  setTimesteps(numInferenceSteps: number): void {
    checkNumInferenceSteps(NAME, numInferenceSteps, this.p.numTrain);
    this.buildSchedule(numInferenceSteps);
    this.numInferenceSteps = numInferenceSteps;
  }

  private buildSchedule(n: number): void {
    const karrasTimestep = (s: number) => rint(sigmaToT(s, this.logSigmas)); // int64 timesteps with Karras
    const { timesteps, sigmas } = sigmaSchedule(this.p, n, this.tables, { karrasTimestep });
    const s32 = Float32Array.from([...sigmas, 0]);
    const len = s32.length;
    // sigmas.log().lerp(sigmas.roll(1).log(), 0.5).exp()
    const logS = s32.map(torchLogF32);
    const interp = new Float32Array(len);
    for (let i = 0; i < len; i++) {
      interp[i] = torchExpF32(lerpHalfF32(logS[i] as number, logS[(i + len - 1) % len] as number));
    }
    this.sigmas = repeatInner(s32);
    this.sigmasInterpol = repeatInner(interp);
    const ts: number[] = [timesteps[0] as number];
    for (let i = 1; i < len - 1; i++) {
      ts.push(sigmaToT(interp[i] as number, this.logSigmas, "torch"), timesteps[i] as number);
    }
    this.timesteps = ts;
    this.storedSample = null;
    this.stepIndexValue = undefined;
    this.indexCounter = new Map();
  }

  /** sample / sqrt(sigma^2 + 1) with the interpolated sigma in the second half of a pair, float32. */
  scaleModelInput(sample: Float32Array, timestep: number): Float32Array {
    const si = this.ensureStepIndex(timestep, "scaleModelInput");
    const sigma = (this.stateInFirstOrder ? this.sigmas[si] : this.sigmasInterpol[si]) as number;
    return scaleBySigma(sample, sigma);
  }

  /** One half of a DPM-2 pair (no randomness: `options` is accepted for the common interface and ignored). */
  step(
    modelOutput: Float32Array,
    timestep: number,
    sample: Float32Array,
    _options: SchedulerStepOptions = {},
  ): SchedulerOutput {
    const si = this.ensureStepIndex(timestep, "step");
    checkModelOutput(NAME, modelOutput, sample);
    this.indexCounter.set(timestep, (this.indexCounter.get(timestep) ?? 0) + 1);
    const first = this.stateInFirstOrder;
    const sigma = this.sigmas[first ? si : si - 1] as number; // sigma_hat == sigma (gamma = 0)
    const sigmaInterpol = this.sigmasInterpol[first ? si + 1 : si] as number;
    const sigmaNext = this.sigmas[first ? si + 1 : si] as number;
    const sigmaInput = first ? sigma : sigmaInterpol;
    const n = sample.length;

    const pred = predictOriginalSample(this.p.predictionType, modelOutput, sample, sigmaInput);

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
      // second half: the derivative at the midpoint applied from the stored sample
      const dt = f32(sigmaNext - sigma);
      const x0 = this.storedSample as Float32Array;
      for (let i = 0; i < n; i++) {
        const derivative = f32(f32((sample[i] as number) - (pred[i] as number)) / sigmaInterpol);
        prev[i] = (x0[i] as number) + f32(derivative * dt);
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
    return addNoiseBySigma(NAME, originalSamples, noise, timesteps, (t) => {
      const k = indexForTimestep(this.timesteps, t, this.indexCounter);
      if (k === undefined)
        throw new RangeError(`${NAME}.addNoise: timestep ${t} has no such occurrence in the schedule`);
      return this.sigmas[k] as number;
    });
  }
}
