/**
 * float16 / bfloat16 checkpoints (src/onnx/spill_file.ts): the graph reads its weights as float32 from one
 * temporary spill file, with outputs bit-identical to a float32 checkpoint of the same values; the graph bytes are
 * stable (graph cache keys) and follow the source files; the spill folder is gone after creation, after a failed
 * creation and after a failed write; a graph cache hit does not write it; int8 layers still quantize fp16 weights.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  rmSync,
  statSync,
  truncateSync,
  utimesSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { SafetensorsFile } from "../../src/io/safetensors.js";
import { writeSafetensors } from "../../src/io/safetensors_writer.js";
import { type ExternalDataOptions, ModelBuilder } from "../../src/onnx/model_builder.js";
import { Conv2d, Linear } from "../../src/onnx/nn.js";
import * as op from "../../src/onnx/ops.js";
import { ParamStore } from "../../src/onnx/params.js";
import { DataType, onnx } from "../../src/onnx/proto.js";
import { SpillFileError, spillFoldersIn, sweepStaleSpills } from "../../src/onnx/spill_file.js";
import { bindWeights, WeightSet } from "../../src/onnx/weights.js";
import { SELF_IDENTIFIED_LOCATION } from "../../src/runtime/graph_cache.js";
import { float32Tensor } from "../../src/runtime/host_tensor.js";
import { RuntimeHost } from "../../src/runtime/worker_host.js";

function rand(n: number, seed: number): Float32Array {
  let s = seed;
  return Float32Array.from({ length: n }, () => {
    s = (s * 1103515245 + 12345) % 2 ** 31;
    return s / 2 ** 31 - 0.5;
  });
}

const SHAPES: Record<string, number[]> = {
  "conv.weight": [6, 3, 3, 3],
  "conv.bias": [6],
  "proj.weight": [5, 6],
  "proj.bias": [5],
};
type Dtype = "F32" | "F16" | "BF16";

let root: string;
let host: RuntimeHost;
let n = 0;

/** Writes the test weights with per-tensor dtypes; returns the file path. */
function writeWeights(dtypes: (key: string) => Dtype, values = baseValues()): string {
  const dir = join(root, `w${n++}`);
  const file = join(dir, "m.safetensors");
  writeSafetensors(
    file,
    Object.fromEntries(
      Object.entries(SHAPES).map(([k, shape]) => [k, { dtype: dtypes(k), shape, data: values[k]! }]),
    ),
  );
  return file;
}

function baseValues(): Record<string, Float32Array> {
  let seed = 1;
  return Object.fromEntries(
    Object.entries(SHAPES).map(([k, s]) => [
      k,
      rand(
        s.reduce((a, b) => a * b, 1),
        seed++,
      ),
    ]),
  );
}

/** The values a file holds, exactly, as float32 (fp16 / bf16 expand exactly). */
function readValues(file: string): Record<string, Float32Array> {
  const st = SafetensorsFile.open(file);
  try {
    return Object.fromEntries(st.keys().map((k) => [k, st.getFloat32(k)]));
  } finally {
    st.close();
  }
}

/** conv 3x3 → global mean → Linear; `int8` builds the Linear as an int8 kernel. */
function build(file: string, int8 = false): ModelBuilder {
  const store = new ParamStore();
  const conv = new Conv2d(store.root().pp("conv"), 3, 6, 3, { padding: 1 });
  const proj = new Linear(store.root().pp("proj"), 6, 5);
  const weights = WeightSet.fromSafetensors([SafetensorsFile.open(file)]);
  const b = new ModelBuilder(bindWeights(store, weights), {
    name: "spill-test",
    ...(int8 ? { int8: { keep: (k: string) => k.startsWith("conv.") } } : {}),
  });
  const x = b.input("x", "float32", [1, 3, 8, 8]);
  const y = op.reshape(b.op("GlobalAveragePool", [conv.forward(b, x)]), [1, 6]);
  b.output(proj.forward(b, y), "y");
  return b;
}

const X = rand(3 * 8 * 8, 99);

async function runThrough(b: ModelBuilder, wrap?: (e: ExternalDataOptions) => ExternalDataOptions) {
  const s = await b.createSession((model, external) =>
    host.createSession(model, { name: "spill-test", ...(wrap ? wrap(external) : external) }),
  );
  try {
    return { y: (await s.run({ x: float32Tensor(X, [1, 3, 8, 8]) })).y!.data as Float32Array, session: s };
  } finally {
    await s.release();
  }
}

const ownSpills = () => spillFoldersIn(tmpdir());

describe("float16 / bfloat16 checkpoints: float32 spill file", () => {
  before(() => {
    root = mkdtempSync(join(tmpdir(), "sdx4-spill-test-"));
    host = new RuntimeHost({ inProcess: true });
  });
  after(async () => {
    await host.close();
    rmSync(root, { recursive: true, force: true });
  });

  const cases: [string, (k: string) => Dtype][] = [
    ["float16", () => "F16"],
    ["bfloat16", () => "BF16"],
    [
      "mixed float32 / float16 / bfloat16",
      (k) => (k.endsWith("bias") ? "F32" : k.startsWith("conv") ? "F16" : "BF16"),
    ],
  ];
  for (const [label, dtypes] of cases) {
    test(`${label}: outputs equal a float32 checkpoint of the same values, bit for bit`, async () => {
      const half = writeWeights(dtypes);
      const f32 = writeWeights(() => "F32", readValues(half));
      const before = ownSpills();
      const a = await runThrough(build(half));
      const b = await runThrough(build(f32));
      assert.deepEqual(a.y, b.y);
      assert.deepEqual(ownSpills(), before, "no spill folder left");
    });
  }

  test("the graph is float32 throughout and points into one self-identified file, stable across builds", () => {
    const file = writeWeights((k) => (k === "proj.bias" ? "F32" : "F16"));
    const b = build(file);
    assert.equal(b.needsSpill, true);
    const bytes = b.serialize();
    const model = onnx.ModelProto.decode(bytes);
    const inits = model.graph!.initializer!.filter(
      (t) => t.dataLocation === onnx.TensorProto.DataLocation.EXTERNAL,
    );
    assert.equal(inits.length, 4, "every weight, the float32 one too");
    const locations = new Set(inits.map((t) => t.externalData!.find((e) => e.key === "location")!.value));
    assert.equal(locations.size, 1);
    const [location] = [...locations] as string[];
    assert.match(location!, SELF_IDENTIFIED_LOCATION);
    for (const t of inits) assert.equal(t.dataType, DataType.FLOAT, t.name!);
    assert.ok(!model.graph!.node!.some((nd) => nd.opType === "Cast"), "no Cast nodes");
    assert.deepEqual(build(file).serialize(), bytes, "same checkpoint, same graph bytes");
    const later = new Date(statSync(file).mtimeMs + 5000);
    utimesSync(file, later, later);
    assert.notDeepEqual(build(file).serialize(), bytes, "a touched checkpoint renames the spill file");
  });

  test("a float32 checkpoint references its own file (no spill)", () => {
    const file = writeWeights(() => "F32");
    const b = build(file);
    assert.equal(b.needsSpill, false);
    assert.equal(b.externalDataFolder, join(root, `w${n - 1}`));
    const model = onnx.ModelProto.decode(b.serialize());
    for (const t of model.graph!.initializer!) {
      if (t.dataLocation !== onnx.TensorProto.DataLocation.EXTERNAL) continue;
      assert.equal(t.externalData!.find((e) => e.key === "location")!.value, "m.safetensors");
    }
  });

  test("externalDataFolder of a graph that needs a spill file says to use createSession", () => {
    const b = build(writeWeights(() => "F16"));
    assert.throws(() => b.externalDataFolder, /reads float16\/bfloat16 weights.*ModelBuilder\.createSession/);
  });

  test("the spill file exists during creation only; removed after a failed creation", async () => {
    const b = build(writeWeights(() => "F16"));
    const before = ownSpills();
    let seen: { folder: string; files: string[]; size: number } | undefined;
    await assert.rejects(
      b.createSession(async (_model, external) => {
        await external.prepareExternalData!();
        const folder = external.externalDataFolder!;
        const files = readdirSync(folder);
        seen = { folder, files, size: statSync(join(folder, files[0]!)).size };
        throw new Error("onnxruntime says no");
      }),
      /onnxruntime says no/,
    );
    assert.ok(seen);
    assert.equal(seen.files.length, 1);
    // 4-byte floats, each tensor 64-byte aligned: conv.weight 162 floats (648 → 704), conv.bias 6 (24 → 768),
    // proj.weight 30 (120 → 896), proj.bias 5 (20): 916 bytes.
    assert.equal(seen.size, 916);
    assert.throws(() => statSync(seen!.folder), /ENOENT/);
    assert.deepEqual(ownSpills(), before);
  });

  test("a failed write (truncated checkpoint) is a clear error and leaves nothing behind", async () => {
    const file = writeWeights(() => "F16");
    const b = build(file);
    truncateSync(file, statSync(file).size - 8);
    const before = ownSpills();
    await assert.rejects(
      runThrough(b),
      (e: Error) =>
        e instanceof Error &&
        /m\.safetensors: unexpected end of file/.test(e.message) &&
        e.name === "RuntimeError",
    );
    assert.deepEqual(ownSpills(), before);
    await assert.rejects(
      b.createSession(async (_m, external) => external.prepareExternalData!()),
      SpillFileError,
    );
  });

  test("graph cache: a miss writes the spill file, a hit does not (same outputs)", async () => {
    const file = writeWeights(() => "F16");
    const graphCache = join(root, "graph-cache");
    const results: { y: Float32Array; status: string | undefined; prepared: number }[] = [];
    for (let i = 0; i < 2; i++) {
      let prepared = 0;
      const b = build(file);
      const s = await b.createSession((model, external) =>
        host.createSession(model, {
          name: "spill-cache",
          graphCache,
          ...external,
          prepareExternalData: async () => {
            prepared++;
            await external.prepareExternalData!();
          },
        }),
      );
      const y = (await s.run({ x: float32Tensor(X, [1, 3, 8, 8]) })).y!.data as Float32Array;
      results.push({ y, status: s.graphCache?.status, prepared });
      await s.release();
    }
    assert.deepEqual(
      results.map((r) => [r.status, r.prepared]),
      [
        ["miss", 1],
        ["hit", 0],
      ],
    );
    assert.deepEqual(results[1]!.y, results[0]!.y);
  });

  test("int8 layers quantize fp16 weights as they would the same float32 values", async () => {
    const half = writeWeights(() => "F16");
    const f32 = writeWeights(() => "F32", readValues(half));
    const a = await runThrough(build(half, true));
    const b = await runThrough(build(f32, true));
    assert.deepEqual(a.y, b.y);
  });

  test("a process's spill folder goes at its exit; old folders of dead processes are swept", async () => {
    const module = fileURLToPath(new URL("../../src/onnx/spill_file.ts", import.meta.url));
    const dir = join(root, "tmp");
    mkdirSync(dir);
    const child = spawnSync(
      process.execPath,
      [
        "--import",
        "tsx",
        "--input-type=module",
        "-e",
        `const { SpillFolder } = await import(${JSON.stringify(module)});
         const s = await SpillFolder.create(${JSON.stringify(dir)});
         console.log(s.folder);`,
      ],
      { encoding: "utf8" },
    );
    assert.equal(child.status, 0, child.stderr);
    const left = child.stdout.trim();
    assert.match(left, /sdx4-spill-\d+-/);
    assert.equal(existsSync(left), false, "removed by the exit hook");

    const dead = child.pid!;
    const old = new Date(Date.now() - 2 * 3600 * 1000);
    const names = [`sdx4-spill-${dead}-old`, `sdx4-spill-${dead}-recent`, `sdx4-spill-${process.ppid}-alive`];
    for (const name of names) mkdirSync(join(dir, name));
    for (const name of [names[0]!, names[2]!]) utimesSync(join(dir, name), old, old);
    await sweepStaleSpills(dir);
    assert.deepEqual(readdirSync(dir).sort(), [names[1], names[2]].sort());
  });
});
