/**
 * The training noise schedule every diffusers scheduler builds in `__init__`: betas from `trained_betas` or
 * `beta_schedule`, alphas = 1 - betas, alphas_cumprod and the k-diffusion training sigmas, all float32 exactly
 * as torch computes them (float32 linspace, cumprod with a double accumulator, float32 sqrt and products).
 */
import { configFinite, configOneOf, type SchedulerConfig, SchedulerConfigError } from "./scheduler_utils.js";
import { cumprodF32, f32, torchLinspaceF32 } from "./torch_numerics.js";

/** diffusers' `__init__` defaults of the noise-schedule keys (Heun and KDPM2 override beta_start / beta_end). */
export const NOISE_SCHEDULE_DEFAULTS = {
  num_train_timesteps: 1000,
  beta_start: 0.0001,
  beta_end: 0.02,
  beta_schedule: "linear" as string,
  trained_betas: null as number[] | null,
};

export type BetaSchedule = "linear" | "scaled_linear" | "squaredcos_cap_v2" | "sigmoid" | "exp";

/** The schedules most schedulers accept; DDPM adds "sigmoid", Heun "exp". */
export const BASE_BETA_SCHEDULES = ["linear", "scaled_linear", "squaredcos_cap_v2"] as const;

/** diffusers `betas_for_alpha_bar` ("cosine" or "exp" alpha_bar), computed in float64, returned as float32. */
export function betasForAlphaBar(n: number, alphaTransform: "cosine" | "exp" = "cosine", maxBeta = 0.999) {
  const alphaBar =
    alphaTransform === "cosine"
      ? (t: number) => Math.cos((((t + 0.008) / 1.008) * Math.PI) / 2) ** 2
      : (t: number) => Math.exp(t * -12);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.min(1 - alphaBar((i + 1) / n) / alphaBar(i / n), maxBeta);
  return out;
}

/**
 * The float32 betas of `__init__`: `trained_betas` (n finite numbers) when given, else `beta_schedule` over
 * `beta_start` / `beta_end`: "linear" (torch float32 linspace), "scaled_linear" (linspace of the square roots,
 * squared), "squaredcos_cap_v2" / "exp" (`betas_for_alpha_bar`), "sigmoid" (DDPM). `schedules` lists the
 * values the calling scheduler accepts.
 */
export function betasFromConfig(
  name: string,
  cfg: SchedulerConfig,
  n: number,
  schedules: readonly BetaSchedule[] = BASE_BETA_SCHEDULES,
): Float32Array {
  const tb = cfg.trained_betas;
  if (tb !== null && tb !== undefined) {
    if (!Array.isArray(tb) && !ArrayBuffer.isView(tb)) {
      throw new SchedulerConfigError(name, "trained_betas", "must be an array of numbers or null");
    }
    const arr = Array.from(tb as ArrayLike<unknown>, (v) => configFinite(name, "trained_betas", v));
    if (arr.length !== n) {
      throw new SchedulerConfigError(name, "trained_betas", `has ${arr.length} values, expected ${n}`);
    }
    return Float32Array.from(arr);
  }
  const schedule = configOneOf(name, "beta_schedule", cfg.beta_schedule, schedules);
  const b0 = configFinite(name, "beta_start", cfg.beta_start);
  const b1 = configFinite(name, "beta_end", cfg.beta_end);
  if (schedule === "linear") return torchLinspaceF32(b0, b1, n);
  if (schedule === "scaled_linear")
    return torchLinspaceF32(Math.sqrt(b0), Math.sqrt(b1), n).map((v) => v * v);
  if (schedule === "sigmoid") {
    // torch.sigmoid(torch.linspace(-6, 6, n)) * (beta_end - beta_start) + beta_start, all float32
    const scale = f32(b1 - b0);
    const shift = f32(b0);
    return torchLinspaceF32(-6, 6, n).map((x) =>
      f32(f32(f32(1 / f32(1 + f32(Math.exp(-x)))) * scale) + shift),
    );
  }
  return betasForAlphaBar(n, schedule === "exp" ? "exp" : "cosine");
}

/** diffusers `rescale_zero_terminal_snr` (arXiv 2305.08891, Algorithm 1), float32 tensor ops. */
export function rescaleZeroTerminalSnr(betas: Float32Array): Float32Array {
  const n = betas.length;
  const alphas = betas.map((b) => f32(1 - b));
  const sq = cumprodF32(alphas).map((v) => f32(Math.sqrt(v)));
  const s0 = sq[0] as number;
  const sT = sq[n - 1] as number;
  const scale = f32(s0 / f32(s0 - sT));
  const bar = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const v = f32(f32((sq[i] as number) - sT) * scale);
    bar[i] = f32(v * v);
  }
  const out = new Float32Array(n);
  out[0] = f32(1 - (bar[0] as number));
  for (let i = 1; i < n; i++) out[i] = f32(1 - f32((bar[i] as number) / (bar[i - 1] as number)));
  return out;
}

export interface NoiseSchedule {
  betas: Float32Array;
  alphas: Float32Array;
  alphasCumprod: Float32Array;
}

/**
 * betas (`betasFromConfig`, then `rescale_zero_terminal_snr` when `rescaleZeroSnr`), alphas = 1 - betas and
 * alphas_cumprod, float32.
 */
export function noiseSchedule(
  name: string,
  cfg: SchedulerConfig,
  n: number,
  options: { schedules?: readonly BetaSchedule[]; rescaleZeroSnr?: boolean } = {},
): NoiseSchedule {
  let betas = betasFromConfig(name, cfg, n, options.schedules);
  if (options.rescaleZeroSnr) betas = rescaleZeroTerminalSnr(betas);
  const alphas = betas.map((b) => f32(1 - b));
  return { betas, alphas, alphasCumprod: cumprodF32(alphas) };
}

/** The training sigmas `((1 - alphas_cumprod) / alphas_cumprod) ** 0.5`, float32 tensor ops (ascending in t). */
export function trainingSigmas(alphasCumprod: Float32Array): Float32Array {
  return alphasCumprod.map((a) => Math.sqrt(f32(f32(1 - a) / a)));
}
