import assert from "node:assert/strict";
import { closeSync as fsClose, openSync, readdirSync, statSync, writeFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { DTYPE_SIZES, loadSafetensors, SafetensorsError, SafetensorsFile } from "../../src/io/safetensors.js";
import { FIXTURES } from "../helpers/fixtures.js";
import { bytesOf, craft, makeTmpDir } from "./helpers.js";

let dir = "";
let cleanup = () => {};
before(() => ({ dir, cleanup } = makeTmpDir()));
after(() => cleanup());

/** Opening `path` must fail with a SafetensorsError naming the file and matching `re`. */
function rejects(path: string, re: RegExp): void {
  assert.throws(
    () => SafetensorsFile.open(path),
    (e: unknown) => {
      assert.ok(e instanceof SafetensorsError, `expected SafetensorsError, got ${e}`);
      assert.equal(e.file, path);
      assert.ok(e.message.startsWith(`${path}: `), e.message);
      assert.match(e.message, re);
      return true;
    },
  );
}

const f32 = (n: number) => ({ dtype: "F32", shape: [n], data_offsets: [0, 4 * n] });

describe("safetensors reader: rejects malformed files", () => {
  test("file shorter than 8 bytes (and empty)", () => {
    const p = join(dir, "short.safetensors");
    writeFileSync(p, Buffer.from([1, 2, 3, 4, 5]));
    rejects(p, /5 bytes, too small/);
    const e = join(dir, "empty.safetensors");
    writeFileSync(e, Buffer.alloc(0));
    rejects(e, /0 bytes, too small/);
  });

  test("header length above 100,000,000 bytes", () => {
    rejects(craft(dir, "{}", 0, { headerLength: 100_000_001n }), /header length 100000001 exceeds/);
    rejects(craft(dir, "{}", 0, { headerLength: 2n ** 64n - 1n }), /exceeds/);
  });

  test("header length past the end of the file", () => {
    rejects(
      craft(dir, "{}", 0, { headerLength: 50n }),
      /header length 50 runs past the end of the 10-byte file/,
    );
  });

  test("a zip / pickle under a .safetensors name gets a hint", () => {
    const zip = join(dir, "zip.safetensors");
    writeFileSync(zip, Buffer.from("PK\x03\x04\x14\x00\x00\x00\x08\x00rest of a torch zip", "latin1"));
    rejects(zip, /zip \/ PyTorch checkpoint.*convert it to safetensors/);
    const pkl = join(dir, "pickle.safetensors");
    writeFileSync(pkl, Buffer.from([0x80, 0x02, 0x7d, 0x71, 0x00, 0x28, 0x58, 0x05, 0x00, 0x00]));
    rejects(pkl, /Python pickle/);
  });

  test("header not UTF-8", () => {
    rejects(craft(dir, Buffer.from([0x7b, 0xff, 0xfe, 0x7d])), /not valid UTF-8/);
    rejects(craft(dir, Buffer.from([0x7b, 0x22, 0xc3, 0x22, 0x3a, 0x31, 0x7d])), /not valid UTF-8/); // truncated sequence
  });

  test("header not JSON", () => {
    rejects(craft(dir, "{abc"), /not valid JSON/);
    rejects(craft(dir, '{"a":'), /not valid JSON/);
    rejects(craft(dir, "{}x"), /not valid JSON \(trailing characters/);
    rejects(craft(dir, '{"a": 1,}'), /not valid JSON/);
    rejects(craft(dir, "{}\0\0\0\0"), /not valid JSON/); // NUL padding is not whitespace
    rejects(craft(dir, "\ufeff{}"), /not valid JSON/); // a BOM is not JSON whitespace either
    rejects(craft(dir, '{"a\tb": 1}'), /not valid JSON \(control character/);
    rejects(craft(dir, ""), /not valid JSON \(unexpected end/);
    rejects(craft(dir, '{"\\ud800":{}}'), /not valid JSON \(lone leading surrogate/);
    rejects(craft(dir, '{"\\udc00x":{}}'), /not valid JSON \(lone trailing surrogate/);
    rejects(craft(dir, '{"\\ud800\\u0041":{}}'), /lone leading surrogate/);
  });

  test("header JSON but not an object", () => {
    rejects(craft(dir, "[1, 2]"), /not a JSON object \(got an array\)/);
    rejects(craft(dir, "null"), /not a JSON object/);
    rejects(craft(dir, '"x"'), /not a JSON object/);
  });

  test("tensor entry not an object", () => {
    rejects(craft(dir, { a: 5 }), /tensor "a": entry must be an object, got 5/);
  });

  test("unknown, missing or non-string dtype", () => {
    rejects(
      craft(dir, { w: { dtype: "F128", shape: [1], data_offsets: [0, 16] } }, 16),
      /tensor "w": unknown .*dtype "F128"/,
    );
    rejects(
      craft(dir, { w: { dtype: "U64", shape: [1], data_offsets: [0, 8] } }, 8),
      /tensor "w": unknown or unsupported dtype "U64"/,
    );
    rejects(
      craft(dir, { w: { dtype: "f32", shape: [1], data_offsets: [0, 4] } }, 4),
      /unknown or unsupported dtype "f32"/,
    );
    rejects(
      craft(dir, { w: { dtype: 4, shape: [1], data_offsets: [0, 4] } }, 4),
      /tensor "w": unknown .*dtype 4/,
    );
    rejects(craft(dir, { w: { shape: [1], data_offsets: [0, 4] } }, 4), /tensor "w": missing "dtype"/);
    rejects(craft(dir, { w: { dtype: "constructor", shape: [1], data_offsets: [0, 4] } }, 4), /unknown/);
  });

  test("shape not an array of non-negative integers", () => {
    const bad = [
      "3",
      '"2"',
      "null",
      '{"a":1}',
      "[-1]",
      "[2.5]",
      "[1e1]",
      "[1.0]",
      "[-0]",
      "[[2]]",
      "[true]",
      '["2"]',
    ];
    for (const shape of bad) {
      rejects(
        craft(dir, `{"w":{"dtype":"U8","shape":${shape},"data_offsets":[0,1]}}`, 1),
        /tensor "w": "shape"/,
      );
    }
    rejects(
      craft(dir, '{"w":{"dtype":"U8","shape":[1.0],"data_offsets":[0,1]}}', 1),
      /"shape"\[0\] must be a non-negative integer, got 1.0/,
    );
    rejects(
      craft(dir, { w: { dtype: "U8", data_offsets: [0, 1] } }, 1),
      /tensor "w": "shape" must be an array.*got nothing/,
    );
  });

  test("values above 2^53 (shape entries, offsets) are rejected exactly, 2^53 itself is not too large", () => {
    const big = "9007199254740993"; // 2^53 + 1: JSON.parse would round it to 2^53
    rejects(
      craft(dir, `{"w":{"dtype":"U8","shape":[0,${big}],"data_offsets":[0,0]}}`),
      /"shape"\[1\] 9007199254740993 is above 2\^53/,
    );
    rejects(
      craft(dir, `{"w":{"dtype":"U8","shape":[1],"data_offsets":[${big},${big}]}}`),
      /"data_offsets" start .* above 2\^53/,
    );
    rejects(
      craft(dir, `{"w":{"dtype":"U8","shape":[1],"data_offsets":[0,${big}]}}`),
      /"data_offsets" end .* above 2\^53/,
    );
    rejects(
      craft(dir, '{"w":{"dtype":"U8","shape":[1],"data_offsets":[0,18446744073709551616]}}'),
      /above 2\^53/,
    );
    // shape [0, 2^53] is a valid zero-element tensor
    const ok = SafetensorsFile.open(
      craft(dir, '{"w":{"dtype":"U8","shape":[0,9007199254740992],"data_offsets":[0,0]}}'),
    );
    assert.deepEqual(ok.info("w").shape, [0, 2 ** 53]);
    ok.close();
  });

  test("numel × dtype size overflow", () => {
    rejects(
      craft(dir, { w: { dtype: "F32", shape: [2 ** 52, 4], data_offsets: [0, 0] } }),
      /tensor "w": shape .* overflows/,
    );
    rejects(
      craft(dir, { w: { dtype: "U8", shape: [2 ** 30, 2 ** 30, 2 ** 30], data_offsets: [0, 0] } }),
      /overflows/,
    );
    rejects(craft(dir, { w: { dtype: "F64", shape: [2 ** 51], data_offsets: [0, 2 ** 53] } }), /overflows/);
  });

  test("missing or ill-formed data_offsets", () => {
    const cases: [string | undefined, RegExp][] = [
      [undefined, /"data_offsets" must be an array \[start, end\], got nothing/],
      ["4", /"data_offsets" must be an array/],
      ["{}", /"data_offsets" must be an array/],
      ["[0]", /"data_offsets" must be an array/],
      ["[0,4,8]", /"data_offsets" must be an array/],
      ['["0",4]', /"data_offsets" start must be a non-negative integer, got "0"/],
      ["[0,null]", /"data_offsets" end must be a non-negative integer, got null/],
      ["[-4,0]", /"data_offsets" start must be a non-negative integer, got -4/],
      ["[0,4.0]", /"data_offsets" end must be a non-negative integer, got 4.0/],
      ["[0,4e0]", /"data_offsets" end must be a non-negative integer, got 4e0/],
    ];
    for (const [offs, re] of cases) {
      const h = `{"w":{"dtype":"F32","shape":[1]${offs === undefined ? "" : `,"data_offsets":${offs}`}}}`;
      rejects(craft(dir, h, 4), re);
    }
  });

  test("start > end", () => {
    rejects(
      craft(dir, { w: { dtype: "U8", shape: [4], data_offsets: [8, 4] } }, 8),
      /tensor "w": data_offsets \[8, 4\] have start > end/,
    );
  });

  test("span size not equal to numel × dtype size", () => {
    rejects(
      craft(dir, { w: { dtype: "F32", shape: [2], data_offsets: [0, 4] } }, 4),
      /tensor "w": .*span 4 bytes but shape \[2\] of F32 needs 8/,
    );
    rejects(craft(dir, { w: { dtype: "F16", shape: [3, 0], data_offsets: [0, 2] } }, 2), /needs 0/);
    rejects(craft(dir, { w: { dtype: "I64", shape: [], data_offsets: [0, 4] } }, 4), /needs 8/);
  });

  test("gaps between spans (sorted by start), including before the first", () => {
    const h = { a: f32(1), b: { dtype: "F32", shape: [1], data_offsets: [8, 12] } };
    rejects(
      craft(dir, h, 12),
      /tensor "b": gap in the data section: it starts at 8, expected 4 \(after tensor "a"/,
    );
    rejects(
      craft(dir, { a: { dtype: "U8", shape: [4], data_offsets: [4, 8] } }, 8),
      /tensor "a": gap .* starts at 4, expected 0/,
    );
  });

  test("overlapping spans", () => {
    const h = { b: { dtype: "F32", shape: [2], data_offsets: [4, 12] }, a: f32(2) };
    rejects(
      craft(dir, h, 12),
      /tensor "b": data_offsets \[4, 12\] overlap the previous tensor \(after tensor "a"/,
    );
    const same = { a: f32(1), b: f32(1) };
    rejects(craft(dir, same, 4), /overlap/);
  });

  test("span out of bounds / truncated data section", () => {
    rejects(
      craft(dir, { w: f32(4) }, 10),
      /tensor "w": data_offsets \[0, 16\] run past the end of the data section \(10 bytes/,
    );
    rejects(
      craft(dir, { a: f32(1), b: { dtype: "F32", shape: [1], data_offsets: [4, 8] } }, 4),
      /tensor "b": .*run past the end/,
    );
  });

  test("trailing bytes after the last tensor", () => {
    rejects(
      craft(dir, { w: f32(1) }, 7),
      /data section is 7 bytes but the tensors cover 4: 3 trailing bytes/,
    );
    rejects(craft(dir, {}, 1), /1 trailing bytes/);
  });

  test("duplicate tensor names (JSON.parse would hide them)", () => {
    const t = '{"dtype":"U8","shape":[1],"data_offsets":[0,1]}';
    rejects(craft(dir, `{"a":${t},"a":${t}}`, 1), /duplicate tensor name "a"/);
    rejects(
      craft(dir, `{"x":${t}, "a" : ${t},\n"a":${t.replace("0,1", "1,2")}}`, 2),
      /duplicate tensor name "a"/,
    );
    rejects(craft(dir, `{"\\u0061":${t},"a":${t}}`, 1), /duplicate tensor name "a"/); // escaped spelling, same name
    rejects(craft(dir, `{"__metadata__":{},"__metadata__":{}}`), /duplicate tensor name "__metadata__"/);
    rejects(
      craft(dir, '{"a":{"dtype":"U8","dtype":"U8","shape":[1],"data_offsets":[0,1]}}', 1),
      /duplicate key "dtype"/,
    );
  });

  test("__metadata__ not an object, or with non-string values", () => {
    rejects(craft(dir, { __metadata__: "pt" }), /__metadata__ must be an object, got "pt"/);
    rejects(craft(dir, { __metadata__: ["a"] }), /__metadata__ must be an object, got an array/);
    rejects(
      craft(dir, { __metadata__: { format: 1 } }),
      /__metadata__ value "format" is not a string \(got 1\)/,
    );
    rejects(craft(dir, { __metadata__: { a: "x", b: null } }), /__metadata__ value "b" is not a string/);
    rejects(craft(dir, { __metadata__: { a: { b: "c" } } }), /__metadata__ value "a" is not a string/);
  });

  test("pickle checkpoints are never loaded", () => {
    for (const ext of [".bin", ".ckpt", ".pt", ".pth", ".PT", ".pkl"]) {
      const p = join(dir, `model${ext}`);
      writeFileSync(p, Buffer.from([0x80, 0x02]));
      rejects(p, /pickle checkpoints .* are never loaded .*convert the model to safetensors/);
      assert.throws(() => loadSafetensors(p), SafetensorsError);
    }
  });

  test("a missing file names the path", () => {
    const p = join(dir, "nope", "missing.safetensors");
    rejects(p, /file not found/);
    rejects(dir, /is a directory/);
  });
});

describe("safetensors reader: good files", () => {
  test("the reference crate's serialization test vector", () => {
    // safetensors/src/tensor.rs test_serialization: {"attn.0": F32 [1,2,3] = 0..5}
    const bytes = [
      64, 0, 0, 0, 0, 0, 0, 0, 123, 34, 97, 116, 116, 110, 46, 48, 34, 58, 123, 34, 100, 116, 121, 112, 101,
      34, 58, 34, 70, 51, 50, 34, 44, 34, 115, 104, 97, 112, 101, 34, 58, 91, 49, 44, 50, 44, 51, 93, 44, 34,
      100, 97, 116, 97, 95, 111, 102, 102, 115, 101, 116, 115, 34, 58, 91, 48, 44, 50, 52, 93, 125, 125, 0, 0,
      0, 0, 0, 0, 128, 63, 0, 0, 0, 64, 0, 0, 64, 64, 0, 0, 128, 64, 0, 0, 160, 64,
    ];
    const p = join(dir, "reference.safetensors");
    writeFileSync(p, Buffer.from(bytes));
    const f = SafetensorsFile.open(p);
    assert.deepEqual(f.keys(), ["attn.0"]);
    assert.deepEqual(f.info("attn.0"), {
      name: "attn.0",
      dtype: "F32",
      shape: [1, 2, 3],
      dataOffsets: [0, 24],
      fileOffset: 72,
      byteLength: 24,
    });
    assert.deepEqual([...f.getFloat32("attn.0")], [0, 1, 2, 3, 4, 5]);
    assert.deepEqual(f.metadata, {});
    f.close();
  });

  test("every dtype, read as its own type and converted", () => {
    const values: Record<string, ArrayBufferView> = {
      F64: new Float64Array([1.5, -(2 ** 60), Math.PI]),
      F32: new Float32Array([1.5, -3.25, 1e-40]),
      F16: new Uint16Array([0x3c00, 0xc100, 0x7bff]),
      BF16: new Uint16Array([0x3f80, 0xc020, 0x7f80]),
      I64: new BigInt64Array([1n, -(2n ** 40n), 2n ** 62n]),
      I32: new Int32Array([1, -(2 ** 31), 2 ** 31 - 1]),
      I16: new Int16Array([1, -32768, 32767]),
      I8: new Int8Array([1, -128, 127]),
      U8: new Uint8Array([1, 0, 255]),
      BOOL: new Uint8Array([1, 0, 1]),
    };
    const expected: Record<string, number[]> = {
      F64: [1.5, -(2 ** 60), Math.PI],
      F32: [1.5, -3.25, Math.fround(1e-40)],
      F16: [1, -2.5, 65504],
      BF16: [1, -2.5, Number.POSITIVE_INFINITY],
      I64: [1, -(2 ** 40), 2 ** 62],
      I32: [1, -(2 ** 31), 2 ** 31 - 1],
      I16: [1, -32768, 32767],
      I8: [1, -128, 127],
      U8: [1, 0, 255],
      BOOL: [1, 0, 1],
    };
    const header: Record<string, unknown> = {};
    const chunks: Uint8Array[] = [];
    let off = 0;
    for (const [dtype, a] of Object.entries(values)) {
      header[dtype.toLowerCase()] = { dtype, shape: [3], data_offsets: [off, off + a.byteLength] };
      chunks.push(bytesOf(a));
      off += a.byteLength;
    }
    const f = SafetensorsFile.open(craft(dir, header, Buffer.concat(chunks)));
    for (const [dtype, a] of Object.entries(values)) {
      const name = dtype.toLowerCase();
      const t = f.info(name);
      assert.equal(t.dtype, dtype);
      assert.equal(t.byteLength, 3 * DTYPE_SIZES[t.dtype]);
      const typed = f.getTyped(name);
      assert.equal(typed.constructor, a.constructor, dtype);
      assert.deepEqual([...typed], [...(a as unknown as Iterable<unknown>)], dtype);
      assert.deepEqual(Buffer.from(f.readBytes(name)), Buffer.from(bytesOf(a)), dtype);
      const exp = expected[dtype] as number[];
      assert.deepEqual([...f.getFloat64(name)], exp, dtype);
      assert.deepEqual([...f.getFloat32(name)], exp.map(Math.fround), dtype);
    }
    f.close();
  });

  test("F16/BF16 tensors read through getFloat32 keep subnormals, inf and NaN", () => {
    const h = new Uint16Array([0x3c00, 0xc100, 0x7bff, 0x0001, 0x7c00, 0xfc00, 0x7e00, 0x8000]);
    const b = new Uint16Array([0x3f80, 0xc020, 0x0001, 0x7f80, 0x7fc0, 0x8000, 0x4049, 0x0000]);
    const p = craft(
      dir,
      {
        h: { dtype: "F16", shape: [2, 4], data_offsets: [0, 16] },
        b: { dtype: "BF16", shape: [8], data_offsets: [16, 32] },
      },
      Buffer.concat([bytesOf(h), bytesOf(b)]),
    );
    const f = SafetensorsFile.open(p);
    const hf = f.getFloat32("h");
    assert.deepEqual([...hf.slice(0, 6)], [1, -2.5, 65504, 2 ** -24, Infinity, -Infinity]);
    assert.ok(Number.isNaN(hf[6]) && Object.is(hf[7], -0));
    const bf = f.getFloat32("b");
    assert.deepEqual([...bf.slice(0, 4)], [1, -2.5, 2 ** -133, Infinity]);
    assert.ok(Number.isNaN(bf[4]) && Object.is(bf[5], -0));
    assert.equal(bf[6], 3.140625);
    assert.deepEqual([...f.getFloat64("h").slice(0, 4)], [1, -2.5, 65504, 2 ** -24]);
    f.close();
  });

  test("zero-element tensors (shape with a 0, empty span) and 0-d tensors", () => {
    const header = {
      a: { dtype: "F32", shape: [2], data_offsets: [0, 8] },
      empty: { dtype: "F32", shape: [0, 3], data_offsets: [8, 8] },
      empty2: { dtype: "I64", shape: [4, 0], data_offsets: [8, 8] },
      scalar: { dtype: "I64", shape: [], data_offsets: [8, 16] },
      tail: { dtype: "U8", shape: [0], data_offsets: [16, 16] },
    };
    const data = Buffer.concat([bytesOf(new Float32Array([1, 2])), bytesOf(new BigInt64Array([7n]))]);
    const f = SafetensorsFile.open(craft(dir, header, data));
    assert.equal(f.getFloat32("empty").length, 0);
    assert.equal(f.getTyped("empty2").length, 0);
    assert.equal(f.readBytes("tail").length, 0);
    assert.deepEqual([...f.getFloat64("scalar")], [7]);
    assert.deepEqual(f.info("scalar").shape, []);
    assert.deepEqual([...f.getFloat32("a")], [1, 2]);
    f.close();
    // a file holding only empty tensors, and a file with no tensors at all
    SafetensorsFile.open(craft(dir, { e: { dtype: "BF16", shape: [0], data_offsets: [0, 0] } })).close();
    SafetensorsFile.open(craft(dir, {})).close();
  });

  test("whitespace-padded headers", () => {
    const h = JSON.stringify({ w: f32(1) });
    const data = bytesOf(new Float32Array([42]));
    for (const padded of [
      `${h}   `,
      `${h}${" ".repeat(8 - (h.length % 8))}`,
      `\n\t ${h}\r\n `,
      h.replace(/,/g, " ,\n  "),
    ]) {
      const f = SafetensorsFile.open(craft(dir, padded, data));
      assert.deepEqual([...f.getFloat32("w")], [42]);
      assert.equal(f.dataStart, 8 + Buffer.byteLength(padded));
      f.close();
    }
  });

  test("__metadata__ is read (null means none); non-ASCII names and escapes", () => {
    const f = SafetensorsFile.open(
      craft(
        dir,
        { __metadata__: { format: "pt", note: 'a "q" \u00e9 \ud83d\ude00' }, "caf\u00e9/\u2603": f32(1) },
        4,
      ),
    );
    assert.deepEqual(f.metadata, { format: "pt", note: 'a "q" \u00e9 \ud83d\ude00' });
    assert.deepEqual(f.keys(), ["caf\u00e9/\u2603"]);
    f.close();
    const g = SafetensorsFile.open(
      craft(
        dir,
        '{"__metadata__":null,"w\\u00e9\\n":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},' +
          '"\\ud83d\\ude00":{"dtype":"U8","shape":[0],"data_offsets":[1,1]}}',
        1,
      ),
    );
    assert.deepEqual(g.metadata, {});
    assert.deepEqual(g.keys(), ["w\u00e9\n", "\ud83d\ude00"]);
    g.close();
    const e = SafetensorsFile.open(craft(dir, { __metadata__: {} }));
    assert.deepEqual(e.metadata, {});
    e.close();
  });

  test("keys keep header order; spans may be listed in any order; unknown fields ignored", () => {
    const header = {
      "10": { dtype: "U8", shape: [2], data_offsets: [2, 4] },
      b: { dtype: "U8", shape: [2], data_offsets: [0, 2], extra: [1, 2] },
    };
    const f = SafetensorsFile.open(craft(dir, header, new Uint8Array([1, 2, 3, 4])));
    assert.deepEqual(f.keys(), ["10", "b"]);
    assert.deepEqual([...f.getTyped("10")], [3, 4]);
    assert.ok(f.has("b") && !f.has("c"));
    assert.throws(() => f.info("c"), /no tensor named "c"/);
    f.close();
    assert.throws(() => f.getFloat32("b"), /file is closed/);
  });

  test("reads are lazy: one tensor's bytes come from its offset at call time", () => {
    const a = new Float32Array(1000).map((_, i) => i);
    const b = new Float32Array([9, 8, 7]);
    const header = {
      a: { dtype: "F32", shape: [1000], data_offsets: [0, 4000] },
      b: { dtype: "F32", shape: [3], data_offsets: [4000, 4012] },
    };
    const p = craft(dir, header, Buffer.concat([bytesOf(a), bytesOf(b)]));
    const f = SafetensorsFile.open(p);
    assert.equal(f.info("b").fileOffset, f.dataStart + 4000);
    assert.equal(f.fileSize, statSync(p).size);
    assert.deepEqual([...f.getFloat32("b")], [9, 8, 7]);
    // Overwrite b's bytes on disk after opening: a lazy reader sees the new values.
    const fd = openSync(p, "r+");
    writeSync(fd, bytesOf(new Float32Array([1, 2, 3])), 0, 12, f.info("b").fileOffset);
    fsClose(fd);
    assert.deepEqual([...f.getFloat32("b")], [1, 2, 3]);
    assert.deepEqual(f.getFloat32("a"), a);
    f.close();
  });

  test("test/fixtures/rng/tensors.safetensors: every key the cases name is there", async () => {
    const { readFileSync } = await import("node:fs");
    const cases = JSON.parse(readFileSync(join(FIXTURES, "rng/cases.json"), "utf8")) as {
      cases: { tensors: Record<string, string> }[];
    };
    const f = loadSafetensors(join(FIXTURES, "rng/tensors.safetensors"));
    const keys = new Set(f.keys());
    assert.equal(keys.size, f.keys().length);
    const named = cases.cases.flatMap((c) => Object.values(c.tensors));
    assert.ok(named.length > 0);
    for (const k of named) assert.ok(keys.has(k), `missing ${k}`);
    assert.ok(f.keys().every((k) => k.includes("/")));
    assert.deepEqual(f.metadata, {});
    for (const k of f.keys()) {
      const t = f.info(k);
      assert.ok(["F32", "F64", "I64"].includes(t.dtype), `${k}: ${t.dtype}`);
      assert.equal(
        f.getFloat64(k).length,
        t.shape.reduce((p, d) => p * d, 1),
      );
    }
    f.close();
  });

  test("every safetensors file under test/fixtures validates", () => {
    const found: string[] = [];
    const walk = (d: string) => {
      for (const e of readdirSync(d, { withFileTypes: true })) {
        if (e.isDirectory()) walk(join(d, e.name));
        else if (e.name.endsWith(".safetensors")) found.push(join(d, e.name));
      }
    };
    walk(FIXTURES);
    assert.ok(found.length >= 2);
    for (const p of found) {
      const f = SafetensorsFile.open(p);
      const last = Math.max(0, ...[...f.tensors.values()].map((t) => t.fileOffset + t.byteLength));
      assert.ok(last <= f.fileSize);
      f.close();
    }
  });
});
