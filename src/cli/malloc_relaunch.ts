/**
 * Model offload (the CLI's default) on Linux with glibc: run the CLI once more in a child process with a fixed malloc
 * mmap threshold.
 *
 * Why: glibc raises its mmap threshold dynamically (up to 32 MiB) once a large block has been freed, so the
 * text encoder's and the UNet's weights (many 0.25-32 MiB tensors) land in malloc's heaps. When model offload
 * releases a session, glibc keeps those heaps (measured: 1.4 GB of text-encoder memory still resident after its
 * release); the next model reuses only part of it. A fixed threshold (which also turns the dynamic adjustment off)
 * makes every block from 256 KiB up its own mapping, handed back to the system on free: 128² -> 512² peaks at
 * 2.6 GB instead of 3.0 GB, with no measurable speed cost (onnxruntime's arena serves activations from a few large
 * regions either way). glibc reads the setting only at process start, hence the child process. Outputs are
 * unaffected (allocation placement only).
 *
 * The child runs in its own session (setsid), so that a terminal's Ctrl-C reaches it once, forwarded by this
 * process, and the CLI's Ctrl-C handling (first: stop between steps; second: exit at once) is unchanged. Its exit
 * code, or the signal it died of, becomes this process's.
 */
import { spawn } from "node:child_process";

export const MMAP_THRESHOLD_VAR = "MALLOC_MMAP_THRESHOLD_";
/** 256 KiB: tensors above it are mapped on their own; small allocations keep malloc's fast heaps. */
export const MMAP_THRESHOLD_BYTES = 262144;
/** Set in the child: never relaunch twice. */
export const RELAUNCHED_VAR = "SDX4_MALLOC_RELAUNCHED";

/** Whether this process runs on glibc (Node's diagnostic report names the glibc runtime version only there). */
export function runsOnGlibc(): boolean {
  if (process.platform !== "linux") return false;
  const report = process.report?.getReport() as { header?: { glibcVersionRuntime?: unknown } } | undefined;
  return typeof report?.header?.glibcVersionRuntime === "string";
}

/**
 * Whether to relaunch: glibc, and neither the threshold nor a glibc tunable for it set by the user (their choice
 * wins), and not already relaunched.
 */
export function shouldRelaunch(env: NodeJS.ProcessEnv, glibc: boolean): boolean {
  if (!glibc || env[RELAUNCHED_VAR] !== undefined || env[MMAP_THRESHOLD_VAR] !== undefined) return false;
  return !/glibc\.malloc\.mmap_threshold=/.test(env.GLIBC_TUNABLES ?? "");
}

const FORWARDED: readonly NodeJS.Signals[] = ["SIGINT", "SIGTERM", "SIGHUP"];

/**
 * Runs this script again (same node, node options and arguments) with the threshold set; resolves to the child's
 * exit code. If the child dies of a signal, this process re-raises it on itself (so a shell sees 130 after
 * Ctrl-C), and the promise never resolves.
 */
export function relaunchWithMmapThreshold(): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...process.execArgv, ...process.argv.slice(1)], {
      stdio: "inherit",
      detached: true,
      env: { ...process.env, [MMAP_THRESHOLD_VAR]: String(MMAP_THRESHOLD_BYTES), [RELAUNCHED_VAR]: "1" },
    });
    const forward = (signal: NodeJS.Signals) => {
      child.kill(signal);
    };
    for (const s of FORWARDED) process.on(s, forward);
    child.on("error", (e) => {
      for (const s of FORWARDED) process.off(s, forward);
      reject(e);
    });
    child.on("exit", (code, signal) => {
      for (const s of FORWARDED) process.off(s, forward);
      if (signal) {
        process.kill(process.pid, signal);
        return;
      }
      resolve(code ?? 1);
    });
  });
}
