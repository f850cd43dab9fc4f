/**
 * Model offload (the CLI's default, and --low-memory's) on glibc: the CLI reruns itself with a fixed malloc mmap
 * threshold. The decision rule, and end to end on the tiny model: the child really has the setting, outputs and exit
 * codes pass through, Ctrl-C still stops the run with 130, and --no-model-offload runs in the process itself.
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

/** A process's child processes (Linux /proc). */
function children(pid: number): string[] {
  return readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(/\s+/).filter(Boolean);
}

/** The environment of a process's first child. */
function childEnv(pid: number): string[] {
  return readFileSync(`/proc/${children(pid)[0]}/environ`, "utf8").split("\0");
}

describe("sdx4 upscale with model offload (tiny model)", { skip: !runsOnGlibc() && "needs glibc" }, () => {
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

  test("offload is the default: a plain run relaunches too; --no-model-offload does not", async () => {
    let env: string[] = [];
    const plain = await run(
      ["upscale", CAT, "-o", join(work, "plain.png"), "--model", TINY, "--steps", "2", "--seed", "0"],
      (pid) => {
        env = childEnv(pid);
      },
    );
    assert.equal(plain.code, 0, plain.stderr);
    assert.ok(env.includes(`${MMAP_THRESHOLD_VAR}=${MMAP_THRESHOLD_BYTES}`), env.join(" "));
    let kids: string[] | undefined;
    const kept = join(work, "kept.png");
    const r = await run(
      ["upscale", CAT, "-o", kept, "--model", TINY, "--steps", "2", "--seed", "0", "--no-model-offload"],
      (pid) => {
        kids = children(pid);
      },
    );
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(kids, [], "the run happens in the CLI's own process");
    assert.deepEqual(readFileSync(kept), readFileSync(join(work, "plain.png")), "the same image either way");
  });

  test("Ctrl-C to the CLI reaches the run: exit 130, nothing written", async () => {
    const out = join(work, "x.png");
    const r = await run(["upscale", CAT, "-o", out, "--model", TINY, "--steps", "500"], (pid) =>
      process.kill(pid, "SIGINT"),
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
