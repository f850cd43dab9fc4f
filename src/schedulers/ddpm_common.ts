/**
 * What DDPM, DDIM and PNDM (the alpha_t-parametrised schedulers) share: alphas_cumprod lookups, diffusers'
 * x0 clipping (`clip_sample` / dynamic `thresholding`), and the forward process `add_noise` / `get_velocity`.
 * Every per-step scalar is a float32 0-dim tensor in diffusers and every elementwise op a float32 op.
 */
import {
  batchSizeOf,
  configBool,
  configFinite,
  configRatio,
  noiseRows,
  type SchedulerConfig,
} from "./scheduler_utils.js";
import { f32, thresholdSample } from "./torch_numerics.js";

/** alphas_cumprod[t], or a RangeError naming the scheduler for a timestep outside the table. */
export function alphaProdAt(name: string, alphasCumprod: Float32Array, t: number): number {
  const v = alphasCumprod[t];
  if (v === undefined)
    throw new RangeError(`${name}: timestep ${t} is outside 0..${alphasCumprod.length - 1}`);
  return v;
}

/** The x0 clipping keys of DDPM / DDIM. */
export interface SampleClipping {
  clipSample: boolean;
  clipSampleRange: number;
  thresholding: boolean;
  dynamicThresholdingRatio: number;
  sampleMaxValue: number;
}

export function parseSampleClipping(name: string, cfg: SchedulerConfig): SampleClipping {
  return {
    clipSample: configBool(name, "clip_sample", cfg.clip_sample),
    clipSampleRange: configFinite(name, "clip_sample_range", cfg.clip_sample_range),
    thresholding: configBool(name, "thresholding", cfg.thresholding),
    dynamicThresholdingRatio: configRatio(name, "dynamic_thresholding_ratio", cfg.dynamic_thresholding_ratio),
    sampleMaxValue: configFinite(name, "sample_max_value", cfg.sample_max_value),
  };
}

/**
 * diffusers' "Clip or threshold predicted x_0": dynamic thresholding per batch row (`batchSize`, default 1)
 * when `thresholding`, else clamping to [-clip_sample_range, clip_sample_range] (in place) when `clip_sample`.
 */
export function clipPredictedSample(
  name: string,
  x0: Float32Array,
  c: SampleClipping,
  batchSize: number | undefined,
): Float32Array {
  if (c.thresholding) {
    const batch = batchSizeOf(name, batchSize, x0.length);
    return thresholdSample(x0, batch, c.dynamicThresholdingRatio, c.sampleMaxValue);
  }
  if (c.clipSample) {
    const r = f32(c.clipSampleRange);
    for (let i = 0; i < x0.length; i++) x0[i] = Math.min(Math.max(x0[i] as number, -r), r);
  }
  return x0;
}

/** Per-row sqrt(a_t), sqrt(1 - a_t) (float32) and the row length, for one integer timestep per row. */
function rowCoefficients(
  name: string,
  what: string,
  alphasCumprod: Float32Array,
  x: Float32Array,
  noise: Float32Array,
  timesteps: readonly number[],
): [Float32Array, Float32Array, number] {
  const rowLen = noiseRows(name, x, noise, timesteps, what);
  const sa = new Float32Array(timesteps.length);
  const sb = new Float32Array(timesteps.length);
  timesteps.forEach((t, r) => {
    const a = Number.isInteger(t) ? alphasCumprod[t] : undefined;
    if (a === undefined) {
      throw new RangeError(
        `${name}.${what}: timestep ${t} is not an integer in 0..${alphasCumprod.length - 1}`,
      );
    }
    sa[r] = Math.sqrt(a);
    sb[r] = Math.sqrt(f32(1 - a));
  });
  return [sa, sb, rowLen];
}

/**
 * diffusers `add_noise` of DDPM / DDIM / PNDM: sqrt(a_t) * x + sqrt(1 - a_t) * noise in float32, one timestep
 * per row (rows = length / timesteps.length).
 */
export function addNoiseByAlphas(
  name: string,
  alphasCumprod: Float32Array,
  x: Float32Array,
  noise: Float32Array,
  timesteps: readonly number[],
): Float32Array {
  const [sa, sb, rowLen] = rowCoefficients(name, "addNoise", alphasCumprod, x, noise, timesteps);
  const out = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const r = Math.floor(i / rowLen);
    out[i] = f32(f32((sa[r] as number) * (x[i] as number)) + f32((sb[r] as number) * (noise[i] as number)));
  }
  return out;
}

/** diffusers `get_velocity`: sqrt(a_t) * noise - sqrt(1 - a_t) * sample, float32, one timestep per row. */
export function velocityByAlphas(
  name: string,
  alphasCumprod: Float32Array,
  sample: Float32Array,
  noise: Float32Array,
  timesteps: readonly number[],
): Float32Array {
  const [sa, sb, rowLen] = rowCoefficients(name, "getVelocity", alphasCumprod, sample, noise, timesteps);
  const out = new Float32Array(sample.length);
  for (let i = 0; i < sample.length; i++) {
    const r = Math.floor(i / rowLen);
    out[i] = f32(
      f32((sa[r] as number) * (noise[i] as number)) - f32((sb[r] as number) * (sample[i] as number)),
    );
  }
  return out;
}
