/**
 * RuntimeOptions.graphCache: a miss writes an entry of onnxruntime's optimized graph, a hit loads it with the
 * same outputs; the key follows the graph bytes and the weight files; corrupt entries are rebuilt and replaced;
 * bad option values are refused with clear errors.
 */
import assert from "node:assert/strict";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  truncateSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { UNet2DConditionModel } from "../../src/models/unet/index.js";
import { RuntimeError } from "../../src/runtime/errors.js";
import {
  defaultGraphCacheDir,
  externalDataLocations,
  type GraphCacheStatus,
  graphCacheKey,
  MANIFEST_FILE,
  MODEL_FILE,
  resolveGraphCacheOption,
  WEIGHTS_FILE,
} from "../../src/runtime/graph_cache.js";
import { float32Tensor, type HostTensor, int64Tensor } from "../../src/runtime/host_tensor.js";
import { type BackendProbe, toOrtSessionOptions } from "../../src/runtime/session_options.js";
import type { CreateSessionOptions } from "../../src/runtime/worker_host.js";
import { RuntimeHost } from "../../src/runtime/worker_host.js";
import { FIXTURES } from "../helpers/fixtures.js";
import { externalDataModel, matMulRef, randomFloats } from "./models.js";

// W is 8 KiB, so onnxruntime moves it into the entry's weights.bin (threshold 1 KiB).
const [m, k, n] = [3, 64, 32];
const offsets = { w: 8 + 77 * 4, b: 8 + 77 * 4 + k * n * 4 + 12 };
const W = randomFloats(k * n, 21);
const B = randomFloats(n, 22);
const x = randomFloats(m * k, 23);
const ref = matMulRef(x, W, m, k, n).map((v, i) => v + B[i % n]!);

let root: string;
let weightsDir: string;
let host: RuntimeHost;

function writeWeights(file: string, w = W): void {
  const bytes = new Uint8Array(offsets.b + n * 4 + 16).fill(0xab);
  bytes.set(new Uint8Array(w.buffer, w.byteOffset, w.byteLength), offsets.w);
  bytes.set(new Uint8Array(B.buffer), offsets.b);
  writeFileSync(file, bytes);
}

/** Creates the external-data model through the cache, checks its outputs, returns the outcome. */
async function createChecked(
  cache: string,
  extra: Partial<CreateSessionOptions> = {},
): Promise<{ status: GraphCacheStatus | undefined; entry: string | undefined; reason: string | undefined }> {
  const s = await host.createSession(externalDataModel(k, n, "weights.bin", offsets), {
    name: "ext",
    externalDataFolder: weightsDir,
    graphCache: cache,
    logSeverityLevel: 4, // a corrupt entry makes onnxruntime log errors on purpose
    ...extra,
  });
  const { y } = await s.run({ x: float32Tensor(x, [m, k]) });
  const got = y!.data as Float32Array;
  for (let i = 0; i < ref.length; i++) assert.ok(Math.abs(got[i]! - ref[i]!) < 1e-4, `y[${i}]`);
  await s.release();
  return { status: s.graphCache?.status, entry: s.graphCache?.entry, reason: s.graphCache?.reason };
}

const entries = (dir: string) => readdirSync(dir).filter((f) => !f.startsWith("."));

describe("graph cache", () => {
  before(() => {
    root = mkdtempSync(path.join(tmpdir(), "sdx4-graph-cache-"));
    weightsDir = path.join(root, "weights");
    mkdirSync(weightsDir);
    writeWeights(path.join(weightsDir, "weights.bin"));
    host = new RuntimeHost({ inProcess: true });
  });
  after(async () => {
    await host.close();
    rmSync(root, { recursive: true, force: true });
  });

  for (const convAlgorithm of ["auto", "winograd"] as const) {
    test(`tiny UNet (convAlgorithm ${convAlgorithm}): a miss writes an entry, a hit (worker, from the file) gives identical outputs`, async () => {
      // "winograd": the transformed filters are folded by onnxruntime into the cached graph.
      const unet = await UNet2DConditionModel.fromPretrained(
        path.join(FIXTURES, "models/tiny-upscaler/unet"),
        {
          runtimeOptions: { convAlgorithm },
        },
      );
      const b = unet.buildGraph();
      const bytes = b.serialize();
      const c = unet.config;
      const cross = unet.layout.crossAttentionDim[0] as number;
      const feeds: Record<string, HostTensor> = {
        sample: float32Tensor(randomFloats(c.in_channels * 16 * 16, 1), [1, c.in_channels, 16, 16]),
        timestep: float32Tensor(new Float32Array([500]), [1]),
        encoder_hidden_states: float32Tensor(randomFloats(77 * cross, 2), [1, 77, cross]),
        class_labels: int64Tensor([20], [1]),
      };
      const cache = path.join(root, `unet-cache-${convAlgorithm}`);
      const worker = new RuntimeHost();
      try {
        const outputs: Float32Array[] = [];
        const statuses: (string | undefined)[] = [];
        for (const graphCache of [undefined, cache, cache]) {
          const s = await worker.createSession(new Uint8Array(bytes), {
            name: "unet",
            externalDataFolder: b.externalDataFolder,
            graphCache,
          });
          const inputs = { ...feeds };
          if (!s.inputNames.includes("class_labels")) delete inputs.class_labels;
          outputs.push((await s.run(inputs)).out_sample!.data as Float32Array);
          statuses.push(s.graphCache?.status);
          await s.release();
        }
        assert.deepEqual(statuses, [undefined, "miss", "hit"]);
        assert.deepEqual(outputs[1], outputs[0], "miss session = plain session");
        assert.deepEqual(outputs[2], outputs[0], "hit session = plain session, bit for bit");
        const [entry] = entries(cache);
        assert.match(entry!, /^unet-[0-9a-f]{32}$/);
        assert.deepEqual(readdirSync(path.join(cache, entry!)).sort(), [
          MANIFEST_FILE,
          MODEL_FILE,
          WEIGHTS_FILE,
        ]);
        const manifest = JSON.parse(readFileSync(path.join(cache, entry!, MANIFEST_FILE), "utf8"));
        assert.equal(manifest.name, "unet");
        assert.equal(manifest.fields.graph_optimization_level, "all");
        assert.equal(manifest.fields.external_data.length, 1);
        assert.ok(manifest.files[WEIGHTS_FILE] > 1e6, "the weights live in the side file");
      } finally {
        await worker.close();
      }
    });
  }

  test("miss, then hit; the entry is keyed by graph and level", async () => {
    const cache = path.join(root, "basic");
    const first = await createChecked(cache);
    assert.equal(first.status, "miss");
    assert.ok(existsSync(path.join(first.entry!, WEIGHTS_FILE)));
    assert.equal((await createChecked(cache)).status, "hit");
    const basic = await createChecked(cache, { graphOptimizationLevel: "basic" });
    assert.equal(basic.status, "miss");
    assert.notEqual(basic.entry, first.entry);
    assert.equal(entries(cache).length, 2);
    assert.deepEqual(
      readdirSync(cache).filter((f) => f.startsWith(".")),
      [],
      "no temp folders left",
    );
  });

  test("the key follows the graph bytes and the identity of every weight file", async () => {
    const folder = path.join(root, "key");
    mkdirSync(folder);
    const file = path.join(folder, "weights.bin");
    writeWeights(file);
    const model = externalDataModel(k, n, "weights.bin", offsets);
    assert.deepEqual(externalDataLocations(model), ["weights.bin"]);
    const key = async (bytes = model, level = "all") =>
      (
        await graphCacheKey({
          model: bytes,
          externalDataFolder: folder,
          executionProvider: "cpu",
          graphOptimizationLevel: level,
        })
      ).key;
    const k0 = await key();
    assert.equal(await key(), k0, "deterministic");
    assert.notEqual(await key(externalDataModel(k, n, "weights.bin", { ...offsets, w: offsets.w + 4 })), k0);
    assert.notEqual(await key(model, "extended"), k0);
    const later = new Date(Date.now() + 10_000);
    utimesSync(file, later, later);
    const k1 = await key();
    assert.notEqual(k1, k0, "a touched weight file changes the key");
    writeWeights(file, randomFloats(k * n, 99)); // new content, same size
    utimesSync(file, later, later);
    assert.equal(await key(), k1, "same size and mtime: the identity does not read the content");
    writeFileSync(file, new Uint8Array(offsets.b + n * 4 + 20));
    utimesSync(file, later, later);
    assert.notEqual(await key(), k1, "a resized weight file changes the key");
  });

  test("a changed weight file is a new entry with the new weights", async () => {
    const cache = path.join(root, "changed");
    const folder = path.join(root, "changed-weights");
    mkdirSync(folder);
    writeWeights(path.join(folder, "weights.bin"));
    const run = async () => {
      const s = await host.createSession(externalDataModel(k, n, "weights.bin", offsets), {
        externalDataFolder: folder,
        graphCache: cache,
      });
      const y = (await s.run({ x: float32Tensor(x, [m, k]) })).y!.data as Float32Array;
      await s.release();
      return { y, status: s.graphCache?.status };
    };
    const a = await run();
    const W2 = randomFloats(k * n, 5);
    writeWeights(path.join(folder, "weights.bin"), W2);
    const later = new Date(Date.now() + 10_000);
    utimesSync(path.join(folder, "weights.bin"), later, later);
    const b = await run();
    assert.deepEqual([a.status, b.status], ["miss", "miss"]);
    const ref2 = matMulRef(x, W2, m, k, n).map((v, i) => v + B[i % n]!);
    for (let i = 0; i < ref2.length; i++) assert.ok(Math.abs(b.y[i]! - ref2[i]!) < 1e-4, `y[${i}]`);
  });

  const corruptions: [string, (entry: string) => void, RegExp][] = [
    ["truncated weights", (e) => truncateSync(path.join(e, WEIGHTS_FILE), 100), /weights\.bin has 100 bytes/],
    ["missing weights", (e) => rmSync(path.join(e, WEIGHTS_FILE)), /weights\.bin is missing/],
    ["bad manifest", (e) => writeFileSync(path.join(e, MANIFEST_FILE), "{ not json"), /bad manifest/],
    ["no manifest", (e) => rmSync(path.join(e, MANIFEST_FILE)), /no manifest/],
    [
      "foreign manifest",
      (e) => {
        const mf = JSON.parse(readFileSync(path.join(e, MANIFEST_FILE), "utf8"));
        writeFileSync(path.join(e, MANIFEST_FILE), JSON.stringify({ ...mf, key: "0".repeat(64) }));
      },
      /does not match/,
    ],
    [
      "garbage model of the recorded size",
      (e) => {
        const size = readFileSync(path.join(e, MODEL_FILE)).length;
        writeFileSync(path.join(e, MODEL_FILE), new Uint8Array(size).fill(7));
      },
      /onnxruntime could not load it/,
    ],
  ];
  for (const [what, corrupt, reason] of corruptions) {
    test(`corrupt entry (${what}): rebuilt, replaced, then a hit`, async () => {
      const cache = path.join(root, `corrupt-${what.replace(/\W+/g, "-")}`);
      const { entry } = await createChecked(cache);
      corrupt(entry!);
      const again = await createChecked(cache);
      assert.equal(again.status, "replaced");
      assert.match(again.reason ?? "", reason);
      assert.equal(again.entry, entry);
      assert.equal((await createChecked(cache)).status, "hit");
      assert.deepEqual(readdirSync(cache), [path.basename(entry!)], "no temp or trash folders left");
    });
  }

  test("concurrent creations in two workers publish one whole entry", async () => {
    const cache = path.join(root, "concurrent");
    const hosts = [new RuntimeHost(), new RuntimeHost()];
    try {
      const sessions = await Promise.all(
        hosts.map((h) =>
          h.createSession(externalDataModel(k, n, "weights.bin", offsets), {
            name: "ext",
            externalDataFolder: weightsDir,
            graphCache: cache,
          }),
        ),
      );
      for (const s of sessions) assert.ok(["miss", "hit"].includes(s.graphCache?.status ?? ""));
      assert.deepEqual(readdirSync(cache).length, 1);
      assert.equal((await createChecked(cache)).status, "hit");
    } finally {
      await Promise.all(hosts.map((h) => h.close()));
    }
  });

  test("stale temp folders of dead processes are swept on a miss", async () => {
    const cache = path.join(root, "stale");
    const stale = path.join(cache, ".tmp-1-deadbeef");
    const fresh = path.join(cache, ".tmp-2-cafe");
    mkdirSync(stale, { recursive: true });
    mkdirSync(fresh);
    const old = new Date(Date.now() - 2 * 3600 * 1000);
    utimesSync(stale, old, old);
    await createChecked(cache);
    assert.ok(!existsSync(stale));
    assert.ok(existsSync(fresh), "a recent temp folder may belong to a running process");
  });

  test("bypassed when graph optimizations are disabled or a weight file is missing", async () => {
    const cache = path.join(root, "bypass");
    const r = await createChecked(cache, { graphOptimizationLevel: "disabled" });
    assert.equal(r.status, "bypassed");
    assert.deepEqual(readdirSync(cache), []);
    await assert.rejects(
      host.createSession(externalDataModel(k, n, "absent.bin", offsets), {
        name: "absent",
        externalDataFolder: weightsDir,
        graphCache: cache,
        logSeverityLevel: 4,
      }),
      (e: unknown) => e instanceof RuntimeError && e.code === "ORT_ERROR" && /absent\.bin/.test(e.message),
    );
  });

  test("bad option values are refused clearly", async () => {
    const model = externalDataModel(k, n, "weights.bin", offsets);
    const refuses = async (options: CreateSessionOptions, pattern: RegExp) => {
      await assert.rejects(
        host.createSession(model, { name: "bad", externalDataFolder: weightsDir, ...options }),
        (e: unknown) => e instanceof RuntimeError && e.code === "INVALID_OPTIONS" && pattern.test(e.message),
      );
    };
    await refuses({ graphCache: 42 as unknown as string }, /session "bad": graphCache must be .*got number/);
    await refuses({ graphCache: "" }, /graphCache must be a non-empty folder path or a boolean, got ""/);
    await refuses({ graphCache: " " }, /graphCache must be/);
    await refuses(
      { graphCache: path.join(root, "x"), optimizedModelFilePath: path.join(root, "o.onnx") },
      /graphCache and optimizedModelFilePath cannot be combined/,
    );
    await refuses(
      { graphCache: path.join(weightsDir, "weights.bin") },
      /graphCache folder ".*weights\.bin" cannot be used/,
    );
    const withCuda: BackendProbe = {
      backends: [
        { name: "cpu", bundled: true },
        { name: "cuda", bundled: true },
      ],
      hasProviderLibraries: () => true,
    };
    assert.throws(
      () => toOrtSessionOptions({ executionProvider: "cuda", graphCache: true }, { probe: withCuda }),
      /graphCache supports the cpu execution provider only, got "cuda"/,
    );
    assert.equal(toOrtSessionOptions({ graphCache: false }).optimizedModelFilePath, undefined);
  });

  test("folders: true = the default folder from the environment; strings resolve against the cwd", () => {
    assert.equal(defaultGraphCacheDir({ SDX4_CACHE_DIR: "/c/sdx4" }), "/c/sdx4/optimized-graphs");
    assert.equal(
      defaultGraphCacheDir({ SDX4_CACHE_DIR: "", XDG_CACHE_HOME: "/xdg" }),
      "/xdg/sdx4/optimized-graphs",
    );
    assert.match(defaultGraphCacheDir({ XDG_CACHE_HOME: "relative" }), /\.cache\/sdx4\/optimized-graphs$/);
    assert.equal(resolveGraphCacheOption(true, { SDX4_CACHE_DIR: "/c" }), "/c/optimized-graphs");
    assert.equal(resolveGraphCacheOption(undefined), undefined);
    assert.equal(resolveGraphCacheOption(false), undefined);
    assert.equal(resolveGraphCacheOption("rel/dir"), path.resolve("rel/dir"));
    assert.throws(
      () => resolveGraphCacheOption(1),
      /graphCache must be a folder path or a boolean, got number/,
    );
  });
});
