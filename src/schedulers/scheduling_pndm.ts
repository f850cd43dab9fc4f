/**
 * PNDMScheduler — diffusers 0.23.0 `scheduling_pndm.py` (Liu et al., "Pseudo Numerical Methods for Diffusion
 * Models on Manifolds"): four Runge-Kutta (PRK) steps at the start unless `skip_prk_steps`, then linear multistep
 * (PLMS) steps. With `skip_prk_steps` the schedule has n+1 timesteps, the second one repeated.
 *
 * Numerics follow the reference dtypes: float32 tables as torch builds them, numpy int64 timesteps, float32
 * per-step scalars and float32 elementwise ops (each rounded with Math.fround).
 */
import { NOISE_SCHEDULE_DEFAULTS, noiseSchedule } from "./beta_schedules.js";
import { addNoiseByAlphas, alphaProdAt } from "./ddpm_common.js";
import type { Scheduler, SchedulerConfig, SchedulerOutput, SchedulerStepOptions } from "./scheduler_utils.js";
import {
  checkModelOutput,
  checkNumInferenceSteps,
  configBool,
  mergeConfig,
  parseScheduleConfig,
} from "./scheduler_utils.js";
import { spacedTimesteps, type TimestepSpacing } from "./timestep_spacing.js";
import { f32 } from "./torch_numerics.js";

const NAME = "PNDMScheduler";

export type PNDMBetaSchedule = "linear" | "scaled_linear" | "squaredcos_cap_v2";
export type PNDMPredictionType = "epsilon" | "v_prediction";
export type PNDMTimestepSpacing = TimestepSpacing;

/** diffusers 0.23.0 `PNDMScheduler.__init__` defaults. */
export const PNDM_DEFAULT_CONFIG = {
  ...NOISE_SCHEDULE_DEFAULTS,
  skip_prk_steps: false,
  set_alpha_to_one: false,
  prediction_type: "epsilon" as string,
  timestep_spacing: "leading" as string,
  steps_offset: 0,
};

export type PNDMConfig = typeof PNDM_DEFAULT_CONFIG & SchedulerConfig;

function parseConfig(cfg: PNDMConfig) {
  return {
    ...parseScheduleConfig(NAME, cfg, ["epsilon", "v_prediction"] as const),
    skipPrkSteps: configBool(NAME, "skip_prk_steps", cfg.skip_prk_steps),
  };
}

export class PNDMScheduler implements Scheduler {
  readonly config: Readonly<PNDMConfig>;
  readonly order = 1;
  readonly initNoiseSigma = 1.0;
  /** The number of model outputs a PRK step combines (diffusers `pndm_order`). */
  readonly pndmOrder = 4;
  readonly betas: Float32Array;
  readonly alphas: Float32Array;
  readonly alphasCumprod: Float32Array;
  readonly finalAlphaCumprod: number;
  private _timesteps: number[] = [];
  private _prkTimesteps: number[] = [];
  private _plmsTimesteps: number[] = [];
  private _numInferenceSteps: number | undefined = undefined;

  // Multistep state (reset by setTimesteps).
  private counter = 0;
  private ets: Float32Array[] = [];
  private curModelOutput: Float32Array | undefined = undefined;
  private curSample: Float32Array | undefined = undefined;

  private readonly p: ReturnType<typeof parseConfig>;

  static fromConfig(config?: SchedulerConfig): PNDMScheduler {
    return new PNDMScheduler(config);
  }

  constructor(config?: SchedulerConfig) {
    const c = mergeConfig(PNDM_DEFAULT_CONFIG as PNDMConfig, config);
    this.config = Object.freeze(c);
    this.p = parseConfig(c);
    const setAlphaToOne = configBool(NAME, "set_alpha_to_one", c.set_alpha_to_one);
    const tables = noiseSchedule(NAME, c, this.p.numTrain);
    ({ betas: this.betas, alphas: this.alphas, alphasCumprod: this.alphasCumprod } = tables);
    this.finalAlphaCumprod = setAlphaToOne ? 1.0 : (this.alphasCumprod[0] as number);
  }

  /** Empty until setTimesteps (diffusers: None). */
  get timesteps(): number[] {
    return this._timesteps;
  }

  get prkTimesteps(): number[] {
    return this._prkTimesteps;
  }

  get plmsTimesteps(): number[] {
    return this._plmsTimesteps;
  }

  get numInferenceSteps(): number | undefined {
    return this._numInferenceSteps;
  }

  scaleModelInput(sample: Float32Array, _timestep?: number): Float32Array {
    return sample;
  }

  setTimesteps(numInferenceSteps: number): void {
    const N = this.p.numTrain;
    checkNumInferenceSteps(NAME, numInferenceSteps, N);
    const n = numInferenceSteps;
    if (!this.p.skipPrkSteps && n < this.pndmOrder) {
      // diffusers fails here too (numpy cannot broadcast the last n < 4 timesteps against the 4-step PRK pattern).
      throw new RangeError(
        `${NAME}.setTimesteps: the PRK warm-up needs numInferenceSteps >= ${this.pndmOrder} (got ${n}); ` +
          "use skip_prk_steps=true for fewer steps",
      );
    }
    // Ascending base timesteps (diffusers `_timesteps`).
    const base = spacedTimesteps(this.p.spacing, N, n, this.p.stepsOffset, "int64").reverse();

    if (this.p.skipPrkSteps) {
      // concat(_t[:-1], _t[-2:-1], _t[-1:])[::-1]: the second-to-last base timestep is repeated.
      this._prkTimesteps = [];
      this._plmsTimesteps = [...base.slice(0, -1), ...base.slice(-2, -1), ...base.slice(-1)].reverse();
    } else {
      const half = Math.floor(Math.floor(N / n) / 2);
      const prk = base.slice(-this.pndmOrder).flatMap((t) => [t, t + half]);
      this._prkTimesteps = prk
        .slice(0, -1)
        .flatMap((t) => [t, t])
        .slice(1, -1)
        .reverse();
      this._plmsTimesteps = base.slice(0, -3).reverse();
    }
    this._timesteps = [...this._prkTimesteps, ...this._plmsTimesteps];
    this._numInferenceSteps = n;
    this.ets = [];
    this.counter = 0;
    this.curModelOutput = undefined;
    this.curSample = undefined;
  }

  /** Dispatches to the PRK step for the first 12 calls (unless skip_prk_steps), then to the PLMS step. */
  step(
    modelOutput: Float32Array,
    timestep: number,
    sample: Float32Array,
    _options?: SchedulerStepOptions,
  ): SchedulerOutput {
    if (this._numInferenceSteps === undefined) {
      throw new Error(`${NAME}.step: numInferenceSteps is not set; call setTimesteps() before step()`);
    }
    if (!this._timesteps.includes(timestep)) {
      throw new RangeError(
        `${NAME}.step: timestep ${timestep} is not in the schedule (${this._timesteps.join(", ")})`,
      );
    }
    checkModelOutput(NAME, modelOutput, sample);
    if (this.counter < this._prkTimesteps.length && !this.p.skipPrkSteps) {
      return this.stepPrk(modelOutput, timestep, sample, this._numInferenceSteps);
    }
    return this.stepPlms(modelOutput, timestep, sample, this._numInferenceSteps);
  }

  /** Runge-Kutta step: four calls per pseudo step, combining model outputs with weights 1/6, 1/3, 1/3, 1/6. */
  private stepPrk(
    modelOutput: Float32Array,
    timestep: number,
    sample: Float32Array,
    n: number,
  ): SchedulerOutput {
    const N = this.p.numTrain;
    const diffToPrev = this.counter % 2 ? 0 : Math.floor(Math.floor(N / n) / 2);
    const prevTimestep = timestep - diffToPrev;
    const t = this._prkTimesteps[Math.floor(this.counter / 4) * 4] as number;
    const len = sample.length;
    const phase = this.counter % 4;
    let mo = modelOutput;
    if (phase === 0) {
      const w = f32(1 / 6);
      this.curModelOutput = modelOutput.map((m) => f32(w * m));
      this.ets.push(modelOutput);
      this.curSample = sample;
    } else if (phase === 1 || phase === 2) {
      const w = f32(1 / 3);
      const cur = this.curModelOutput ?? new Float32Array(len);
      this.curModelOutput = cur.map((c, i) => f32(c + f32(w * (modelOutput[i] as number))));
    } else {
      const w = f32(1 / 6);
      const cur = this.curModelOutput ?? new Float32Array(len);
      mo = cur.map((c, i) => f32(c + f32(w * (modelOutput[i] as number))));
      this.curModelOutput = undefined;
    }
    const curSample = this.curSample ?? sample;
    const prevSample = this.getPrevSample(curSample, t, prevTimestep, mo);
    this.counter++;
    return { prevSample };
  }

  /** Linear multistep step (Adams-Bashforth weights on the last up-to-4 model outputs). */
  private stepPlms(
    modelOutput: Float32Array,
    timestep: number,
    sample: Float32Array,
    n: number,
  ): SchedulerOutput {
    if (!this.p.skipPrkSteps && this.ets.length < 3) {
      throw new Error(
        `${NAME}.step: PLMS steps can only run after the 12 PRK steps (skip_prk_steps is false)`,
      );
    }
    const ratio = Math.floor(this.p.numTrain / n);
    let prevTimestep = timestep - ratio;
    if (this.counter !== 1) {
      this.ets = this.ets.slice(-3);
      this.ets.push(modelOutput);
    } else {
      prevTimestep = timestep;
      timestep = timestep + ratio;
    }
    const e = this.ets;
    const k = e.length;
    const e1 = e[k - 1] as Float32Array;
    let mo: Float32Array;
    if (k === 1 && this.counter === 0) {
      mo = modelOutput;
      this.curSample = sample;
    } else if (k === 1 && this.counter === 1) {
      mo = modelOutput.map((m, i) => f32(f32(m + (e1[i] as number)) / 2));
      sample = this.curSample ?? sample;
      this.curSample = undefined;
    } else if (k === 2) {
      const e2 = e[k - 2] as Float32Array;
      mo = e1.map((a, i) => f32(f32(f32(3 * a) - (e2[i] as number)) / 2));
    } else if (k === 3) {
      const e2 = e[k - 2] as Float32Array;
      const e3 = e[k - 3] as Float32Array;
      mo = e1.map((a, i) =>
        f32(f32(f32(f32(23 * a) - f32(16 * (e2[i] as number))) + f32(5 * (e3[i] as number))) / 12),
      );
    } else {
      const e2 = e[k - 2] as Float32Array;
      const e3 = e[k - 3] as Float32Array;
      const e4 = e[k - 4] as Float32Array;
      const w = f32(1 / 24);
      mo = e1.map((a, i) => {
        const s = f32(
          f32(f32(f32(55 * a) - f32(59 * (e2[i] as number))) + f32(37 * (e3[i] as number))) -
            f32(9 * (e4[i] as number)),
        );
        return f32(w * s);
      });
    }
    const prevSample = this.getPrevSample(sample, timestep, prevTimestep, mo);
    this.counter++;
    return { prevSample };
  }

  private alphaAt(t: number): number {
    return alphaProdAt(NAME, this.alphasCumprod, t);
  }

  /** PNDM paper eq. (9): x_{t-δ} from x_t and the (combined) epsilon; float32 scalars and ops. */
  private getPrevSample(
    sample: Float32Array,
    timestep: number,
    prevTimestep: number,
    modelOutput: Float32Array,
  ): Float32Array {
    const a = this.alphaAt(timestep);
    const ap = prevTimestep >= 0 ? this.alphaAt(prevTimestep) : this.finalAlphaCumprod;
    const b = f32(1 - a);
    const bp = f32(1 - ap);
    let mo = modelOutput;
    if (this.p.predictionType === "v_prediction") {
      const sa = f32(Math.sqrt(a));
      const sb = f32(Math.sqrt(b));
      mo = modelOutput.map((m, i) => f32(f32(sa * m) + f32(sb * (sample[i] as number))));
    }
    const sampleCoeff = f32(Math.sqrt(f32(ap / a)));
    const denom = f32(f32(a * f32(Math.sqrt(bp))) + f32(Math.sqrt(f32(f32(a * b) * ap))));
    const diff = f32(ap - a);
    return sample.map((x, i) => f32(f32(sampleCoeff * x) - f32(f32(diff * (mo[i] as number)) / denom)));
  }

  /** diffusers `add_noise`: sqrt(a_t) * x + sqrt(1 - a_t) * noise in float32, one timestep per row. */
  addNoise(originalSamples: Float32Array, noise: Float32Array, timesteps: readonly number[]): Float32Array {
    return addNoiseByAlphas(NAME, this.alphasCumprod, originalSamples, noise, timesteps);
  }
}
