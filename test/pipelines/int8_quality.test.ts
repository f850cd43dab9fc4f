/**
 * The int8 fast path's image quality: the whole pipeline (classifier-free guidance 9, 20 steps, 32² → 128²) with the
 * int8 UNet against the float32 one from the same checkpoint, seed and input. Measured PSNR, tiny model: 40.4 dB
 * with guidance halves (the guided graph since stop 12; "u8s8" integers, run as "u8u8" on AVX2); before, per-row
 * scales with guidance pairs: 39.3 dB with 7-bit activations ("u7s8", AVX2), 41.6 dB with 8-bit; 32.6 dB before
 * either. The bound catches losing the guidance treatment (bench/int8_quality.ts measures any model).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, test } from "node:test";
import sharp from "sharp";
import { StableDiffusionUpscalePipeline } from "../../src/pipelines/pipeline_stable_diffusion_upscale.js";
import { Generator } from "../../src/random/generator.js";
import { RuntimeHost } from "../../src/runtime/worker_host.js";
import { FIXTURES, REPO_ROOT } from "../helpers/fixtures.js";

const runtime = new RuntimeHost();
after(() => runtime.close());

test("int8 pipeline image within 38 dB PSNR of float32 (tiny model, guidance 9, 20 steps)", async () => {
  const { data, info } = await sharp(join(REPO_ROOT, "examples/cat.png"))
    .removeAlpha()
    .resize(32, 32, { kernel: "lanczos3" })
    .raw()
    .toBuffer({ resolveWithObject: true });
  const image = { width: info.width, height: info.height, data: new Uint8Array(data) };
  const pipe = await StableDiffusionUpscalePipeline.fromPretrained(join(FIXTURES, "models/tiny-upscaler"), {
    runtime,
  });
  const run = async () => {
    const r = await pipe.call({
      prompt: "a cat",
      image,
      numInferenceSteps: 20,
      generator: new Generator().manualSeed(0),
      outputType: "np",
    });
    if (r.images.outputType !== "np") throw new Error("expected np output");
    return r.images.data;
  };
  const f32 = await run();
  pipe.unet.setPrecision("int8");
  const i8 = await run();
  let se = 0;
  for (let i = 0; i < f32.length; i++) se += ((i8[i] as number) - (f32[i] as number)) ** 2;
  const psnr = 10 * Math.log10(f32.length / se);
  assert.ok(psnr > 38 && Number.isFinite(psnr), `PSNR ${psnr} dB`);
  await pipe.release();
});
