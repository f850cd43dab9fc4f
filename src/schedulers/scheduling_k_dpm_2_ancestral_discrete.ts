/**
 * KDPM2AncestralDiscreteScheduler — diffusers 0.23.0 `scheduling_k_dpm_2_ancestral_discrete.py` (k-diffusion's
 * `sample_dpm_2_ancestral`).
 *
 * Order 2: `timesteps` holds 2n-1 entries [t0, ti0, t1, ti1, ...] where ti are the (non-integer) timesteps of
 * the interpolated sigmas exp((log s(i) + log sigma_down(i)) / 2); the first call of a pair steps to the
 * midpoint and stores the sample, the second completes the step to sigma_down from the stored sample and adds
 * sigma_up * noise. Every call draws `randn(sample.length)`: from `options.generator`, else from torch's global
 * generator (`defaultGenerator`), as diffusers does.
 * Numerics follow the reference dtypes: float32 torch tables, numpy float32 timesteps (float64, rounded, with
 * use_karras_sigmas), float32 `sigmas` / `sigmasInterpol` built with torch float32 log / lerp / exp, the
 * interpolated timesteps from `_sigma_to_t` evaluated on torch float32 tensors, and float32 per-step scalars
 * and elementwise ops (Math.fround). The float32 arithmetic matters: for some schedules (n=2 with the x4 config)
 * sigma_down(0) is exactly 0 in float32, torch.lerp(log s, -inf, 0.5) is NaN, and so are the interpolated
 * timestep and every later sample; this port reproduces that (and then reports the NaN model output).
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
  stepNoise,
} from "./scheduler_utils.js";
import { SigmaSchedulerBase } from "./sigma_scheduler_base.js";
import { sigmaToT, type TimestepSpacing } from "./timestep_spacing.js";
import { f32, lerpHalfF32, rint, torchExpF32, torchLogF32 } from "./torch_numerics.js";

const NAME = "KDPM2AncestralDiscreteScheduler";

export type KDPM2AncestralPredictionType = "epsilon" | "v_prediction";
export type KDPM2AncestralTimestepSpacing = TimestepSpacing;

/** diffusers 0.23.0 `KDPM2AncestralDiscreteScheduler.__init__` defaults. */
export const KDPM2_ANCESTRAL_DISCRETE_DEFAULT_CONFIG = {
  ...NOISE_SCHEDULE_DEFAULTS,
  beta_start: 0.00085,
  beta_end: 0.012,
  use_karras_sigmas: false as boolean | null,
  prediction_type: "epsilon" as string,
  timestep_spacing: "linspace" as string,
  steps_offset: 0,
};

export type KDPM2AncestralDiscreteConfig = typeof KDPM2_ANCESTRAL_DISCRETE_DEFAULT_CONFIG & SchedulerConfig;

function parseConfig(cfg: KDPM2AncestralDiscreteConfig) {
  return {
    ...parseScheduleConfig(NAME, cfg, ["epsilon", "v_prediction"] as const, 2),
    useKarras: configBool(NAME, "use_karras_sigmas", cfg.use_karras_sigmas, true),
  };
}

export class KDPM2AncestralDiscreteScheduler
  extends SigmaSchedulerBase<KDPM2AncestralDiscreteConfig, ReturnType<typeof parseConfig>>
  implements Scheduler
{
  // sigmas: 2n+2 float32 entries cat(s[:1], s[1:] twice each, s[-1:]) of s = [s0 .. s(n-1), 0]; timesteps: 2n-1
  // entries [t0, ti0, t1, ...] with interpolated ti (float32 values).
  readonly order = 2;
  /** float32 interpolated sigmas, same layout as `sigmas` (the last two base entries are 0). */
  sigmasInterpol: Float32Array = new Float32Array(0);
  /** float32 ancestral noise scales, same layout as `sigmas` (the last base entry is NaN, as in the reference). */
  sigmasUp: Float32Array = new Float32Array(0);
  /** float32 deterministic targets, same layout as `sigmas`. */
  sigmasDown: Float32Array = new Float32Array(0);
  /** log of the training sigmas (numpy float32 log), diffusers `log_sigmas`. */
  readonly logSigmas: Float32Array;

  private indexCounter = new Map<number, number>();
  private storedSample: Float32Array | null = null;

  static fromConfig(config?: SchedulerConfig): KDPM2AncestralDiscreteScheduler {
    return new KDPM2AncestralDiscreteScheduler(config);
  }

  constructor(config?: SchedulerConfig) {
    super(NAME, KDPM2_ANCESTRAL_DISCRETE_DEFAULT_CONFIG, config, parseConfig);
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
      ts.push(sigmaToT(interp[i - 1] as number, this.logSigmas, "torch"), timesteps[i] as number);
    }
    this.timesteps = ts;
    this.storedSample = null;
    this.stepIndexValue = undefined;
    this.indexCounter = new Map();
  }

  /** sample / sqrt(sigma^2 + 1) with the interpolated sigma in the second half of a pair, float32. */
  scaleModelInput(sample: Float32Array, timestep: number): Float32Array {
    const si = this.ensureStepIndex(timestep, "scaleModelInput");
    const sigma = (this.stateInFirstOrder ? this.sigmas[si] : this.sigmasInterpol[si - 1]) as number;
    return scaleBySigma(sample, sigma);
  }

  /** One half of a DPM-2 ancestral pair; draws `randn(sample.length)` from `options.generator` on every call. */
  step(
    modelOutput: Float32Array,
    timestep: number,
    sample: Float32Array,
    options: SchedulerStepOptions = {},
  ): SchedulerOutput {
    const si = this.ensureStepIndex(timestep, "step");
    checkModelOutput(NAME, modelOutput, sample);
    this.indexCounter.set(timestep, (this.indexCounter.get(timestep) ?? 0) + 1);
    const first = this.stateInFirstOrder;
    const k = first ? si : si - 1;
    const sigma = this.sigmas[k] as number; // sigma_hat == sigma (gamma = 0)
    const sigmaInterpol = this.sigmasInterpol[k] as number;
    const sigmaUp = this.sigmasUp[k] as number;
    const sigmaDown = this.sigmasDown[si - 1] as number; // used by the second half only
    const sigmaInput = first ? sigma : sigmaInterpol;
    const n = sample.length;
    const noise = stepNoise(options.generator, n);

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
    return addNoiseBySigma(NAME, originalSamples, noise, timesteps, (t) => {
      const k = indexForTimestep(this.timesteps, t, this.indexCounter);
      if (k === undefined)
        throw new RangeError(`${NAME}.addNoise: timestep ${t} has no such occurrence in the schedule`);
      return this.sigmas[k] as number;
    });
  }
}
