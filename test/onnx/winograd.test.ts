/**
 * The convolution plans (src/onnx/conv_plan.ts, winograd.ts) against a float64 reference convolution written here:
 * Winograd F(4×4, 3×3) for 3×3 / stride 1 / padding 1 convolutions (any height and width, with and without bias,
 * one session reused across sizes), 1×1 convolutions as MatMul, and which layers each ConvAlgorithm selects.
 * Stated tolerances: onnxruntime's direct Conv within 2e-6 of the output's largest magnitude, Winograd within
 * 2e-5 (its transforms scale values by up to 8, measured ~1e-5), MatMul 1×1 within 2e-6.
 * UNet / VAE goldens with every eligible layer on Winograd: test/models/unet.test.ts, vae.test.ts.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import * as ort from "onnxruntime-node";
import { UNet2DConditionModel } from "../../src/models/unet/unet_2d_condition.js";
import { AutoencoderKL } from "../../src/models/vae/autoencoder_kl.js";
import {
  type ConvPlan,
  checkConvAlgorithm,
  checkWinogradFilters,
  convPlan,
  largeMaps,
} from "../../src/onnx/conv_plan.js";
import { ModelBuilder } from "../../src/onnx/model_builder.js";
import { Conv2d } from "../../src/onnx/nn.js";
import { ParamStore } from "../../src/onnx/params.js";
import { onnx } from "../../src/onnx/proto.js";
import { bindWeights, WeightSet } from "../../src/onnx/weights.js";
import { winogradInputKernel, winogradOutputMatrix } from "../../src/onnx/winograd.js";
import { toOrtSessionOptions } from "../../src/runtime/session_options.js";
import { FIXTURES } from "../helpers/fixtures.js";

function rand(n: number, seed: number): Float32Array {
  let s = seed;
  return Float32Array.from({ length: n }, () => {
    s = (s * 1103515245 + 12345) % 2 ** 31;
    return (s / 2 ** 31 - 0.5) * 2;
  });
}

/** float64 reference: NCHW conv, square kernel k, stride 1, zero padding p, groups 1. */
function convRef(
  x: Float32Array,
  w: Float32Array,
  b: Float32Array | undefined,
  [N, C, H, W]: [number, number, number, number],
  K: number,
  k: number,
  p: number,
): Float64Array {
  const Ho = H + 2 * p - k + 1;
  const Wo = W + 2 * p - k + 1;
  const y = new Float64Array(N * K * Ho * Wo);
  for (let n = 0; n < N; n++)
    for (let o = 0; o < K; o++)
      for (let i = 0; i < Ho; i++)
        for (let j = 0; j < Wo; j++) {
          let s = b ? (b[o] as number) : 0;
          for (let c = 0; c < C; c++)
            for (let a = 0; a < k; a++)
              for (let e = 0; e < k; e++) {
                const yi = i + a - p;
                const xj = j + e - p;
                if (yi < 0 || yi >= H || xj < 0 || xj >= W) continue;
                s +=
                  (x[((n * C + c) * H + yi) * W + xj] as number) *
                  (w[((o * C + c) * k + a) * k + e] as number);
              }
          y[((n * K + o) * Ho + i) * Wo + j] = s;
        }
  return y;
}

function maxRelErr(got: Float32Array, want: Float64Array): number {
  assert.equal(got.length, want.length);
  let peak = 0;
  let err = 0;
  for (let i = 0; i < want.length; i++) {
    peak = Math.max(peak, Math.abs(want[i] as number));
    err = Math.max(err, Math.abs((got[i] as number) - (want[i] as number)));
  }
  return err / peak;
}

/** One Conv2d layer as a session with dynamic batch / height / width under a ConvPlan. */
async function convSession(C: number, K: number, k: number, plan: ConvPlan, bias: boolean) {
  const store = new ParamStore();
  const p = k === 3 ? 1 : 0;
  const conv = new Conv2d(store.root().pp("conv"), C, K, k, { padding: p, bias });
  const w = rand(K * C * k * k, 7 + C + K);
  const b = bias ? rand(K, 11) : undefined;
  const arrays: Record<string, { shape: number[]; data: Float32Array }> = {
    "conv.weight": { shape: [K, C, k, k], data: w },
  };
  if (b) arrays["conv.bias"] = { shape: [K], data: b };
  const mb = new ModelBuilder(bindWeights(store, WeightSet.fromArrays(arrays)), { conv: plan });
  const x = mb.input("x", "float32", ["n", C, "h", "w"]);
  mb.output(conv.forward(mb, x), "y", "float32", ["n", K, "h", "w"]);
  const opTypes = mb.toModel().graph?.node?.map((nd) => nd.opType) ?? [];
  const session = await ort.InferenceSession.create(mb.serialize(), { intraOpNumThreads: 1 });
  return {
    opTypes,
    run: async (dims: [number, number, number, number], seed: number) => {
      const xs = rand(
        dims.reduce((a, c) => a * c, 1),
        seed,
      );
      const out = await session.run({ x: new ort.Tensor("float32", xs, dims) });
      const y = out.y as ort.Tensor;
      return { y: y.data as Float32Array, dims: y.dims, ref: convRef(xs, w, b, dims, K, k, p) };
    },
  };
}

describe("Winograd F(4x4, 3x3) convolution", () => {
  for (const [bias, filters] of [
    [true, "session"],
    [false, "session"],
    [true, "run"],
  ] as const) {
    test(`matches a float64 convolution at any height / width (bias: ${bias}, filters at ${filters}), like onnxruntime's Conv`, async () => {
      const C = 5;
      const K = 7;
      const wino = await convSession(C, K, 3, { winograd: () => true, winogradFilters: filters }, bias);
      const direct = await convSession(C, K, 3, {}, bias);
      assert.ok(wino.opTypes.includes("DepthToSpace"));
      // "session": one Einsum on constants (folded); "run": a MatMul of the transform with the filters.
      assert.equal(wino.opTypes.includes("Einsum"), filters === "session");
      assert.ok(!direct.opTypes.includes("DepthToSpace"));
      // Multiples of 4, remainders 1-3, a single pixel, and batch 2: one session serves them all.
      const sizes: [number, number, number, number][] = [
        [1, C, 8, 8],
        [2, C, 9, 6],
        [1, C, 7, 13],
        [1, C, 1, 1],
        [1, C, 3, 2],
        [1, C, 16, 4],
      ];
      for (const [i, dims] of sizes.entries()) {
        const a = await wino.run(dims, 100 + i);
        const d = await direct.run(dims, 100 + i);
        assert.deepEqual(a.dims, [dims[0], K, dims[2], dims[3]]);
        const ew = maxRelErr(a.y, a.ref);
        const ed = maxRelErr(d.y, d.ref);
        assert.ok(ed < 2e-6, `direct conv ${dims}: relative error ${ed}`);
        assert.ok(ew < 2e-5, `winograd ${dims}: relative error ${ew}`);
      }
    });
  }

  test("wide layers (64 → 48 channels) stay within the stated tolerance", async () => {
    for (const winogradFilters of ["session", "run"] as const) {
      const s = await convSession(64, 48, 3, { winograd: () => true, winogradFilters }, true);
      const r = await s.run([1, 64, 12, 10], 5);
      const e = maxRelErr(r.y, r.ref);
      assert.ok(e < 2e-5, `${winogradFilters}: relative error ${e}`);
    }
  });

  test('onnxruntime folds the filters once under "session" and keeps them per run under "run"', async () => {
    // The optimized graph onnxruntime writes: "session" holds U [36, K, C] as an initializer; "run" holds only the
    // filters (pre-transposed to [9, K·C]) and computes U in the run.
    const C = 6;
    const K = 8;
    const dir = mkdtempSync(join(tmpdir(), "sdx4-winograd-"));
    try {
      const dims: Record<string, string[]> = {};
      for (const winogradFilters of ["session", "run"] as const) {
        const store = new ParamStore();
        const conv = new Conv2d(store.root().pp("conv"), C, K, 3, { padding: 1 });
        const arrays = {
          "conv.weight": { shape: [K, C, 3, 3], data: rand(K * C * 9, 1) },
          "conv.bias": { shape: [K], data: rand(K, 2) },
        };
        const mb = new ModelBuilder(bindWeights(store, WeightSet.fromArrays(arrays)), {
          conv: { winograd: () => true, winogradFilters },
        });
        const x = mb.input("x", "float32", ["n", C, "h", "w"]);
        mb.output(conv.forward(mb, x), "y");
        const file = join(dir, `${winogradFilters}.onnx`);
        const session = await ort.InferenceSession.create(mb.serialize(), { optimizedModelFilePath: file });
        await session.release();
        const model = onnx.ModelProto.decode(readFileSync(file));
        dims[winogradFilters] = (model.graph?.initializer ?? []).map((t) =>
          (t.dims ?? []).map(Number).join("x"),
        );
      }
      assert.ok(dims.session?.includes(`36x${K}x${C}`), `session: ${dims.session}`);
      assert.ok(!dims.run?.includes(`36x${K}x${C}`), `run: ${dims.run}`);
      assert.ok(dims.run?.includes(`9x${K * C}`), `run: ${dims.run}`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("only 3x3 / stride 1 / padding 1 / groups 1 convolutions take the Winograd path", async () => {
    const plan: ConvPlan = { winograd: () => true };
    const build = (make: (s: ParamStore) => Conv2d, C: number) => {
      const store = new ParamStore();
      const conv = make(store);
      const arrays: Record<string, { shape: number[]; data: Float32Array }> = {};
      for (const prm of store.params.values()) {
        const n = prm.shape.reduce((a, c) => a * c, 1);
        arrays[prm.key] = { shape: [...prm.shape], data: rand(n, 3) };
      }
      const mb = new ModelBuilder(bindWeights(store, WeightSet.fromArrays(arrays)), { conv: plan });
      const x = mb.input("x", "float32", [1, C, 8, 8]);
      mb.output(conv.forward(mb, x), "y");
      return mb.toModel().graph?.node?.map((nd) => nd.opType) ?? [];
    };
    const stride2 = build((s) => new Conv2d(s.root().pp("c"), 4, 4, 3, { stride: 2, padding: 1 }), 4);
    assert.ok(!stride2.includes("DepthToSpace"));
    const grouped = build((s) => new Conv2d(s.root().pp("c"), 4, 4, 3, { padding: 1, groups: 2 }), 4);
    assert.ok(!grouped.includes("DepthToSpace"));
    const unpadded = build((s) => new Conv2d(s.root().pp("c"), 4, 4, 3), 4);
    assert.ok(!unpadded.includes("DepthToSpace"));
  });

  test("the transform matrices: Aᵀ⊗Aᵀ [16, 36], Bᵀ⊗Bᵀ [36, 36]", () => {
    const at = winogradOutputMatrix();
    assert.equal(at.length, 16 * 36);
    // Output (0, 0) sums the 5×5 top-left tile positions (Aᵀ row 0 = 1 1 1 1 1 0).
    for (let i = 0; i < 6; i++)
      for (let j = 0; j < 6; j++) assert.equal(at[i * 6 + j], i < 5 && j < 5 ? 1 : 0);
    const k = winogradInputKernel();
    assert.equal(k.length, 36 * 36);
    // Filter (0, 0) = Bᵀ row 0 ⊗ Bᵀ row 0 = (4, 0, -5, 0, 1, 0)ᵀ(4, 0, -5, 0, 1, 0).
    assert.deepEqual(Array.from(k.subarray(0, 6)), [16, 0, -20, 0, 4, 0]);
  });
});

describe("1x1 convolutions as MatMul", () => {
  test("equal onnxruntime's Conv and the float64 reference", async () => {
    for (const bias of [true, false]) {
      const mm = await convSession(6, 5, 1, { pointwiseMatMul: true }, bias);
      const conv = await convSession(6, 5, 1, {}, bias);
      assert.ok(mm.opTypes.includes("MatMul") && !mm.opTypes.includes("Conv"));
      for (const dims of [
        [2, 6, 5, 7],
        [1, 6, 1, 1],
      ] as [number, number, number, number][]) {
        const a = await mm.run(dims, 9);
        const b = await conv.run(dims, 9);
        assert.deepEqual(a.dims, b.dims);
        assert.ok(maxRelErr(a.y, a.ref) < 2e-6);
        assert.ok(maxRelErr(b.y, b.ref) < 2e-6);
      }
    }
  });
});

describe("ConvAlgorithm", () => {
  const layer = (inChannels: number, outChannels: number) => ({ inChannels, outChannels });

  test('"auto" on the CPU: Winograd for 256-512 output channels from >= 256 inputs, 1x1 as MatMul', () => {
    const plan = convPlan("auto", "cpu");
    assert.equal(plan.pointwiseMatMul, true);
    const w = plan.winograd as NonNullable<ConvPlan["winograd"]>;
    assert.equal(w(layer(256, 256)), true);
    assert.equal(w(layer(768, 512)), true);
    assert.equal(w(layer(1024, 512)), true);
    assert.equal(w(layer(128, 128)), false);
    assert.equal(w(layer(128, 256)), false);
    assert.equal(w(layer(1024, 1024)), false);
    assert.deepEqual(convPlan(undefined, undefined).pointwiseMatMul, true);
  });

  test('"auto" on GPU providers and "direct" anywhere: onnxruntime\'s Conv', () => {
    assert.deepEqual(convPlan("auto", "cuda"), {});
    assert.deepEqual(convPlan("auto", "webgpu"), {});
    assert.deepEqual(convPlan("direct", "cpu"), {});
  });

  test('"auto" for large maps (UNet above 256² latents, VAE above 128²): onnxruntime\'s 3x3 Conv, 1x1 still as MatMul', () => {
    assert.deepEqual(convPlan("auto", "cpu", { largeMaps: true }), { pointwiseMatMul: true });
    assert.deepEqual(convPlan("auto", "cuda", { largeMaps: true }), {});
    assert.equal(convPlan("winograd", "cpu", { largeMaps: true }).winograd?.(layer(256, 256)), true);
    assert.deepEqual(convPlan("direct", "cpu", { largeMaps: true }), {});
    assert.equal(largeMaps("vae", 128, 128), false);
    assert.equal(largeMaps("vae", 64, 256), false, "by area");
    assert.equal(largeMaps("vae", 128, 129), true);
    assert.equal(largeMaps("unet", 256, 256), false);
    assert.equal(largeMaps("unet", 256, 257), true);
    // Where the two graphs would be the same, one graph serves every size.
    assert.equal(largeMaps("vae", 512, 512, { convAlgorithm: "direct" }), false);
    assert.equal(largeMaps("vae", 512, 512, { convAlgorithm: "winograd" }), false);
    assert.equal(largeMaps("unet", 512, 512, { executionProvider: "cuda" }), false);
    assert.equal(largeMaps("unet", 512, 512, { convAlgorithm: "auto", executionProvider: "cpu" }), true);
  });

  test('winogradFilters: "session" unless asked; per-model defaults UNet "session", VAE "run"', () => {
    assert.equal(convPlan("auto", "cpu").winogradFilters, "session");
    assert.equal(convPlan("auto", "cpu", { winogradFilters: "run" }).winogradFilters, "run");
    assert.equal(convPlan("winograd", "cuda", { winogradFilters: "run" }).winogradFilters, "run");
    assert.deepEqual(convPlan("direct", "cpu", { winogradFilters: "run" }), {});
    const config = JSON.parse(readFileSync(join(FIXTURES, "models/tiny-upscaler/unet/config.json"), "utf8"));
    const vaeConfig = JSON.parse(
      readFileSync(join(FIXTURES, "models/tiny-upscaler/vae/config.json"), "utf8"),
    );
    assert.equal(new UNet2DConditionModel(config).winogradFilters, "session");
    assert.equal(new AutoencoderKL(vaeConfig).winogradFilters, "run");
    const run = { runtimeOptions: { winogradFilters: "run" as const } };
    const session = { runtimeOptions: { winogradFilters: "session" as const } };
    assert.equal(new UNet2DConditionModel(config, run).winogradFilters, "run");
    assert.equal(new AutoencoderKL(vaeConfig, session).winogradFilters, "session");
  });

  test('"winograd": every eligible layer, on any provider', () => {
    const plan = convPlan("winograd", "cuda");
    assert.equal(plan.winograd?.(layer(3, 5)), true);
    assert.equal(plan.pointwiseMatMul, true);
  });

  test("bad values are clear errors (library, session options, models)", () => {
    assert.throws(
      () => checkConvAlgorithm("fast"),
      /convAlgorithm must be one of auto, direct, winograd, got "fast"/,
    );
    assert.throws(() => convPlan("fft" as never, "cpu"), /convAlgorithm must be one of/);
    assert.throws(
      () => toOrtSessionOptions({ convAlgorithm: "gemm" as never }),
      /convAlgorithm must be one of auto, direct, winograd/,
    );
    const config = JSON.parse(readFileSync(join(FIXTURES, "models/tiny-upscaler/unet/config.json"), "utf8"));
    assert.throws(
      () => new UNet2DConditionModel(config, { runtimeOptions: { convAlgorithm: "winograd2" as never } }),
      /unet: convAlgorithm must be one of auto, direct, winograd, got "winograd2"/,
    );
    const vaeConfig = JSON.parse(
      readFileSync(join(FIXTURES, "models/tiny-upscaler/vae/config.json"), "utf8"),
    );
    assert.throws(
      () => new AutoencoderKL(vaeConfig, { runtimeOptions: { convAlgorithm: "fast" as never } }),
      /vae: convAlgorithm must be one of auto, direct, winograd, got "fast"/,
    );
    assert.throws(
      () => checkWinogradFilters("once"),
      /winogradFilters must be one of session, run, got "once"/,
    );
    assert.throws(
      () => toOrtSessionOptions({ winogradFilters: "never" as never }),
      /winogradFilters must be one of session, run/,
    );
    assert.throws(
      () => new UNet2DConditionModel(config, { runtimeOptions: { winogradFilters: true as never } }),
      /unet: winogradFilters must be one of session, run, got true/,
    );
    assert.throws(
      () => new AutoencoderKL(vaeConfig, { runtimeOptions: { winogradFilters: "step" as never } }),
      /vae: winogradFilters must be one of session, run, got "step"/,
    );
  });
});
