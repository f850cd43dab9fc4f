/**
 * What every scheduler shares: the step input/output types, config value checks, step-input checks, the
 * step-index rule and the noise draw. Shared numerics live in torch_numerics.ts, numpy_numerics.ts,
 * beta_schedules.ts and timestep_spacing.ts; what one family shares in ddpm_common.ts (DDPM / DDIM / PNDM),
 * k_diffusion_common.ts (Euler, Heun, KDPM2, LMS and their ancestral variants) and dpm_solver_common.ts
 * (DPM-Solver, DEIS, UniPC). Each scheduling_*.ts file keeps its class, its state and its `step`, so a reader
 * still follows one scheduler in one file.
 * Tensors are flat row-major Float32Array; schedulers are elementwise, so shapes are not needed except for
 * per-row timesteps in addNoise (rows = length / timesteps.length).
 */
import { defaultGenerator } from "../random/default_generator.js";
import type { Generator } from "../random/generator.js";
import { TIMESTEP_SPACINGS } from "./timestep_spacing.js";

export type SchedulerConfig = Record<string, unknown>;

export interface SchedulerStepOptions {
  /** DDIM eta (0 = deterministic). */
  eta?: number;
  generator?: Generator;
}

export interface SchedulerOutput {
  prevSample: Float32Array;
  predOriginalSample?: Float32Array;
}

/** The interface every scheduler class implements (mirrors diffusers' SchedulerMixin in camelCase). */
export interface Scheduler {
  readonly config: Readonly<SchedulerConfig>;
  readonly order: number;
  readonly initNoiseSigma: number;
  readonly timesteps: number[];
  readonly numInferenceSteps: number | undefined;
  setTimesteps(numInferenceSteps: number): void;
  scaleModelInput(sample: Float32Array, timestep: number): Float32Array;
  step(
    modelOutput: Float32Array,
    timestep: number,
    sample: Float32Array,
    options?: SchedulerStepOptions,
  ): SchedulerOutput;
  addNoise(originalSamples: Float32Array, noise: Float32Array, timesteps: readonly number[]): Float32Array;
}

export class SchedulerConfigError extends Error {
  constructor(className: string, key: string, problem: string) {
    super(`${className}: config "${key}" ${problem}`);
    this.name = "SchedulerConfigError";
  }
}

/** Merge user config over class defaults; unknown keys are kept (and ignored), as diffusers does. */
export function mergeConfig<T extends SchedulerConfig>(defaults: T, config: SchedulerConfig | undefined): T {
  const out: SchedulerConfig = { ...defaults };
  for (const [k, v] of Object.entries(config ?? {})) {
    if (k.startsWith("_") && k !== "_class_name") continue;
    out[k] = v;
  }
  return out as T;
}

/** JSON carries non-finite floats as strings ("-inf"); turn them into numbers. */
export function configNumber(className: string, key: string, v: unknown): number {
  if (typeof v === "number") return v;
  if (v === "-inf" || v === "-Infinity") return Number.NEGATIVE_INFINITY;
  if (v === "inf" || v === "Infinity") return Number.POSITIVE_INFINITY;
  if (v === "nan" || v === "NaN") return Number.NaN;
  throw new SchedulerConfigError(className, key, `must be a number, got ${JSON.stringify(v)}`);
}

/** A boolean config value; `optional`: diffusers' Optional[bool], where None (null) is falsy. */
export function configBool(className: string, key: string, v: unknown, optional = false): boolean {
  if (optional && (v === null || v === undefined)) return false;
  if (typeof v === "boolean") return v;
  throw new SchedulerConfigError(className, key, `must be a boolean, got ${JSON.stringify(v)}`);
}

/** An integer config value >= min (a safe integer). */
export function configInt(
  className: string,
  key: string,
  v: unknown,
  min = Number.NEGATIVE_INFINITY,
): number {
  const n = configNumber(className, key, v);
  if (!Number.isSafeInteger(n) || n < min) {
    const range = Number.isFinite(min) ? ` >= ${min}` : "";
    throw new SchedulerConfigError(className, key, `must be an integer${range}, got ${JSON.stringify(v)}`);
  }
  return n;
}

export function configFinite(className: string, key: string, v: unknown): number {
  const n = configNumber(className, key, v);
  if (!Number.isFinite(n))
    throw new SchedulerConfigError(className, key, `must be a finite number, got ${v}`);
  return n;
}

/** A number in [0, 1] (e.g. `dynamic_thresholding_ratio`). */
export function configRatio(className: string, key: string, v: unknown): number {
  const r = configNumber(className, key, v);
  if (!(r >= 0 && r <= 1)) throw new SchedulerConfigError(className, key, `must be in [0, 1], got ${r}`);
  return r;
}

export function configOneOf<T extends string>(
  className: string,
  key: string,
  v: unknown,
  allowed: readonly T[],
): T {
  if (typeof v === "string" && (allowed as readonly string[]).includes(v)) return v as T;
  throw new SchedulerConfigError(
    className,
    key,
    `is ${JSON.stringify(v)}; supported values are ${allowed.map((a) => JSON.stringify(a)).join(", ")}`,
  );
}

/**
 * The config keys that DDPM / DDIM / PNDM and the sigma schedulers read alike: num_train_timesteps (>= minTrain),
 * prediction_type (one of `predictions`), timestep_spacing and steps_offset (>= 0). A "sample" prediction that
 * the scheduler lacks gets diffusers' NotImplementedError of `step` here, at construction.
 */
export function parseScheduleConfig<P extends string>(
  className: string,
  cfg: SchedulerConfig,
  predictions: readonly P[],
  minTrain = 1,
) {
  if (cfg.prediction_type === "sample" && !(predictions as readonly string[]).includes("sample")) {
    // diffusers accepts it in __init__ but raises NotImplementedError in step(); fail early instead
    throw new SchedulerConfigError(
      className,
      "prediction_type",
      'is "sample", which this scheduler does not implement',
    );
  }
  return {
    numTrain: configInt(className, "num_train_timesteps", cfg.num_train_timesteps, minTrain),
    predictionType: configOneOf(className, "prediction_type", cfg.prediction_type, predictions),
    spacing: configOneOf(className, "timestep_spacing", cfg.timestep_spacing, TIMESTEP_SPACINGS),
    stepsOffset: configInt(className, "steps_offset", cfg.steps_offset, 0),
  };
}

export function checkNumInferenceSteps(className: string, n: number, numTrainTimesteps: number): void {
  if (!Number.isInteger(n) || n < 1 || n > numTrainTimesteps) {
    throw new RangeError(
      `${className}.setTimesteps: numInferenceSteps must be an integer in 1..${numTrainTimesteps}, got ${n}`,
    );
  }
}

/** A step's model output: as long as the sample, and finite (a NaN or infinite model output is an error). */
export function checkModelOutput(className: string, modelOutput: Float32Array, sample: Float32Array): void {
  if (modelOutput.length !== sample.length) {
    throw new RangeError(
      `${className}.step: modelOutput has ${modelOutput.length} values, sample ${sample.length}`,
    );
  }
  checkFinite(className, "modelOutput", modelOutput);
}

export function checkFinite(className: string, what: string, a: Float32Array): void {
  for (let i = 0; i < a.length; i++) {
    if (!Number.isFinite(a[i] as number)) {
      throw new RangeError(`${className}.step: ${what} contains ${a[i]} at index ${i}`);
    }
  }
}

/** The batch size of a flat sample (default 1); it must divide the sample length. */
export function batchSizeOf(className: string, batchSize: number | undefined, n: number): number {
  const b = batchSize ?? 1;
  if (!Number.isInteger(b) || b < 1 || n % b !== 0) {
    throw new RangeError(`${className}.step: batchSize ${b} does not divide the sample length ${n}`);
  }
  return b;
}

/**
 * The index of the next step for `timestep`: the scheduler's own counter `current`, or on the first call
 * diffusers' `_init_step_index` (the second occurrence when the timestep repeats, as when img2img starts
 * mid-schedule). Unlike diffusers, a timestep outside the schedule, a finished schedule and (`ready` false) a
 * schedule never set are errors.
 */
export function stepIndexFor(
  className: string,
  caller: string,
  timesteps: readonly number[],
  current: number | undefined,
  timestep: number,
  ready = true,
): number {
  if (!ready) throw new Error(`${className}.${caller}: call setTimesteps(numInferenceSteps) first`);
  const notInSchedule = () =>
    new RangeError(
      `${className}.${caller}: timestep ${timestep} is not in the schedule (pass one of scheduler.timesteps)`,
    );
  if (!timesteps.includes(timestep)) throw notInSchedule();
  let idx = current;
  if (idx === undefined) {
    const first = timesteps.indexOf(timestep); // -1 for NaN, which `includes` finds
    if (first < 0) throw notInSchedule();
    const second = timesteps.indexOf(timestep, first + 1);
    idx = second >= 0 ? second : first;
  }
  if (idx >= timesteps.length) {
    throw new RangeError(
      `${className}.${caller}: all ${timesteps.length} steps are done (the schedule is finished); ` +
        "call setTimesteps again",
    );
  }
  return idx;
}

/** The index of timestep `t`, which must occur exactly once in the schedule (addNoise of most schedulers). */
export function uniqueIndexOf(className: string, timesteps: readonly number[], t: number): number {
  const idx: number[] = [];
  timesteps.forEach((s, i) => {
    if (s === t) idx.push(i);
  });
  if (idx.length !== 1) {
    throw new RangeError(
      `${className}.addNoise: timestep ${t} must occur exactly once in the schedule (it occurs ${idx.length} times)`,
    );
  }
  return idx[0] as number;
}

/** Checks addNoise-style inputs (equal lengths, one timestep per row) and returns the row length. */
export function noiseRows(
  className: string,
  x: Float32Array,
  noise: Float32Array,
  timesteps: readonly number[],
  caller = "addNoise",
): number {
  if (x.length !== noise.length) {
    throw new RangeError(`${className}.${caller}: lengths differ (${x.length} vs ${noise.length})`);
  }
  if (timesteps.length === 0 || x.length % timesteps.length !== 0) {
    throw new RangeError(
      `${className}.${caller}: ${timesteps.length} timesteps do not split ${x.length} values into rows`,
    );
  }
  return x.length / timesteps.length;
}

/**
 * `randn_tensor(shape, generator)` for a step's noise: from `generator`, or, like diffusers with
 * `generator=None`, from torch's global generator (`defaultGenerator`, seeded by `manualSeed`).
 */
export function stepNoise(generator: Generator | undefined, n: number): Float32Array {
  return (generator ?? defaultGenerator).randn([n]);
}
