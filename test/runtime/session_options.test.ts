import assert from "node:assert/strict";
import { describe, test } from "node:test";
import * as ort from "onnxruntime-node";
import {
  type BackendProbe,
  checkExecutionProvider,
  cudaInstallHint,
  defaultBackendProbe,
  EXTERNAL_DATA_FOLDER_KEY,
  ExecutionProviderUnavailableError,
  INTER_OP_SPINNING_KEY,
  INTRA_OP_SPINNING_KEY,
  toOrtSessionOptions,
} from "../../src/runtime/session_options.js";
import { addModel } from "./models.js";

const cpuOnly: BackendProbe = {
  backends: [{ name: "cpu", bundled: true }],
  hasProviderLibraries: () => true,
};
const linuxNoCudaLibs: BackendProbe = {
  backends: [
    { name: "cpu", bundled: true },
    { name: "webgpu", bundled: true },
    { name: "cuda", bundled: false },
  ],
  hasProviderLibraries: (ep) => ep !== "cuda",
};
const linuxWithCuda: BackendProbe = { ...linuxNoCudaLibs, hasProviderLibraries: () => true };

describe("toOrtSessionOptions", () => {
  test("defaults: cpu, all optimizations, spinning off, sequential", () => {
    const o = toOrtSessionOptions({}, { probe: cpuOnly });
    assert.deepEqual(o.executionProviders, ["cpu"]);
    assert.equal(o.graphOptimizationLevel, "all");
    assert.equal(o.executionMode, "sequential");
    assert.equal(o.interOpNumThreads, 1);
    assert.equal(o.intraOpNumThreads, undefined);
    assert.deepEqual(o.extra, { [INTRA_OP_SPINNING_KEY]: "0", [INTER_OP_SPINNING_KEY]: "0" });
  });

  test("maps every option", () => {
    const o = toOrtSessionOptions(
      {
        threads: 3,
        graphOptimizationLevel: "basic",
        optimizedModelFilePath: "/tmp/opt.onnx",
        enableProfiling: true,
        logSeverityLevel: 3,
      },
      { probe: cpuOnly, externalDataFolder: "/weights", logId: "unet" },
    );
    assert.equal(o.intraOpNumThreads, 3);
    assert.equal(o.graphOptimizationLevel, "basic");
    assert.equal(o.optimizedModelFilePath, "/tmp/opt.onnx");
    assert.equal(o.enableProfiling, true);
    assert.equal(o.profileFilePrefix, "onnxruntime_profile");
    assert.equal(o.logSeverityLevel, 3);
    assert.equal(o.logId, "unet");
    assert.equal((o.extra as Record<string, string>)[EXTERNAL_DATA_FOLDER_KEY], "/weights");
    assert.equal((o.extra as Record<string, string>)[INTRA_OP_SPINNING_KEY], "0");
    assert.equal(
      toOrtSessionOptions({ enableProfiling: true, profileFilePrefix: "p" }, { probe: cpuOnly })
        .profileFilePrefix,
      "p",
    );
  });

  test("result is structured-cloneable (it crosses the worker boundary)", () => {
    const o = toOrtSessionOptions({ threads: 2 }, { probe: cpuOnly, externalDataFolder: "/w" });
    assert.deepEqual(structuredClone(o), o);
  });

  test("memory: pattern off and arena on by default; both switchable", () => {
    const d = toOrtSessionOptions({}, { probe: cpuOnly });
    assert.equal(d.enableMemPattern, false);
    assert.equal(d.enableCpuMemArena, true);
    const o = toOrtSessionOptions({ memoryPattern: true, memoryArena: false }, { probe: cpuOnly });
    assert.equal(o.enableMemPattern, true);
    assert.equal(o.enableCpuMemArena, false);
    for (const key of ["memoryPattern", "memoryArena"] as const) {
      assert.throws(
        () => toOrtSessionOptions({ [key]: "no" as never }, { probe: cpuOnly }),
        new RegExp(`${key} must be a boolean, got no`),
      );
    }
  });

  test("memory options reach onnxruntime: a session runs with arena and pattern off or on", async () => {
    for (const [memoryPattern, memoryArena] of [
      [false, false],
      [true, true],
    ] as const) {
      const s = await ort.InferenceSession.create(
        addModel(),
        toOrtSessionOptions({ memoryPattern, memoryArena }, { probe: cpuOnly }),
      );
      const a = new ort.Tensor("float32", Float32Array.from([1, 2, 3, 4]), [2, 2]);
      for (let i = 0; i < 2; i++) {
        const out = await s.run({ a, b: a });
        assert.deepEqual([...(out.c as ort.Tensor).data], [2, 4, 6, 8]);
      }
      await s.release();
    }
  });

  test("threads must be a positive integer", () => {
    for (const threads of [0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, "2" as unknown as number]) {
      assert.throws(
        () => toOrtSessionOptions({ threads }, { probe: cpuOnly }),
        /threads must be a positive integer/,
      );
    }
  });

  test("other invalid values", () => {
    assert.throws(
      () => toOrtSessionOptions({ graphOptimizationLevel: "max" as never }, { probe: cpuOnly }),
      /graphOptimizationLevel must be one of disabled, basic, extended, all/,
    );
    assert.throws(
      () => toOrtSessionOptions({ logSeverityLevel: 7 as never }, { probe: cpuOnly }),
      /logSeverityLevel/,
    );
    assert.throws(
      () => toOrtSessionOptions({ executionProvider: "dml" as never }, { probe: cpuOnly }),
      /unknown execution provider "dml"/,
    );
  });
});

describe("checkExecutionProvider", () => {
  test("cpu is always fine; cuda/webgpu when present", () => {
    checkExecutionProvider("cpu", cpuOnly);
    checkExecutionProvider("cuda", linuxWithCuda);
    checkExecutionProvider("webgpu", linuxNoCudaLibs);
    assert.deepEqual(
      toOrtSessionOptions({ executionProvider: "cuda" }, { probe: linuxWithCuda }).executionProviders,
      ["cuda"],
    );
  });

  test("cuda compiled in but binaries not installed: explains how to opt in", () => {
    assert.throws(
      () => checkExecutionProvider("cuda", linuxNoCudaLibs),
      (e: unknown) => {
        assert.ok(e instanceof ExecutionProviderUnavailableError);
        assert.equal(e.executionProvider, "cuda");
        assert.match(e.message, /onnxruntime-node was installed without its cuda binaries/);
        assert.match(e.message, /ONNXRUNTIME_NODE_INSTALL=cuda12 npm rebuild onnxruntime-node/);
        assert.match(e.message, /Microsoft\.ML\.OnnxRuntime\.Gpu\.Linux/);
        return true;
      },
    );
  });

  test("cuda not compiled in (e.g. macOS builds)", () => {
    assert.throws(
      () => checkExecutionProvider("cuda", cpuOnly),
      /not supported by onnxruntime-node .*linux\/x64 only/,
    );
    assert.throws(() => checkExecutionProvider("webgpu", cpuOnly), /"webgpu" is not supported/);
  });

  test("the installed binary: matches its backend list and library files", () => {
    const probe = defaultBackendProbe();
    assert.deepEqual(probe.backends, ort.listSupportedBackends());
    const cuda = probe.backends.find((b) => b.name === "cuda");
    if (cuda && !cuda.bundled && !probe.hasProviderLibraries("cuda")) {
      assert.throws(
        () => toOrtSessionOptions({ executionProvider: "cuda" }),
        (e: unknown) =>
          e instanceof ExecutionProviderUnavailableError && e.message.includes(cudaInstallHint()),
      );
    } else if (!cuda) {
      assert.throws(
        () => toOrtSessionOptions({ executionProvider: "cuda" }),
        ExecutionProviderUnavailableError,
      );
    } else {
      toOrtSessionOptions({ executionProvider: "cuda" });
    }
  });
});
