/**
 * StableDiffusionUpscalePipeline behaviour on the tiny model (16x16 inputs, 1-3 steps): prompts pair with their own
 * images, generator lists follow diffusers, every output type, callbacks, progress, abort, input kinds, safety
 * checker, watermarker, NaN detection. Bad inputs: bad_inputs.test.ts; fromPretrained's errors:
 * from_pretrained_errors.test.ts.
 */
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { before, describe, test } from "node:test";
import type { FloatImageBatch, RgbImage } from "../../src/image/types.js";
import {
  NonFiniteError,
  type StableDiffusionUpscalePipeline,
  type UpscaleOutput,
} from "../../src/pipelines/pipeline_stable_diffusion_upscale.js";
import type { TraceStage, UpscaleCallOptions } from "../../src/pipelines/upscale_inputs.js";
import type { HostTensor } from "../../src/runtime/host_tensor.js";
import { assertClose } from "../helpers/fixtures.js";
import {
  dataOf,
  gen,
  IMG_A,
  IMG_B,
  maxAbsDiff,
  pngOf,
  row,
  S,
  TOL,
  testWorkspace,
  tinyPipeline,
} from "./tiny_harness.js";

const { runtime, tmp: TMP } = testWorkspace("behaviour");

describe("StableDiffusionUpscalePipeline behaviour (tiny model)", () => {
  const t = tinyPipeline(runtime);
  const { counts, patch, instrument, base } = t;
  let pipe: StableDiffusionUpscalePipeline;
  before(() => {
    pipe = t.pipe;
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
