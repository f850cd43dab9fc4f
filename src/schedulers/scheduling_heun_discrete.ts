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
import { NOISE_SCHEDULE_DEFAULTS } from "./beta_schedules.js";
import {
  addNoiseBySigma,
  indexForTimestep,
  predictOriginalSample,
  scaleBySigma,
  sigmaSchedule,
} from "./k_diffusion_common.js";
import type { Scheduler, SchedulerConfig, SchedulerOutput, SchedulerStepOptions } from "./scheduler_utils.js";
import {
  checkModelOutput,
  checkNumInferenceSteps,
  configBool,
  configFinite,
  parseScheduleConfig,
} from "./scheduler_utils.js";
import { SigmaSchedulerBase } from "./sigma_scheduler_base.js";
import type { TimestepSpacing } from "./timestep_spacing.js";
import { f32 } from "./torch_numerics.js";

const NAME = "HeunDiscreteScheduler";
/** Heun also accepts the "exp" beta schedule. */
const HEUN_SCHEDULES = ["linear", "scaled_linear", "squaredcos_cap_v2", "exp"] as const;

export type HeunPredictionType = "epsilon" | "v_prediction" | "sample";
export type HeunTimestepSpacing = TimestepSpacing;

/** diffusers 0.23.0 `HeunDiscreteScheduler.__init__` defaults. */
export const HEUN_DISCRETE_DEFAULT_CONFIG = {
  ...NOISE_SCHEDULE_DEFAULTS,
  beta_start: 0.00085,
  beta_end: 0.012,
  prediction_type: "epsilon" as string,
  use_karras_sigmas: false as boolean | null,
  clip_sample: false as boolean | null,
  clip_sample_range: 1,
  timestep_spacing: "linspace" as string,
  steps_offset: 0,
};

export type HeunDiscreteConfig = typeof HEUN_DISCRETE_DEFAULT_CONFIG & SchedulerConfig;

function parseConfig(cfg: HeunDiscreteConfig) {
  return {
    ...parseScheduleConfig(NAME, cfg, ["epsilon", "v_prediction", "sample"] as const),
    useKarras: configBool(NAME, "use_karras_sigmas", cfg.use_karras_sigmas, true),
    clipSample: configBool(NAME, "clip_sample", cfg.clip_sample, true),
    clipSampleRange: configFinite(NAME, "clip_sample_range", cfg.clip_sample_range),
  };
}

export class HeunDiscreteScheduler
  extends SigmaSchedulerBase<HeunDiscreteConfig, ReturnType<typeof parseConfig>>
  implements Scheduler
{
  // sigmas: 2n float32 entries [s0, s1, s1, ..., s(n-1), s(n-1), 0]; timesteps: 2n-1 entries [t0, t1, t1, ...]
  // (float32 values, float64 with use_karras_sigmas).
  readonly order = 2;

  private indexCounter = new Map<number, number>();
  private prevDerivative: Float32Array | null = null;
  private dt: number | null = null;
  private storedSample: Float32Array | null = null;

  static fromConfig(config?: SchedulerConfig): HeunDiscreteScheduler {
    return new HeunDiscreteScheduler(config);
  }

  constructor(config?: SchedulerConfig) {
    super(NAME, HEUN_DISCRETE_DEFAULT_CONFIG, config, parseConfig, { schedules: HEUN_SCHEDULES });
    // diffusers' __init__ calls set_timesteps(num_train_timesteps); numInferenceSteps stays unset here so that
    // step() before setTimesteps() is reported
    this.buildSchedule(this.p.numTrain);
  }

  /** True when the next step is the first (Euler) half of a Heun pair. */
  get stateInFirstOrder(): boolean {
    return this.dt === null;
  }

  setTimesteps(numInferenceSteps: number): void {
    checkNumInferenceSteps(NAME, numInferenceSteps, this.p.numTrain);
    this.buildSchedule(numInferenceSteps);
    this.numInferenceSteps = numInferenceSteps;
  }

  private buildSchedule(n: number): void {
    const { timesteps, sigmas } = sigmaSchedule(this.p, n, this.tables);
    // cat(s[:1], s[1:-1].repeat_interleave(2), s[-1:]) of s = [sigmas, 0]; cat(t[:1], t[1:].repeat_interleave(2))
    const s32 = Float32Array.from([...sigmas, 0]);
    const sig: number[] = [s32[0] as number];
    for (let i = 1; i < s32.length - 1; i++) sig.push(s32[i] as number, s32[i] as number);
    sig.push(s32[s32.length - 1] as number);
    this.sigmas = Float32Array.from(sig);
    const ts: number[] = [timesteps[0] as number];
    for (let i = 1; i < timesteps.length; i++) ts.push(timesteps[i] as number, timesteps[i] as number);
    this.timesteps = ts;
    this.prevDerivative = null;
    this.dt = null;
    this.storedSample = null;
    this.stepIndexValue = undefined;
    this.indexCounter = new Map();
  }

  /** sample / sqrt(sigma^2 + 1), float32. */
  scaleModelInput(sample: Float32Array, timestep: number): Float32Array {
    return scaleBySigma(sample, this.sigmas[this.ensureStepIndex(timestep, "scaleModelInput")] as number);
  }

  /** One half of a Heun pair (no randomness: `options` is accepted for the common interface and ignored). */
  step(
    modelOutput: Float32Array,
    timestep: number,
    sample: Float32Array,
    _options: SchedulerStepOptions = {},
  ): SchedulerOutput {
    const si = this.ensureStepIndex(timestep, "step");
    checkModelOutput(NAME, modelOutput, sample);
    const first = this.stateInFirstOrder;
    this.indexCounter.set(timestep, (this.indexCounter.get(timestep) ?? 0) + 1);
    const sigma = this.sigmas[first ? si : si - 1] as number; // sigma_hat == sigma (gamma = 0)
    const sigmaNext = this.sigmas[first ? si + 1 : si] as number;
    const sigmaInput = first ? sigma : sigmaNext;
    const n = sample.length;

    const pred = predictOriginalSample(this.p.predictionType, modelOutput, sample, sigmaInput);
    if (this.p.clipSample) {
      const r = f32(this.p.clipSampleRange);
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
    return addNoiseBySigma(NAME, originalSamples, noise, timesteps, (t) => {
      const k = indexForTimestep(this.timesteps, t, this.indexCounter);
      if (k === undefined)
        throw new RangeError(`${NAME}.addNoise: timestep ${t} has no such occurrence in the schedule`);
      return this.sigmas[k] as number;
    });
  }
}
