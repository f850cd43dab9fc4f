/**
 * Output quality of the int8 UNet against the float32 path: runs the whole pipeline twice (same seed, prompt,
 * image, steps) and reports the PSNR of the int8 output image against the float32 one (images in [0, 1], peak 1).
 *
 *   npx tsx bench/int8_quality.ts --model <pipeline dir> [--image examples/cat.png] [--size 32] [--steps 20] [--json]
 */
import { parseArgs } from "node:util";
import sharp from "sharp";
import { StableDiffusionUpscalePipeline } from "../src/pipelines/pipeline_stable_diffusion_upscale.js";
import { Generator } from "../src/random/generator.js";

const { values: a } = parseArgs({
  options: {
    model: { type: "string" },
    image: { type: "string", default: "examples/cat.png" },
    size: { type: "string" },
    steps: { type: "string", default: "20" },
    prompt: { type: "string", default: "a cat" },
    json: { type: "boolean", default: false },
  },
});
if (!a.model) throw new Error("--model <pipeline dir> is required");

let img = sharp(a.image).removeAlpha();
if (a.size) img = img.resize(Number(a.size), Number(a.size), { kernel: "lanczos3" });
const { data, info } = await img.raw().toBuffer({ resolveWithObject: true });
const image = { width: info.width, height: info.height, data: new Uint8Array(data) };

async function run(precision: "float32" | "int8"): Promise<{ out: Float32Array; seconds: number }> {
  const pipe = await StableDiffusionUpscalePipeline.fromPretrained(a.model as string, { precision });
  const t = performance.now();
  const r = await pipe.call({
    prompt: a.prompt,
    image,
    numInferenceSteps: Number(a.steps),
    generator: new Generator().manualSeed(0),
    outputType: "np",
  });
  const seconds = (performance.now() - t) / 1000;
  await pipe.release();
  if (r.images.outputType !== "np") throw new Error("expected np output");
  return { out: r.images.data, seconds };
}

const f32 = await run("float32");
const i8 = await run("int8");
let se = 0;
for (let i = 0; i < f32.out.length; i++) se += ((i8.out[i] as number) - (f32.out[i] as number)) ** 2;
const mse = se / f32.out.length;
const result = {
  model: a.model,
  input: `${info.width}x${info.height}`,
  steps: Number(a.steps),
  psnr_db: 10 * Math.log10(1 / mse),
  max_abs_diff: f32.out.reduce((m, v, i) => Math.max(m, Math.abs(v - (i8.out[i] as number))), 0),
  float32_s: f32.seconds,
  int8_s: i8.seconds,
};
console.log(a.json ? JSON.stringify(result) : result);
process.exit(0);
