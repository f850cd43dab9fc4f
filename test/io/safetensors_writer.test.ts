import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { halfToFloat } from "../../src/io/half_float.js";
import { SafetensorsError, SafetensorsFile } from "../../src/io/safetensors.js";
import {
  f32BitsToBf16Bits,
  floatToBfloat16,
  floatToHalf,
  type TensorToWrite,
  writeSafetensors,
} from "../../src/io/safetensors_writer.js";
import { makeTmpDir } from "./helpers.js";

let dir = "";
let cleanup = () => {};
before(() => ({ dir, cleanup } = makeTmpDir()));
after(() => cleanup());

function headerOf(path: string): { n: number; text: string; json: Record<string, unknown> } {
  const b = readFileSync(path);
  const n = Number(b.readBigUInt64LE(0));
  const text = b.subarray(8, 8 + n).toString("utf8");
  return { n, text, json: JSON.parse(text) };
}

describe("safetensors writer", () => {
  test("byte-identical to the reference crate's test vectors", () => {
    const p = join(dir, "ref.safetensors");
    writeSafetensors(p, {
      "attn.0": { dtype: "F32", shape: [1, 2, 3], data: new Float32Array([0, 1, 2, 3, 4, 5]) },
    });
    // safetensors/src/tensor.rs test_serialization
    const header = '{"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}}';
    const data = Buffer.from(new Float32Array([0, 1, 2, 3, 4, 5]).buffer);
    assert.deepEqual(
      readFileSync(p),
      Buffer.concat([Buffer.from([64, 0, 0, 0, 0, 0, 0, 0]), Buffer.from(header), data]),
    );
    // test_empty, with and without metadata
    writeSafetensors(p, {});
    assert.deepEqual([...readFileSync(p)], [8, 0, 0, 0, 0, 0, 0, 0, 123, 125, 32, 32, 32, 32, 32, 32]);
    writeSafetensors(p, {}, { framework: "pt" });
    assert.deepEqual(
      readFileSync(p),
      Buffer.concat([
        Buffer.from([40, 0, 0, 0, 0, 0, 0, 0]),
        Buffer.from('{"__metadata__":{"framework":"pt"}}     '),
      ]),
    );
  });

  test("round trip of every dtype, sorted names, padded header, contiguous data, metadata", () => {
    const tensors: Record<string, TensorToWrite> = {
      z_f64: { dtype: "F64", shape: [2], data: new Float64Array([Math.PI, -1e300]) },
      f32: { dtype: "F32", shape: [2, 2], data: new Float32Array([1, -2, 3.5, 1e-40]) },
      h: { dtype: "F16", shape: [3], data: new Uint16Array([0x3c00, 0xc100, 0x0001]) },
      bf: { dtype: "BF16", shape: [1, 1, 2], data: new Uint16Array([0x3f80, 0xff80]) },
      i64: { dtype: "I64", shape: [2], data: new BigInt64Array([-5n, 2n ** 62n]) },
      i32: { dtype: "I32", shape: [1], data: new Int32Array([-7]) },
      i16: { dtype: "I16", shape: [3], data: new Int16Array([1, -2, 3]) },
      i8: { dtype: "I8", shape: [1], data: new Int8Array([-128]) },
      u8: { dtype: "U8", shape: [5], data: new Uint8Array([1, 2, 3, 4, 255]) },
      bool: { dtype: "BOOL", shape: [2], data: new Uint8Array([1, 0]) },
      empty: { dtype: "F32", shape: [0, 4], data: new Float32Array(0) },
      scalar: { dtype: "F32", shape: [], data: new Float32Array([2]) },
    };
    const p = join(dir, "all.safetensors");
    writeSafetensors(p, tensors, { format: "pt", note: "\u00e9" });
    const { n, text, json } = headerOf(p);
    assert.equal(n % 8, 0);
    const trimmed = text.trimEnd();
    assert.ok(trimmed.endsWith("}") && /^ *$/.test(text.slice(trimmed.length)));
    assert.ok(n - Buffer.byteLength(trimmed) < 8, "padded with fewer than 8 spaces");
    const names = Object.keys(json);
    assert.equal(names[0], "__metadata__");
    assert.deepEqual(names.slice(1), Object.keys(tensors).sort());
    let cursor = 0;
    for (const k of names.slice(1)) {
      const [s, e] = (json[k] as { data_offsets: [number, number] }).data_offsets;
      assert.equal(s, cursor, k);
      cursor = e;
    }
    const f = SafetensorsFile.open(p);
    assert.equal(f.fileSize, 8 + n + cursor);
    assert.deepEqual(f.metadata, { format: "pt", note: "\u00e9" });
    for (const [k, t] of Object.entries(tensors)) {
      assert.equal(f.info(k).dtype, t.dtype);
      assert.deepEqual(f.info(k).shape, t.shape);
      assert.deepEqual(f.getTyped(k), t.data, k);
    }
    assert.deepEqual([...f.getFloat32("h")], [1, -2.5, 2 ** -24]);
    assert.deepEqual([...f.getFloat32("bf")], [1, Number.NEGATIVE_INFINITY]);
    f.close();
  });

  test("data callbacks and chunk iterables are consumed one tensor at a time", () => {
    const calls: string[] = [];
    const p = join(dir, "cb.safetensors");
    writeSafetensors(p, {
      b: {
        dtype: "F32",
        shape: [4, 3],
        data: function* () {
          calls.push("b");
          for (let r = 0; r < 4; r++) yield new Float32Array([r, r + 0.5, -r]);
        },
      },
      a: {
        dtype: "I64",
        shape: [2],
        data: () => {
          calls.push("a");
          return new BigInt64Array([3n, 4n]);
        },
      },
      raw: { dtype: "F32", shape: [1], data: () => Buffer.from(new Float32Array([7]).buffer) },
    });
    assert.deepEqual(calls, ["a", "b"]);
    const f = SafetensorsFile.open(p);
    assert.deepEqual([...f.getFloat32("b")], [0, 0.5, -0, 1, 1.5, -1, 2, 2.5, -2, 3, 3.5, -3]);
    assert.deepEqual([...f.getFloat64("a")], [3, 4]);
    assert.deepEqual([...f.getFloat32("raw")], [7]);
    f.close();
  });

  test("float arrays are converted for F16/BF16/F32/F64 (round to nearest even)", () => {
    const p = join(dir, "conv.safetensors");
    const v = [
      1,
      -2.5,
      65504,
      2 ** -24,
      Number.POSITIVE_INFINITY,
      1 + 2 ** -11,
      1 + 3 * 2 ** -11,
      65520,
      1e-9,
    ];
    writeSafetensors(p, {
      h: { dtype: "F16", shape: [v.length], data: new Float64Array(v) },
      b: { dtype: "BF16", shape: [3], data: new Float32Array([1, -2.5, 1 + 2 ** -8]) },
      d: { dtype: "F64", shape: [1], data: new Float32Array([0.1]) },
      s: { dtype: "F32", shape: [1], data: new Float64Array([0.1]) },
    });
    const f = SafetensorsFile.open(p);
    assert.deepEqual(
      [...f.getFloat32("h")],
      [1, -2.5, 65504, 2 ** -24, Number.POSITIVE_INFINITY, 1, 1 + 2 ** -9, Number.POSITIVE_INFINITY, 0],
    );
    assert.deepEqual([...f.getFloat32("b")], [1, -2.5, 1]);
    assert.deepEqual([...f.getFloat64("d")], [Math.fround(0.1)]);
    assert.deepEqual([...f.getFloat32("s")], [Math.fround(0.1)]);
    f.close();
  });

  test("float → F16 / BF16 conversions are exact inverses and round to nearest even", () => {
    for (let h = 0; h < 65536; h++) {
      const e = (h >> 10) & 0x1f;
      if (e === 31 && h & 0x3ff) {
        assert.ok(Number.isNaN(halfToFloat(floatToHalf(halfToFloat(h)))));
        continue;
      }
      if (floatToHalf(halfToFloat(h)) !== h) assert.fail(`half 0x${h.toString(16)} does not round-trip`);
    }
    assert.equal(floatToHalf(65519.99), 0x7bff);
    assert.equal(floatToHalf(-70000), 0xfc00);
    assert.equal(floatToHalf(2 ** -25), 0); // tie → even (0)
    assert.equal(floatToHalf(1.5 * 2 ** -25), 0x0001);
    assert.equal(floatToHalf(3 * 2 ** -25), 0x0002); // tie 1.5 units → even 2
    assert.equal(floatToHalf(1023.5 * 2 ** -24), 0x0400); // rounds up into the normals
    assert.equal(floatToHalf(-0), 0x8000);
    assert.ok((floatToHalf(Number.NaN) & 0x7c00) === 0x7c00 && (floatToHalf(Number.NaN) & 0x3ff) !== 0);
    assert.equal(floatToBfloat16(1 + 2 ** -8), 0x3f80); // tie → even
    assert.equal(floatToBfloat16(1 + 3 * 2 ** -8), 0x3f82);
    assert.equal(floatToBfloat16(3.4e38), 0x7f80); // rounds to inf
    assert.equal(f32BitsToBf16Bits(0xffc00001), 0xffc0);
    assert.equal(floatToBfloat16(-2.5), 0xc020);
  });

  test("bad input: errors name the tensor, nothing is left behind, an existing file stays intact", () => {
    const p = join(dir, "bad.safetensors");
    writeSafetensors(p, { ok: { dtype: "U8", shape: [1], data: new Uint8Array([9]) } });
    const before = readFileSync(p);
    const bad: [Record<string, TensorToWrite>, RegExp][] = [
      [
        { w: { dtype: "F32", shape: [3], data: new Float32Array(2) } },
        /tensor "w": data has 8 bytes but shape \[3\] of F32 needs 12/,
      ],
      [
        { w: { dtype: "F32", shape: [1], data: new Float32Array(2) } },
        /tensor "w": data is larger than shape \[1\]/,
      ],
      [
        { w: { dtype: "F32", shape: [2], data: new Int32Array(2) } },
        /tensor "w": data is a Int32Array, expected Float32Array/,
      ],
      [{ w: { dtype: "I64", shape: [2], data: new Float64Array(2) } }, /expected BigInt64Array for I64/],
      [
        { w: { dtype: "F8" as "F32", shape: [2], data: new Float32Array(2) } },
        /tensor "w": unknown dtype "F8"/,
      ],
      [
        { w: { dtype: "F32", shape: [-1], data: new Float32Array(0) } },
        /tensor "w": shape must be an array of non-negative/,
      ],
      [{ w: { dtype: "F32", shape: [1.5], data: new Float32Array(0) } }, /shape must be/],
      [{ __metadata__: { dtype: "U8", shape: [0], data: new Uint8Array(0) } }, /cannot be a tensor name/],
      [
        {
          w: {
            dtype: "F32",
            shape: [1],
            data: () => {
              throw new Error("boom");
            },
          },
        },
        /boom/,
      ],
    ];
    for (const [tensors, re] of bad) {
      assert.throws(() => writeSafetensors(p, tensors), re);
      assert.deepEqual(readFileSync(p), before);
      assert.deepEqual(
        readdirSync(dir).filter((n) => n.endsWith(".tmp")),
        [],
      );
    }
    assert.throws(() => writeSafetensors(p, {}, { a: 1 as unknown as string }), SafetensorsError);
    const fresh = join(dir, "never.safetensors");
    assert.throws(
      () => writeSafetensors(fresh, { w: { dtype: "U8", shape: [2], data: new Uint8Array(1) } }),
      SafetensorsError,
    );
    assert.ok(!existsSync(fresh));
  });

  test("replaces an existing file and creates missing folders", () => {
    const p = join(dir, "sub", "deeper", "m.safetensors");
    writeSafetensors(p, { a: { dtype: "U8", shape: [1], data: new Uint8Array([1]) } });
    writeSafetensors(p, { b: { dtype: "U8", shape: [2], data: new Uint8Array([2, 3]) } });
    const f = SafetensorsFile.open(p);
    assert.deepEqual(f.keys(), ["b"]);
    f.close();
  });

  test("large F16 tensor streamed in chunks reads back across conversion-chunk boundaries", () => {
    const n = (1 << 24) + 3; // just past the reader's 2^24-element conversion chunk
    const p = join(dir, "big.safetensors");
    writeSafetensors(p, {
      w: {
        dtype: "F16",
        shape: [n],
        data: function* () {
          const step = 1 << 20;
          for (let s = 0; s < n; s += step) {
            const c = new Uint16Array(Math.min(step, n - s));
            for (let i = 0; i < c.length; i++) c[i] = (s + i) & 0x7bff;
            yield c;
          }
        },
      },
    });
    const f = SafetensorsFile.open(p);
    const t0 = performance.now();
    const out = f.getFloat32("w");
    const ms = performance.now() - t0;
    assert.equal(out.length, n);
    for (const i of [0, 1, 1023, (1 << 24) - 1, 1 << 24, n - 1])
      assert.equal(out[i], halfToFloat(i & 0x7bff), `index ${i}`);
    assert.ok(ms < 5000, `F16 → F32 of ${n} elements took ${ms.toFixed(0)} ms`);
    f.close();
  });
});
