/**
 * The small set of things every scheduler shares: the step input/output types and config value checks.
 * Each scheduler file stays self-contained otherwise (diffusers' rule), so a reader can follow one file alone.
 * Tensors are flat row-major Float32Array; schedulers are elementwise, so shapes are not needed except for
 * per-row timesteps in addNoise (rows = length / timesteps.length).
 */
import type { Generator } from "../random/generator.js";

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

export function checkNumInferenceSteps(className: string, n: number, numTrainTimesteps: number): void {
  if (!Number.isInteger(n) || n < 1 || n > numTrainTimesteps) {
    throw new RangeError(
      `${className}.setTimesteps: numInferenceSteps must be an integer in 1..${numTrainTimesteps}, got ${n}`,
    );
  }
}

export function checkFinite(className: string, what: string, a: Float32Array): void {
  for (let i = 0; i < a.length; i++) {
    if (!Number.isFinite(a[i] as number)) {
      throw new RangeError(`${className}.step: ${what} contains ${a[i]} at index ${i}`);
    }
  }
}
