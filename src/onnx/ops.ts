/**
 * Typed ONNX op helpers (opset 17). Each takes Values of one graph and returns a Value; numbers are turned into
 * float32 constants. Only what sdx4's models need, with the layouts that run fastest on onnxruntime's CPU EP.
 */
import type { GraphBuilder, Value } from "./graph_builder.js";
import { DataType } from "./proto.js";

type V = Value;
type VN = Value | number;

function g(...xs: (Value | number | undefined)[]): GraphBuilder {
  for (const x of xs) if (x && typeof x !== "number") return x.graph;
  throw new Error("op needs at least one Value input");
}
function val(b: GraphBuilder, x: VN): V {
  return typeof x === "number" ? b.constFloat(x) : x;
}
function ints(b: GraphBuilder, xs: number[] | V): V {
  return Array.isArray(xs) ? b.constInt64(xs) : xs;
}

export const add = (a: VN, c: VN): V => {
  const b = g(a, c);
  return b.op("Add", [val(b, a), val(b, c)]);
};
export const sub = (a: VN, c: VN): V => {
  const b = g(a, c);
  return b.op("Sub", [val(b, a), val(b, c)]);
};
export const mul = (a: VN, c: VN): V => {
  const b = g(a, c);
  return b.op("Mul", [val(b, a), val(b, c)]);
};
export const div = (a: VN, c: VN): V => {
  const b = g(a, c);
  return b.op("Div", [val(b, a), val(b, c)]);
};
export const pow = (a: V, e: VN): V => a.graph.op("Pow", [a, val(a.graph, e)]);
export const neg = (a: V): V => a.graph.op("Neg", [a]);
export const sqrt = (a: V): V => a.graph.op("Sqrt", [a]);
export const exp = (a: V): V => a.graph.op("Exp", [a]);
export const sin = (a: V): V => a.graph.op("Sin", [a]);
export const cos = (a: V): V => a.graph.op("Cos", [a]);
export const erf = (a: V): V => a.graph.op("Erf", [a]);
export const sigmoid = (a: V): V => a.graph.op("Sigmoid", [a]);
export const tanh = (a: V): V => a.graph.op("Tanh", [a]);
export const abs = (a: V): V => a.graph.op("Abs", [a]);
export const identity = (a: V): V => a.graph.op("Identity", [a]);
export const matmul = (a: V, c: V): V => a.graph.op("MatMul", [a, c]);

/** SiLU as Sigmoid·Mul (fastest on the CPU EP). */
export const silu = (x: V): V => mul(x, sigmoid(x));
/** Exact GELU: 0.5·x·(1 + erf(x/√2)); onnxruntime fuses this pattern into its Gelu kernel. */
export const gelu = (x: V): V => mul(mul(x, 0.5), add(erf(div(x, Math.SQRT2)), 1));
/** quick_gelu: x·sigmoid(1.702·x). */
export const quickGelu = (x: V): V => mul(x, sigmoid(mul(x, 1.702)));

export const cast = (x: V, to: "float32" | "int64" | "bool" | "int32"): V =>
  x.graph.op("Cast", [x], {
    to: { float32: DataType.FLOAT, int64: DataType.INT64, bool: DataType.BOOL, int32: DataType.INT32 }[to],
  });

export const reshape = (x: V, shape: number[] | V): V => x.graph.op("Reshape", [x, ints(x.graph, shape)]);
export const transpose = (x: V, perm: number[]): V => x.graph.op("Transpose", [x], { perm });
export const shape = (x: V, start?: number, end?: number): V => x.graph.op("Shape", [x], { start, end });
export const concat = (xs: V[], axis: number): V => g(...xs).op("Concat", xs, { axis });
export const unsqueeze = (x: V, axes: number[]): V => x.graph.op("Unsqueeze", [x, x.graph.constInt64(axes)]);
export const squeeze = (x: V, axes: number[]): V => x.graph.op("Squeeze", [x, x.graph.constInt64(axes)]);
export const gather = (data: V, indices: V, axis = 0): V =>
  data.graph.op("Gather", [data, indices], { axis });
export const expand = (x: V, shp: V | number[]): V => x.graph.op("Expand", [x, ints(x.graph, shp)]);
export const where = (cond: V, a: V, c: V): V => cond.graph.op("Where", [cond, a, c]);
export const softmax = (x: V, axis = -1): V => x.graph.op("Softmax", [x], { axis });
export const reduceMean = (x: V, axes: number[], keepdims = 1): V =>
  x.graph.op("ReduceMean", [x], { axes, keepdims });
export const argMax = (x: V, axis: number, keepdims = 0): V => x.graph.op("ArgMax", [x], { axis, keepdims });

/** Slice along axes with static starts/ends (use large ends for "to the end"). */
export const slice = (
  x: V,
  starts: number[] | V,
  ends: number[] | V,
  axes: number[],
  steps?: number[],
): V => {
  const b = x.graph;
  return b.op("Slice", [
    x,
    ints(b, starts),
    ints(b, ends),
    b.constInt64(axes),
    steps ? b.constInt64(steps) : undefined,
  ]);
};

/** Split into equal parts along an axis (opset 13-17: the output count sets the number of parts). */
export const split = (x: V, parts: number, axis: number): V[] =>
  x.graph.node("Split", [x], { axis }, { numOutputs: parts });

export const conv = (
  x: V,
  w: V,
  bias: V | undefined,
  opts: { stride?: number; padding?: number; group?: number; kernel: number },
): V =>
  x.graph.op("Conv", [x, w, bias], {
    kernel_shape: [opts.kernel, opts.kernel],
    strides: [opts.stride ?? 1, opts.stride ?? 1],
    pads: Array(4).fill(opts.padding ?? 0),
    group: opts.group ?? 1,
  });

export const layerNormalization = (x: V, scale: V, bias: V | undefined, epsilon: number, axis = -1): V =>
  x.graph.op("LayerNormalization", [x, scale, bias], { axis, epsilon: { float: epsilon } });

/** Nearest-neighbour resize of NCHW to an explicit [N,C,H,W] size (a Value from Shape/Concat). */
export const resizeNearestToSize = (x: V, sizes: V): V =>
  x.graph.op("Resize", [x, undefined, undefined, sizes], {
    mode: "nearest",
    coordinate_transformation_mode: "asymmetric",
    nearest_mode: "floor",
  });

/** Nearest-neighbour upsampling of NCHW by an integer factor. */
export const resizeNearestScale = (x: V, factor: number): V =>
  x.graph.op("Resize", [x, undefined, x.graph.constFloat([1, 1, factor, factor])], {
    mode: "nearest",
    coordinate_transformation_mode: "asymmetric",
    nearest_mode: "floor",
  });

export const pad = (x: V, pads: number[], mode: "constant" | "reflect" | "edge" = "constant", value = 0): V =>
  x.graph.op(
    "Pad",
    [x, x.graph.constInt64(pads), mode === "constant" ? x.graph.constFloat(value) : undefined],
    {
      mode,
    },
  );

export const constantOfShape = (shp: V, value: number): V =>
  shp.graph.op("ConstantOfShape", [shp], {
    value: { dims: [1], dataType: DataType.FLOAT, floatData: [value] },
  });

/** Element-wise a == c (bool); both of one type (e.g. int64 ids against an int64 constant). */
export const equal = (a: V, c: V): V => g(a, c).op("Equal", [a, c]);
/** Keeps the upper (or lower) triangle of the last two axes from diagonal k, zeroing the rest (opset 14). */
export const trilu = (x: V, k: number, upper = true): V =>
  x.graph.op("Trilu", [x, x.graph.constInt64(k)], { upper: upper ? 1 : 0 });
/** GatherND; batchDims leading axes of data and indices are batch axes (e.g. per-row positions, batchDims 1). */
export const gatherND = (data: V, indices: V, batchDims = 0): V =>
  data.graph.op("GatherND", [data, indices], { batch_dims: batchDims });
