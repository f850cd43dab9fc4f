/**
 * StableDiffusionUpscalePipeline.call on the tiny model: every bad input fails before any model runs, with an error
 * naming the argument.
 */
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { before, describe, test } from "node:test";
import type { StableDiffusionUpscalePipeline } from "../../src/pipelines/pipeline_stable_diffusion_upscale.js";
import type { UpscaleCallOptions } from "../../src/pipelines/upscale_inputs.js";
import type { HostTensor } from "../../src/runtime/host_tensor.js";
import { gen, IMG_A, IMG_B, picture, pngOf, S, testWorkspace, tinyPipeline } from "./tiny_harness.js";

const { runtime, tmp: TMP } = testWorkspace("bad-inputs");

describe("StableDiffusionUpscalePipeline (tiny model)", () => {
  const t = tinyPipeline(runtime);
  const { counts, instrument, base } = t;
  let pipe: StableDiffusionUpscalePipeline;
  before(() => {
    pipe = t.pipe;
  });

  describe("bad inputs fail before any compute, naming the argument", () => {
    const emb = (batch: number, hidden = 32, fill = 0.1): HostTensor => ({
      type: "float32",
      dims: [batch, 77, hidden],
      data: new Float32Array(batch * 77 * hidden).fill(fill),
    });
    const latents = (dims: number[]): HostTensor => ({
      type: "float32",
      dims,
      data: new Float32Array(dims.reduce((a, b) => a * b, 1)),
    });
    const cases: [
      string,
      () => Promise<Partial<UpscaleCallOptions>> | Partial<UpscaleCallOptions>,
      RegExp,
    ][] = [
      [
        "noiseLevel negative",
        () => ({ noiseLevel: -1 }),
        /noiseLevel must be an integer in 0\.\.350, got -1/,
      ],
      ["noiseLevel non-integer", () => ({ noiseLevel: 2.5 }), /noiseLevel .*got 2\.5/],
      ["noiseLevel > max_noise_level", () => ({ noiseLevel: 351 }), /noiseLevel .*0\.\.350, got 351/],
      [
        "noiseLevel >= num_class_embeds",
        () => ({ noiseLevel: 100 }),
        /noiseLevel 100 .*num_class_embeds 100/,
      ],
      ["numInferenceSteps 0", () => ({ numInferenceSteps: 0 }), /numInferenceSteps .*got 0/],
      ["numInferenceSteps 1.5", () => ({ numInferenceSteps: 1.5 }), /numInferenceSteps .*got 1\.5/],
      [
        "numInferenceSteps 1001",
        () => ({ numInferenceSteps: 1001 }),
        /numInferenceSteps must be an integer in 1\.\.1000/,
      ],
      [
        "guidanceScale NaN",
        () => ({ guidanceScale: Number.NaN }),
        /guidanceScale must be a finite number, got NaN/,
      ],
      [
        "guidanceScale Infinity",
        () => ({ guidanceScale: Number.POSITIVE_INFINITY }),
        /guidanceScale .*Infinity/,
      ],
      [
        "prompt and promptEmbeds",
        () => ({ promptEmbeds: emb(1) }),
        /either prompt or promptEmbeds, not both/,
      ],
      ["neither prompt nor promptEmbeds", () => ({ prompt: undefined }), /pass a prompt or promptEmbeds/],
      [
        "negativePrompt with negativePromptEmbeds",
        () => ({ negativePrompt: "ugly", negativePromptEmbeds: emb(1) }),
        /either negativePrompt or negativePromptEmbeds/,
      ],
      [
        "2 prompts, 1 image",
        () => ({ prompt: ["a", "b"] }),
        /prompt has batch size 2 and image has batch size 1/,
      ],
      [
        "negativePrompt list of the wrong length",
        () => ({ prompt: ["a", "b"], image: [IMG_A, IMG_B], negativePrompt: ["x", "y", "z"] }),
        /negativePrompt has batch size 3, but prompt has batch size 2/,
      ],
      [
        "prompt string with a negativePrompt array",
        () => ({ negativePrompt: ["ugly"] }),
        /negativePrompt must be the same type as prompt/,
      ],
      [
        "promptEmbeds batch 2 with one negativePrompt string",
        () => ({ prompt: undefined, promptEmbeds: emb(2), image: [IMG_A, IMG_B], negativePrompt: "x" }),
        /negativePrompt is a single string/,
      ],
      [
        "negativePromptEmbeds of another batch size",
        () => ({ prompt: ["a", "b"], image: [IMG_A, IMG_B], negativePromptEmbeds: emb(1) }),
        /negativePromptEmbeds has batch size 1/,
      ],
      [
        "promptEmbeds of the wrong hidden size",
        () => ({ prompt: undefined, promptEmbeds: emb(1, 48) }),
        /promptEmbeds has hidden size 48/,
      ],
      [
        "promptEmbeds containing NaN",
        () => ({ prompt: undefined, promptEmbeds: emb(1, 32, Number.NaN) }),
        /promptEmbeds contains NaN/,
      ],
      [
        "image smaller than 4x4 (RgbImage)",
        () => ({ image: picture(0, 3, 3) }),
        /^image: image is 3x3; it must be at least 4x4/,
      ],
      [
        "image smaller than 4x4 (PNG)",
        async () => ({ image: await pngOf(picture(0, 3, 2)) }),
        /^image: image is 3x2/,
      ],
      [
        "image smaller than 4x4 (in a list)",
        () => ({ image: [picture(0, 2, 8)] }),
        /^image\[0\]: image is 2x8/,
      ],
      [
        "image above maxInputPixels",
        () => ({ image: IMG_A, maxInputPixels: 100 }),
        /^image: image is 16x16 = 256 pixels, above the limit of 100/,
      ],
      [
        "float image above maxInputPixels",
        () => ({
          image: { data: new Float32Array(S * S * 3), shape: [S, S, 3], layout: "nhwc" },
          maxInputPixels: 100,
        }),
        /image: image is 16x16 = 256 pixels, above the limit of 100 \(maxInputPixels\)/,
      ],
      [
        "RgbImage with the wrong data length",
        () => ({ image: { ...IMG_A, width: 15 } }),
        /^image: data has 768 bytes/,
      ],
      [
        "undecodable file",
        () => {
          const p = join(TMP, "garbage.png");
          writeFileSync(p, "this is not an image at all");
          return { image: p };
        },
        /^image: .*garbage\.png: not a decodable image/,
      ],
      [
        "undecodable buffer",
        () => ({ image: [Buffer.from("hello there")] }),
        /^image\[0\]: not a decodable image/,
      ],
      [
        "truncated PNG",
        async () => {
          // Noise compresses badly, so half the file cuts into the pixel data.
          const noisy = picture(0, 64, 64);
          for (let i = 0; i < noisy.data.length; i++) noisy.data[i] = (i * 2654435761) >>> 24;
          const png = await pngOf(noisy);
          const p = join(TMP, "truncated.png");
          writeFileSync(p, png.subarray(0, Math.floor(png.length / 2)));
          return { image: p };
        },
        /^image: .*truncated\.png: cannot decode image, corrupt or truncated/,
      ],
      ["missing file", () => ({ image: join(TMP, "missing.png") }), /^image: .*missing\.png: file not found/],
      [
        "latents of the wrong shape",
        () => ({ latents: latents([1, 4, 8, 8]) }),
        /latents have shape \[1,4,8,8\], expected \[1,4,16,16\]/,
      ],
      [
        "latents of the wrong batch",
        () => ({ latents: latents([2, 4, 16, 16]) }),
        /latents have batch size 2, expected 1/,
      ],
      [
        "a 4-channel NCHW float image (passed through as latents by diffusers)",
        () => ({ image: { data: new Float32Array(4 * S * S), shape: [1, 4, S, S], layout: "nchw" } }),
        /image has 4 channels: the UNet expects 7 input channels/,
      ],
      [
        "generator list of the wrong length",
        () => ({ generator: [gen(0), gen(1)] }),
        /generator list has 2 generators for an effective batch of 1/,
      ],
      ["clipSkip out of range", () => ({ clipSkip: 6 }), /clipSkip must be an integer in 0\.\.5, got 6/],
      [
        "unknown crossAttentionKwargs key",
        () => ({ crossAttentionKwargs: { attn_mask: 1 } as { scale?: number } }),
        /crossAttentionKwargs\.attn_mask is not supported/,
      ],
      ["callbackSteps 0", () => ({ callbackSteps: 0 }), /callbackSteps must be a positive integer, got 0/],
      [
        "unknown outputType",
        () => ({ outputType: "jpg" as "np" }),
        /outputType must be one of pil, np, pt, latent, got "jpg"/,
      ],
    ];
    for (const [name, make, pattern] of cases) {
      test(name, async () => {
        instrument();
        const o = base(await make());
        await assert.rejects(pipe.call(o), (e: Error) => {
          assert.match(e.message, pattern);
          assert.match(e.name, /UpscaleInputError|ImageInputError/);
          return true;
        });
        assert.deepEqual(counts, { text: 0, unet: 0, vae: 0 }, "no model ran");
      });
    }

    test("an already aborted signal stops before any compute", async () => {
      instrument();
      const ac = new AbortController();
      ac.abort();
      await assert.rejects(pipe.call(base({ signal: ac.signal })), { name: "AbortError" });
      assert.deepEqual(counts, { text: 0, unet: 0, vae: 0 });
    });
  });
});
