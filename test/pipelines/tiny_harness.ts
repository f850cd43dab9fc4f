/**
 * The tiny-model pipeline the behaviour tests share (behaviour, bad_inputs, from_pretrained_errors): test pictures,
 * output helpers, a runtime + temporary folder per test file (`testWorkspace`), and `tinyPipeline`, which loads
 * the pipeline once per describe block and counts / patches its model calls per test.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, afterEach, before } from "node:test";
import sharp from "sharp";
import type { RgbImage } from "../../src/image/types.js";
import {
  StableDiffusionUpscalePipeline,
  type UpscaleImages,
} from "../../src/pipelines/pipeline_stable_diffusion_upscale.js";
import type { UpscaleCallOptions } from "../../src/pipelines/upscale_inputs.js";
import { Generator } from "../../src/random/generator.js";
import type { HostTensor } from "../../src/runtime/host_tensor.js";
import { RuntimeHost } from "../../src/runtime/worker_host.js";
import { FIXTURES } from "../helpers/fixtures.js";

export const MODEL = join(FIXTURES, "models/tiny-upscaler");

/** A test file's runtime host and temporary folder (sdx4-<name>-*), both closed / removed after the file. */
export function testWorkspace(name: string): { runtime: RuntimeHost; tmp: string } {
  const runtime = new RuntimeHost();
  const tmp = mkdtempSync(join(tmpdir(), `sdx4-${name}-`));
  after(async () => {
    await runtime.close();
    rmSync(tmp, { recursive: true, force: true });
  });
  return { runtime, tmp };
}

export const S = 16; // input side: latents 16x16, outputs 64x64
export const TOL = { atol: 1e-4, rtol: 1e-4 };

/** A deterministic 16x16 test picture; `phase` makes different pictures. */
export function picture(phase: number, w = S, h = S): RgbImage {
  const data = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const o = (y * w + x) * 3;
      data[o] = (x * 16 + phase * 40) & 255;
      data[o + 1] = (y * 16 + phase * 90) & 255;
      data[o + 2] = ((x ^ y) * 20 + phase * 7) & 255;
    }
  }
  return { data, width: w, height: h };
}
export const IMG_A = picture(0);
export const IMG_B = picture(3);

export const pngOf = (im: RgbImage): Promise<Buffer> =>
  sharp(Buffer.from(im.data), { raw: { width: im.width, height: im.height, channels: 3 } })
    .png()
    .toBuffer();

export const gen = (seed: number) => new Generator().manualSeed(seed);

export function dataOf(images: UpscaleImages): { data: Float32Array; shape: number[] } {
  assert.notEqual(images.outputType, "pil");
  if (images.outputType === "pil") throw new Error("unreachable");
  return { data: images.data, shape: images.shape };
}

/** Row k of a [N, ...] array. */
export function row(data: Float32Array, shape: readonly number[], k: number): Float32Array {
  const size = shape.slice(1).reduce((a, b) => a * b, 1);
  return data.subarray(k * size, (k + 1) * size);
}

export const maxAbsDiff = (a: ArrayLike<number>, b: ArrayLike<number>): number => {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs((a[i] as number) - (b[i] as number)));
  return m;
};

export type UNetHook = (
  inputs: Parameters<StableDiffusionUpscalePipeline["unet"]["forward"]>[0],
  out: HostTensor,
  call: number,
) => HostTensor | undefined;

export interface TinyPipeline {
  /** The pipeline (loaded in a `before` hook of the calling describe block). */
  readonly pipe: StableDiffusionUpscalePipeline;
  /** Model runs in the current test (instrument). */
  readonly counts: { text: number; unet: number; vae: number };
  /** Replaces `obj[key]` for the current test (restored after it). */
  patch<T extends object, K extends keyof T>(obj: T, key: K, value: T[K]): void;
  /** Counts text encoder, UNet and VAE decoder runs; `unetHook` sees (and may replace) each UNet output. */
  instrument(unetHook?: UNetHook): void;
  /** A small valid call (2 steps, one prompt, IMG_A, seed 0, "np"), with `o` on top. */
  base(o?: Partial<UpscaleCallOptions>): UpscaleCallOptions;
}

/** Registers the hooks of a tiny-pipeline describe block (call it inside `describe`). */
export function tinyPipeline(runtime: RuntimeHost): TinyPipeline {
  let loaded: StableDiffusionUpscalePipeline | undefined;
  const counts = { text: 0, unet: 0, vae: 0 };
  const restore: (() => void)[] = [];
  const get = (): StableDiffusionUpscalePipeline => {
    assert.ok(loaded, "the pipeline is loaded in a before hook");
    return loaded;
  };
  const patch: TinyPipeline["patch"] = (obj, key, value) => {
    const had = Object.hasOwn(obj, key);
    const old = obj[key];
    obj[key] = value;
    restore.push(() => {
      if (had) obj[key] = old;
      else delete obj[key];
    });
  };
  const instrument = (unetHook?: UNetHook): void => {
    const pipe = get();
    const text = pipe.textEncoder.forward.bind(pipe.textEncoder);
    const unet = pipe.unet.forward.bind(pipe.unet);
    const decode = pipe.vae.decode.bind(pipe.vae);
    patch(pipe.textEncoder, "forward", async (input) => {
      counts.text++;
      return text(input);
    });
    patch(pipe.unet, "forward", async (inputs, options) => {
      const call = counts.unet++;
      const out = await unet(inputs, options);
      return unetHook?.(inputs, out, call) ?? out;
    });
    patch(pipe.vae, "decode", async (z, options) => {
      counts.vae++;
      return decode(z, options);
    });
  };
  before(async () => {
    loaded = await StableDiffusionUpscalePipeline.fromPretrained(MODEL, { runtime });
  });
  afterEach(() => {
    while (restore.length) restore.pop()?.();
    counts.text = counts.unet = counts.vae = 0;
  });
  return {
    get pipe() {
      return get();
    },
    counts,
    patch,
    instrument,
    base: (o = {}) => ({
      prompt: "a white cat",
      image: IMG_A,
      numInferenceSteps: 2,
      noiseLevel: 20,
      generator: gen(0),
      outputType: "np",
      ...o,
    }),
  };
}
