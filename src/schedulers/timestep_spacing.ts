/**
 * The inference timesteps of diffusers' `set_timesteps` (`timestep_spacing` "linspace" / "leading" /
 * "trailing", numpy float64 then int64 or float32), Karras sigmas (`_convert_to_karras`) and the timestep of
 * a sigma (`_sigma_to_t`).
 */
import { npArange, npLinspace } from "./numpy_numerics.js";
import { f32, rint } from "./torch_numerics.js";

export const TIMESTEP_SPACINGS = ["linspace", "leading", "trailing"] as const;
export type TimestepSpacing = (typeof TIMESTEP_SPACINGS)[number];

/**
 * The descending timesteps of `set_timesteps` in DDPM / DDIM / PNDM (`dtype` "int64": numpy int64 values) and
 * in the sigma schedulers Euler / Euler-A / Heun / KDPM2 / KDPM2-A / LMS ("float32": numpy float32, the
 * "linspace" values not rounded):
 * - linspace: `np.linspace(0, N - 1, n)`, rounded half-to-even for int64;
 * - leading: `arange(n) * (N // n) + steps_offset`;
 * - trailing: `round(np.arange(N, 0, -N / n)) - 1`.
 */
export function spacedTimesteps(
  spacing: TimestepSpacing,
  numTrain: number,
  n: number,
  stepsOffset: number,
  dtype: "int64" | "float32",
): number[] {
  const int = dtype === "int64";
  if (spacing === "linspace") {
    return npLinspace(0, numTrain - 1, n)
      .map(int ? rint : f32)
      .reverse();
  }
  if (spacing === "leading") {
    const ratio = Math.floor(numTrain / n);
    const out: number[] = [];
    for (let i = n - 1; i >= 0; i--)
      out.push(int ? i * ratio + stepsOffset : f32(f32(i * ratio) + f32(stepsOffset)));
    return out;
  }
  return npArange(numTrain, 0, -(numTrain / n)).map((t) => (int ? rint(t) - 1 : f32(f32(rint(t)) - 1)));
}

/**
 * The descending int64 timesteps of the DPM-family solvers (DPMSolverMultistep / DEIS / UniPC, and "linspace"
 * for DPMSolverSinglestep), which space n + 1 points and drop the last:
 * - linspace: `np.linspace(0, last - 1, n + 1).round()[::-1][:-1]`;
 * - leading: `(arange(n + 1) * (last // (n + 1))).round()[::-1][:-1] + steps_offset`;
 * - trailing: `np.arange(last, 0, -N / n).round() - 1`.
 * `last` is num_train_timesteps minus the `lambda_min_clipped` cut (DPMSolver schedulers), else N.
 */
export function solverTimesteps(
  spacing: TimestepSpacing,
  numTrain: number,
  last: number,
  n: number,
  stepsOffset: number,
): number[] {
  if (spacing === "linspace") {
    return npLinspace(0, last - 1, n + 1)
      .map(rint)
      .reverse()
      .slice(0, n);
  }
  if (spacing === "leading") {
    const ratio = Math.floor(last / (n + 1));
    const out: number[] = [];
    for (let i = n; i >= 1; i--) out.push(i * ratio + stepsOffset);
    return out;
  }
  return npArange(last, 0, -(numTrain / n)).map((t) => rint(t) - 1);
}

/** diffusers `_convert_to_karras` (rho = 7) from the largest to the smallest sigma, float64. */
export function karrasSigmas(sigmaMin: number, sigmaMax: number, n: number): number[] {
  const rho = 7;
  const minInvRho = sigmaMin ** (1 / rho);
  const maxInvRho = sigmaMax ** (1 / rho);
  return npLinspace(0, 1, n).map((r) => (maxInvRho + r * (minInvRho - maxInvRho)) ** rho);
}

/**
 * diffusers `_sigma_to_t`: the log-sigma's position between the two float32 training `log_sigmas` around it.
 * `precision` is how the reference evaluates it:
 * - "numpy" (default): a float64 sigma against the float32 table under numpy 1.x value-based casting: the
 *   log is cast to float32, `w` is float32, and `(1 - w) * low_idx + w * high_idx` is float64;
 * - "torch": the same for a float32 0-dim torch tensor (KDPM2's interpolated sigmas), where the final blend is
 *   torch float32;
 * - "float64": everything in float64 (LMSDiscrete's port).
 */
export function sigmaToT(
  sigma: number,
  logSigmas: ArrayLike<number>,
  precision: "numpy" | "torch" | "float64" = "numpy",
): number {
  const r = precision === "float64" ? (x: number) => x : f32;
  const logSigma = r(Math.log(Math.max(sigma, 1e-10)));
  let low = 0;
  for (let i = 0; i < logSigmas.length; i++) if (logSigma >= (logSigmas[i] as number)) low = i;
  low = Math.min(low, logSigmas.length - 2);
  const lo = logSigmas[low] as number;
  const hi = logSigmas[low + 1] as number;
  const w = Math.min(Math.max(r(r(lo - logSigma) / r(lo - hi)), 0), 1); // NaN stays NaN
  if (precision === "torch") return f32(f32(f32(1 - w) * low) + f32(w * (low + 1)));
  return r(1 - w) * low + w * (low + 1);
}
