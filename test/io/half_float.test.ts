/** F16 / BF16 → float32 conversions (src/io/half_float.ts), exhaustive for F16. */
import assert from "node:assert/strict";
import { test } from "node:test";
import { bfloat16ToFloat, f16ToFloat32Array, halfToFloat } from "../../src/io/half_float.js";

test("F16 → F32: known values, subnormals, ±0, ±inf, NaN", () => {
  const cases: [number, number][] = [
    [0x3c00, 1],
    [0xc100, -2.5],
    [0x7bff, 65504],
    [0xfbff, -65504],
    [0x0001, 2 ** -24], // smallest subnormal
    [0x03ff, 1023 * 2 ** -24], // largest subnormal
    [0x0400, 2 ** -14], // smallest normal
    [0x8001, -(2 ** -24)],
    [0x3555, 0.333251953125],
    [0x0000, 0],
    [0x7c00, Number.POSITIVE_INFINITY],
    [0xfc00, Number.NEGATIVE_INFINITY],
  ];
  for (const [h, v] of cases) assert.equal(halfToFloat(h), v, h.toString(16));
  assert.ok(Object.is(halfToFloat(0x8000), -0));
  for (const h of [0x7e00, 0x7c01, 0xfe00, 0x7fff]) assert.ok(Number.isNaN(halfToFloat(h)));
  // exhaustive against the textbook formula
  const all = f16ToFloat32Array(Uint16Array.from({ length: 65536 }, (_, i) => i));
  for (let h = 0; h < 65536; h++) {
    const s = h & 0x8000 ? -1 : 1;
    const e = (h >> 10) & 0x1f;
    const m = h & 0x3ff;
    const ref =
      e === 0
        ? s * m * 2 ** -24
        : e === 31
          ? m
            ? Number.NaN
            : s * Number.POSITIVE_INFINITY
          : s * (1 + m / 1024) * 2 ** (e - 15);
    if (!Object.is(all[h], ref)) assert.fail(`half 0x${h.toString(16)}: ${all[h]} != ${ref}`);
  }
});

test("BF16 → F32: known values, subnormals, ±inf, NaN", () => {
  assert.equal(bfloat16ToFloat(0x3f80), 1);
  assert.equal(bfloat16ToFloat(0xc020), -2.5);
  assert.equal(bfloat16ToFloat(0x7f7f), 3.3895313892515355e38);
  assert.equal(bfloat16ToFloat(0x0001), 2 ** -133); // smallest subnormal
  assert.equal(bfloat16ToFloat(0x8080), -(2 ** -126));
  assert.equal(bfloat16ToFloat(0x7f80), Number.POSITIVE_INFINITY);
  assert.equal(bfloat16ToFloat(0xff80), Number.NEGATIVE_INFINITY);
  assert.ok(Number.isNaN(bfloat16ToFloat(0x7fc0)));
  assert.ok(Object.is(bfloat16ToFloat(0x8000), -0));
});
