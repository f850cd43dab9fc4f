/**
 * The point of the worker host: a long onnxruntime run must not block the main thread's event loop.
 * A MatMul chain calibrated to take about 2.5 s runs through the worker host while the main thread's event-loop
 * delay is measured; the same measurement around an in-process run shows the blocking it avoids.
 */
import assert from "node:assert/strict";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { after, before, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { RuntimeHost } from "../../src/runtime/worker_host.js";
import { chainFeeds, matMulChainModel, timedChain } from "./models.js";

interface Measured {
  runMs: number;
  /** monitorEventLoopDelay's max, in ms. */
  maxDelayMs: number;
  /** Largest lateness of a 5 ms setInterval, in ms. */
  maxDriftMs: number;
}

async function measure(run: () => Promise<unknown>): Promise<Measured> {
  const histogram = monitorEventLoopDelay({ resolution: 5 });
  let last = performance.now();
  let maxDriftMs = 0;
  const timer = setInterval(() => {
    const now = performance.now();
    maxDriftMs = Math.max(maxDriftMs, now - last - 5);
    last = now;
  }, 5);
  histogram.enable();
  // The histogram records the gap between two of its timer ticks: let it tick before the run starts.
  await sleep(30);
  const t0 = performance.now();
  let runMs = 0;
  try {
    await run();
    runMs = performance.now() - t0;
    // Let the timers fire once more so that a block that ended with the run gets recorded.
    await sleep(30);
  } finally {
    histogram.disable();
    clearInterval(timer);
  }
  return { runMs, maxDelayMs: histogram.max / 1e6, maxDriftMs };
}

describe("event loop", () => {
  let chain: { model: Uint8Array; count: number };
  const hosts: RuntimeHost[] = [];
  before(async () => {
    chain = await timedChain(2500);
  });
  after(() => Promise.all(hosts.map((h) => h.close())));

  test("a >= 1.5 s run in the worker host keeps the main thread's event-loop delay < 50 ms", async (t) => {
    // On a shared, overloaded machine the OS alone can deschedule the main thread for tens of ms, so an
    // attempt over the bound is retried (fresh host); every attempt is reported. A run that came out shorter
    // than 1.5 s (calibrated under a different load) is redone with a longer chain.
    const attempts: Measured[] = [];
    for (let attempt = 0; attempt < 5 && attempts.length < 3; attempt++) {
      const host = new RuntimeHost();
      hosts.push(host);
      const feeds = chainFeeds();
      let runMs = 0;
      // Worker start-up and session creation happen off the main thread too; measured along with the run.
      const m = await measure(async () => {
        const s = await host.createSession(chain.model, { name: "chain", threads: 1 });
        const t0 = performance.now();
        await s.run(feeds);
        runMs = performance.now() - t0;
      });
      await host.close();
      t.diagnostic(
        `worker attempt ${attempt + 1}: ${chain.count} MatMuls 512x512, run ${runMs.toFixed(0)} ms, ` +
          `create+run ${m.runMs.toFixed(0)} ms, max event-loop delay ${m.maxDelayMs.toFixed(1)} ms, ` +
          `max 5 ms-interval drift ${m.maxDriftMs.toFixed(1)} ms`,
      );
      if (runMs < 1500) {
        const count = Math.ceil((chain.count * 2500) / runMs);
        chain = { model: matMulChainModel(512, count), count };
        continue;
      }
      attempts.push(m);
      if (m.maxDelayMs < 50 && m.maxDriftMs < 50) return;
    }
    assert.ok(attempts.length > 0, "no run reached 1.5 s");
    const best = Math.min(...attempts.map((m) => Math.max(m.maxDelayMs, m.maxDriftMs)));
    assert.fail(`main-thread event-loop delay stayed >= 50 ms in every attempt (best ${best.toFixed(1)} ms)`);
  });

  test("contrast: the same kind of run in-process blocks the event loop for its whole duration", async (t) => {
    const host = new RuntimeHost({ inProcess: true });
    hosts.push(host);
    const short = await timedChain(500);
    const s = await host.createSession(short.model, { name: "chain-inprocess", threads: 1 });
    const feeds = chainFeeds();
    const m = await measure(() => s.run(feeds));
    t.diagnostic(
      `in-process: run ${m.runMs.toFixed(0)} ms, max event-loop delay ${m.maxDelayMs.toFixed(1)} ms, ` +
        `max interval drift ${m.maxDriftMs.toFixed(1)} ms`,
    );
    assert.ok(
      m.maxDelayMs > m.runMs * 0.5,
      `max delay ${m.maxDelayMs.toFixed(1)} ms for a ${m.runMs.toFixed(0)} ms run`,
    );
  });
});
