/**
 * How a model builds its float32 convolutions: RuntimeOptions.convAlgorithm → a ConvPlan that ModelBuilder hands
 * to every Conv2d (src/onnx/nn.ts). "auto" picks, per layer and execution provider, what measured fastest on
 * onnxruntime's CPU provider: Winograd F(4×4, 3×3) for the large 3×3 layers (winograd.ts), one MatMul for 1×1
 * layers, onnxruntime's Conv for the rest.
 */
import { checkChoice } from "../io/choice.js";
import type { Value } from "./graph_builder.js";
import * as op from "./ops.js";

/** How float32 3×3 convolutions are built: see RuntimeOptions.convAlgorithm. */
export type ConvAlgorithm = "auto" | "direct" | "winograd";
export const CONV_ALGORITHMS: readonly ConvAlgorithm[] = ["auto", "direct", "winograd"];

/**
 * When Winograd's transformed filters U = G g Gᵀ are computed (RuntimeOptions.winogradFilters): "session" once, by
 * onnxruntime's constant folding when the session is created (held for the session's life: 4x the memory of the
 * 3×3 filters); "run" in every run, from the 3×3 filters (nothing extra held; each layer's U lives only around
 * its GEMMs).
 */
export type WinogradFilters = "session" | "run";
export const WINOGRAD_FILTERS: readonly WinogradFilters[] = ["session", "run"];

/** Throws a clear error unless `v` is a WinogradFilters. */
export function checkWinogradFilters(v: unknown, what = "winogradFilters"): WinogradFilters {
  return checkChoice(WINOGRAD_FILTERS, v, what);
}

/**
 * A model's default WinogradFilters: "run" for the VAE (one decode per pipeline call, so the transform costs
 * ~0.1 s per call, while folded filters would hold +0.6 GB), "session" for the UNet (run at every denoising step:
 * the transform costs ~0.2 s per step, ~2 % of a 128² step, 8 % of a 64² one; folded filters hold +0.9 GB).
 */
export const WINOGRAD_FILTERS_DEFAULT = { unet: "session", vae: "run" } as const satisfies Record<
  string,
  WinogradFilters
>;

/** Throws a clear error unless `v` is a ConvAlgorithm. */
export function checkConvAlgorithm(v: unknown, what = "convAlgorithm"): ConvAlgorithm {
  return checkChoice(CONV_ALGORITHMS, v, what);
}

/** How a model builds its convolutions (ModelBuilderOptions.conv). */
export interface ConvPlan {
  /** Which float32 3×3 convolutions (stride 1, padding 1, groups 1) use Winograd's F(4×4, 3×3). */
  winograd?: (conv: { inChannels: number; outChannels: number }) => boolean;
  /** When the Winograd layers' filters are transformed (default "session"). */
  winogradFilters?: WinogradFilters;
  /**
   * 1×1 convolutions (stride 1, no padding, groups 1) as one MatMul over the channels: bit-identical on
   * onnxruntime's CPU provider, and 1.4-2.1x faster there than its NCHWc 1×1 Conv (measured on the UNet's and
   * VAE's shortcut shapes, e.g. 768→256 on 2×768×128²: 248 → 141 ms).
   */
  pointwiseMatMul?: boolean;
}

/** The layers "auto" builds with Winograd on the CPU: both channel counts >= 256, at most 512 output channels. */
export const WINOGRAD_AUTO = { minChannels: 256, maxOutChannels: 512 } as const;

/**
 * The latent sizes (height × width) above which "auto" builds a model's graph without Winograd (`largeMaps`): the
 * transforms' intermediate tensors (2.25x a layer's input, several alive at once) take memory that grows with the
 * map, while the gain shrinks. Measured on the AMD EPYC, x4 model, float32, Winograd vs direct (peak RSS of the
 * process): UNet batch 2 at 128² latents 13.4 s vs 17.9 s, at 256² 60.7 s / 6.4 GB vs 89.1 s / 4.3 GB (so the UNet
 * keeps Winograd up to 256²; at 512² its activations alone are 10 GiB); VAE decode 128² 18.2 s / 3.3 GB vs 29.3 s /
 * 2.7 GB, 256² 207 s / 11.8 GB vs 231 s / 4.6 GB (so the VAE keeps it up to 128²).
 */
export const WINOGRAD_AUTO_MAX_LATENT_AREA = { unet: 256 * 256, vae: 128 * 128 } as const;

/**
 * Whether a model's inputs of this latent size run on its graph built for large maps: only where that graph
 * differs ("auto" on the CPU), so other algorithms and providers keep one graph and one session for every size.
 */
export function largeMaps(
  model: keyof typeof WINOGRAD_AUTO_MAX_LATENT_AREA,
  latentHeight: number,
  latentWidth: number,
  options: { convAlgorithm?: ConvAlgorithm; executionProvider?: string } = {},
): boolean {
  if ((options.convAlgorithm ?? "auto") !== "auto" || (options.executionProvider ?? "cpu") !== "cpu")
    return false;
  return latentHeight * latentWidth > WINOGRAD_AUTO_MAX_LATENT_AREA[model];
}

/** A model's convolution options (the RuntimeOptions fields that shape its conv plan). */
export interface ModelConvOptions {
  convAlgorithm?: ConvAlgorithm;
  executionProvider?: string;
  winogradFilters?: WinogradFilters;
}

/** A model's WinogradFilters: the option, else the model's default (WINOGRAD_FILTERS_DEFAULT). */
export function modelWinogradFilters(
  model: keyof typeof WINOGRAD_FILTERS_DEFAULT,
  options: ModelConvOptions,
): WinogradFilters {
  return options.winogradFilters ?? WINOGRAD_FILTERS_DEFAULT[model];
}

/** Throws a clear error (naming `label`) unless a model's conv options are valid. */
export function checkModelConvOptions(
  model: keyof typeof WINOGRAD_FILTERS_DEFAULT,
  options: ModelConvOptions,
  label: string,
): void {
  checkConvAlgorithm(options.convAlgorithm ?? "auto", `${label}: convAlgorithm`);
  checkWinogradFilters(modelWinogradFilters(model, options), `${label}: winogradFilters`);
}

/** The ConvPlan a model's graph is built with (`largeMaps`: the graph for inputs above its Winograd limit). */
export function modelConvPlan(
  model: keyof typeof WINOGRAD_FILTERS_DEFAULT,
  options: ModelConvOptions,
  large: boolean,
): ConvPlan {
  return convPlan(options.convAlgorithm, options.executionProvider, {
    largeMaps: large,
    winogradFilters: modelWinogradFilters(model, options),
  });
}

/**
 * The ConvPlan of a ConvAlgorithm on an execution provider. "auto" on the CPU: Winograd where the output has 256
 * to 512 channels and the input at least 256 (in the x4 upscaler, every 3×3 convolution above 16² latents: the
 * bulk of the UNet's and VAE's time; the 1024-channel ones run on small maps and their transformed weights would
 * take 4x their 38-75 MB each), 1×1 convolutions as MatMul. Other providers: their own convolutions.
 * `largeMaps` (a graph built for inputs above WINOGRAD_AUTO_MAX_LATENT_AREA): "auto" keeps onnxruntime's 3×3
 * Conv (1×1 still as MatMul); "winograd" and "direct" are unaffected.
 */
export function convPlan(
  algorithm: ConvAlgorithm | undefined,
  executionProvider: string | undefined,
  options: { largeMaps?: boolean; winogradFilters?: WinogradFilters } = {},
): ConvPlan {
  const a = checkConvAlgorithm(algorithm ?? "auto");
  const winogradFilters = checkWinogradFilters(options.winogradFilters ?? "session");
  if (a === "direct") return {};
  if (a === "winograd") return { winograd: () => true, winogradFilters, pointwiseMatMul: true };
  if ((executionProvider ?? "cpu") !== "cpu") return {};
  if (options.largeMaps === true) return { pointwiseMatMul: true };
  const { minChannels, maxOutChannels } = WINOGRAD_AUTO;
  return {
    winograd: (c) => Math.min(c.inChannels, c.outChannels) >= minChannels && c.outChannels <= maxOutChannels,
    winogradFilters,
    pointwiseMatMul: true,
  };
}

/** A 1×1 convolution (stride 1, no padding, groups 1) as MatMul(W [K, C], x [N, C, H·W]) + bias. */
export function pointwiseConv(
  x: Value,
  w: Value,
  bias: Value | undefined,
  inChannels: number,
  outChannels: number,
): Value {
  const g = x.graph;
  const y = op.matmul(op.reshape(w, [outChannels, inChannels]), op.reshape(x, [0, inChannels, -1]));
  const out = op.reshape(y, op.concat([g.constInt64([0, outChannels]), op.shape(x, 2, 4)], 0));
  return bias ? op.add(out, op.reshape(bias, [outChannels, 1, 1])) : out;
}
