/**
 * What diffusers marks "Copied from" across the DPM-Solver family: DPMSolverMultistep, DPMSolverSinglestep,
 * DEISMultistep and UniPCMultistep. They share the config keys of the solver, the (alpha_t, sigma_t, lambda_t)
 * parametrisation of a sigma, the schedule of `set_timesteps` (n + 1 spaced timesteps, optional Karras / Lu
 * sigmas), `convert_model_output`'s data / noise predictions and `add_noise`.
 * Every per-step scalar is a float32 0-dim tensor in diffusers and every elementwise op a float32 op: both are
 * reproduced with `f32` after each operation.
 */
import { trainingSigmas } from "./beta_schedules.js";
import { npLinspace } from "./numpy_numerics.js";
import {
  configBool,
  configInt,
  configNumber,
  configOneOf,
  configRatio,
  noiseRows,
  type SchedulerConfig,
  SchedulerConfigError,
  uniqueIndexOf,
} from "./scheduler_utils.js";
import { karrasSigmas, sigmaToT, solverTimesteps, type TimestepSpacing } from "./timestep_spacing.js";
import { f32, rint } from "./torch_numerics.js";

export const SOLVER_PREDICTIONS = ["epsilon", "sample", "v_prediction"] as const;
export type SolverPrediction = (typeof SOLVER_PREDICTIONS)[number];

/** The config values every DPM-family solver reads the same way. */
export function parseSolverConfig(name: string, cfg: SchedulerConfig) {
  return {
    order: configInt(name, "solver_order", cfg.solver_order, 1),
    prediction: configOneOf(name, "prediction_type", cfg.prediction_type, SOLVER_PREDICTIONS),
    thresholding: configBool(name, "thresholding", cfg.thresholding, true),
    ratio: configRatio(name, "dynamic_thresholding_ratio", cfg.dynamic_thresholding_ratio),
    sampleMax: configNumber(name, "sample_max_value", cfg.sample_max_value),
    lowerOrderFinal: configBool(name, "lower_order_final", cfg.lower_order_final, true),
    karras: configBool(name, "use_karras_sigmas", cfg.use_karras_sigmas, true),
  };
}

/**
 * The keys DPMSolverMultistep and DPMSolverSinglestep read beyond the solver's: the other solvers' names
 * mapped onto DPM-Solver's as diffusers' `__init__` does (algorithm "deis" -> "dpmsolver++", solver "logrho" /
 * "bh1" / "bh2" -> "midpoint", written back to `cfg`), `variance_type` (a string or null) and
 * `lambda_min_clipped` (a number, not NaN; written back to `cfg` as a number).
 */
export function parseDpmSolverKeys(name: string, cfg: SchedulerConfig) {
  if (cfg.algorithm_type === "deis") cfg.algorithm_type = "dpmsolver++";
  if (["logrho", "bh1", "bh2"].includes(cfg.solver_type as string)) cfg.solver_type = "midpoint";
  const varianceType = cfg.variance_type;
  if (varianceType !== null && varianceType !== undefined && typeof varianceType !== "string") {
    throw new SchedulerConfigError(
      name,
      "variance_type",
      `must be a string or null, got ${JSON.stringify(varianceType)}`,
    );
  }
  const lambdaMin = configNumber(name, "lambda_min_clipped", cfg.lambda_min_clipped);
  if (Number.isNaN(lambdaMin)) throw new SchedulerConfigError(name, "lambda_min_clipped", "must not be NaN");
  cfg.lambda_min_clipped = lambdaMin;
  return {
    varianceType: varianceType as string | null | undefined,
    lambdaMin,
    solver: configOneOf(name, "solver_type", cfg.solver_type, ["midpoint", "heun"] as const),
  };
}

/** alpha_t, sigma_t of `sigmas[i]`; an index past the schedule is an error. */
export function alphaSigmaAt(name: string, sigmas: Float32Array, i: number): [number, number] {
  const s = sigmas[i];
  if (s === undefined) throw new Error(`${name}.step: no sigma at index ${i} (schedule exhausted)`);
  return alphaSigma(s);
}

/** diffusers `_sigma_to_alpha_sigma_t`: alpha_t = 1 / sqrt(sigma^2 + 1), sigma_t = sigma * alpha_t (float32). */
export function alphaSigma(sigma: number): [number, number] {
  const a = f32(1 / f32(Math.sqrt(f32(f32(sigma * sigma) + 1))));
  return [a, f32(sigma * a)];
}

/** lambda_t = log(alpha_t) - log(sigma_t), float32. */
export function lambdaOf(alpha: number, sigma: number): number {
  return f32(f32(Math.log(alpha)) - f32(Math.log(sigma)));
}

/** diffusers' `lambda_t` table: log(sqrt(alphas_cumprod)) - log(sqrt(1 - alphas_cumprod)), float32. */
export function lambdaTable(alphasCumprod: Float32Array): Float32Array {
  return alphasCumprod.map(
    (ac) => f32(Math.log(f32(Math.sqrt(ac)))) - f32(Math.log(f32(Math.sqrt(f32(1 - ac))))),
  );
}

/** `searchsorted(flip(lambda_t), lambda_min_clipped)`: how many lambdas lie below the clip (float32 compare). */
export function clippedCount(lambdaT: Float32Array, lambdaMin: number): number {
  const clip = f32(lambdaMin);
  let count = 0;
  for (const l of lambdaT) if (l < clip) count++;
  return count;
}

/**
 * The timesteps and float32 sigmas of `set_timesteps` for the parsed config `p` (no `spacing`: "linspace"):
 * `solverTimesteps` up to `last`, then either the training sigmas at those timesteps plus sigma(0), or Karras /
 * Lu sigmas (float64, the last repeated) with the timesteps `_sigma_to_t` gives them (rounded). The log-sigma
 * table here is the float64 log rounded to float32, as these ports always took it (numpy's own float32 kernel,
 * `npLogF32`, can differ by a few ulp).
 */
export function solverSchedule(
  p: { spacing?: TimestepSpacing; numTrain: number; stepsOffset?: number; karras: boolean; lu?: boolean },
  n: number,
  alphasCumprod: Float32Array,
  last = p.numTrain,
): { timesteps: number[]; sigmas: Float32Array } {
  const numTrain = p.numTrain;
  let timesteps = solverTimesteps(p.spacing ?? "linspace", numTrain, last, n, p.stepsOffset ?? 0);
  const table = trainingSigmas(alphasCumprod);
  let sigmas: number[];
  if (p.karras || p.lu) {
    const logSigmas = table.map((s) => Math.log(s));
    let s64: number[];
    if (p.karras) s64 = karrasSigmas(table[0] as number, table[numTrain - 1] as number, n);
    else {
      const lmin = logSigmas[0] as number;
      const lmax = logSigmas[numTrain - 1] as number;
      s64 = npLinspace(0, 1, n).map((r) => Math.exp(lmax + r * (lmin - lmax)));
    }
    timesteps = s64.map((s) => rint(sigmaToT(s, logSigmas)));
    sigmas = [...s64, s64[s64.length - 1] as number];
  } else {
    sigmas = timesteps.map((t) => table[Math.min(Math.max(t, 0), numTrain - 1)] as number);
    sigmas.push(table[0] as number);
  }
  return { timesteps, sigmas: Float32Array.from(sigmas) };
}

export function sameLength(name: string, a: Float32Array, n: number): Float32Array {
  if (a.length !== n) {
    throw new RangeError(`${name}.step: modelOutput has ${a.length} elements, sample has ${n}`);
  }
  return a;
}

/** model_output[:, :C] for a learned-variance output with 2C channels (rows = batch). */
export function firstHalfRows(name: string, a: Float32Array, n: number, batch: number): Float32Array {
  if (a.length !== 2 * n) {
    throw new RangeError(
      `${name}.step: learned variance expects modelOutput with twice the sample's channels (${2 * n} ` +
        `elements), got ${a.length}`,
    );
  }
  const row = n / batch;
  const out = new Float32Array(n);
  for (let b = 0; b < batch; b++) out.set(a.subarray(2 * b * row, 2 * b * row + row), b * row);
  return out;
}

/** `convert_model_output`'s data prediction x0 (DPM-Solver++ / UniPC predict_x0 / DEIS), float32. */
export function dataPrediction(
  prediction: SolverPrediction,
  modelOutput: Float32Array,
  sample: Float32Array,
  alpha: number,
  sigma: number,
): Float32Array {
  if (prediction === "epsilon")
    return map2(sample, modelOutput, (x, e) => f32(f32(x - f32(sigma * e)) / alpha));
  if (prediction === "sample") return Float32Array.from(modelOutput);
  return map2(sample, modelOutput, (x, v) => f32(f32(alpha * x) - f32(sigma * v)));
}

/** `convert_model_output`'s noise prediction epsilon (DPM-Solver / UniPC noise mode / DEIS), float32. */
export function noisePrediction(
  prediction: SolverPrediction,
  modelOutput: Float32Array,
  sample: Float32Array,
  alpha: number,
  sigma: number,
): Float32Array {
  if (prediction === "epsilon") return Float32Array.from(modelOutput);
  if (prediction === "sample")
    return map2(sample, modelOutput, (x, x0) => f32(f32(x - f32(alpha * x0)) / sigma));
  return map2(sample, modelOutput, (x, v) => f32(f32(alpha * v) + f32(sigma * x)));
}

/** diffusers `add_noise`: alpha_t * x + sigma_t * noise (float32) at each row's timestep, which must be unique. */
export function addNoiseBySolverSigma(
  name: string,
  sigmas: Float32Array,
  numInferenceSteps: number | undefined,
  schedule: readonly number[],
  original: Float32Array,
  noise: Float32Array,
  timesteps: readonly number[],
): Float32Array {
  if (numInferenceSteps === undefined) {
    throw new Error(`${name}.addNoise: call setTimesteps first (the sigmas are built there)`);
  }
  const row = noiseRows(name, original, noise, timesteps);
  const out = new Float32Array(original.length);
  timesteps.forEach((t, b) => {
    const [a, s] = alphaSigma(sigmas[uniqueIndexOf(name, schedule, t)] as number);
    for (let i = b * row; i < (b + 1) * row; i++) {
      out[i] = f32(f32(a * (original[i] as number)) + f32(s * (noise[i] as number)));
    }
  });
  return out;
}

export function map2(a: Float32Array, b: Float32Array, fn: (x: number, y: number) => number): Float32Array {
  return a.map((x, i) => fn(x, b[i] as number));
}

/**
 * c0 * x + c1 * a1 + c2 * a2 + ... evaluated as torch does it, left to right with float32 rounding after every
 * product and every sum (a subtraction is the sum with the negated, exactly representable coefficient).
 */
export function lin(x: Float32Array, c0: number, ...terms: [number, Float32Array][]): Float32Array {
  const out = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) {
    let acc = f32(c0 * (x[i] as number));
    for (const [c, a] of terms) acc = f32(acc + f32(c * (a[i] as number)));
    out[i] = acc;
  }
  return out;
}
