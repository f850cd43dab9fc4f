/**
 * The UNet's int8 fast path (src/onnx/quantize.ts): built from the same checkpoint, its output stays close to the
 * float32 graph's on the fixture cases (tiny and, when ../shared/fixtures is present, the twin model), the kept
 * layers stay float32, switching precision rebuilds the graph, and bad values are refused.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { UNET_INT8_KEEP } from "../../src/models/unet/int8.js";
import { UNet2DConditionModel } from "../../src/models/unet/unet_2d_condition.js";
import { GraphBuilder } from "../../src/onnx/graph_builder.js";
import { int8Conv2d, int8Linear } from "../../src/onnx/int8_ops.js";
import { DataType } from "../../src/onnx/proto.js";
import * as quantize from "../../src/onnx/quantize.js";
import type { HostTensor } from "../../src/runtime/host_tensor.js";
import { RuntimeHost } from "../../src/runtime/worker_host.js";
import { FIXTURES, type FixtureCase, loadGroup, SHARED_FIXTURES } from "../helpers/fixtures.js";

const group = loadGroup("components");
const host = new RuntimeHost();
after(() => host.close());

function tensor(c: FixtureCase, role: string): HostTensor {
  const key = c.tensors[role] as string;
  const info = group.tensors.info(key);
  const data = group.tensors.getTyped(key);
  if (info.dtype === "I64") return { type: "int64", dims: [...info.shape], data: data as BigInt64Array };
  return { type: "float32", dims: [...info.shape], data: data as Float32Array };
}

/** a repeated n times. */
function repeat(a: Float32Array, n: number): Float32Array {
  return Float32Array.from({ length: a.length * n }, (_, i) => a[i % a.length] as number);
}

/** Relative RMS error of a against the reference b. */
function relRms(a: Float32Array, b: Float32Array): number {
  let e = 0;
  let s = 0;
  for (let i = 0; i < b.length; i++) {
    e += ((a[i] as number) - (b[i] as number)) ** 2;
    s += (b[i] as number) ** 2;
  }
  return Math.sqrt(e / s);
}

const MODELS = {
  tiny: join(FIXTURES, "models/tiny-upscaler/unet"),
  twin: SHARED_FIXTURES ? join(SHARED_FIXTURES, "models/twin-upscaler/unet") : undefined,
};

for (const m of ["tiny", "twin"] as const) {
  describe(`UNet int8 (${m})`, { skip: MODELS[m] === undefined ? "twin model not present" : false }, () => {
    // Measured (before per-row scales and guidance pairs, which only lower it): 5.6 % (tiny), 6.5 % (twin) with
    // convolutions quantized. The bound catches a broken layer (a wrong weight layout gives > 50 %).
    test("int8 output is within 10% relative RMS of float32 on the fixture inputs", async () => {
      const unet = await UNet2DConditionModel.fromPretrained(MODELS[m] as string, { runtime: host });
      const c = group.get(`${m}_unet_basic`);
      const inputs = {
        sample: tensor(c, "sample"),
        timestep: tensor(c, "timestep"),
        encoderHiddenStates: tensor(c, "encoder_hidden_states"),
        classLabels: tensor(c, "class_labels"),
      };
      const f32 = (await unet.forward(inputs)).data as Float32Array;
      unet.setPrecision("int8");
      assert.equal(unet.precision, "int8");
      const i8 = (await unet.forward(inputs)).data as Float32Array;
      const err = relRms(i8, f32);
      assert.ok(err > 0, "the int8 graph should differ from float32 (is it built at all?)");
      assert.ok(err < 0.1, `relative RMS error ${err}`);
      unet.setPrecision("float32");
      assert.deepEqual((await unet.forward(inputs)).data, f32);
      unet.release();
    });
  });
}

test("int8 graph: integer kernels for resnet / attention layers, float32 for the kept ones", async () => {
  const unet = await UNet2DConditionModel.fromPretrained(MODELS.tiny, { runtime: host, precision: "int8" });
  // A VNNI / AMX CPU's kernel, convolutions quantized too (asked for: the default is Linear layers only).
  const model = unet.buildGraph({ int8Kernel: "u8s8", int8Convolutions: true }).toModel();
  const ops = new Set((model.graph?.node ?? []).map((n) => n.opType as string));
  assert.ok(ops.has("MatMulIntegerToFloat"));
  assert.ok(
    !ops.has("DynamicQuantizeMatMul") && !ops.has("DynamicQuantizeLinear"),
    "per-row / per-image scales",
  );
  const convInputs = (model.graph?.node ?? []).filter((n) => n.opType === "Conv").map((n) => n.input?.[1]);
  assert.ok(
    convInputs.includes("conv_in.weight") && convInputs.includes("conv_out.weight"),
    String(convInputs),
  );
  const inits = model.graph?.initializer ?? [];
  const names = inits.map((t) => t.name as string);
  assert.ok(!names.some((n) => n.endsWith("::int8") && UNET_INT8_KEEP.test(n)));
  assert.ok(names.some((n) => /resnets\.0\.conv1\.weight::int8$/.test(n)));
  // Cross-attention projections of the text stay float32 (attn2 always; attn1 too where only_cross_attention).
  assert.ok(!names.some((n) => /attn2\.to_[kv]\.weight::int8$/.test(n)), "text K/V projections are float32");
  assert.ok(names.some((n) => /attn2\.to_q\.weight::int8$/.test(n)));
  for (const t of inits.filter((t) => (t.name as string).endsWith("::int8")))
    assert.equal(t.dataType, DataType.INT8, t.name as string);
  // The guidance-pairs input: each row's partner.
  const input = (model.graph?.input ?? []).find((i) => i.name === "guidance_index");
  assert.ok(input, "guidance_index input");
  // "u8u8" stores the same integers as uint8 (+128).
  const u8 = unet.buildGraph({ int8Kernel: "u8u8", int8Convolutions: false }).toModel();
  const u8w = (u8.graph?.initializer ?? []).filter((t) => (t.name as string).endsWith("::int8"));
  assert.ok(u8w.length > 0 && u8w.every((t) => t.dataType === DataType.UINT8));
});

test("int8 by default (any kernel): Linear layers quantized, convolutions float32", async () => {
  const unet = await UNet2DConditionModel.fromPretrained(MODELS.tiny, { runtime: host, precision: "int8" });
  for (const int8Kernel of ["u7s8", "u8s8", "u8u8"] as const) {
    const model = unet.buildGraph({ int8Kernel }).toModel();
    const int8Names = (model.graph?.initializer ?? [])
      .map((t) => t.name as string)
      .filter((n) => n.endsWith("::int8"));
    assert.ok(int8Names.length > 0);
    assert.ok(
      !int8Names.some((n) => /(conv1|conv2|conv_shortcut|\.conv)\.weight::int8$/.test(n)),
      `${int8Kernel}: ${int8Names}`,
    );
  }
  // Explicitly asked for: convolutions too, whatever the kernel.
  const forced = unet.buildGraph({ int8Kernel: "u7s8", int8Convolutions: true }).toModel();
  assert.ok(
    (forced.graph?.initializer ?? []).some((t) => /resnets\.0\.conv1\.weight::int8$/.test(t.name as string)),
  );
  // Linear-only by default on every CPU (the >= 40 dB configuration).
  assert.equal(quantize.int8Convolutions("u8s8"), false);
  assert.equal(quantize.int8Convolutions("u7s8"), false);
  assert.equal(quantize.int8Convolutions("u8u8"), false);
});

test("guidancePairs: the guidance-halves graph (unpaired batches: the per-row one); an odd batch is refused", async () => {
  const unet = await UNet2DConditionModel.fromPretrained(MODELS.tiny, { runtime: host, precision: "int8" });
  const built: (string | undefined)[] = [];
  const buildGraph = unet.buildGraph.bind(unet);
  unet.buildGraph = (o = {}) => {
    built.push(o.int8Activations);
    return buildGraph(o);
  };
  const c = group.get("tiny_unet_basic");
  const sample = tensor(c, "sample");
  const inputs = {
    sample,
    timestep: tensor(c, "timestep"),
    encoderHiddenStates: tensor(c, "encoder_hidden_states"),
    classLabels: tensor(c, "class_labels"),
  };
  const batch = sample.dims[0] as number;
  if (batch % 2 === 0) {
    const paired = (await unet.forward({ ...inputs, guidancePairs: true })).data as Float32Array;
    assert.ok(paired.every(Number.isFinite));
  }
  const one = {
    sample: {
      ...sample,
      dims: [1, ...sample.dims.slice(1)],
      data: (sample.data as Float32Array).slice(0, sample.data.length / batch),
    },
    timestep: 10,
    encoderHiddenStates: {
      ...inputs.encoderHiddenStates,
      dims: [1, ...inputs.encoderHiddenStates.dims.slice(1)],
      data: (inputs.encoderHiddenStates.data as Float32Array).slice(
        0,
        inputs.encoderHiddenStates.data.length / batch,
      ),
    },
    classLabels: 20,
  };
  await assert.rejects(unet.forward({ ...one, guidancePairs: true }), /guidancePairs needs an even batch/);
  assert.ok(((await unet.forward(one)).data as Float32Array).every(Number.isFinite));
  // A guided batch of two (the one row twice), then unpaired again: one graph per switch.
  const two = {
    ...one,
    sample: { ...one.sample, dims: [2, ...sample.dims.slice(1)], data: repeat(one.sample.data, 2) },
    encoderHiddenStates: {
      ...one.encoderHiddenStates,
      dims: [2, ...inputs.encoderHiddenStates.dims.slice(1)],
      data: repeat(one.encoderHiddenStates.data, 2),
    },
  };
  const guided = (await unet.forward({ ...two, guidancePairs: true })).data as Float32Array;
  const k = guided.length / 2;
  assert.deepEqual(guided.subarray(k), guided.subarray(0, k), "equal halves stay equal");
  await unet.forward(one);
  assert.deepEqual(built.slice(-3), ["row", "half", "row"]);
  unet.release();
});

test('int8Activations "half": guidance halves fused into DynamicQuantizeMatMul; close to float32, equal halves stay equal', async () => {
  const unet = await UNet2DConditionModel.fromPretrained(MODELS.tiny, { runtime: host, precision: "int8" });
  const b = unet.buildGraph({ int8Kernel: "u8u8", int8Activations: "half", int8Convolutions: true });
  const model = b.toModel();
  const ops = new Set((model.graph?.node ?? []).map((n) => n.opType as string));
  for (const o of ["DynamicQuantizeMatMul", "DynamicQuantizeLinear", "MatMulIntegerToFloat", "Split"])
    assert.ok(ops.has(o), o);
  // No per-row scales (Abs, ReduceMax, QuantizeLinear), no partner rows (CumSum builds them).
  for (const o of ["Abs", "ReduceMax", "QuantizeLinear", "CumSum"]) assert.ok(!ops.has(o), o);
  assert.ok(!(model.graph?.input ?? []).some((i) => i.name === "guidance_index"));
  assert.throws(
    () => unet.buildGraph({ int8Kernel: "u7s8", int8Activations: "half" }),
    /int8Activations "half" quantizes activations to 8 bits, which the "u7s8" kernel cannot take/,
  );
  assert.throws(
    () => unet.buildGraph({ int8Activations: "quarter" as never }),
    /int8Activations must be one of row, half, got "quarter"/,
  );

  const c = group.get("tiny_unet_batch2_nonsquare");
  const session = await b.createSession((bytes, external) => host.createSession(bytes, { ...external }));
  const sample = tensor(c, "sample");
  const ehs = tensor(c, "encoder_hidden_states");
  const timesteps = Float32Array.from(tensor(c, "timestep").data as BigInt64Array, Number);
  const labels = tensor(c, "class_labels");
  const run = async (x: HostTensor, e: HostTensor, t = timesteps, l = labels) =>
    (
      (
        await session.run({
          sample: x,
          timestep: { type: "float32", dims: [2], data: t },
          encoder_hidden_states: e,
          class_labels: l,
        })
      ).out_sample as HostTensor
    ).data as Float32Array;
  const half = await run(sample, ehs);
  const f32 = await UNet2DConditionModel.fromPretrained(MODELS.tiny, { runtime: host });
  const want = (
    await f32.forward({
      sample,
      timestep: { type: "float32", dims: [2], data: timesteps },
      encoderHiddenStates: ehs,
      classLabels: labels,
    })
  ).data as Float32Array;
  const err = relRms(half, want);
  assert.ok(err > 0 && err < 0.1, `relative RMS error ${err}`);
  // Identical halves: the conditional half is quantized as a zero difference, so the two outputs are identical.
  const n = sample.data.length / 2;
  const m = ehs.data.length / 2;
  const x0 = sample.data as Float32Array;
  const e0 = ehs.data as Float32Array;
  const l0 = (labels.data as BigInt64Array)[0] as bigint;
  const same = await run(
    { ...sample, data: Float32Array.from({ length: 2 * n }, (_, i) => x0[i % n] as number) },
    { ...ehs, data: Float32Array.from({ length: 2 * m }, (_, i) => e0[i % m] as number) },
    Float32Array.of(timesteps[0] as number, timesteps[0] as number),
    { type: "int64", dims: [2], data: BigInt64Array.of(l0, l0) },
  );
  const k = same.length / 2;
  assert.ok(same.every(Number.isFinite));
  assert.deepEqual(same.subarray(k), same.subarray(0, k));
  await session.release();
  f32.release();
  unet.release();
});

test("bad precision values are refused with a clear error", async () => {
  await assert.rejects(
    UNet2DConditionModel.fromPretrained(MODELS.tiny, { precision: "bf16" as never }),
    /precision must be one of float32, int8, got "bf16"/,
  );
  const unet = await UNet2DConditionModel.fromPretrained(MODELS.tiny, { runtime: host });
  assert.throws(() => unet.setPrecision("int4" as never), /precision must be one of/);
  await assert.rejects(
    UNet2DConditionModel.fromPretrained(MODELS.tiny, {
      precision: "int8",
      runtimeOptions: { executionProvider: "cuda" },
    }),
    /precision "int8" runs onnxruntime's CPU integer kernels; it is not available with the "cuda"/,
  );
});

/** The kernels this CPU runs exactly: "u8s8" only where int8Kernel() picks it (VNNI / AMX / Arm64). */
const EXACT_KERNELS = quantize.INT8_KERNELS.filter((k) => k !== "u8s8" || quantize.int8Kernel() === "u8s8");

let seed = 1;
const rnd = (n: number, s = 1) =>
  Float32Array.from({ length: n }, () => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return (seed / 2147483648 - 0.5) * 2 * s;
  });
const init = (g: GraphBuilder, name: string, dims: number[], a: Float32Array) =>
  g.addInitializer({ name, dims, dataType: DataType.FLOAT, rawData: new Uint8Array(a.buffer) });

/** y = x @ Wᵀ + b in float32 (reference) and int8 (`kernel`, optional guidance index input "index"). */
async function linearPair(
  w: Float32Array,
  bias: Float32Array,
  O: number,
  I: number,
  kernel: quantize.Int8Kernel,
  pairs: boolean,
) {
  const ref = new GraphBuilder();
  const x1 = ref.input("x", "float32", ["b", "l", I]);
  const wt = ref.op("Transpose", [init(ref, "w", [O, I], w)], { perm: [1, 0] });
  ref.output(ref.op("Add", [ref.op("MatMul", [x1, wt]), init(ref, "b", [O], bias)]), "y");
  const g = new GraphBuilder();
  const x2 = g.input("x", "float32", ["b", "l", I]);
  const index = pairs ? g.input("index", "int64", ["b"]) : undefined;
  const wq = quantize.int8Initializers(g, "w", quantize.quantizeLinearWeight(w, O, I, 127), kernel);
  g.output(int8Linear(x2, wq, init(g, "b", [O], bias), index), "y");
  return {
    ref: await host.createSession(ref.serialize(), { name: "ref" }),
    int8: await host.createSession(g.serialize(), { name: "int8" }),
  };
}

test("int8 kernels match float32 layer by layer (conv 3x3 / strided / 1x1, linear) within quantization error", async () => {
  const cases = [
    { N: 1, C: 8, O: 4, H: 5, W: 7, k: 3, s: 1, p: 1 },
    { N: 2, C: 32, O: 16, H: 8, W: 8, k: 3, s: 2, p: 1 },
    { N: 2, C: 32, O: 16, H: 9, W: 7, k: 3, s: 2, p: 0 },
    { N: 2, C: 32, O: 64, H: 8, W: 8, k: 1, s: 1, p: 0 },
  ];
  for (const kernel of EXACT_KERNELS) {
    for (const { N, C, O, H, W, k, s, p } of cases) {
      const w = rnd(O * C * k * k, 0.1);
      const bias = rnd(O, 0.1);
      const ref = new GraphBuilder();
      const x1 = ref.input("x", "float32", [N, C, H, W]);
      const conv = ref.op("Conv", [x1, init(ref, "w", [O, C, k, k], w), init(ref, "b", [O], bias)], {
        kernel_shape: [k, k],
        strides: [s, s],
        pads: [p, p, p, p],
      });
      ref.output(conv, "y");
      const g = new GraphBuilder();
      const x2 = g.input("x", "float32", [N, C, H, W]);
      const wq = quantize.int8Initializers(g, "w", quantize.quantizeConvWeight(w, O, C, k, 127), kernel);
      g.output(int8Conv2d(x2, wq, init(g, "b", [O], bias), { kernel: k, stride: s, padding: p }), "y");
      const x = { type: "float32" as const, dims: [N, C, H, W], data: rnd(N * C * H * W) };
      const a = await host.createSession(ref.serialize(), { name: "ref" });
      const b = await host.createSession(g.serialize(), { name: "int8" });
      const ya = (await a.run({ x })).y as HostTensor;
      const yb = (await b.run({ x })).y as HostTensor;
      assert.deepEqual(yb.dims, ya.dims);
      const err = relRms(yb.data as Float32Array, ya.data as Float32Array);
      assert.ok(err < 0.03, `${kernel} conv k${k} s${s} p${p}: relative RMS error ${err}`);
      await a.release();
      await b.release();
    }
    const [L, I, O] = [5, 32, 16];
    const { ref, int8 } = await linearPair(rnd(O * I, 0.1), rnd(O), O, I, kernel, false);
    const x = { type: "float32" as const, dims: [2, L, I], data: rnd(2 * L * I) };
    const ya = (await ref.run({ x })).y as HostTensor;
    const yb = (await int8.run({ x })).y as HostTensor;
    const err = relRms(yb.data as Float32Array, ya.data as Float32Array);
    // Measured: 0.8 % (8-bit activations), 1.3 % (7-bit) on random rows; per-tensor activations were 2 %.
    assert.ok(err < 0.02, `${kernel} linear: relative RMS error ${err}`);
    await ref.release();
    await int8.release();
  }
});

test("guidance pairs: the paired rows' difference keeps its own precision; equal rows stay equal", async () => {
  const [L, I, O] = [64, 64, 32];
  const w = rnd(O * I, 0.1);
  const bias = rnd(O);
  for (const kernel of EXACT_KERNELS) {
    const { ref, int8 } = await linearPair(w, bias, O, I, kernel, true);
    const u = rnd(L * I);
    const delta = rnd(L * I, 0.01);
    const t = u.map((v, i) => v + (delta[i] as number));
    const x = { type: "float32" as const, dims: [2, L, I], data: Float32Array.from([...u, ...t]) };
    const diff = (y: Float32Array) => y.slice(L * O).map((v, i) => v - (y[i] as number));
    const yf = (await ref.run({ x })).y?.data as Float32Array;
    const run = async (index: number[]) =>
      (
        await int8.run({
          x,
          index: { type: "int64", dims: [2], data: BigInt64Array.from(index.map(BigInt)) },
        })
      ).y?.data as Float32Array;
    const paired = await run([0, 0]);
    const unpaired = await run([0, 1]);
    // Row 0 is quantized the same way either way.
    assert.deepEqual(paired.slice(0, L * O), unpaired.slice(0, L * O));
    const errPaired = relRms(diff(paired), diff(yf));
    const errUnpaired = relRms(diff(unpaired), diff(yf));
    assert.ok(errPaired < 0.03, `${kernel}: paired difference error ${errPaired}`);
    assert.ok(errUnpaired > 10 * errPaired, `${kernel}: unpaired ${errUnpaired} vs paired ${errPaired}`);
    // Identical halves give identical outputs (the difference quantizes to exact zeros).
    const same = { type: "float32" as const, dims: [2, L, I], data: Float32Array.from([...u, ...u]) };
    const ys = (
      await int8.run({ x: same, index: { type: "int64", dims: [2], data: BigInt64Array.of(0n, 0n) } })
    ).y?.data as Float32Array;
    assert.deepEqual(ys.slice(L * O), ys.slice(0, L * O));
    await ref.release();
    await int8.release();
  }
});

test("int8Kernel: exact 8-bit u8s8 with VNNI / AMX, 7-bit activations otherwise (vpmaddubsw saturation)", () => {
  const { int8Kernel } = quantize;
  if (process.arch === "arm64") return;
  assert.equal(int8Kernel(["sse2", "avx2", "fma"]), "u7s8");
  assert.equal(int8Kernel(["avx2", "avx512bw"]), "u7s8");
  assert.equal(int8Kernel(["avx2", "avx_vnni"]), "u8s8");
  assert.equal(int8Kernel(["avx512f", "avx512_vnni"]), "u8s8");
  assert.equal(int8Kernel(["amx_int8"]), "u8s8");
  assert.equal(int8Kernel(undefined), "u7s8");
  assert.equal(quantize.activationLevels("u7s8"), 63);
  assert.equal(quantize.activationLevels("u8s8"), 127);
  assert.throws(
    () => quantize.checkInt8Kernel("u4s4"),
    /int8 kernel must be one of u8s8, u7s8, u8u8, got "u4s4"/,
  );
});
