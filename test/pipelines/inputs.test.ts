/**
 * checkInputs / checkPreparedImage (src/pipelines/upscale_inputs.ts) without a model: every bad argument of
 * StableDiffusionUpscalePipeline.call is an UpscaleInputError whose message names the argument.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { FloatImageBatch, RgbImage } from "../../src/image/types.js";
import {
  type CheckContext,
  checkInputs,
  checkPreparedImage,
  type UpscaleCallOptions,
  UpscaleInputError,
} from "../../src/pipelines/upscale_inputs.js";
import { Generator } from "../../src/random/generator.js";
import type { HostTensor } from "../../src/runtime/host_tensor.js";

/** The tiny upscaler's numbers (max_noise_level 350, num_class_embeds 100, cross_attention_dim 32, 5 layers). */
const CTX: CheckContext = {
  maxNoiseLevel: 350,
  numTrainTimesteps: 1000,
  numClassEmbeds: 100,
  crossAttentionDim: 32,
  numHiddenLayers: 5,
  lowResTrainTimesteps: 1000,
  textSequenceLength: 77,
};

const rgb = (w = 8, h = 8): RgbImage => ({ data: new Uint8Array(w * h * 3).fill(128), width: w, height: h });
const floatImage = (shape: number[], fill = 0.5): FloatImageBatch => ({
  data: new Float32Array(shape.reduce((a, b) => a * b, 1)).fill(fill),
  shape,
  layout: "nhwc",
});
const embeds = (batch: number, hidden = 32, seq = 77, fill = 0.1): HostTensor => ({
  type: "float32",
  dims: [batch, seq, hidden],
  data: new Float32Array(batch * seq * hidden).fill(fill),
});
const latents = (dims: number[], fill = 0): HostTensor => ({
  type: "float32",
  dims,
  data: new Float32Array(dims.reduce((a, b) => a * b, 1)).fill(fill),
});

const BASE: UpscaleCallOptions = { prompt: "a cat", image: rgb() };

/** checkInputs(BASE + patch) throws an UpscaleInputError whose message matches every pattern. */
function rejects(patch: Partial<UpscaleCallOptions>, ...patterns: RegExp[]): void {
  const o = { ...BASE, ...patch } as UpscaleCallOptions;
  assert.throws(
    () => checkInputs(o, CTX),
    (e: unknown) => {
      assert.ok(e instanceof UpscaleInputError, `expected UpscaleInputError, got ${String(e)}`);
      for (const p of patterns) assert.match(e.message, p);
      return true;
    },
  );
}

describe("checkInputs: valid arguments", () => {
  test("defaults are diffusers' (75 steps, guidance 9, noise level 20, pil)", () => {
    const a = checkInputs(BASE, CTX);
    assert.deepEqual(
      {
        batchSize: a.batchSize,
        steps: a.numInferenceSteps,
        g: a.guidanceScale,
        nl: a.noiseLevel,
        n: a.numImagesPerPrompt,
        eta: a.eta,
        out: a.outputType,
        cs: a.callbackSteps,
      },
      { batchSize: 1, steps: 75, g: 9, nl: 20, n: 1, eta: 0, out: "pil", cs: 1 },
    );
    assert.equal(a.images.length, 1);
  });

  test("edge values are accepted", () => {
    for (const patch of [
      { noiseLevel: 0 },
      { noiseLevel: 99 },
      { numInferenceSteps: 1 },
      { numInferenceSteps: 1000 },
      { guidanceScale: -3 },
      { clipSkip: 0 },
      { clipSkip: 5 }, // = num_hidden_layers: the embedding output, valid in diffusers
      { crossAttentionKwargs: { scale: 0.5 } },
      { generator: [new Generator()] },
      { outputType: "latent" as const },
      { callbackSteps: 3, callback: () => {} },
    ]) {
      assert.doesNotThrow(() => checkInputs({ ...BASE, ...patch }, CTX), Object.keys(patch).join());
    }
  });

  test("promptEmbeds give the batch size; a 4-D float batch brings its own rows", () => {
    const a = checkInputs({ promptEmbeds: embeds(2), image: [rgb(), rgb()] }, CTX);
    assert.equal(a.batchSize, 2);
    const b = checkInputs({ prompt: ["a", "b"], image: floatImage([2, 8, 8, 3]) }, CTX);
    assert.equal(b.batchSize, 2);
  });

  test("a generator list of prompts × numImagesPerPrompt, latents of that batch", () => {
    const gens = [0, 1, 2, 3].map((s) => new Generator().manualSeed(s));
    assert.doesNotThrow(() =>
      checkInputs(
        {
          prompt: ["a", "b"],
          image: [rgb(), rgb()],
          numImagesPerPrompt: 2,
          generator: gens,
          latents: latents([4, 4, 8, 8]),
        },
        CTX,
      ),
    );
  });
});

describe("checkInputs: each bad argument is named", () => {
  test("noiseLevel: negative, non-integer, above max_noise_level, >= num_class_embeds", () => {
    rejects({ noiseLevel: -1 }, /noiseLevel/, /0\.\.350/);
    rejects({ noiseLevel: 1.5 }, /noiseLevel/);
    rejects({ noiseLevel: Number.NaN }, /noiseLevel/);
    rejects({ noiseLevel: 351 }, /noiseLevel/, /350/);
    rejects({ noiseLevel: 100 }, /noiseLevel/, /num_class_embeds 100/);
    assert.throws(
      () =>
        checkInputs(
          { ...BASE, noiseLevel: 300 },
          { ...CTX, numClassEmbeds: undefined, lowResTrainTimesteps: 250 },
        ),
      /noiseLevel 300 .*low-res scheduler/,
    );
  });

  test("numInferenceSteps: 0, 1.5, 1001", () => {
    rejects({ numInferenceSteps: 0 }, /numInferenceSteps/, /1\.\.1000/);
    rejects({ numInferenceSteps: 1.5 }, /numInferenceSteps/);
    rejects({ numInferenceSteps: 1001 }, /numInferenceSteps/);
  });

  test("guidanceScale: NaN, ±Infinity, not a number", () => {
    rejects({ guidanceScale: Number.NaN }, /guidanceScale/);
    rejects({ guidanceScale: Number.POSITIVE_INFINITY }, /guidanceScale/);
    rejects({ guidanceScale: Number.NEGATIVE_INFINITY }, /guidanceScale/);
    rejects({ guidanceScale: "9" as unknown as number }, /guidanceScale/);
  });

  test("prompt and promptEmbeds: both, neither, bad types", () => {
    rejects({ promptEmbeds: embeds(1) }, /prompt/, /promptEmbeds/, /not both/);
    rejects({ prompt: undefined }, /prompt or promptEmbeds/);
    rejects({ prompt: [] }, /prompt is an empty array/);
    rejects({ prompt: 42 as unknown as string }, /prompt must be a string/);
    rejects({ prompt: ["a", 1 as unknown as string] }, /prompt must be a string/);
  });

  test("negativePrompt with negativePromptEmbeds; bad negativePrompt type", () => {
    rejects(
      { negativePrompt: "ugly", negativePromptEmbeds: embeds(1) },
      /negativePrompt/,
      /negativePromptEmbeds/,
    );
    rejects({ negativePrompt: 3 as unknown as string }, /negativePrompt must be a string/);
  });

  test("batch mismatches", () => {
    rejects({ prompt: ["a", "b"], image: rgb() }, /prompt has batch size 2/, /image has batch size 1/);
    rejects({ prompt: ["a", "b"], image: [rgb()] }, /prompt has batch size 2/, /image/);
    rejects({ prompt: "a", image: [rgb(), rgb()] }, /image has batch size 2/);
    rejects({ prompt: "a", image: floatImage([2, 8, 8, 3]) }, /image has batch size 2/);
    rejects(
      { prompt: ["a", "b"], image: [rgb(), rgb()], negativePrompt: ["x"] },
      /negativePrompt has batch size 1/,
    );
    rejects({ prompt: "a", negativePrompt: ["x"] }, /negativePrompt must be the same type as prompt/);
    rejects({ prompt: "a", negativePrompt: ["x", "y"] }, /negativePrompt has batch size 2/);
    rejects({ prompt: ["a"], negativePrompt: "x" }, /negativePrompt must be the same type as prompt/);
    rejects(
      { prompt: undefined, promptEmbeds: embeds(2), image: [rgb(), rgb()], negativePrompt: "x" },
      /negativePrompt is a single string/,
      /batch size 2/,
    );
    rejects(
      { prompt: ["a", "b"], image: [rgb(), rgb()], negativePromptEmbeds: embeds(1) },
      /negativePromptEmbeds has batch size 1/,
    );
  });

  test("promptEmbeds / negativePromptEmbeds: hidden size, NaN, shape, dtype, data", () => {
    rejects({ prompt: undefined, promptEmbeds: embeds(1, 64) }, /promptEmbeds has hidden size 64/, /32/);
    rejects({ prompt: undefined, promptEmbeds: embeds(1, 32, 77, Number.NaN) }, /promptEmbeds contains NaN/);
    rejects(
      { prompt: undefined, promptEmbeds: embeds(1, 32, 77, Number.POSITIVE_INFINITY) },
      /promptEmbeds contains Infinity/,
    );
    rejects(
      {
        prompt: undefined,
        promptEmbeds: { type: "float32", dims: [77, 32], data: new Float32Array(77 * 32) },
      },
      /promptEmbeds must be a float32 tensor/,
    );
    rejects(
      { prompt: undefined, promptEmbeds: { type: "float32", dims: [1, 77, 32], data: new Float32Array(5) } },
      /promptEmbeds: data must be a Float32Array of 2464 values/,
    );
    rejects({ negativePromptEmbeds: embeds(1, 16) }, /negativePromptEmbeds has hidden size 16/);
    rejects({ negativePromptEmbeds: embeds(1, 32, 77, Number.NaN) }, /negativePromptEmbeds contains NaN/);
    rejects(
      { prompt: undefined, promptEmbeds: embeds(1), negativePromptEmbeds: embeds(1, 32, 10) },
      /promptEmbeds \[1,77,32\] and negativePromptEmbeds \[1,10,32\] must have the same shape/,
    );
    // Under guidance, text-encoded embeddings (77 tokens) are concatenated with the given ones.
    rejects({ prompt: undefined, promptEmbeds: embeds(1, 32, 10) }, /promptEmbeds has sequence length 10/);
    rejects({ negativePromptEmbeds: embeds(1, 32, 10) }, /negativePromptEmbeds has sequence length 10/);
    assert.doesNotThrow(() =>
      checkInputs({ ...BASE, prompt: undefined, promptEmbeds: embeds(1, 32, 10), guidanceScale: 1 }, CTX),
    );
  });

  test("image: missing, empty, wrong type, float batches too small / too large / non-finite / malformed", () => {
    rejects({ image: undefined as unknown as RgbImage }, /image is required/);
    rejects({ image: [] }, /image is an empty array/);
    rejects({ image: 7 as unknown as RgbImage }, /^image must be a file path/);
    rejects({ image: [null as unknown as RgbImage] }, /^image\[0\] must be/);
    rejects({ image: "" }, /image is an empty path/);
    rejects({ image: floatImage([3, 3, 3]) }, /^image: image is 3x3; it must be at least 4x4/);
    rejects(
      { image: floatImage([1, 64, 64, 3]), maxInputPixels: 1000 },
      /image: .*4096 pixels, above the limit of 1000 \(maxInputPixels\)/,
    );
    rejects({ image: [floatImage([8, 8, 3], Number.NaN)] }, /image\[0\] contains NaN/);
    rejects(
      { image: { data: new Float32Array(10), shape: [8, 8, 3], layout: "nhwc" } },
      /image.data must be a Float32Array of 192/,
    );
    rejects(
      { image: { data: new Float32Array(64), shape: [8, 8], layout: "nhwc" } },
      /image.shape must be 3-D or 4-D/,
    );
    rejects(
      { image: { data: new Float32Array(192), shape: [8, 8, 3], layout: "hwc" as "nhwc" } },
      /image.layout/,
    );
    rejects({ maxInputPixels: 0 }, /maxInputPixels must be a positive integer/);
  });

  test("latents: dtype/rank, batch, data, non-finite", () => {
    rejects({ latents: latents([4, 8, 8]) }, /latents must be float32 \[batch, channels, height, width\]/);
    rejects(
      { latents: { ...latents([1, 4, 8, 8]), type: "float16" } as unknown as HostTensor },
      /latents must be float32/,
    );
    rejects({ latents: latents([2, 4, 8, 8]) }, /latents have batch size 2, expected 1/);
    rejects({ latents: latents([1, 4, 8, 8], Number.NaN) }, /latents contains NaN/);
    rejects(
      { latents: { type: "float32", dims: [1, 4, 8, 8], data: new Float32Array(3) } },
      /latents: data must be/,
    );
  });

  test("generator: list of the wrong length, not Generators", () => {
    rejects(
      { generator: [new Generator(), new Generator()] },
      /generator list has 2 generators for an effective batch of 1/,
    );
    rejects(
      {
        prompt: ["a", "b"],
        image: [rgb(), rgb()],
        numImagesPerPrompt: 2,
        generator: [new Generator(), new Generator()],
      },
      /generator list has 2 generators for an effective batch of 4/,
    );
    rejects({ generator: [] }, /generator list has 0 generators/);
    rejects({ generator: [{} as Generator] }, /generator\[0\] is not a Generator/);
    rejects({ generator: 42 as unknown as Generator }, /generator must be a Generator/);
  });

  test("clipSkip out of range", () => {
    rejects({ clipSkip: -1 }, /clipSkip must be an integer in 0\.\.5/);
    rejects({ clipSkip: 6 }, /clipSkip/);
    rejects({ clipSkip: 1.5 }, /clipSkip/);
  });

  test("crossAttentionKwargs: unknown key, bad scale", () => {
    rejects(
      { crossAttentionKwargs: { foo: 1 } as { scale?: number } },
      /crossAttentionKwargs\.foo is not supported/,
    );
    rejects(
      { crossAttentionKwargs: { scale: "x" } as unknown as { scale?: number } },
      /crossAttentionKwargs\.scale/,
    );
    rejects(
      { crossAttentionKwargs: 3 as unknown as { scale?: number } },
      /crossAttentionKwargs must be an object/,
    );
  });

  test("callbackSteps 0 / 1.5, callback and onProgress not functions", () => {
    rejects({ callbackSteps: 0 }, /callbackSteps must be a positive integer/);
    rejects({ callbackSteps: 1.5 }, /callbackSteps/);
    rejects({ callback: "no" as unknown as () => void }, /callback must be a function/);
    rejects({ onProgress: 1 as unknown as () => void }, /onProgress must be a function/);
  });

  test("outputType unknown; numImagesPerPrompt, eta", () => {
    rejects({ outputType: "jpeg" as "pil" }, /outputType must be one of pil, np, pt, latent/, /"jpeg"/);
    rejects({ numImagesPerPrompt: 0 }, /numImagesPerPrompt/);
    rejects({ numImagesPerPrompt: 1.5 }, /numImagesPerPrompt/);
    rejects({ eta: -0.5 }, /eta/);
    rejects({ eta: Number.NaN }, /eta/);
  });
});

describe("checkPreparedImage", () => {
  const ctx = { batchSize: 1, numImagesPerPrompt: 2, latentChannels: 4, unetInChannels: 7 };
  test("returns the latents' shape [B·n, 4, h, w]", () => {
    assert.deepEqual(checkPreparedImage([1, 3, 16, 12], {}, ctx), [2, 4, 16, 12]);
    assert.deepEqual(
      checkPreparedImage([1, 3, 16, 12], { latents: latents([2, 4, 16, 12]) }, ctx),
      [2, 4, 16, 12],
    );
  });
  test("latents of the wrong shape, image channels that do not fit the UNet", () => {
    assert.throws(
      () => checkPreparedImage([1, 3, 16, 12], { latents: latents([2, 4, 12, 16]) }, ctx),
      /latents have shape \[2,4,12,16\], expected \[2,4,16,12\]/,
    );
    assert.throws(
      () => checkPreparedImage([1, 4, 16, 12], {}, ctx),
      (e: unknown) =>
        e instanceof UpscaleInputError && /image has 4 channels.*expects 7 input channels/.test(e.message),
    );
    assert.throws(() => checkPreparedImage([2, 3, 16, 12], {}, ctx), /image has batch size 2/);
  });
});
