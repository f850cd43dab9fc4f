#!/usr/bin/env node
/**
 * The `sdx4` executable: parse (args.ts), check inputs and outputs, run (run.ts), report.
 *
 * Exit codes: 0 success; 1 failure (model loading, runtime, unexpected errors); 2 usage error (bad flag value,
 * wrong counts, unreadable input image, unknown scheduler, model-dependent limits such as --noise-level above the
 * model's max_noise_level); 130 interrupted (Ctrl-C). Messages go to stderr without a stack trace; SDX4_DEBUG=1
 * prints it.
 *
 * Ctrl-C: while the model loads, the runtime is closed and the process exits; while it runs, the pipeline is
 * aborted between steps through its AbortSignal, the runtime host is closed (waiting for the model run in
 * progress: killing the worker mid-run would abort the process), and nothing is written. While the outputs are
 * being written, the writes finish. A second Ctrl-C exits at once.
 */
import { readFileSync } from "node:fs";
import { RuntimeHost } from "../runtime/worker_host.js";
import { parseCli } from "./args.js";
import { debugEnabled, EXIT_INTERRUPTED, EXIT_OK, exitCodeOf, formatError } from "./errors.js";
import { untiledDecodeNote } from "./memory_note.js";
import { createProgress } from "./progress.js";

function readVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8"));
    return typeof pkg.version === "string" ? pkg.version : "0.0.0";
  } catch {
    return "0.0.0";
  }
}

function report(e: unknown): number {
  process.stderr.write(formatError(e, debugEnabled()));
  return exitCodeOf(e);
}

async function main(argv: string[]): Promise<number> {
  let cmd: ReturnType<typeof parseCli>;
  try {
    cmd = parseCli(argv, { version: readVersion() });
  } catch (e) {
    return report(e);
  }
  if (cmd.kind === "print") {
    (cmd.stream === "stdout" ? process.stdout : process.stderr).write(cmd.text);
    return cmd.exitCode;
  }
  const plan = cmd.plan;
  // Offload frees each model after its stage; glibc hands that memory back only with a fixed mmap threshold, which
  // must be set before the process starts: run in a child process that has it (malloc_relaunch.ts).
  if (plan.modelOffload) {
    const m = await import("./malloc_relaunch.js");
    if (m.shouldRelaunch(process.env, m.runsOnGlibc())) return m.relaunchWithMmapThreshold();
  }
  // Loaded only now, so that --help and usage errors do not load the pipeline's modules.
  const { preflight, runUpscale } = await import("./run.js");
  let images: Awaited<ReturnType<typeof preflight>>;
  try {
    images = await preflight(plan);
  } catch (e) {
    return report(e);
  }

  const note = untiledDecodeNote(plan, images);
  if (note !== undefined) process.stderr.write(note);

  const progress = createProgress({ stream: process.stderr, tty: process.stderr.isTTY === true });
  const controller = new AbortController();
  const runtime = new RuntimeHost();
  let phase: "load" | "run" | "write" = "load";
  let interrupts = 0;
  const onSigint = () => {
    interrupts++;
    progress.stop();
    if (interrupts > 1) {
      // process.exit() during a native run aborts (SIGABRT); dying of SIGINT itself is clean and gives 130.
      process.stderr.write("sdx4: interrupted again; exiting now\n");
      process.off("SIGINT", onSigint);
      process.kill(process.pid, "SIGINT");
      return;
    }
    if (phase === "write") {
      process.stderr.write("sdx4: interrupted; finishing the output files being written\n");
      return;
    }
    process.stderr.write("sdx4: interrupted; stopping (Ctrl-C again to exit at once)\n");
    controller.abort(new Error("interrupted (SIGINT)"));
    if (phase === "load") {
      // Loading cannot be cancelled step by step: close the runtime (after any session creation in progress).
      void runtime.close().finally(() => process.exit(EXIT_INTERRUPTED));
    }
  };
  process.on("SIGINT", onSigint);
  try {
    const summary = await runUpscale(plan, images, {
      runtime,
      progress,
      signal: controller.signal,
      onPhase: (p) => {
        phase = p;
      },
    });
    process.stdout.write(plan.json ? `${JSON.stringify(summary)}\n` : `${summary.outputs.join("\n")}\n`);
    return EXIT_OK;
  } catch (e) {
    progress.stop();
    if (controller.signal.aborted) {
      process.stderr.write("sdx4: interrupted; no output was written\n");
      return EXIT_INTERRUPTED;
    }
    return report(e);
  } finally {
    await runtime.close();
  }
}

process.stdout.on("error", (e: NodeJS.ErrnoException) => {
  if (e.code !== "EPIPE") throw e;
});
const code = await main(process.argv.slice(2));
process.exitCode = code;
// Everything is closed by now; should anything still hold the event loop, do not hang.
setTimeout(() => process.exit(code), 2000).unref();
