import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

test("an idle worker host never keeps the process alive; a pending run does", async () => {
  const script = fileURLToPath(new URL("./fixtures/idle_host_child.ts", import.meta.url));
  const root = fileURLToPath(new URL("../..", import.meta.url));
  const t0 = performance.now();
  const { code, stdout, stderr } = await new Promise<{ code: number | null; stdout: string; stderr: string }>(
    (resolve) => {
      const child = execFile(
        process.execPath,
        ["--import", "tsx", script],
        { cwd: root, timeout: 60_000 },
        (_err, stdout, stderr) => resolve({ code: child.exitCode, stdout, stderr }),
      );
    },
  );
  const ms = performance.now() - t0;
  assert.equal(code, 0, `child exit code ${code} after ${ms.toFixed(0)} ms; stderr: ${stderr}`);
  assert.equal(stdout.trim(), "[2,4,6,8]");
});
