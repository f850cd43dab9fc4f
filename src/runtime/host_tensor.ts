/**
 * HostTensor: a plain, structured-clone friendly tensor (typed array + dims) that crosses the worker boundary.
 *
 * It deliberately is not an `ort.Tensor`: ort tensors carry methods and backend state that cannot be posted to
 * a worker thread. Element types are the ones this project feeds to / reads from onnxruntime:
 * float16 data is the raw IEEE half bit pattern in a Uint16Array, bool data is one byte (0/1) per element.
 */

export type HostTensorType = "float32" | "float16" | "int64" | "int32" | "uint8" | "bool";
export type HostTensorData = Float32Array | Uint16Array | BigInt64Array | Int32Array | Uint8Array;

export interface HostTensor {
  type: HostTensorType;
  dims: number[];
  data: HostTensorData;
}

/** The typed-array class name (Symbol.toStringTag, valid across realms/threads) each element type requires. */
const DATA_TAG: Readonly<Record<HostTensorType, string>> = {
  float32: "Float32Array",
  float16: "Uint16Array",
  int64: "BigInt64Array",
  int32: "Int32Array",
  uint8: "Uint8Array",
  bool: "Uint8Array",
};

export const HOST_TENSOR_TYPES: readonly HostTensorType[] = Object.keys(DATA_TAG) as HostTensorType[];

export function isHostTensorType(type: unknown): type is HostTensorType {
  return typeof type === "string" && Object.hasOwn(DATA_TAG, type);
}

function typedArrayTag(data: unknown): string | undefined {
  if (!ArrayBuffer.isView(data) || data instanceof DataView) return undefined;
  return (data as unknown as { [Symbol.toStringTag]: string })[Symbol.toStringTag];
}

/** Number of elements of a tensor with these dims; throws unless every dim is a non-negative safe integer. */
export function elementCount(dims: readonly number[], what = "tensor"): number {
  if (!Array.isArray(dims))
    throw new TypeError(`${what}: dims must be an array of integers, got ${typeof dims}`);
  let n = 1;
  for (const d of dims) {
    if (typeof d !== "number" || !Number.isSafeInteger(d) || d < 0) {
      throw new RangeError(`${what}: dims must be non-negative integers, got [${dims.join(", ")}]`);
    }
    n *= d;
  }
  if (!Number.isSafeInteger(n))
    throw new RangeError(`${what}: element count of [${dims.join(", ")}] overflows`);
  return n;
}

/**
 * Checks that `t` is a well-formed HostTensor: known type, typed array matching the type, data length equal to
 * the product of dims. `what` names the tensor in the error message.
 */
export function validateHostTensor(t: unknown, what = "tensor"): asserts t is HostTensor {
  if (t === null || typeof t !== "object") throw new TypeError(`${what}: expected a HostTensor, got ${t}`);
  const { type, dims, data } = t as Partial<HostTensor>;
  if (!isHostTensorType(type)) {
    throw new TypeError(
      `${what}: unsupported type ${JSON.stringify(type)} (expected ${HOST_TENSOR_TYPES.join("|")})`,
    );
  }
  const count = elementCount(dims as number[], what);
  const tag = typedArrayTag(data);
  if (tag !== DATA_TAG[type]) {
    throw new TypeError(
      `${what}: a ${type} tensor needs a ${DATA_TAG[type]} as data, got ${tag ?? typeof data}`,
    );
  }
  const length = (data as HostTensorData).length;
  if (length !== count) {
    throw new RangeError(
      `${what}: data has ${length} elements but dims [${(dims as number[]).join(", ")}] need ${count}`,
    );
  }
}

/** Builds and validates a HostTensor (data is used as is, not copied; dims are copied). */
export function hostTensor(type: HostTensorType, data: HostTensorData, dims: readonly number[]): HostTensor {
  const t: HostTensor = { type, dims: [...dims], data };
  validateHostTensor(t);
  return t;
}

export function float32Tensor(data: Float32Array | readonly number[], dims: readonly number[]): HostTensor {
  return hostTensor("float32", data instanceof Float32Array ? data : Float32Array.from(data), dims);
}

/** float16 tensor from raw half-precision bit patterns. */
export function float16Tensor(bits: Uint16Array, dims: readonly number[]): HostTensor {
  return hostTensor("float16", bits, dims);
}

export function int64Tensor(
  values: readonly number[] | readonly bigint[] | BigInt64Array,
  dims: readonly number[],
): HostTensor {
  if (values instanceof BigInt64Array) return hostTensor("int64", values, dims);
  const data = new BigInt64Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    if (typeof v === "bigint") {
      if (BigInt.asIntN(64, v) !== v) throw new RangeError(`int64Tensor: ${v} does not fit in int64`);
      data[i] = v;
    } else {
      if (!Number.isSafeInteger(v)) throw new RangeError(`int64Tensor: ${v} is not a safe integer`);
      data[i] = BigInt(v);
    }
  }
  return hostTensor("int64", data, dims);
}

export function int32Tensor(values: Int32Array | readonly number[], dims: readonly number[]): HostTensor {
  if (values instanceof Int32Array) return hostTensor("int32", values, dims);
  for (const v of values) {
    if (!Number.isInteger(v) || v < -2147483648 || v > 2147483647) {
      throw new RangeError(`int32Tensor: ${v} is not an int32`);
    }
  }
  return hostTensor("int32", Int32Array.from(values), dims);
}

export function uint8Tensor(values: Uint8Array | readonly number[], dims: readonly number[]): HostTensor {
  return hostTensor("uint8", values instanceof Uint8Array ? values : Uint8Array.from(values), dims);
}

export function boolTensor(values: Uint8Array | readonly boolean[], dims: readonly number[]): HostTensor {
  return hostTensor(
    "bool",
    values instanceof Uint8Array ? values : Uint8Array.from(values, (b) => (b ? 1 : 0)),
    dims,
  );
}

/** "float32[1, 4, 64, 64]" — for error messages. */
export function describeTensor(t: Pick<HostTensor, "type" | "dims">): string {
  return `${t.type}[${t.dims.join(", ")}]`;
}

/** The data of a float32 tensor, typed; throws if the tensor has another type. */
export function float32Data(t: HostTensor, what = "tensor"): Float32Array {
  if (t.type !== "float32") throw new TypeError(`${what}: expected float32, got ${describeTensor(t)}`);
  return t.data as Float32Array;
}

/** The data of an int64 tensor, typed; throws if the tensor has another type. */
export function int64Data(t: HostTensor, what = "tensor"): BigInt64Array {
  if (t.type !== "int64") throw new TypeError(`${what}: expected int64, got ${describeTensor(t)}`);
  return t.data as BigInt64Array;
}
