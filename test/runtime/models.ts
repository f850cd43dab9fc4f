/** Tiny ONNX models for the runtime tests, written with onnx-proto directly. */
import onnxProto from "onnx-proto";

const { onnx } = onnxProto;

const FLOAT = onnx.TensorProto.DataType.FLOAT;
const INT64 = onnx.TensorProto.DataType.INT64;

type Dim = number | string;

function valueInfo(name: string, elemType: number, dims: readonly Dim[]): onnxProto.onnx.IValueInfoProto {
  return {
    name,
    type: {
      tensorType: {
        elemType,
        shape: { dim: dims.map((d) => (typeof d === "number" ? { dimValue: d } : { dimParam: d })) },
      },
    },
  };
}

function model(graph: onnxProto.onnx.IGraphProto): Uint8Array {
  return onnx.ModelProto.encode(
    onnx.ModelProto.create({
      irVersion: 8,
      producerName: "sdx4-runtime-test",
      opsetImport: [{ domain: "", version: 17 }],
      graph,
    }),
  ).finish();
}

/** c = a + b, a: float32[2, n], b: float32[2, n]. */
export function addModel(): Uint8Array {
  return model({
    name: "add",
    node: [{ opType: "Add", input: ["a", "b"], output: ["c"] }],
    input: [valueInfo("a", FLOAT, [2, "n"]), valueInfo("b", FLOAT, [2, "n"])],
    output: [valueInfo("c", FLOAT, [2, "n"])],
  });
}

/** y = x @ w and z = y * 2, x: float32[m, k], w: float32[k, n]; plus an int64 passthrough count -> count + 1. */
export function matMulModel(): Uint8Array {
  return model({
    name: "matmul",
    node: [
      { opType: "MatMul", input: ["x", "w"], output: ["y"] },
      { opType: "Add", input: ["y", "y"], output: ["z"] },
      { opType: "Add", input: ["count", "one"], output: ["count_plus_one"] },
    ],
    initializer: [{ name: "one", dataType: INT64, dims: [], int64Data: [1] }],
    input: [
      valueInfo("x", FLOAT, ["m", "k"]),
      valueInfo("w", FLOAT, ["k", "n"]),
      valueInfo("count", INT64, []),
    ],
    output: [
      valueInfo("y", FLOAT, ["m", "n"]),
      valueInfo("z", FLOAT, ["m", "n"]),
      valueInfo("count_plus_one", INT64, []),
    ],
  });
}

/**
 * y = x @ W + B with W: float32[k, n] and B: float32[n] stored as external data in one file `location`,
 * at byte offsets `offsets.w` / `offsets.b` (so the test controls alignment).
 */
export function externalDataModel(
  k: number,
  n: number,
  location: string,
  offsets: { w: number; b: number },
): Uint8Array {
  const external = (offset: number, length: number): onnxProto.onnx.IStringStringEntryProto[] => [
    { key: "location", value: location },
    { key: "offset", value: String(offset) },
    { key: "length", value: String(length) },
  ];
  return model({
    name: "external",
    node: [
      { opType: "MatMul", input: ["x", "W"], output: ["xw"] },
      { opType: "Add", input: ["xw", "B"], output: ["y"] },
    ],
    initializer: [
      {
        name: "W",
        dataType: FLOAT,
        dims: [k, n],
        dataLocation: onnx.TensorProto.DataLocation.EXTERNAL,
        externalData: external(offsets.w, k * n * 4),
      },
      {
        name: "B",
        dataType: FLOAT,
        dims: [n],
        dataLocation: onnx.TensorProto.DataLocation.EXTERNAL,
        externalData: external(offsets.b, n * 4),
      },
    ],
    input: [valueInfo("x", FLOAT, ["m", k])],
    output: [valueInfo("y", FLOAT, ["m", n])],
  });
}

/** A chain of `count` MatMuls x <- x @ w, x and w: float32[size, size]; output "y". Runtime grows with count. */
export function matMulChainModel(size: number, count: number): Uint8Array {
  const node: onnxProto.onnx.INodeProto[] = [];
  let prev = "x";
  for (let i = 0; i < count; i++) {
    const out = i === count - 1 ? "y" : `h${i}`;
    node.push({ opType: "MatMul", input: [prev, "w"], output: [out] });
    prev = out;
  }
  return model({
    name: "chain",
    node,
    input: [valueInfo("x", FLOAT, [size, size]), valueInfo("w", FLOAT, [size, size])],
    output: [valueInfo("y", FLOAT, [size, size])],
  });
}

/** Reference row-major matmul in float64. */
export function matMulRef(a: Float32Array, b: Float32Array, m: number, k: number, n: number): Float64Array {
  const out = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let p = 0; p < k; p++) s += a[i * k + p]! * b[p * n + j]!;
      out[i * n + j] = s;
    }
  }
  return out;
}

/** Deterministic pseudo-random floats in [-1, 1). */
export function randomFloats(count: number, seed: number): Float32Array {
  const out = new Float32Array(count);
  let s = seed >>> 0;
  for (let i = 0; i < count; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s / 2 ** 31 - 1;
  }
  return out;
}

/**
 * A MatMul chain that takes about `targetMs` on one onnxruntime thread on this machine: calibrated with a
 * short chain run in-process with onnxruntime-node directly.
 */
export async function timedChain(
  targetMs: number,
  size = 512,
): Promise<{ model: Uint8Array; count: number }> {
  const ort = await import("onnxruntime-node");
  const probeCount = 16;
  const session = await ort.InferenceSession.create(matMulChainModel(size, probeCount), {
    intraOpNumThreads: 1,
    interOpNumThreads: 1,
  });
  const x = new ort.Tensor("float32", randomFloats(size * size, 1), [size, size]);
  const w = new ort.Tensor(
    "float32",
    randomFloats(size * size, 2).map((v) => v / size),
    [size, size],
  );
  await session.run({ x, w }); // warm-up
  const times: number[] = [];
  for (let i = 0; i < 3; i++) {
    const t0 = performance.now();
    await session.run({ x, w });
    times.push(performance.now() - t0);
  }
  await session.release();
  times.sort((a, b) => a - b);
  const perMatMul = times[1]! / probeCount;
  const count = Math.max(2, Math.min(5000, Math.ceil(targetMs / perMatMul)));
  return { model: matMulChainModel(size, count), count };
}

export function chainFeeds(size = 512) {
  return {
    x: { type: "float32" as const, dims: [size, size], data: randomFloats(size * size, 1) },
    w: {
      type: "float32" as const,
      dims: [size, size],
      data: randomFloats(size * size, 2).map((v) => v / size),
    },
  };
}
