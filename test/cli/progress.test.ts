/** sdx4 progress off a terminal: one JSON object per line (steps, throttled downloads). */
import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { test } from "node:test";
import { createProgress } from "../../src/cli/progress.js";

function sink(): { stream: Writable; lines: () => Record<string, unknown>[] } {
  let text = "";
  const stream = new Writable({
    write(chunk, _enc, cb) {
      text += String(chunk);
      cb();
    },
  });
  return {
    stream,
    lines: () =>
      text
        .split("\n")
        .filter((l) => l !== "")
        .map((l) => JSON.parse(l)),
  };
}

test("steps: 1-based count, total, timestep, seconds since the run started", () => {
  let now = 1000;
  const out = sink();
  const p = createProgress({ stream: out.stream, tty: false, now: () => now });
  p.startRun(3);
  now = 2500;
  p.step({ step: 0, totalSteps: 3, timestep: 667 });
  now = 3000.4;
  p.step({ step: 2, totalSteps: 3, timestep: 1 });
  p.stop();
  assert.deepEqual(out.lines(), [
    { event: "step", step: 1, total: 3, timestep: 667, elapsed_s: 1.5 },
    { event: "step", step: 3, total: 3, timestep: 1, elapsed_s: 2 },
  ]);
});

test("downloads: at most one line a second per file, plus the completing one", () => {
  let now = 0;
  const out = sink();
  const p = createProgress({ stream: out.stream, tty: false, now: () => now });
  const d = (loaded: number) => ({ file: "unet/w.safetensors", loaded, total: 100, index: 1, count: 2 });
  p.download(d(10));
  now = 500;
  p.download(d(20)); // throttled
  now = 1200;
  p.download(d(30));
  now = 1300;
  p.download(d(100)); // complete: always reported
  p.download({ file: "vae/w.safetensors", loaded: 5, index: 2, count: 2 });
  assert.deepEqual(
    out.lines().map((l) => [l.event, l.file, l.loaded, l.total]),
    [
      ["download", "unet/w.safetensors", 10, 100],
      ["download", "unet/w.safetensors", 30, 100],
      ["download", "unet/w.safetensors", 100, 100],
      ["download", "vae/w.safetensors", 5, undefined],
    ],
  );
});
