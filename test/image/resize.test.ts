/**
 * Pillow bicubic and torch nearest. The golden bicubic check is the fixture 30x22 → 28x20 (processor.test.ts);
 * here: invariants that any correct Pillow BICUBIC must satisfy on up-, down- and non-uniform scales, plus an
 * independent floating-point model that the fixed-point result must stay within 1 of.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { precomputeCoeffs, resizeBicubic, resizeBicubicU8 } from "../../src/image/resize_bicubic.js";
import { nearestIndex, resizeNearestNCHW } from "../../src/image/resize_nearest.js";
import type { RgbImage } from "../../src/image/types.js";

/** Deterministic pseudo-random image (xorshift). */
function noise(w: number, h: number, seed = 1): RgbImage {
  let s = seed >>> 0 || 1;
  const data = new Uint8Array(w * h * 3);
  for (let i = 0; i < data.length; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    data[i] = (s >>> 0) & 0xff;
  }
  return { data, width: w, height: h };
}

const SIZES: [number, number, number, number][] = [
  [30, 22, 28, 20],
  [32, 32, 128, 128],
  [17, 9, 5, 3],
  [64, 48, 7, 31],
  [10, 10, 33, 4],
  [7, 5, 7, 12],
  [12, 5, 3, 5],
  [1, 1, 3, 2],
  [5, 1, 9, 1],
  [100, 3, 1, 1],
];

/** Keys bicubic (a = -0.5), the same sampling geometry, evaluated in plain doubles per pass. */
function floatModel1D(row: ArrayLike<number>, outSize: number): number[] {
  const n = row.length;
  const scale = n / outSize;
  const fs = Math.max(scale, 1);
  const support = 2 * fs;
  const cubic = (x: number) => {
    x = Math.abs(x);
    if (x < 1) return (1.5 * x - 2.5) * x * x + 1;
    if (x < 2) return (((x - 5) * x + 8) * x - 4) * -0.5;
    return 0;
  };
  const out: number[] = [];
  for (let i = 0; i < outSize; i++) {
    const c = (i + 0.5) * scale;
    let acc = 0;
    let ww = 0;
    for (
      let x = Math.max(0, Math.trunc(c - support + 0.5));
      x < Math.min(n, Math.trunc(c + support + 0.5));
      x++
    ) {
      const wt = cubic((x - c + 0.5) / fs);
      acc += wt * (row[x] as number);
      ww += wt;
    }
    out.push(Math.min(255, Math.max(0, Math.round(acc / ww))));
  }
  return out;
}

describe("bicubic (Pillow 9.4)", () => {
  test("same size is a copy", () => {
    const img = noise(9, 7);
    const r = resizeBicubic(img, 9, 7);
    assert.deepEqual(r.data, img.data);
    assert.notEqual(r.data, img.data);
  });

  for (const [w, h, ow, oh] of SIZES) {
    test(`${w}x${h} → ${ow}x${oh}: constant images stay constant`, () => {
      for (const v of [0, 1, 77, 128, 254, 255]) {
        const img: RgbImage = { data: new Uint8Array(w * h * 3).fill(v), width: w, height: h };
        const r = resizeBicubic(img, ow, oh);
        assert.equal(r.data.length, ow * oh * 3);
        assert.ok(
          r.data.every((x) => x === v),
          `value ${v}`,
        );
      }
    });

    test(`${w}x${h} → ${ow}x${oh}: horizontal then vertical, bands independent, mirror symmetric`, () => {
      const img = noise(w, h, w * 131 + h);
      const r = resizeBicubic(img, ow, oh);
      // Pillow: full resize == vertical-only resize of the horizontal-only result
      const hOnly = resizeBicubic(img, ow, h);
      assert.deepEqual(resizeBicubic(hOnly, ow, oh).data, r.data);
      // each band alone (mode L) gives the same band
      for (let c = 0; c < 3; c++) {
        const band = new Uint8Array(w * h);
        for (let i = 0; i < w * h; i++) band[i] = img.data[i * 3 + c] as number;
        const rb = resizeBicubicU8(band, w, h, 1, ow, oh);
        for (let i = 0; i < ow * oh; i++) assert.equal(rb[i], r.data[i * 3 + c]);
      }
      // flipping the input left-right flips the output
      const flip = (im: RgbImage): RgbImage => {
        const d = new Uint8Array(im.data.length);
        for (let y = 0; y < im.height; y++) {
          for (let x = 0; x < im.width; x++) {
            for (let c = 0; c < 3; c++) {
              d[(y * im.width + x) * 3 + c] = im.data[(y * im.width + (im.width - 1 - x)) * 3 + c] as number;
            }
          }
        }
        return { data: d, width: im.width, height: im.height };
      };
      assert.deepEqual(resizeBicubic(flip(img), ow, oh).data, flip(r).data);
    });

    test(`${w}x${h} → ${ow}x${oh}: within 1 of a floating-point model per pass`, () => {
      const band = noise(w, 1, w + 7).data.filter((_, i) => i % 3 === 0);
      const fixed = resizeBicubicU8(band, w, 1, 1, ow, 1);
      const model = floatModel1D(band, ow);
      for (let i = 0; i < ow; i++)
        assert.ok(Math.abs((fixed[i] as number) - (model[i] as number)) <= 1, `x=${i}`);
    });
  }

  test("coefficients: windows inside the image, fixed-point weights sum to 2^22 ± rounding", () => {
    for (const [inS, outS] of [
      [30, 28],
      [22, 20],
      [8, 32],
      [100, 7],
      [3, 1],
    ] as const) {
      const c = precomputeCoeffs(inS, outS);
      assert.equal(c.ksize, Math.ceil(2 * Math.max(inS / outS, 1)) * 2 + 1);
      for (let i = 0; i < outS; i++) {
        const xmin = c.bounds[2 * i] as number;
        const n = c.bounds[2 * i + 1] as number;
        assert.ok(xmin >= 0 && n >= 1 && xmin + n <= inS && n <= c.ksize);
        let sum = 0;
        for (let j = 0; j < c.ksize; j++) sum += c.kk[i * c.ksize + j] as number;
        assert.ok(Math.abs(sum - 2 ** 22) <= c.ksize, `${inS}->${outS} @${i}: ${sum}`);
      }
    }
  });

  test("linear ramps are reproduced when upscaling (cubic convolution is exact on linear data)", () => {
    const w = 16;
    const row = Uint8Array.from({ length: w }, (_, i) => 40 + 10 * i);
    const r = resizeBicubicU8(row, w, 1, 1, 4 * w, 1);
    // away from the borders: sample at source coordinate (i + 0.5)/4 - 0.5
    for (let i = 8; i < 4 * w - 8; i++) {
      const expect = 40 + 10 * ((i + 0.5) / 4 - 0.5);
      assert.ok(Math.abs((r[i] as number) - expect) <= 0.5 + 1e-9, `i=${i}: ${r[i]} vs ${expect}`);
    }
  });

  test("overshoot is clipped to 0..255", () => {
    const row = Uint8Array.from([0, 0, 0, 255, 255, 255, 0, 0, 0]);
    const r = resizeBicubicU8(row, 9, 1, 1, 40, 1);
    assert.ok(r.includes(255) && r.includes(0));
  });

  test("bad arguments", () => {
    assert.throws(() => resizeBicubicU8(new Uint8Array(5), 2, 2, 1, 4, 4), /expected 2x2x1/);
    assert.throws(() => resizeBicubicU8(new Uint8Array(4), 2, 2, 1, 0, 4), /positive integer/);
  });
});

describe("nearest (torch F.interpolate default mode)", () => {
  test("index rule: same size, 2x, float32 scale", () => {
    assert.deepEqual(
      Array.from({ length: 5 }, (_, i) => nearestIndex(i, 5, 5)),
      [0, 1, 2, 3, 4],
    );
    assert.deepEqual(
      Array.from({ length: 6 }, (_, i) => nearestIndex(i, 3, 6)),
      [0, 0, 1, 1, 2, 2],
    );
    // 22 → 20: scale = f32(1.1); floor(f32(i * scale))
    const s = Math.fround(22 / 20);
    for (let i = 0; i < 20; i++) assert.equal(nearestIndex(i, 22, 20), Math.floor(Math.fround(i * s)));
    assert.deepEqual(
      Array.from({ length: 20 }, (_, i) => nearestIndex(i, 22, 20)),
      [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20],
    );
    // 3 → 7 (upsampling, not 2x)
    assert.deepEqual(
      Array.from({ length: 7 }, (_, i) => nearestIndex(i, 3, 7)),
      [0, 0, 0, 1, 1, 2, 2],
    );
    // float32 rounding matters: 10 → 3 gives scale f32(3.3333333) and index 2*s = 6.6666665 → 6
    assert.equal(nearestIndex(2, 10, 3), 6);
  });

  test("NCHW resize picks those indices per plane", () => {
    const n = 2;
    const c = 3;
    const h = 5;
    const w = 6;
    const data = Float32Array.from({ length: n * c * h * w }, (_, i) => i);
    const r = resizeNearestNCHW({ data, shape: [n, c, h, w] }, 3, 4);
    assert.deepEqual(r.shape, [n, c, 3, 4]);
    for (let p = 0; p < n * c; p++) {
      for (let y = 0; y < 3; y++) {
        for (let x = 0; x < 4; x++) {
          const sy = nearestIndex(y, h, 3);
          const sx = nearestIndex(x, w, 4);
          assert.equal(r.data[(p * 3 + y) * 4 + x], data[(p * h + sy) * w + sx]);
        }
      }
    }
  });
});
