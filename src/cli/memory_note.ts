/**
 * A note before a run whose untiled VAE decode will need a lot of memory: the CLI decodes in one piece unless
 * --vae-tiling is given (tiling changes the image slightly, so it is never switched on silently).
 */
import type { RunPlan } from "./args.js";

/**
 * Peak RSS of an untiled decode per latent pixel and image: 4.6 GB at 256² latents (the x4 upscaler's VAE, direct
 * 3×3 convolutions as "auto" builds them there, fused attention; README "Memory"). It grows with the pixel count.
 */
export const VAE_DECODE_BYTES_PER_LATENT_PIXEL = 4.6e9 / (256 * 256);

/** Inputs up to this many pixels get no note: a default 256² → 1024² run peaks at 4.9 GiB (README "Memory"). */
export const NOTE_ABOVE_PIXELS = 256 * 256;

/** The note for this plan and these inputs (one batch: every input has the same size), or undefined. */
export function untiledDecodeNote(
  plan: Pick<RunPlan, "vaeTiling" | "numImagesPerPrompt">,
  images: readonly { width: number; height: number }[],
): string | undefined {
  const first = images[0];
  if (plan.vaeTiling || first === undefined) return undefined;
  const { width, height } = first;
  if (width * height <= NOTE_ABOVE_PIXELS) return undefined;
  const batch = images.length * plan.numImagesPerPrompt;
  const gib = (VAE_DECODE_BYTES_PER_LATENT_PIXEL * width * height * batch) / 2 ** 30;
  const what = batch > 1 ? `${batch} images of ${width}x${height}` : `a ${width}x${height} input`;
  return (
    `sdx4: note: decoding ${what} to ${4 * width}x${4 * height} in one piece takes about ${gib.toFixed(0)} GiB ` +
    "with the x4 upscaler's VAE; --vae-tiling decodes in tiles within about 1 GiB (it changes the image " +
    "slightly, as diffusers' enable_vae_tiling does)\n"
  );
}
