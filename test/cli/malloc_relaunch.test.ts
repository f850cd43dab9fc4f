/**
 * --model-offload / --low-memory on glibc: the CLI reruns itself with a fixed malloc mmap threshold. The decision
 * rule, and end to end on the tiny model: the child really has the setting, outputs and exit codes pass through,
 * and Ctrl-C still stops the run with 130.
 */
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import {
  MMAP_THRESHOLD_BYTES,
  MMAP_THRESHOLD_VAR,
  RELAUNCHED_VAR,
  runsOnGlibc,
  shouldRelaunch,
} from "../../src/cli/malloc_relaunch.js";
import { CAT, runCli, TINY } from "../helpers/cli.js";

describe("shouldRelaunch", () => {
  test("glibc without the setting: yes; otherwise no", () => {
    assert.equal(shouldRelaunch({}, true), true);
    assert.equal(shouldRelaunch({ GLIBC_TUNABLES: "glibc.malloc.arena_max=2" }, true), true);
    assert.equal(shouldRelaunch({}, false), false, "not glibc (macOS, Windows, musl)");
    assert.equal(shouldRelaunch({ [MMAP_THRESHOLD_VAR]: "1048576" }, true), false, "the user's value wins");
    assert.equal(shouldRelaunch({ GLIBC_TUNABLES: "glibc.malloc.mmap_threshold=65536" }, true), false);
    assert.equal(shouldRelaunch({ [RELAUNCHED_VAR]: "1" }, true), false, "never twice");
  });

  test("runsOnGlibc agrees with Node's report", () => {
    const header = (process.report.getReport() as { header: { glibcVersionRuntime?: string } }).header;
    assert.equal(runsOnGlibc(), process.platform === "linux" && header.glibcVersionRuntime !== undefined);
  });
});

const work = mkdtempSync(join(tmpdir(), "sdx4-relaunch-"));
after(() => rmSync(work, { recursive: true, force: true }));

/** The environment of a process's first child (Linux /proc). */
function childEnv(pid: number): string[] {
  const kids = readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(/\s+/);
  return readFileSync(`/proc/${kids[0]}/environ`, "utf8").split("\0");
}

describe("sdx4 upscale --low-memory (tiny model)", { skip: !runsOnGlibc() && "needs glibc" }, () => {
  function run(args: string[], onStep?: (pid: number) => void) {
    let stepped = false;
    return runCli(args, {
      unsetEnv: [MMAP_THRESHOLD_VAR, RELAUNCHED_VAR, "GLIBC_TUNABLES"],
      onStderr: (all, child) => {
        if (!stepped && all.includes('"event":"step"')) {
          stepped = true;
          onStep?.(child.pid as number);
        }
      },
    });
  }

  test("runs in a child with the threshold set; output and exit code pass through", async () => {
    const out = join(work, "cat-x4.png");
    let env: string[] = [];
    const r = await run(
      ["upscale", CAT, "-o", out, "--model", TINY, "--steps", "3", "--seed", "0", "--low-memory"],
      (pid) => {
        env = childEnv(pid);
      },
    );
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `${out}\n`);
    assert.ok(existsSync(out));
    assert.ok(env.includes(`${MMAP_THRESHOLD_VAR}=${MMAP_THRESHOLD_BYTES}`), env.join(" "));
  });

  test("Ctrl-C to the CLI reaches the run: exit 130, nothing written", async () => {
    const out = join(work, "x.png");
    const r = await run(
      ["upscale", CAT, "-o", out, "--model", TINY, "--steps", "500", "--model-offload"],
      (pid) => process.kill(pid, "SIGINT"),
    );
    assert.equal(r.code, 130, r.stderr);
    assert.match(r.stderr, /interrupted; no output was written/);
    assert.ok(!existsSync(out));
  });

  test("a usage error in the child: exit 2", async () => {
    const r = await run(["upscale", join(work, "missing.png"), "-o", join(work, "y.png"), "--low-memory"]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /missing\.png/);
  });
});
