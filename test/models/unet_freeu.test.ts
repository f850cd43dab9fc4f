/**
 * FreeU's `fourier_filter` (diffusers v0.23.0 utils/torch_utils.py) expressed without an FFT (src/models/unet/
 * freeu.ts), against a float64 reference that follows the torch code step by step: a direct 2-D DFT, fftshift,
 * the mask written with Python slice semantics (`mask[..., crow-1:crow+1, ccol-1:ccol+1] = scale`, a negative
 * start wrapping as in Python), ifftshift, inverse DFT, real part. Sizes include 1 (only the zero frequency in the
 * window), 2, odd and non-power-of-2 lengths. Also `apply_freeu`'s channel split.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import * as ort from "onnxruntime-node";
import { applyFreeU, fourierFilter, isFreeUEnabled } from "../../src/models/unet/freeu.js";
import { ModelBuilder } from "../../src/onnx/model_builder.js";
import { ParamStore } from "../../src/onnx/params.js";
import { bindWeights, WeightSet } from "../../src/onnx/weights.js";
import { assertClose } from "../helpers/fixtures.js";
import { runGraph } from "../helpers/ort.js";

function rand(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  return Float32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32 - 0.5;
  });
}

/** Python's slice(start, stop) over a length-n axis → the selected indices. */
function pySlice(start: number, stop: number, n: number): number[] {
  const norm = (i: number) => (i < 0 ? Math.max(i + n, 0) : Math.min(i, n));
  const out: number[] = [];
  for (let i = norm(start); i < norm(stop); i++) out.push(i);
  return out;
}

/** torch's fourier_filter(x, threshold, scale) on one [H, W] plane, in float64. */
function referenceFilter(
  x: Float32Array,
  H: number,
  W: number,
  threshold: number,
  scale: number,
): Float64Array {
  // F[ky, kx] = Σ x[y, x] e^{-2πi(ky y/H + kx x/W)}
  const re = new Float64Array(H * W);
  const im = new Float64Array(H * W);
  for (let ky = 0; ky < H; ky++) {
    for (let kx = 0; kx < W; kx++) {
      let sr = 0;
      let si = 0;
      for (let y = 0; y < H; y++) {
        for (let xx = 0; xx < W; xx++) {
          const a = -2 * Math.PI * ((ky * y) / H + (kx * xx) / W);
          const v = x[y * W + xx] as number;
          sr += v * Math.cos(a);
          si += v * Math.sin(a);
        }
      }
      re[ky * W + kx] = sr;
      im[ky * W + kx] = si;
    }
  }
  // fftshift: shifted[j] = orig[(j - n//2) mod n]; mask in shifted coordinates; ifftshift undoes the shift.
  const mask = new Float64Array(H * W).fill(1);
  const crow = Math.floor(H / 2);
  const ccol = Math.floor(W / 2);
  const rows = pySlice(crow - threshold, crow + threshold, H);
  const cols = pySlice(ccol - threshold, ccol + threshold, W);
  for (const jr of rows) {
    for (const jc of cols) {
      const ky = (((jr - crow) % H) + H) % H;
      const kx = (((jc - ccol) % W) + W) % W;
      mask[ky * W + kx] = Math.fround(scale);
    }
  }
  const out = new Float64Array(H * W);
  for (let y = 0; y < H; y++) {
    for (let xx = 0; xx < W; xx++) {
      let s = 0;
      for (let ky = 0; ky < H; ky++) {
        for (let kx = 0; kx < W; kx++) {
          const a = 2 * Math.PI * ((ky * y) / H + (kx * xx) / W);
          const m = mask[ky * W + kx] as number;
          s += m * ((re[ky * W + kx] as number) * Math.cos(a) - (im[ky * W + kx] as number) * Math.sin(a));
        }
      }
      out[y * W + xx] = s / (H * W);
    }
  }
  return out;
}

function emptyBuilder(): ModelBuilder {
  return new ModelBuilder(bindWeights(new ParamStore(), WeightSet.fromArrays({})));
}

describe("fourier_filter without an FFT", () => {
  const B = 2;
  const C = 3;
  for (const [H, W] of [
    [1, 1],
    [1, 5],
    [2, 2],
    [3, 4],
    [5, 7],
    [8, 8],
    [16, 24],
    [12, 20],
  ] as const) {
    test(`${H}x${W}, scale 0.2 and 0.9`, async () => {
      const x = rand(B * C * H * W, H * 131 + W);
      for (const scale of [0.2, 0.9]) {
        const b = emptyBuilder();
        const input = b.input("x", "float32", ["b", "c", "h", "w"]);
        b.output(fourierFilter(input, scale), "y");
        const out = await runGraph(b, { x: new ort.Tensor("float32", x, [B, C, H, W]) });
        const got = out.y?.data as Float32Array;
        const want = new Float64Array(x.length);
        for (let p = 0; p < B * C; p++) {
          const plane = x.subarray(p * H * W, (p + 1) * H * W);
          want.set(referenceFilter(plane, H, W, 1, scale), p * H * W);
        }
        assertClose(got, want, { atol: 2e-6, rtol: 1e-5 }, `${H}x${W} scale ${scale}`);
      }
    });
  }

  test("scale 1 is the identity; one graph serves every size", async () => {
    const b = emptyBuilder();
    const input = b.input("x", "float32", ["b", "c", "h", "w"]);
    assert.equal(fourierFilter(input, 1), input);
    b.output(fourierFilter(input, 0.5), "y");
    for (const [H, W] of [
      [4, 6],
      [7, 3],
    ] as const) {
      const x = rand(H * W, H + W);
      const out = await runGraph(b, { x: new ort.Tensor("float32", x, [1, 1, H, W]) });
      assertClose(out.y?.data as Float32Array, referenceFilter(x, H, W, 1, 0.5), { atol: 2e-6, rtol: 1e-5 });
    }
  });
});

describe("apply_freeu", () => {
  const f = { s1: 0.9, s2: 0.2, b1: 1.2, b2: 1.4 };

  test("scales the first half of the backbone channels by b and filters the skip with s (stages 0, 1 only)", async () => {
    const [Cb, Cs, H, W] = [5, 3, 4, 6];
    const h = rand(Cb * H * W, 1);
    const r = rand(Cs * H * W, 2);
    for (const idx of [0, 1, 2]) {
      const b = emptyBuilder();
      const hv = b.input("h", "float32", [1, Cb, H, W]);
      const rv = b.input("r", "float32", [1, Cs, H, W]);
      const [ho, ro] = applyFreeU(idx, hv, Cb, rv, f);
      b.output(ho, "ho");
      b.output(ro, "ro");
      const out = await runGraph(b, {
        h: new ort.Tensor("float32", h, [1, Cb, H, W]),
        r: new ort.Tensor("float32", r, [1, Cs, H, W]),
      });
      const bf = idx === 0 ? f.b1 : idx === 1 ? f.b2 : 1;
      const sf = idx === 0 ? f.s1 : idx === 1 ? f.s2 : 1;
      const wantH = h.map((v, i) =>
        Math.floor(i / (H * W)) < Math.floor(Cb / 2) ? Math.fround(v * Math.fround(bf)) : v,
      );
      assertClose(out.ho?.data as Float32Array, wantH, { atol: 0, rtol: 0 }, `stage ${idx} backbone`);
      const wantR = new Float64Array(r.length);
      for (let c = 0; c < Cs; c++) {
        wantR.set(referenceFilter(r.subarray(c * H * W, (c + 1) * H * W), H, W, 1, sf), c * H * W);
      }
      assertClose(out.ro?.data as Float32Array, wantR, { atol: 2e-6, rtol: 1e-5 }, `stage ${idx} skip`);
    }
  });

  test("any zero factor leaves FreeU off (diffusers' `s1 and s2 and b1 and b2`)", () => {
    assert.equal(isFreeUEnabled(f), true);
    assert.equal(isFreeUEnabled(undefined), false);
    assert.equal(isFreeUEnabled({ ...f, s2: 0 }), false);
    assert.equal(isFreeUEnabled({ ...f, b1: 0 }), false);
  });
});
