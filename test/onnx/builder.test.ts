import assert from "node:assert/strict";
import { mkdtempSync, realpathSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import * as ort from "onnxruntime-node";
import { SafetensorsFile } from "../../src/io/safetensors.js";
import { ModelBuilder } from "../../src/onnx/model_builder.js";
import { Conv2d, GroupNorm, Linear } from "../../src/onnx/nn.js";
import * as op from "../../src/onnx/ops.js";
import { ParamStore } from "../../src/onnx/params.js";
import { bindWeights, WeightError, WeightSet } from "../../src/onnx/weights.js";
import { assertClose } from "../helpers/fixtures.js";

function rand(n: number, seed: number): Float32Array {
  let s = seed;
  return Float32Array.from({ length: n }, () => {
    s = (s * 1103515245 + 12345) % 2 ** 31;
    return s / 2 ** 31 - 0.5;
  });
}

/** Minimal safetensors writer for the test (F32 / F16 tensors, sorted names). */
function writeSt(
  path: string,
  tensors: Record<string, { dtype: "F32" | "F16"; shape: number[]; bytes: Uint8Array }>,
) {
  const header: Record<string, unknown> = { __metadata__: { format: "pt" } };
  let off = 0;
  const names = Object.keys(tensors).sort();
  for (const k of names) {
    const t = tensors[k]!;
    header[k] = { dtype: t.dtype, shape: t.shape, data_offsets: [off, off + t.bytes.length] };
    off += t.bytes.length;
  }
  let h = JSON.stringify(header);
  while ((8 + h.length) % 8) h += " ";
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(h.length));
  writeFileSync(
    path,
    Buffer.concat([len, Buffer.from(h), ...names.map((k) => Buffer.from(tensors[k]!.bytes))]),
  );
}

function f32bytes(a: Float32Array): Uint8Array {
  return new Uint8Array(a.buffer.slice(0));
}

async function run(b: ModelBuilder, feeds: Record<string, ort.Tensor>): Promise<Record<string, ort.Tensor>> {
  const s = await b.createSession(async (model, external) => {
    await external.prepareExternalData?.();
    const extra: Record<string, Record<string, string>> = {};
    if (external.externalDataFolder) {
      extra.session = { model_external_initializers_file_folder_path: external.externalDataFolder };
    }
    return ort.InferenceSession.create(model, { extra } as ort.InferenceSession.SessionOptions);
  });
  return s.run(feeds);
}

describe("onnx graph builder", () => {
  test("Linear and GroupNorm with weights as external data in a safetensors file", async () => {
    const dir = realpathSync(mkdtempSync(join(tmpdir(), "sdx4-b-")));
    const w = rand(6 * 4, 1);
    const bias = rand(6, 2);
    const gw = rand(6, 3).map((v) => v + 1);
    const gb = rand(6, 4);
    writeSt(join(dir, "m.safetensors"), {
      "proj.weight": { dtype: "F32", shape: [6, 4], bytes: f32bytes(w) },
      "proj.bias": { dtype: "F32", shape: [6], bytes: f32bytes(bias) },
      "norm.weight": { dtype: "F32", shape: [6], bytes: f32bytes(gw) },
      "norm.bias": { dtype: "F32", shape: [6], bytes: f32bytes(gb) },
    });
    const store = new ParamStore();
    const root = store.root();
    const proj = new Linear(root.pp("proj"), 4, 6);
    const norm = new GroupNorm(root.pp("norm"), 3, 6, 1e-5);
    const bound = bindWeights(
      store,
      WeightSet.fromSafetensors([SafetensorsFile.open(join(dir, "m.safetensors"))]),
    );
    const b = new ModelBuilder(bound);
    const x = b.input("x", "float32", ["batch", 5, 4]);
    const y = proj.forward(b, x); // [B,5,6]
    const y4 = op.reshape(op.transpose(y, [0, 2, 1]), [0, 6, 5, 1]); // [B,6,5,1]
    b.output(norm.forward(b, y4), "out");
    const xs = rand(2 * 5 * 4, 5);
    const out = (await run(b, { x: new ort.Tensor("float32", xs, [2, 5, 4]) })).out!;
    // reference in the test
    const exp = new Float32Array(2 * 6 * 5);
    for (let n = 0; n < 2; n++) {
      const lin = new Float64Array(6 * 5);
      for (let l = 0; l < 5; l++)
        for (let o = 0; o < 6; o++) {
          let acc = bias[o]!;
          for (let i = 0; i < 4; i++) acc += xs[n * 20 + l * 4 + i]! * w[o * 4 + i]!;
          lin[o * 5 + l] = acc;
        }
      for (let gi = 0; gi < 3; gi++) {
        const seg = lin.subarray(gi * 10, gi * 10 + 10);
        const mean = seg.reduce((a, v) => a + v, 0) / 10;
        const varc = seg.reduce((a, v) => a + (v - mean) ** 2, 0) / 10;
        for (let j = 0; j < 10; j++) {
          const c = gi * 2 + Math.floor(j / 5);
          exp[n * 30 + gi * 10 + j] = ((seg[j]! - mean) / Math.sqrt(varc + 1e-5)) * gw[c]! + gb[c]!;
        }
      }
    }
    assert.deepEqual(out.dims, [2, 6, 5, 1]);
    assertClose(out.data as Float32Array, exp, { atol: 1e-5, rtol: 1e-5 }, "linear+groupnorm");
  });

  test("fp16 weights are expanded to float32 (spill file)", async () => {
    const dir = realpathSync(mkdtempSync(join(tmpdir(), "sdx4-b-")));
    // 1.0, -2.5, 0.5 in IEEE half
    const half = new Uint16Array([0x3c00, 0xc100, 0x3800, 0x0000]);
    writeSt(join(dir, "h.safetensors"), {
      "conv.weight": { dtype: "F16", shape: [1, 4, 1, 1], bytes: new Uint8Array(half.buffer) },
    });
    const store = new ParamStore();
    const conv = new Conv2d(store.root().pp("conv"), 4, 1, 1, { bias: false });
    const b = new ModelBuilder(
      bindWeights(store, WeightSet.fromSafetensors([SafetensorsFile.open(join(dir, "h.safetensors"))])),
    );
    b.output(conv.forward(b, b.input("x", "float32", [1, 4, 1, 1])), "y");
    const out = (await run(b, { x: new ort.Tensor("float32", new Float32Array([1, 2, 3, 4]), [1, 4, 1, 1]) }))
      .y!;
    assert.deepEqual(Array.from(out.data as Float32Array), [1 - 5 + 1.5]);
  });

  test("strict binding reports missing, unexpected and mis-shaped keys together", () => {
    const store = new ParamStore();
    new Linear(store.root().pp("a"), 2, 3);
    const ws = WeightSet.fromArrays({
      "a.weight": { shape: [2, 3], data: new Float32Array(6) },
      "b.extra": { shape: [1], data: new Float32Array(1) },
    });
    assert.throws(
      () => bindWeights(store, ws),
      (e: Error) =>
        e instanceof WeightError &&
        /missing keys \(1\):\s+a\.bias/.test(e.message) &&
        /a\.weight: checkpoint \[2,3\] vs model \[3,2\]/.test(e.message) &&
        /unexpected keys \(1\):\s+b\.extra/.test(e.message),
    );
  });
});
