/**
 * StableDiffusionUpscalePipeline behaviour on the tiny model (16x16 inputs, 1-3 steps): bad inputs fail before any
 * compute, prompts pair with their own images, generator lists follow diffusers, every output type, callbacks,
 * progress, abort, input kinds, safety checker, watermarker, NaN detection, and fromPretrained's errors.
 */
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, afterEach, before, describe, test } from "node:test";
import sharp from "sharp";
import type { FloatImageBatch, RgbImage } from "../../src/image/types.js";
import {
  NonFiniteError,
  StableDiffusionUpscalePipeline,
  type UpscaleImages,
  type UpscaleOutput,
} from "../../src/pipelines/pipeline_stable_diffusion_upscale.js";
import type { TraceStage, UpscaleCallOptions } from "../../src/pipelines/upscale_inputs.js";
import { Generator } from "../../src/random/generator.js";
import type { HostTensor } from "../../src/runtime/host_tensor.js";
import { RuntimeHost } from "../../src/runtime/worker_host.js";
import { assertClose, FIXTURES } from "../helpers/fixtures.js";

const MODEL = join(FIXTURES, "models/tiny-upscaler");
const runtime = new RuntimeHost();
const TMP = mkdtempSync(join(tmpdir(), "sdx4-behaviour-"));
after(async () => {
  await runtime.close();
  rmSync(TMP, { recursive: true, force: true });
});

const S = 16; // input side: latents 16x16, outputs 64x64
const TOL = { atol: 1e-4, rtol: 1e-4 };

/** A deterministic 16x16 test picture; `phase` makes different pictures. */
function picture(phase: number, w = S, h = S): RgbImage {
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
const IMG_A = picture(0);
const IMG_B = picture(3);

const pngOf = (im: RgbImage): Promise<Buffer> =>
  sharp(Buffer.from(im.data), { raw: { width: im.width, height: im.height, channels: 3 } })
    .png()
    .toBuffer();

const gen = (seed: number) => new Generator().manualSeed(seed);

function dataOf(images: UpscaleImages): { data: Float32Array; shape: number[] } {
  assert.notEqual(images.outputType, "pil");
  if (images.outputType === "pil") throw new Error("unreachable");
  return { data: images.data, shape: images.shape };
}

/** Row k of a [N, ...] array. */
function row(data: Float32Array, shape: readonly number[], k: number): Float32Array {
  const size = shape.slice(1).reduce((a, b) => a * b, 1);
  return data.subarray(k * size, (k + 1) * size);
}

const maxAbsDiff = (a: ArrayLike<number>, b: ArrayLike<number>): number => {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs((a[i] as number) - (b[i] as number)));
  return m;
};

describe("StableDiffusionUpscalePipeline behaviour (tiny model)", () => {
  let pipe: StableDiffusionUpscalePipeline;
  const counts = { text: 0, unet: 0, vae: 0 };
  const restore: (() => void)[] = [];

  /** Replaces `obj[key]` for this test (restored in afterEach). */
  function patch<T extends object, K extends keyof T>(obj: T, key: K, value: T[K]): void {
    const had = Object.hasOwn(obj, key);
    const old = obj[key];
    obj[key] = value;
    restore.push(() => {
      if (had) obj[key] = old;
      else delete obj[key];
    });
  }

  /** Counts text encoder, UNet and VAE decoder runs; `unetHook` sees (and may replace) each UNet output. */
  function instrument(
    unetHook?: (
      inputs: Parameters<typeof pipe.unet.forward>[0],
      out: HostTensor,
      call: number,
    ) => HostTensor | undefined,
  ): void {
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
  }

  before(async () => {
    pipe = await StableDiffusionUpscalePipeline.fromPretrained(MODEL, { runtime });
  });
  afterEach(() => {
    while (restore.length) restore.pop()?.();
    counts.text = counts.unet = counts.vae = 0;
  });

  const base = (o: Partial<UpscaleCallOptions> = {}): UpscaleCallOptions => ({
    prompt: "a white cat",
    image: IMG_A,
    numInferenceSteps: 2,
    noiseLevel: 20,
    generator: gen(0),
    outputType: "np",
    ...o,
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

  describe("several prompts × numImagesPerPrompt (the documented deviation) and generator lists", () => {
    const PROMPTS = ["a white cat", "an astronaut riding a horse"];
    const SEEDS = [11, 22, 33, 44];

    test("every prompt is paired with its own image in the UNet batch", async () => {
      let sample: HostTensor | undefined;
      let ehs: HostTensor | undefined;
      instrument((inputs, _out, call) => {
        if (call === 0) {
          sample = { ...inputs.sample, data: (inputs.sample.data as Float32Array).slice() };
          ehs = {
            ...inputs.encoderHiddenStates,
            data: (inputs.encoderHiddenStates.data as Float32Array).slice(),
          };
        }
        return undefined;
      });
      const traces = new Map<TraceStage, HostTensor>();
      await pipe.call(
        base({
          prompt: PROMPTS,
          image: [IMG_A, IMG_B],
          numImagesPerPrompt: 2,
          numInferenceSteps: 1,
          outputType: "latent",
          trace: (stage, t) => void traces.set(stage, t),
        }),
      );
      assert.ok(sample && ehs);
      assert.deepEqual(sample.dims, [8, 7, S, S], "CFG doubles 2 prompts × 2 images");
      assert.deepEqual(ehs.dims, [8, 77, 32]);

      // Text rows: [uncond ×4, pA, pA, pB, pB].
      const own = await pipe.encodePrompt(PROMPTS, 1, false);
      const pA = row(own.promptEmbeds.data as Float32Array, own.promptEmbeds.dims, 0);
      const pB = row(own.promptEmbeds.data as Float32Array, own.promptEmbeds.dims, 1);
      assert.ok(maxAbsDiff(pA, pB) > 1e-3, "the two prompts differ");
      const ehsData = ehs.data as Float32Array;
      for (const [r, want] of [
        [4, pA],
        [5, pA],
        [6, pB],
        [7, pB],
      ] as const) {
        assertClose(
          row(ehsData, ehs.dims, r),
          want,
          { atol: 1e-5, rtol: 0 },
          `encoder_hidden_states row ${r}`,
        );
      }

      // Image channels (4..6) of every row: the noised image of that row's prompt, for both CFG halves.
      const noised = traces.get("noised_image");
      assert.ok(noised);
      assert.deepEqual(noised.dims, [2, 3, S, S]);
      const plane = S * S;
      const imageChannels = (r: number) =>
        (sample!.data as Float32Array).subarray((r * 7 + 4) * plane, (r * 7 + 7) * plane);
      const nA = row(noised.data as Float32Array, noised.dims, 0);
      const nB = row(noised.data as Float32Array, noised.dims, 1);
      assert.ok(maxAbsDiff(nA, nB) > 0.1, "the two images differ");
      for (const r of [0, 1, 4, 5]) assert.deepEqual(imageChannels(r), nA, `row ${r} carries image A`);
      for (const r of [2, 3, 6, 7]) assert.deepEqual(imageChannels(r), nB, `row ${r} carries image B`);
    });

    test("a generator list: image i noised by generator i, latents row k drawn by generator k (diffusers)", async () => {
      const traces = new Map<TraceStage, HostTensor>();
      const batch = await pipe.call(
        base({
          prompt: PROMPTS,
          image: [IMG_A, IMG_B],
          numImagesPerPrompt: 2,
          generator: SEEDS.map(gen),
          trace: (stage, t) => void traces.set(stage, t),
        }),
      );
      const out = dataOf(batch.images);
      assert.deepEqual(out.shape, [4, 4 * S, 4 * S, 3]);

      // diffusers' randn_tensor with a list: row i from generator i, each keeping its state across draws.
      const noiseRow = (i: number) => gen(SEEDS[i]!).randn([1, 3, S, S]);
      const latentRow = (k: number) => {
        const g = gen(SEEDS[k]!);
        if (k < 2) g.randn([1, 3, S, S]); // generators 0 and 1 first noised images A and B
        return g.randn([1, 4, S, S]);
      };
      const lowResNoise = traces.get("low_res_noise")!;
      for (const i of [0, 1])
        assertClose(
          row(lowResNoise.data as Float32Array, [2, 3, S, S], i),
          noiseRow(i),
          { atol: 0, rtol: 0 },
          `low-res noise ${i}`,
        );
      const init = traces.get("initial_latents")!;
      for (const k of [0, 1, 2, 3])
        assertClose(
          row(init.data as Float32Array, [4, 4, S, S], k),
          latentRow(k),
          { atol: 0, rtol: 0 },
          `latents ${k}`,
        );

      // Output 0 is exactly a run of prompt A / image A with generator 0 alone.
      const single0 = dataOf(
        (await pipe.call(base({ prompt: PROMPTS[0], image: IMG_A, generator: [gen(SEEDS[0]!)] }))).images,
      );
      assertClose(row(out.data, out.shape, 0), single0.data, TOL, "output 0 vs the single run");

      // Every output k is the single run of its own prompt and image, with that image's generator (which noised
      // it) and generator k's latents.
      for (const k of [1, 2, 3]) {
        const i = Math.floor(k / 2);
        const single = await pipe.call(
          base({
            prompt: PROMPTS[i],
            image: [IMG_A, IMG_B][i],
            generator: gen(SEEDS[i]!),
            latents: { type: "float32", dims: [1, 4, S, S], data: latentRow(k) },
          }),
        );
        assertClose(
          row(out.data, out.shape, k),
          dataOf(single.images).data,
          TOL,
          `output ${k} vs its single run`,
        );
      }
    });

    test("eta > 0 with a generator list: each row's step noise comes from its own generator", async () => {
      const o = { eta: 1, numInferenceSteps: 3 };
      const batch = await pipe.call(base({ ...o, numImagesPerPrompt: 2, generator: [gen(5), gen(6)] }));
      const single = await pipe.call(base({ ...o, generator: gen(5) }));
      const out = dataOf(batch.images);
      assertClose(row(out.data, out.shape, 0), dataOf(single.images).data, TOL, "row 0 vs the single run");
      assert.ok(maxAbsDiff(row(out.data, out.shape, 0), row(out.data, out.shape, 1)) > 1e-3);
    });
  });

  describe("outputs", () => {
    let np: { data: Float32Array; shape: number[] };
    before(async () => {
      np = dataOf((await pipe.call(base({ outputType: "np" }))).images);
    });

    test('"np": [N, 4h, 4w, 3] in [0, 1]', () => {
      assert.deepEqual(np.shape, [1, 4 * S, 4 * S, 3]);
      assert.ok(np.data.every((v) => v >= 0 && v <= 1));
      assert.ok(maxAbsDiff(np.data, new Float32Array(np.data.length)) > 0.05, "not blank");
    });

    test('"pt": NCHW, the same values', async () => {
      const pt = dataOf((await pipe.call(base({ outputType: "pt" }))).images);
      assert.deepEqual(pt.shape, [1, 3, 4 * S, 4 * S]);
      const hw = 16 * S * S;
      const nhwc = new Float32Array(pt.data.length);
      for (let c = 0; c < 3; c++) for (let p = 0; p < hw; p++) nhwc[p * 3 + c] = pt.data[c * hw + p]!;
      assert.deepEqual(nhwc, np.data);
    });

    test('"pil": a list of 64x64 RgbImages, round(np · 255)', async () => {
      const out = await pipe.call(base({ outputType: "pil" }));
      assert.equal(out.images.outputType, "pil");
      if (out.images.outputType !== "pil") return;
      assert.equal(out.images.images.length, 1);
      const im = out.images.images[0]!;
      assert.equal(im.width, 4 * S);
      assert.equal(im.height, 4 * S);
      assert.equal(im.data.length, 16 * S * S * 3);
      assertClose(
        im.data,
        Array.from(np.data, (v) => Math.round(v * 255)),
        { atol: 1, rtol: 0 },
        "pil",
      );
      assert.equal(out.nsfwContentDetected, null);
    });

    test('"latent": [N, 4, h, w], and the VAE is not run', async () => {
      instrument();
      const out = await pipe.call(
        base({ outputType: "latent", numImagesPerPrompt: 2, generator: [gen(0), gen(1)] }),
      );
      const l = dataOf(out.images);
      assert.deepEqual(l.shape, [2, 4, S, S]);
      assert.equal(counts.vae, 0);
      assert.equal(out.nsfwContentDetected, null);
    });

    test("returnDict: false returns [images, nsfwContentDetected]", async () => {
      const out = await pipe.call({ ...base(), returnDict: false });
      assert.ok(Array.isArray(out));
      assert.equal(out.length, 2);
      assert.deepEqual(dataOf(out[0]).data, np.data);
      assert.equal(out[1], null);
    });
  });

  describe("callbacks, progress, abort", () => {
    test("callback with callbackSteps 2 runs on steps 0 and 2 of 4; onProgress on every step", async () => {
      const calls: [number, number, number[]][] = [];
      const progress: { step: number; totalSteps: number; timestep: number }[] = [];
      await pipe.call(
        base({
          numInferenceSteps: 4,
          outputType: "latent",
          callbackSteps: 2,
          callback: (step, t, latents) => void calls.push([step, t, latents.dims]),
          onProgress: (info) => void progress.push(info),
        }),
      );
      const ts = pipe.scheduler.timesteps;
      assert.equal(ts.length, 4);
      assert.deepEqual(calls, [
        [0, ts[0], [1, 4, S, S]],
        [2, ts[2], [1, 4, S, S]],
      ]);
      assert.deepEqual(
        progress,
        ts.map((timestep, step) => ({ step, totalSteps: 4, timestep })),
      );
    });

    test("aborting from the callback stops before the next step with an AbortError", async () => {
      instrument();
      const ac = new AbortController();
      const steps: number[] = [];
      await assert.rejects(
        pipe.call(
          base({
            numInferenceSteps: 3,
            signal: ac.signal,
            callback: (step) => {
              steps.push(step);
              ac.abort();
            },
          }),
        ),
        { name: "AbortError" },
      );
      assert.deepEqual(steps, [0]);
      assert.equal(counts.unet, 1, "no UNet call after the abort");
      assert.equal(counts.vae, 0);
    });
  });

  test("clipSkip = num_hidden_layers (the embedding output, valid in diffusers) runs", async () => {
    const out = await pipe.call(base({ clipSkip: 5, numInferenceSteps: 1, outputType: "latent" }));
    assert.deepEqual(dataOf(out.images).shape, [1, 4, S, S]);
  });

  describe("input kinds", () => {
    let expected: Float32Array;
    const one = { numInferenceSteps: 1 };
    before(async () => {
      expected = dataOf((await pipe.call(base(one))).images).data;
    });

    test("file path, Buffer, raw RGBA pixels, RgbImage and a float batch in [0, 1] give the same result", async () => {
      const png = await pngOf(IMG_A);
      const path = join(TMP, "a.png");
      writeFileSync(path, png);
      const rgba = new Uint8Array(S * S * 4);
      for (let p = 0; p < S * S; p++) {
        rgba.set(IMG_A.data.subarray(p * 3, p * 3 + 3), p * 4);
        rgba[p * 4 + 3] = 100; // alpha is dropped, as PIL's convert("RGB")
      }
      const float: FloatImageBatch = {
        data: Float32Array.from(IMG_A.data, (v) => Math.fround(v / 255)),
        shape: [1, S, S, 3],
        layout: "nhwc",
      };
      const inputs: [string, UpscaleCallOptions["image"]][] = [
        ["path", path],
        ["Buffer", readFileSync(path)],
        ["raw RGBA", { data: rgba, width: S, height: S, channels: 4 }],
        ["RgbImage", { ...IMG_A }],
        ["float batch", float],
      ];
      for (const [name, image] of inputs) {
        const got = dataOf((await pipe.call(base({ ...one, image }))).images);
        assert.deepEqual(got.shape, [1, 4 * S, 4 * S, 3], name);
        assertClose(got.data, expected, { atol: 1e-6, rtol: 0 }, name);
      }
    });

    test("a float batch that is not a multiple of 4 takes the nearest-resize path", async () => {
      const w = 18;
      const h = 17;
      const float: FloatImageBatch = {
        data: Float32Array.from({ length: 3 * h * w }, (_, i) => (i % 251) / 250),
        shape: [1, 3, h, w],
        layout: "nchw",
      };
      const traces = new Map<TraceStage, HostTensor>();
      const got = dataOf(
        (await pipe.call(base({ ...one, image: float, trace: (s, t) => void traces.set(s, t) }))).images,
      );
      assert.deepEqual(traces.get("preprocessed_image")?.dims, [1, 3, 16, 16]);
      assert.deepEqual(got.shape, [1, 64, 64, 3]);
    });
  });

  describe("safety checker and watermarker", () => {
    test("a flagged image is black and nsfwContentDetected is set", async () => {
      let seen: RgbImage[] = [];
      patch(pipe, "safetyChecker", (images: RgbImage[]) => {
        seen = images;
        return images.map((_, i) => i === 1);
      });
      const out = await pipe.call(
        base({ numInferenceSteps: 1, numImagesPerPrompt: 2, generator: [gen(0), gen(1)] }),
      );
      assert.equal(seen.length, 2);
      assert.equal(seen[0]!.width, 4 * S);
      assert.deepEqual(out.nsfwContentDetected, [false, true]);
      const d = dataOf(out.images);
      assert.ok(
        row(d.data, d.shape, 1).every((v) => v === 0),
        "flagged image is black",
      );
      assert.ok(
        row(d.data, d.shape, 0).some((v) => v > 0.05),
        "unflagged image kept",
      );
    });

    test("the watermarker is applied to pil outputs only", async () => {
      let calls = 0;
      patch(pipe, "watermarker", (images: RgbImage[]) => {
        calls++;
        return images.map((im) => ({ ...im, data: new Uint8Array(im.data.length).fill(7) }));
      });
      const pil = (await pipe.call(base({ numInferenceSteps: 1, outputType: "pil" }))) as UpscaleOutput;
      assert.equal(calls, 1);
      assert.ok(pil.images.outputType === "pil" && pil.images.images[0]!.data.every((v) => v === 7));
      for (const outputType of ["np", "pt", "latent"] as const) {
        await pipe.call(base({ numInferenceSteps: 1, outputType }));
      }
      assert.equal(calls, 1, "not applied to np / pt / latent");
    });
  });

  describe("NaN detection", () => {
    const nanLike = (t: HostTensor): HostTensor => ({
      ...t,
      data: new Float32Array(t.data.length).fill(Number.NaN),
    });

    test("a NaN from the UNet names the UNet at step 0", async () => {
      instrument((_in, out) => nanLike(out));
      await assert.rejects(pipe.call(base()), (e: Error) => {
        assert.ok(e instanceof NonFiniteError);
        assert.match(e.message, /the UNet at step 0/);
        return true;
      });
      assert.equal(counts.unet, 1);
      assert.equal(counts.vae, 0);
    });

    test("a NaN from the VAE decoder names the VAE decoder", async () => {
      const decode = pipe.vae.decode.bind(pipe.vae);
      patch(pipe.vae, "decode", async (z, options) => nanLike(await decode(z, options)));
      await assert.rejects(pipe.call(base({ numInferenceSteps: 1 })), (e: Error) => {
        assert.ok(e instanceof NonFiniteError);
        assert.match(e.message, /the VAE decoder/);
        return true;
      });
    });
  });
});

describe("fromPretrained errors name the file", () => {
  const COMPONENTS = ["low_res_scheduler", "scheduler", "text_encoder", "tokenizer", "unet", "vae"];
  /** A copy of the tiny model folder (components symlinked) with `edit` applied. */
  function folder(name: string, edit: (dir: string) => void, skip: string[] = []): string {
    const dir = join(TMP, name);
    mkdirSync(dir);
    writeFileSync(join(dir, "model_index.json"), readFileSync(join(MODEL, "model_index.json")));
    for (const c of COMPONENTS) if (!skip.includes(c)) symlinkSync(join(MODEL, c), join(dir, c));
    edit(dir);
    return dir;
  }
  const load = (dir: string) => StableDiffusionUpscalePipeline.fromPretrained(dir, { runtime });

  test("a bad precision, or int8 off the CPU, is refused before anything is resolved", async () => {
    const missing = join(TMP, "does-not-exist");
    const opts = (o: object) => StableDiffusionUpscalePipeline.fromPretrained(missing, { runtime, ...o });
    await assert.rejects(opts({ precision: "fp8" }), /precision must be one of float32, int8, got "fp8"/);
    await assert.rejects(opts({ precision: "int8", device: "cuda" }), /precision "int8" is a CPU path/);
  });

  test("model_index.json of another pipeline class", async () => {
    const dir = folder("other-class", (d) => {
      const index = JSON.parse(readFileSync(join(d, "model_index.json"), "utf8"));
      index._class_name = "StableDiffusionPipeline";
      writeFileSync(join(d, "model_index.json"), JSON.stringify(index));
    });
    await assert.rejects(
      load(dir),
      /model_index\.json: _class_name is "StableDiffusionPipeline"; sdx4 loads StableDiffusionUpscalePipeline/,
    );
  });

  test("a missing component folder", async () => {
    const dir = folder("no-vae", () => {}, ["vae"]);
    await assert.rejects(load(dir), (e: Error) => {
      assert.match(
        e.message,
        /no-vae[/\\]vae: component folder not found \(.*model_index\.json lists vae as AutoencoderKL\)/,
      );
      return true;
    });
  });

  test("a component missing from model_index.json", async () => {
    const dir = folder("index-no-unet", (d) => {
      const index = JSON.parse(readFileSync(join(d, "model_index.json"), "utf8"));
      delete index.unet;
      writeFileSync(join(d, "model_index.json"), JSON.stringify(index));
    });
    await assert.rejects(load(dir), /model_index\.json: component "unet" is missing/);
  });

  test("corrupt JSON: model_index.json, a component config", async () => {
    const dir = folder("corrupt-index", (d) => writeFileSync(join(d, "model_index.json"), "{ not json"));
    await assert.rejects(load(dir), /corrupt-index[/\\]model_index\.json: not valid JSON/);
    const dir2 = folder(
      "corrupt-scheduler",
      (d) => {
        mkdirSync(join(d, "scheduler"));
        writeFileSync(join(d, "scheduler", "scheduler_config.json"), '{"num_train_timesteps": 1000,');
      },
      ["scheduler"],
    );
    await assert.rejects(
      load(dir2),
      /corrupt-scheduler[/\\]scheduler[/\\]scheduler_config\.json: not valid JSON/,
    );
  });

  test("a pickle-only unet folder", async () => {
    const dir = folder(
      "pickle-unet",
      (d) => {
        mkdirSync(join(d, "unet"));
        writeFileSync(join(d, "unet", "config.json"), readFileSync(join(MODEL, "unet", "config.json")));
        writeFileSync(join(d, "unet", "diffusion_pytorch_model.bin"), "PK\x03\x04 pickle");
      },
      ["unet"],
    );
    await assert.rejects(
      load(dir),
      /pickle-unet[/\\]unet: only a pickle checkpoint \(diffusion_pytorch_model\.bin\) is present; sdx4 loads safetensors only/,
    );
  });
});
