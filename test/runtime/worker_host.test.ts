import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { RuntimeError } from "../../src/runtime/errors.js";
import { float32Tensor, type HostTensor, int64Tensor } from "../../src/runtime/host_tensor.js";
import { defaultBackendProbe } from "../../src/runtime/session_options.js";
import { defaultRuntimeHost, RuntimeHost } from "../../src/runtime/worker_host.js";
import { addModel, chainFeeds, matMulModel, matMulRef, randomFloats, timedChain } from "./models.js";

/** Quiet onnxruntime's own error log lines for tests that provoke errors on purpose. */
const quiet = { logSeverityLevel: 4 } as const;

function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, tol = 1e-4): void {
  assert.equal(actual.length, expected.length);
  for (let i = 0; i < expected.length; i++) {
    const d = Math.abs(actual[i]! - expected[i]!);
    assert.ok(d <= tol * (1 + Math.abs(expected[i]!)), `element ${i}: ${actual[i]} vs ${expected[i]}`);
  }
}

async function rejectsWith(p: Promise<unknown>, code: string, pattern: RegExp): Promise<RuntimeError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof RuntimeError, `expected a RuntimeError, got ${e}`);
    assert.equal(e.code, code, e.message);
    assert.match(e.message, pattern);
    return e;
  }
  assert.fail("expected a rejection");
}

for (const inProcess of [false, true]) {
  describe(`RuntimeHost (${inProcess ? "in-process" : "worker"})`, () => {
    let host: RuntimeHost;
    before(() => {
      host = new RuntimeHost({ inProcess });
    });
    after(() => host.close());

    test("Add: names, metadata and values", async () => {
      const s = await host.createSession(addModel(), { name: "add", threads: 1 });
      assert.deepEqual(s.inputNames, ["a", "b"]);
      assert.deepEqual(s.outputNames, ["c"]);
      assert.deepEqual(s.inputs[0], { name: "a", isTensor: true, type: "float32", shape: [2, "n"] });
      const a = randomFloats(6, 1);
      const b = randomFloats(6, 2);
      const { c } = await s.run({ a: float32Tensor(a, [2, 3]), b: float32Tensor(b, [2, 3]) });
      assert.equal(c?.type, "float32");
      assert.deepEqual(c?.dims, [2, 3]);
      assertClose(
        c!.data as Float32Array,
        a.map((v, i) => v + b[i]!),
      );
      assert.deepEqual([...a], [...randomFloats(6, 1)], "inputs are left intact");
      await s.release();
    });

    test("MatMul + int64, all outputs and a subset", async () => {
      const s = await host.createSession(matMulModel(), { name: "matmul" });
      const [m, k, n] = [3, 5, 4];
      const x = randomFloats(m * k, 3);
      const w = randomFloats(k * n, 4);
      const feeds = {
        x: float32Tensor(x, [m, k]),
        w: float32Tensor(w, [k, n]),
        count: int64Tensor([41], []),
      };
      const out = await s.run(feeds);
      const ref = matMulRef(x, w, m, k, n);
      assert.deepEqual(Object.keys(out).sort(), ["count_plus_one", "y", "z"]);
      assertClose(out.y!.data as Float32Array, ref);
      assertClose(
        out.z!.data as Float32Array,
        ref.map((v) => 2 * v),
      );
      assert.deepEqual(out.count_plus_one, { type: "int64", dims: [], data: new BigInt64Array([42n]) });

      const only = await s.run(feeds, { outputs: ["z"] });
      assert.deepEqual(Object.keys(only), ["z"]);
      assertClose(
        only.z!.data as Float32Array,
        ref.map((v) => 2 * v),
      );
      await s.release();
    });

    test("bad feeds are rejected on the calling thread with clear messages", async () => {
      const s = await host.createSession(addModel(), { name: "adder", ...quiet });
      const a = float32Tensor([1, 2, 3, 4], [2, 2]);
      await rejectsWith(
        s.run({ a }),
        "INVALID_FEEDS",
        /session "adder": .*missing input\(s\) "b"; the session's inputs are "a", "b"/,
      );
      await rejectsWith(s.run({ a, b: a, extra: a }), "INVALID_FEEDS", /unexpected input\(s\) "extra"/);
      await rejectsWith(
        s.run({ a, b: int64Tensor([1, 2, 3, 4], [2, 2]) }),
        "INVALID_FEEDS",
        /input "b": expected float32\[2, n\], got int64\[2, 2\] \(wrong element type\)/,
      );
      await rejectsWith(s.run({ a, b: float32Tensor([1, 2, 3, 4], [4]) }), "INVALID_FEEDS", /wrong rank/);
      await rejectsWith(
        s.run({ a, b: float32Tensor([1, 2, 3, 4], [1, 4]) }),
        "INVALID_FEEDS",
        /dim 0 differs/,
      );
      const broken = { type: "float32", dims: [2, 2], data: new Float32Array(3) } as HostTensor;
      await rejectsWith(s.run({ a, b: broken }), "INVALID_FEEDS", /input "b": data has 3 elements/);
      await rejectsWith(
        s.run({ a, b: a }, { outputs: ["nope"] }),
        "INVALID_FEEDS",
        /unknown output\(s\) "nope"/,
      );
      await rejectsWith(s.run(null as never), "INVALID_FEEDS", /feeds must be an object/);

      // Passes the declared-shape checks but onnxruntime refuses it (symbolic n differs between a and b).
      const e = await rejectsWith(
        s.run({ a, b: float32Tensor([1, 2, 3, 4, 5, 6], [2, 3]) }),
        "ORT_ERROR",
        /session "adder": run failed: .*broadcast/,
      );
      assert.ok(e.cause, "the onnxruntime error is kept as cause");
      // The session is still usable afterwards.
      const { c } = await s.run({ a, b: a });
      assert.deepEqual([...(c!.data as Float32Array)], [2, 4, 6, 8]);
      await s.release();
    });

    test("bad model bytes", async () => {
      await rejectsWith(
        host.createSession(new Uint8Array([8, 1, 2, 3, 0xff, 0xff, 7]), { name: "garbage", ...quiet }),
        "ORT_ERROR",
        /session "garbage": cannot create the session: .*protobuf parsing failed/,
      );
      await rejectsWith(
        host.createSession(new Uint8Array(0), { name: "empty" }),
        "INVALID_OPTIONS",
        /non-empty Uint8Array/,
      );
      await rejectsWith(
        host.createSession(addModel(), { name: "t", threads: 0 }),
        "INVALID_OPTIONS",
        /session "t": threads must be a positive integer/,
      );
      await rejectsWith(
        host.createSession(addModel(), { name: "nofolder", externalDataFolder: "/definitely/not/here" }),
        "INVALID_OPTIONS",
        /externalDataFolder "\/definitely\/not\/here" cannot be resolved/,
      );
    });

    test("cuda request when the installed onnxruntime-node has no CUDA binaries", async (t) => {
      const probe = defaultBackendProbe();
      if (probe.hasProviderLibraries("cuda") && probe.backends.some((b) => b.name === "cuda")) {
        t.skip("CUDA binaries are installed here");
        return;
      }
      const e = await rejectsWith(
        host.createSession(addModel(), { name: "gpu", executionProvider: "cuda" }),
        "EP_UNAVAILABLE",
        /session "gpu": execution provider "cuda" was requested, but onnxruntime-node was installed without/,
      );
      assert.match(e.message, /ONNXRUNTIME_NODE_INSTALL=cuda12 npm rebuild onnxruntime-node/);
    });

    test("released sessions reject; release is idempotent", async () => {
      const s = await host.createSession(addModel(), { name: "gone" });
      await s.release();
      await s.release();
      assert.equal(s.isReleased, true);
      const a = float32Tensor([1, 2], [2, 1]);
      await rejectsWith(s.run({ a, b: a }), "RELEASED", /session "gone" has been released/);
    });

    test("an already aborted signal rejects before running", async () => {
      const s = await host.createSession(addModel(), { name: "abort0" });
      const a = float32Tensor([1, 2], [2, 1]);
      const controller = new AbortController();
      controller.abort(new Error("stop it"));
      await assert.rejects(s.run({ a, b: a }, { signal: controller.signal }), /stop it/);
      await assert.rejects(s.run({ a, b: a }, { signal: AbortSignal.abort() }), { name: "AbortError" });
      await s.release();
    });
  });
}

describe("RuntimeHost worker specifics", () => {
  let chain: { model: Uint8Array; count: number };
  before(async () => {
    chain = await timedChain(600);
  });

  test("a run aborted while executing rejects when the run returns", async () => {
    const host = new RuntimeHost();
    try {
      const s = await host.createSession(chain.model, { name: "chain", threads: 1 });
      const feeds = chainFeeds();
      const t0 = performance.now();
      await s.run(feeds);
      const runMs = performance.now() - t0;

      const controller = new AbortController();
      const started = performance.now();
      setTimeout(() => controller.abort(), Math.min(100, runMs / 4));
      await assert.rejects(s.run(feeds, { signal: controller.signal }), { name: "AbortError" });
      const waited = performance.now() - started;
      assert.ok(
        waited > runMs * 0.6,
        `rejected after ${waited.toFixed(0)} ms, the run takes ${runMs.toFixed(0)} ms`,
      );
    } finally {
      await host.close();
    }
  });

  test("a run aborted while queued behind another is skipped", async () => {
    const host = new RuntimeHost();
    try {
      const s = await host.createSession(chain.model, { name: "chain", threads: 1 });
      const feeds = chainFeeds();
      await s.run(feeds); // warm-up
      const t0 = performance.now();
      const first = s.run(feeds).then(() => performance.now() - t0);
      const controller = new AbortController();
      const second = s.run(feeds, { signal: controller.signal });
      setTimeout(() => controller.abort(), 20);
      await assert.rejects(second, { name: "AbortError" });
      const secondMs = performance.now() - t0;
      const firstMs = await first;
      // Had the second run executed, it would have ended about one run-time after the first.
      assert.ok(
        secondMs < firstMs * 1.5,
        `second rejected at ${secondMs.toFixed(0)} ms, first ran ${firstMs.toFixed(0)} ms`,
      );
    } finally {
      await host.close();
    }
  });

  test("transferInputs moves whole-buffer inputs; the default copies", async () => {
    const host = new RuntimeHost();
    try {
      const s = await host.createSession(addModel(), { name: "add" });
      const a = float32Tensor([1, 2, 3, 4], [2, 2]);
      const big = new Float32Array(8).fill(5);
      const b = float32Tensor(big.subarray(4), [2, 2]); // a view: copied even with transferInputs
      const { c } = await s.run({ a, b }, { transferInputs: true });
      assert.deepEqual([...(c!.data as Float32Array)], [6, 7, 8, 9]);
      assert.equal(a.data.length, 0, "a's buffer was transferred (detached)");
      assert.equal(b.data.length, 4, "b's view was copied");
    } finally {
      await host.close();
    }
  });

  test("a worker crash rejects all pending calls; the next createSession starts a new worker", async () => {
    const host = new RuntimeHost();
    try {
      const s = await host.createSession(chain.model, { name: "victim", threads: 1 });
      const crash = assert.rejects(
        host.simulateWorkerCrash(),
        /runtime worker crashed: simulated session worker crash/,
      );
      const pendingRun = rejectsWith(
        s.run(chainFeeds()),
        "WORKER_GONE",
        /session "victim": run failed: the runtime worker crashed/,
      );
      await crash;
      await pendingRun;
      await rejectsWith(s.run(chainFeeds()), "WORKER_GONE", /session "victim" is no longer available/);
      await s.release(); // no-op on a lost session

      const fresh = await host.createSession(addModel(), { name: "fresh" });
      const a = float32Tensor([1, 2], [2, 1]);
      const { c } = await fresh.run({ a, b: a });
      assert.deepEqual([...(c!.data as Float32Array)], [2, 4]);
    } finally {
      await host.close();
    }
  });

  test("close() during a run: pending calls reject at once, the worker exits after the run", async () => {
    // Terminating the worker during a native run would abort the whole process; close() must not.
    const host = new RuntimeHost();
    const s = await host.createSession(chain.model, { name: "closing", threads: 1 });
    const t0 = performance.now();
    const pending = rejectsWith(
      s.run(chainFeeds()),
      "CLOSED",
      /session "closing": run failed: the runtime host was closed/,
    ).then(() => performance.now() - t0);
    const queued = rejectsWith(s.run(chainFeeds()), "CLOSED", /runtime host was closed/);
    await new Promise((r) => setTimeout(r, 50));
    const closing = host.close().then(() => performance.now() - t0);
    const [rejectedAt, closedAt] = await Promise.all([pending, closing]);
    await queued;
    assert.ok(rejectedAt < closedAt, `rejected at ${rejectedAt} ms, closed at ${closedAt} ms`);
    await rejectsWith(
      host.createSession(addModel(), { name: "late" }),
      "CLOSED",
      /session "late": the runtime host is closed/,
    );
    await rejectsWith(s.run(chainFeeds()), "CLOSED", /session "closing" is no longer available/);
    await host.close();
  });

  test("session options reach onnxruntime in the worker (profile and optimized model files)", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "sdx4-runtime-opts-"));
    const host = new RuntimeHost();
    try {
      const s = await host.createSession(addModel(), {
        name: "opts",
        threads: 2,
        graphOptimizationLevel: "extended",
        enableProfiling: true,
        profileFilePrefix: path.join(dir, "add"),
        optimizedModelFilePath: path.join(dir, "optimized.onnx"),
        logSeverityLevel: 3,
      });
      const a = float32Tensor([1, 2], [2, 1]);
      await s.run({ a, b: a });
      await s.release();
      const files = readdirSync(dir);
      assert.ok(files.includes("optimized.onnx"), files.join(", "));
      assert.ok(
        files.some((f) => /^add_.*\.json$/.test(f)),
        files.join(", "),
      );
    } finally {
      await host.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("defaultRuntimeHost is a process-wide worker host, renewed after close", async () => {
    const h = defaultRuntimeHost();
    assert.equal(defaultRuntimeHost(), h);
    assert.equal(h.inProcess, false);
    await h.close();
    const h2 = defaultRuntimeHost();
    assert.notEqual(h2, h);
    await h2.close();
  });

  test("several hosts run side by side", async () => {
    const hosts = [new RuntimeHost(), new RuntimeHost(), new RuntimeHost({ inProcess: true })];
    try {
      const results = await Promise.all(
        hosts.map(async (h, i) => {
          const s = await h.createSession(addModel(), { name: `add${i}` });
          const a = float32Tensor([i, i], [2, 1]);
          return (await s.run({ a, b: a })).c!.data as Float32Array;
        }),
      );
      assert.deepEqual(
        results.map((r) => [...r]),
        [
          [0, 0],
          [2, 2],
          [4, 4],
        ],
      );
    } finally {
      await Promise.all(hosts.map((h) => h.close()));
    }
  });
});
