/** Spawning the sdx4 CLI (`node --import tsx src/cli/main.ts`) in tests, offline, with its output collected. */
import { type ChildProcess, spawn } from "node:child_process";
import { join } from "node:path";
import { FIXTURES, REPO_ROOT } from "./fixtures.js";

export const MAIN = join(REPO_ROOT, "src/cli/main.ts");
export const TINY = join(FIXTURES, "models/tiny-upscaler");
export const CAT = join(REPO_ROOT, "examples/cat.png");

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface RunCliOptions {
  /** Environment variables removed from the child's environment (HF_HUB_OFFLINE=1 is always set). */
  unsetEnv?: readonly string[];
  /** Called with the whole stderr so far after each chunk (e.g. to send a signal once a step was reported). */
  onStderr?: (all: string, child: ChildProcess) => void;
}

export function runCli(args: string[], options: RunCliOptions = {}): Promise<CliResult> {
  const env: NodeJS.ProcessEnv = { ...process.env, HF_HUB_OFFLINE: "1" };
  for (const k of options.unsetEnv ?? []) delete env[k];
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", MAIN, ...args], {
      cwd: REPO_ROOT,
      env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => {
      stdout += d;
    });
    child.stderr.on("data", (d) => {
      stderr += d;
      options.onStderr?.(stderr, child);
    });
    child.on("error", reject);
    child.on("close", (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}
