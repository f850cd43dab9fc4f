/**
 * VaeImageProcessor parity: every components/ preprocess and postprocess fixture at its recorded tolerance, and
 * the preprocessed_image of every pipeline/ case rebuilt from its input PNG(s).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { describe, test } from "node:test";
import { loadImage } from "../../src/image/decode.js";
import { ImageInputError } from "../../src/image/errors.js";
import { postprocess, preprocess, roundHalfEven } from "../../src/image/processor.js";
import type { RgbImage } from "../../src/image/types.js";
import {
  assertClose,
  type FixtureCase,
  type FixtureGroup,
  loadGroup,
  tensorOf,
} from "../helpers/fixtures.js";

const PRE_TOL = { atol: 1e-6, rtol: 0 };

function u8Of(g: FixtureGroup, c: FixtureCase, role: string): { data: Uint8Array; shape: number[] } {
  const key = c.tensors[role];
  assert.ok(key, `${c.name} has no role ${role}`);
  const data = g.tensors.getTyped(key);
  assert.ok(data instanceof Uint8Array, `${key} is not U8`);
  return { data, shape: g.tensors.info(key).shape };
}

/** Decode the case's PNGs and check them against input_uint8 (N, h, w, 3) byte for byte. */
async function loadInputs(g: FixtureGroup, c: FixtureCase, pngs: string[]): Promise<RgbImage[]> {
  const images = await Promise.all(pngs.map((p) => loadImage(join(g.dir, p))));
  const ref = u8Of(g, c, "input_uint8");
  const [n, h, w, ch] = ref.shape as [number, number, number, number];
  assert.equal(ch, 3);
  assert.equal(n, images.length);
  images.forEach((img, i) => {
    assert.equal(img.width, w);
    assert.equal(img.height, h);
    assert.deepEqual(
      img.data,
      ref.data.subarray(i * h * w * 3, (i + 1) * h * w * 3),
      `${c.name}: pixels of ${pngs[i]}`,
    );
  });
  return images;
}

describe("preprocess: components fixtures", () => {
  const g = loadGroup("components");
  for (const name of ["preprocess_pil_32x32", "preprocess_pil_30x22", "preprocess_pil_list"]) {
    test(name, async () => {
      const c = g.get(name);
      assert.deepEqual(c.tolerance, PRE_TOL);
      const images = await loadInputs(g, c, c.params.input_png as string[]);
      const out = preprocess(images, { vaeScaleFactor: c.params.vae_scale_factor as number });
      const ref = tensorOf(g, c, "out");
      assert.deepEqual(out.shape, ref.shape);
      assert.equal(out.normalized, true);
      assertClose(out.data, ref.data, c.tolerance, name);
      // bit-exact, in fact
      assert.deepEqual(out.data, ref.data);
    });
  }

  test("preprocess_numpy_30x22 (NHWC float, nearest)", () => {
    const c = g.get("preprocess_numpy_30x22");
    const inp = tensorOf(g, c, "input");
    assert.deepEqual(inp.shape, [1, 22, 30, 3]);
    const out = preprocess({ data: inp.data, shape: inp.shape, layout: "nhwc" }, { vaeScaleFactor: 4 });
    const ref = tensorOf(g, c, "out");
    assert.deepEqual(out.shape, ref.shape);
    assertClose(out.data, ref.data, c.tolerance, c.name);
    assert.deepEqual(out.data, ref.data);
  });

  test("preprocess_tensor_30x22 (NCHW float, nearest)", () => {
    const c = g.get("preprocess_tensor_30x22");
    const inp = tensorOf(g, c, "input");
    assert.deepEqual(inp.shape, [1, 3, 22, 30]);
    const before = inp.data.slice();
    const out = preprocess({ data: inp.data, shape: inp.shape, layout: "nchw" }, { vaeScaleFactor: 4 });
    const ref = tensorOf(g, c, "out");
    assert.deepEqual(out.shape, ref.shape);
    assertClose(out.data, ref.data, c.tolerance, c.name);
    assert.deepEqual(out.data, ref.data);
    assert.deepEqual(inp.data, before, "input not modified");
  });
});

describe("preprocess: pipeline fixtures' preprocessed_image", () => {
  const g = loadGroup("pipeline");
  for (const c of g.cases) {
    if (!c.tensors.preprocessed_image) continue;
    test(c.name, async () => {
      const png = c.params.image_png as string | string[];
      const images = await loadInputs(g, c, Array.isArray(png) ? png : [png]);
      const out = preprocess(images, { vaeScaleFactor: 4 });
      const ref = tensorOf(g, c, "preprocessed_image");
      assert.deepEqual(out.shape, ref.shape);
      // The pipeline tolerance is looser; preprocessing alone must meet the components' 1e-6.
      assertClose(out.data, ref.data, PRE_TOL, c.name);
    });
  }
  test("tiny_output_pil input pixels", async () => {
    const c = g.get("tiny_output_pil");
    await loadInputs(g, c, [c.params.image_png as string]);
  });
});

describe("postprocess: components fixture", () => {
  const g = loadGroup("components");
  const c = g.get("postprocess");
  const dec = tensorOf(g, c, "decoded");

  test("pt", () => {
    const r = postprocess(dec.data, dec.shape, "pt");
    const ref = tensorOf(g, c, "out_pt");
    assert.deepEqual(r.shape, ref.shape);
    assertClose(r.data, ref.data, c.tolerance, "out_pt");
    assert.deepEqual(r.data, ref.data);
  });

  test("np", () => {
    const r = postprocess(dec.data, dec.shape, "np");
    const ref = tensorOf(g, c, "out_np");
    assert.deepEqual(r.shape, ref.shape);
    assertClose(r.data, ref.data, c.tolerance, "out_np");
    assert.deepEqual(r.data, ref.data);
  });

  test("pil", () => {
    const r = postprocess(dec.data, dec.shape, "pil");
    const ref = u8Of(g, c, "out_pil_uint8");
    assert.deepEqual(r.shape, ref.shape);
    assert.deepEqual(r.data, ref.data);
    const [n, h, w] = r.shape;
    assert.equal(r.images.length, n);
    for (const [i, img] of r.images.entries()) {
      assert.equal(img.width, w);
      assert.equal(img.height, h);
      assert.deepEqual(img.data, ref.data.subarray(i * h * w * 3, (i + 1) * h * w * 3));
    }
  });
});

describe("postprocess: semantics", () => {
  test("clamp, half-even rounding, NaN", () => {
    // x/2+0.5 = 0.5/255*k: values whose *255 land exactly on .5 go to the even neighbour
    const v = (u: number) => Math.fround(u / 255) * 2 - 1;
    const sample = Float32Array.from([
      -3,
      3,
      0,
      Number.NaN,
      v(0.5),
      v(1.5),
      v(2.5),
      v(254.5),
      1,
      -1,
      0.2,
      -0.2,
    ]);
    const pt = postprocess(sample, [1, 1, 3, 4], "pt");
    assert.equal(pt.data[0], 0);
    assert.equal(pt.data[1], 1);
    assert.equal(pt.data[2], 0.5);
    assert.ok(Number.isNaN(pt.data[3]));
    const pil = postprocess(Float32Array.from([...sample, ...sample, ...sample]), [1, 3, 3, 4], "pil");
    const red = Array.from({ length: 12 }, (_, i) => pil.data[i * 3]);
    const expect = sample.slice().map((_, i) => {
      const x = pt.data[i] as number;
      return Number.isNaN(x) ? 0 : roundHalfEven(Math.fround(x * 255));
    });
    assert.deepEqual(red, Array.from(expect));
    assert.equal(red[2], 128); // 0.5*255 = 127.5 → 128 (even)
  });

  test("roundHalfEven", () => {
    assert.deepEqual(
      [0.5, 1.5, 2.5, 3.5, 127.5, 2.4999, 2.5001, 0, 255].map(roundHalfEven),
      [0, 2, 2, 4, 128, 2, 3, 0, 255],
    );
  });

  test("doDenormalize per image, np layout, errors", () => {
    const s = Float32Array.from([0, 0.5, -0.5, 1, 0, 0.5, -0.5, 1]);
    const r = postprocess(s, [2, 1, 2, 2], "np", { doDenormalize: [true, false] });
    assert.deepEqual(r.shape, [2, 2, 2, 1]);
    assert.deepEqual(Array.from(r.data), [0.5, 0.75, 0.25, 1, 0, 0.5, -0.5, 1]);
    assert.throws(() => postprocess(s, [2, 1, 2, 2], "pil"), ImageInputError);
    assert.throws(() => postprocess(s, [2, 1, 2, 3], "np"), /sample has 8 values/);
    assert.throws(() => postprocess(s, [8], "np"), ImageInputError);
    assert.throws(() => postprocess(s, [2, 1, 2, 2], "np", { doDenormalize: [true] }), /doDenormalize/);
  });

  test("NHWC order", () => {
    // N=1, C=3, H=1, W=2: channel planes [r0 r1][g0 g1][b0 b1]
    const s = Float32Array.from([-1, 1, 0, 0, 1, -1]);
    const r = postprocess(s, [1, 3, 1, 2], "np");
    assert.deepEqual(Array.from(r.data), [0, 0.5, 1, 1, 0.5, 0]);
  });
});

describe("preprocess: semantics", () => {
  const solid = (w: number, h: number, v: number): RgbImage => ({
    data: new Uint8Array(w * h * 3).fill(v),
    width: w,
    height: h,
  });

  test("sizes floor to the scale factor, NCHW, exact values", () => {
    const img: RgbImage = { data: new Uint8Array(9 * 6 * 3), width: 9, height: 6 };
    for (let i = 0; i < img.data.length; i++) img.data[i] = 255;
    const out = preprocess(img);
    assert.deepEqual(out.shape, [1, 3, 4, 8]);
    assert.ok(out.data.every((x) => x === 1));
    assert.deepEqual(preprocess(solid(9, 6, 0), { vaeScaleFactor: 3 }).shape, [1, 3, 6, 9]);
    const one = preprocess(
      {
        data: Uint8Array.from([0, 128, 255, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]).subarray(0, 12),
        width: 2,
        height: 2,
      },
      { vaeScaleFactor: 1 },
    );
    assert.equal(one.data[0], -1);
    assert.equal(one.data[4], Math.fround(2 * Math.fround(128 / 255) - 1));
    assert.equal(one.data[8], 1);
  });

  test("list: every image is resized to the first image's floored size (as diffusers)", () => {
    const out = preprocess([solid(8, 8, 10), solid(13, 9, 20)]);
    assert.deepEqual(out.shape, [2, 3, 8, 8]);
    assert.ok(out.data.subarray(3 * 64).every((x) => x === Math.fround(2 * Math.fround(20 / 255) - 1)));
  });

  test("doResize false needs equal sizes; doNormalize false keeps [0,1]", () => {
    assert.throws(() => preprocess([solid(8, 8, 1), solid(12, 8, 1)], { doResize: false }), /one size/);
    const r = preprocess([solid(6, 5, 255)], { doResize: false, doNormalize: false });
    assert.deepEqual(r.shape, [1, 3, 5, 6]);
    assert.equal(r.normalized, false);
    assert.ok(r.data.every((x) => x === 1));
  });

  test("float inputs: stack/cat, shape mismatch, negative values skip normalisation, latents pass through", () => {
    const a = { data: new Float32Array(8 * 8 * 3).fill(0.5), shape: [8, 8, 3], layout: "nhwc" as const };
    const b = { data: new Float32Array(8 * 8 * 3).fill(1), shape: [8, 8, 3], layout: "nhwc" as const };
    const r = preprocess([a, b]);
    assert.deepEqual(r.shape, [2, 3, 8, 8]);
    assert.equal(r.data[0], 0);
    assert.equal(r.data[3 * 64], 1);
    const c = { data: new Float32Array(12 * 8 * 3), shape: [8, 12, 3], layout: "nhwc" as const };
    assert.throws(() => preprocess([a, c]), /a batch needs one shape/);
    const neg = {
      data: new Float32Array(3 * 4 * 4).fill(-0.25),
      shape: [1, 3, 4, 4],
      layout: "nchw" as const,
    };
    const rn = preprocess(neg);
    assert.equal(rn.normalized, false);
    assert.ok(rn.data.every((x) => x === -0.25));
    const lat = { data: new Float32Array(4 * 5 * 7).fill(3), shape: [1, 4, 5, 7], layout: "nchw" as const };
    const rl = preprocess(lat);
    assert.deepEqual(rl.shape, [1, 4, 5, 7]);
    assert.ok(rl.data.every((x) => x === 3));
    const grey = { data: new Float32Array(16), shape: [1, 1, 4, 4], layout: "nchw" as const };
    assert.throws(() => preprocess(grey), /3 \(RGB\)/);
  });

  test("bad inputs", () => {
    assert.throws(() => preprocess([]), /no images/);
    assert.throws(() => preprocess(solid(3, 8, 0)), /at least 4x4/);
    assert.throws(() => preprocess({ data: new Uint8Array(10), width: 4, height: 4 }), /expected 4x4x3 = 48/);
    assert.throws(
      () =>
        preprocess([
          solid(8, 8, 0),
          { data: new Float32Array(192), shape: [8, 8, 3], layout: "nhwc" },
        ] as never),
      /cannot be mixed/,
    );
    assert.throws(
      () => preprocess({ data: new Float32Array(5), shape: [1, 3, 4, 4], layout: "nchw" }),
      /needs 48/,
    );
  });
});
