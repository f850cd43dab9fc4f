import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  boolTensor,
  describeTensor,
  elementCount,
  float16Tensor,
  float32Data,
  float32Tensor,
  hostTensor,
  int32Tensor,
  int64Tensor,
  uint8Tensor,
  validateHostTensor,
} from "../../src/runtime/host_tensor.js";
import { transferableBuffers } from "../../src/runtime/session_core.js";

describe("HostTensor", () => {
  test("constructors build the right typed arrays", () => {
    const f = float32Tensor([1, 2, 3, 4, 5, 6], [2, 3]);
    assert.ok(f.data instanceof Float32Array);
    assert.deepEqual(f.dims, [2, 3]);
    assert.equal(describeTensor(f), "float32[2, 3]");

    const data = new Float32Array(4);
    assert.equal(float32Tensor(data, [4]).data, data, "a Float32Array is used as is");

    assert.deepEqual([...int64Tensor([1, -2, 2 ** 53 - 1], [3]).data], [1n, -2n, 9007199254740991n]);
    assert.deepEqual([...int64Tensor([5n, -(2n ** 63n)], [2]).data], [5n, -(2n ** 63n)]);
    const big = new BigInt64Array([7n]);
    assert.equal(int64Tensor(big, [1]).data, big);
    assert.deepEqual([...int32Tensor([1, -1], [2]).data], [1, -1]);
    assert.deepEqual([...uint8Tensor([0, 255], [2]).data], [0, 255]);
    assert.deepEqual([...boolTensor([true, false, true], [3]).data], [1, 0, 1]);
    assert.equal(boolTensor([true], [1]).type, "bool");
    assert.equal(float16Tensor(new Uint16Array([0x3c00]), [1]).type, "float16");
    assert.equal(float32Tensor([7], []).dims.length, 0, "scalars have dims []");
    assert.equal(elementCount([]), 1);
    assert.equal(elementCount([2, 0, 3]), 0);
  });

  test("dims are copied", () => {
    const dims = [2, 2];
    const t = float32Tensor([1, 2, 3, 4], dims);
    dims[0] = 9;
    assert.deepEqual(t.dims, [2, 2]);
  });

  test("shape/length validation", () => {
    assert.throws(() => float32Tensor([1, 2, 3], [2, 2]), /data has 3 elements but dims \[2, 2\] need 4/);
    assert.throws(() => float32Tensor([1], [-1]), /non-negative integers/);
    assert.throws(() => float32Tensor([1], [1.5]), /non-negative integers/);
    assert.throws(() => int64Tensor([1.5], [1]), /not a safe integer/);
    assert.throws(() => int64Tensor([2 ** 60], [1]), /not a safe integer/);
    assert.throws(() => int64Tensor([2n ** 63n], [1]), /does not fit in int64/);
    assert.throws(() => int32Tensor([2 ** 31], [1]), /not an int32/);
    assert.throws(
      () => hostTensor("float32", new Int32Array(2), [2]),
      /a float32 tensor needs a Float32Array as data, got Int32Array/,
    );
    assert.throws(() => hostTensor("int64", new Float32Array(1) as never, [1]), /needs a BigInt64Array/);
    assert.throws(
      () => validateHostTensor({ type: "float64", dims: [1], data: new Float64Array(1) }, "x"),
      /x: unsupported type "float64"/,
    );
    assert.throws(() => validateHostTensor(null, "y"), /y: expected a HostTensor/);
    assert.throws(
      () => validateHostTensor({ type: "float32", dims: "2", data: new Float32Array(2) }),
      /dims must be an array/,
    );
  });

  test("typed accessors", () => {
    const f = float32Tensor([1], [1]);
    assert.equal(float32Data(f), f.data);
    assert.throws(
      () => float32Data(int64Tensor([1], [1]), "latents"),
      /latents: expected float32, got int64\[1\]/,
    );
  });

  test("transferableBuffers: distinct plain ArrayBuffers only", () => {
    const shared = new Float32Array(8);
    const a = { type: "float32" as const, dims: [4], data: shared.subarray(0, 4) };
    const b = { type: "float32" as const, dims: [4], data: shared.subarray(4) };
    const c = { type: "float32" as const, dims: [1], data: new Float32Array(new SharedArrayBuffer(4)) };
    assert.deepEqual(transferableBuffers([a, b, c]), [shared.buffer]);
  });
});
