/**
 * What the sigma-parametrised (k-diffusion style) schedulers share: Euler, Euler-Ancestral, Heun, KDPM2,
 * KDPM2-Ancestral and LMS. Their `sigmas` are float32 (one per timestep plus a final 0), the model input is
 * scaled by 1 / sqrt(sigma^2 + 1), and the denoised sample comes from epsilon / v / sample predictions.
 */
import { type BetaSchedule, type NoiseSchedule, noiseSchedule, trainingSigmas } from "./beta_schedules.js";
import { npInterp, npLinspace, npLogF32 } from "./numpy_numerics.js";
import { noiseRows, type SchedulerConfig } from "./scheduler_utils.js";
import { karrasSigmas, sigmaToT, spacedTimesteps, type TimestepSpacing } from "./timestep_spacing.js";
import { f32, maxF32 } from "./torch_numerics.js";

export interface SigmaTables extends NoiseSchedule {
  /** The training sigmas ((1 - a) / a) ** 0.5, float32, ascending in t. */
  trainSigmas: Float32Array;
  /** diffusers' `log_sigmas = np.log(sigmas)`, float32. */
  logSigmas: Float32Array;
}

/**
 * The noise schedule of `__init__` plus the training sigmas and their logs, numpy's float32 `np.log` kernel by
 * default (`log`: LMSDiscrete's port takes the float64 log rounded to float32).
 */
export function sigmaTables(
  name: string,
  cfg: SchedulerConfig,
  n: number,
  options: { schedules?: readonly BetaSchedule[]; log?: (x: number) => number } = {},
): SigmaTables {
  const tables = noiseSchedule(name, cfg, n, { schedules: options.schedules });
  const trainSigmas = trainingSigmas(tables.alphasCumprod);
  return { ...tables, trainSigmas, logSigmas: trainSigmas.map(options.log ?? npLogF32) };
}

/** Euler's state after `__init__`: the reversed training sigmas + [0], timesteps N-1 .. 0 (float64). */
export function initialSchedule(tables: SigmaTables): { timesteps: number[]; sigmas: Float32Array } {
  const n = tables.trainSigmas.length;
  const sigmas = new Float32Array(n + 1);
  for (let i = 0; i < n; i++) sigmas[i] = tables.trainSigmas[n - 1 - i] as number;
  return { timesteps: npLinspace(0, n - 1, n).reverse(), sigmas };
}

/**
 * The timesteps and (float64) sigmas of `set_timesteps` for the parsed config `p`: the spaced float32
 * timesteps, the training sigmas `np.interp`'ed at them (or `o.sigmas`, when the scheduler interpolates
 * otherwise), and with `use_karras_sigmas` the Karras sigmas, whose timesteps are `o.karrasTimestep(sigma)`
 * (by default `_sigma_to_t` under numpy casting).
 */
export function sigmaSchedule(
  p: { spacing: TimestepSpacing; numTrain: number; stepsOffset: number; useKarras?: boolean },
  n: number,
  tables: SigmaTables,
  o: { sigmas?: number[]; karrasTimestep?: (sigma: number) => number } = {},
): { timesteps: number[]; sigmas: number[] } {
  let timesteps = spacedTimesteps(p.spacing, p.numTrain, n, p.stepsOffset, "float32");
  let sigmas = o.sigmas ?? npInterp(timesteps, tables.trainSigmas);
  if (p.useKarras) {
    sigmas = karrasSigmas(sigmas[sigmas.length - 1] as number, sigmas[0] as number, n);
    timesteps = sigmas.map(o.karrasTimestep ?? ((s) => sigmaToT(s, tables.logSigmas)));
  }
  return { timesteps, sigmas };
}

/** diffusers `init_noise_sigma`: max sigma (linspace / trailing) or sqrt(max^2 + 1) (leading), float32. */
export function initNoiseSigmaOf(sigmas: Float32Array, spacing: TimestepSpacing): number {
  const m = maxF32(sigmas);
  if (spacing === "linspace" || spacing === "trailing") return m;
  return f32(Math.sqrt(f32(f32(m * m) + 1)));
}

/** diffusers `scale_model_input`: sample / ((sigma^2 + 1) ** 0.5), float32. */
export function scaleBySigma(sample: Float32Array, sigma: number): Float32Array {
  const d = f32(Math.sqrt(f32(f32(sigma * sigma) + 1)));
  const out = new Float32Array(sample.length);
  for (let i = 0; i < sample.length; i++) out[i] = (sample[i] as number) / d;
  return out;
}

/**
 * `pred_original_sample` (the denoised x0) from the model output, float32:
 * - "epsilon": sample - epsSigma * model_output (Euler passes sigma_hat here);
 * - "v_prediction": model_output * (-sigma / (sigma^2 + 1) ** 0.5) + sample / (sigma^2 + 1);
 * - "sample" / "original_sample": the model output itself.
 */
export function predictOriginalSample(
  prediction: "epsilon" | "v_prediction" | "sample" | "original_sample",
  modelOutput: Float32Array,
  sample: Float32Array,
  sigma: number,
  epsSigma = sigma,
): Float32Array {
  const n = sample.length;
  const pred = new Float32Array(n);
  if (prediction === "epsilon") {
    for (let i = 0; i < n; i++) pred[i] = (sample[i] as number) - f32(epsSigma * (modelOutput[i] as number));
  } else if (prediction === "v_prediction") {
    const s2p1 = f32(f32(sigma * sigma) + 1);
    const cOut = f32(-sigma / f32(Math.sqrt(s2p1)));
    for (let i = 0; i < n; i++) {
      pred[i] = f32((modelOutput[i] as number) * cOut) + f32((sample[i] as number) / s2p1);
    }
  } else pred.set(modelOutput);
  return pred;
}

/**
 * diffusers `index_for_timestep` of the second-order schedulers (Heun, KDPM2, KDPM2-Ancestral): before any
 * step, a repeated timestep maps to its second occurrence; after steps, to the occurrence given by how often
 * it was stepped (`counter`). Undefined when there is no such occurrence.
 */
export function indexForTimestep(
  timesteps: readonly number[],
  t: number,
  counter: ReadonlyMap<number, number>,
): number | undefined {
  const idx: number[] = [];
  timesteps.forEach((s, i) => {
    if (s === t) idx.push(i);
  });
  const pos = counter.size === 0 ? (idx.length > 1 ? 1 : 0) : (counter.get(t) ?? 0);
  return idx[pos];
}

/** diffusers `add_noise` of the sigma schedulers: original + noise * sigma(t) (float32), one timestep per row. */
export function addNoiseBySigma(
  className: string,
  x: Float32Array,
  noise: Float32Array,
  timesteps: readonly number[],
  sigmaOf: (t: number) => number,
): Float32Array {
  const rowLen = noiseRows(className, x, noise, timesteps);
  const out = new Float32Array(x.length);
  timesteps.forEach((t, r) => {
    const sigma = sigmaOf(t);
    for (let i = r * rowLen; i < (r + 1) * rowLen; i++) {
      out[i] = (x[i] as number) + f32((noise[i] as number) * sigma);
    }
  });
  return out;
}

/** `torch.cat([x[:1], x[1:].repeat_interleave(2), x[-1:]])` (the KDPM2 schedules). */
export function repeatInner(x: ArrayLike<number>): Float32Array {
  const out = new Float32Array(2 * x.length);
  out[0] = x[0] as number;
  for (let i = 1; i < x.length; i++) {
    out[2 * i - 1] = x[i] as number;
    out[2 * i] = x[i] as number;
  }
  out[out.length - 1] = x[x.length - 1] as number;
  return out;
}
