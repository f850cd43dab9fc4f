/**
 * PNDMScheduler — diffusers 0.23.0 `scheduling_pndm.py` (Liu et al., "Pseudo Numerical Methods for Diffusion
 * Models on Manifolds"): four Runge-Kutta (PRK) steps at the start unless `skip_prk_steps`, then linear multistep
 * (PLMS) steps. With `skip_prk_steps` the schedule has n+1 timesteps, the second one repeated.
 *
 * Numerics follow the reference dtypes: float32 tables as torch builds them, numpy int64 timesteps, float32
 * per-step scalars and float32 elementwise ops (each rounded with Math.fround).
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

const NAME = "PNDMScheduler";
const f32 = Math.fround;

export type PNDMBetaSchedule = "linear" | "scaled_linear" | "squaredcos_cap_v2";
export type PNDMPredictionType = "epsilon" | "v_prediction";
export type PNDMTimestepSpacing = "leading" | "trailing" | "linspace";

/** diffusers 0.23.0 `PNDMScheduler.__init__` defaults. */
export const PNDM_DEFAULT_CONFIG = {
  num_train_timesteps: 1000,
  beta_start: 0.0001,
  beta_end: 0.02,
  beta_schedule: "linear" as string,
  trained_betas: null as number[] | null,
  skip_prk_steps: false,
  set_alpha_to_one: false,
  prediction_type: "epsilon" as string,
  timestep_spacing: "leading" as string,
  steps_offset: 0,
};

export type PNDMConfig = typeof PNDM_DEFAULT_CONFIG & SchedulerConfig;

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

// ---------------------------------------------------------------- scheduler

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

  private readonly numTrainTimesteps: number;
  private readonly predictionType: PNDMPredictionType;
  private readonly timestepSpacing: PNDMTimestepSpacing;
  private readonly stepsOffset: number;
  private readonly skipPrkSteps: boolean;

  static fromConfig(config?: SchedulerConfig): PNDMScheduler {
    return new PNDMScheduler(config);
  }

  constructor(config?: SchedulerConfig) {
    const c = mergeConfig(PNDM_DEFAULT_CONFIG as PNDMConfig, config);
    this.config = Object.freeze(c);
    const n = configInt("num_train_timesteps", c.num_train_timesteps, 1);
    this.numTrainTimesteps = n;
    const betaStart = configFinite("beta_start", c.beta_start);
    const betaEnd = configFinite("beta_end", c.beta_end);
    this.predictionType = configOneOf(NAME, "prediction_type", c.prediction_type, [
      "epsilon",
      "v_prediction",
    ] as const);
    this.timestepSpacing = configOneOf(NAME, "timestep_spacing", c.timestep_spacing, [
      "leading",
      "trailing",
      "linspace",
    ] as const);
    this.stepsOffset = configInt("steps_offset", c.steps_offset, 0);
    this.skipPrkSteps = configBool("skip_prk_steps", c.skip_prk_steps);
    const setAlphaToOne = configBool("set_alpha_to_one", c.set_alpha_to_one);

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
      ] as const);
      if (schedule === "linear") betas = torchLinspaceF32(betaStart, betaEnd, n);
      else if (schedule === "scaled_linear") {
        betas = torchLinspaceF32(betaStart ** 0.5, betaEnd ** 0.5, n).map((b) => f32(b * b));
      } else betas = betasForAlphaBar(n);
    }
    this.betas = betas;
    this.alphas = betas.map((b) => f32(1 - b));
    this.alphasCumprod = cumprodF32(this.alphas);
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
    const N = this.numTrainTimesteps;
    checkNumInferenceSteps(NAME, numInferenceSteps, N);
    const n = numInferenceSteps;
    if (!this.skipPrkSteps && n < this.pndmOrder) {
      // diffusers fails here too (numpy cannot broadcast the last n < 4 timesteps against the 4-step PRK pattern).
      throw new RangeError(
        `${NAME}.setTimesteps: the PRK warm-up needs numInferenceSteps >= ${this.pndmOrder} (got ${n}); ` +
          "use skip_prk_steps=true for fewer steps",
      );
    }
    // Ascending base timesteps (diffusers `_timesteps`).
    let base: number[];
    if (this.timestepSpacing === "linspace") {
      base = npLinspace(0, N - 1, n).map(rint);
    } else if (this.timestepSpacing === "leading") {
      const ratio = Math.floor(N / n);
      base = Array.from({ length: n }, (_, i) => i * ratio + this.stepsOffset);
    } else {
      base = npArange(N, 0, -N / n)
        .map((t) => rint(t) - 1)
        .reverse();
    }

    if (this.skipPrkSteps) {
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
    if (modelOutput.length !== sample.length) {
      throw new RangeError(
        `${NAME}.step: modelOutput length ${modelOutput.length} != sample length ${sample.length}`,
      );
    }
    checkFinite(NAME, "modelOutput", modelOutput);
    if (this.counter < this._prkTimesteps.length && !this.skipPrkSteps) {
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
    const N = this.numTrainTimesteps;
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
    if (!this.skipPrkSteps && this.ets.length < 3) {
      throw new Error(
        `${NAME}.step: PLMS steps can only run after the 12 PRK steps (skip_prk_steps is false)`,
      );
    }
    const ratio = Math.floor(this.numTrainTimesteps / n);
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
    const v = this.alphasCumprod[t];
    if (v === undefined)
      throw new RangeError(`${NAME}: timestep ${t} is outside 0..${this.numTrainTimesteps - 1}`);
    return v;
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
    if (this.predictionType === "v_prediction") {
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
    const x = originalSamples;
    if (x.length !== noise.length) {
      throw new RangeError(`${NAME}.addNoise: lengths differ (${x.length} vs ${noise.length})`);
    }
    if (timesteps.length === 0 || x.length % timesteps.length !== 0) {
      throw new RangeError(
        `${NAME}.addNoise: ${timesteps.length} timesteps do not split ${x.length} values into rows`,
      );
    }
    const rowLen = x.length / timesteps.length;
    const out = new Float32Array(x.length);
    timesteps.forEach((t, r) => {
      const a = Number.isInteger(t) ? this.alphasCumprod[t] : undefined;
      if (a === undefined) {
        throw new RangeError(
          `${NAME}.addNoise: timestep ${t} is not an integer in 0..${this.numTrainTimesteps - 1}`,
        );
      }
      const sa = f32(Math.sqrt(a));
      const sb = f32(Math.sqrt(f32(1 - a)));
      for (let i = r * rowLen; i < (r + 1) * rowLen; i++) {
        out[i] = f32(f32(sa * (x[i] as number)) + f32(sb * (noise[i] as number)));
      }
    });
    return out;
  }
}
