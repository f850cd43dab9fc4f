/**
 * The sdx4 CLI end to end, spawned as `node --import tsx src/cli/main.ts` on the bundled tiny model: a PNG run,
 * golden pipeline cases through `--output-type npy`, usage errors (exit 2, nothing written), JSON-lines progress
 * and Ctrl-C (exit 130, nothing written).
 */
import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import sharp from "sharp";
import { readNpy } from "../../src/image/npy.js";
import { CAT, type CliResult, runCli as run, TINY } from "../helpers/cli.js";
import { assertClose, type FixtureCase, tensorOf } from "../helpers/fixtures.js";
import { pipelineGroup } from "../pipelines/pipeline_cases.js";

function runCli(args: string[], onStderr?: (all: string, child: ChildProcess) => void): Promise<CliResult> {
  return run(args, { unsetEnv: ["SDX4_DEBUG"], onStderr });
}

const work = mkdtempSync(join(tmpdir(), "sdx4-cli-"));
after(() => rmSync(work, { recursive: true, force: true }));
let dirCount = 0;
/** A fresh, empty output folder per test. */
function outDir(): string {
  return mkdtempSync(join(work, `t${dirCount++}-`));
}

/** CLI arguments reproducing a pipeline fixture case. */
function caseArgs(c: FixtureCase): string[] {
  const p = c.params;
  const g = pipelineGroup();
  const pngs: string[] = Array.isArray(p.image_png) ? p.image_png : [p.image_png];
  const prompts: string[] = Array.isArray(p.prompt) ? p.prompt : [p.prompt];
  return [
    "upscale",
    ...pngs.map((f) => join(g.dir, f)),
    "--model",
    TINY,
    ...prompts.flatMap((x) => ["--prompt", x]),
    ...["--steps", String(p.num_inference_steps), "--guidance", String(p.guidance_scale)],
    ...["--noise-level", String(p.noise_level), "--seed", String(p.seed)],
    ...["--scheduler", p.scheduler, "--output-type", "npy"],
  ];
}

describe("sdx4 upscale (tiny model)", { concurrency: 3 }, () => {
  test("writes a 4x PNG; progress is JSON lines off a terminal; --json summary on stdout", async () => {
    const dir = outDir();
    const out = join(dir, "cat-x4.png");
    const r = await runCli(
      ["upscale", CAT, "-o", out, "--model", TINY, "--steps", "3", "--seed", "0"].concat([
        "--prompt",
        "a cat",
        "--json",
      ]),
    );
    assert.equal(r.code, 0, r.stderr);
    const meta = await sharp(out).metadata();
    const input = await sharp(CAT).metadata();
    assert.equal(meta.format, "png");
    assert.equal(meta.width, input.width! * 4);
    assert.equal(meta.height, input.height! * 4);
    const lines = r.stderr.split("\n").filter((l) => l !== "");
    const events = lines.map((l) => JSON.parse(l));
    assert.deepEqual(
      events.map((e) => [e.event, e.step, e.total, e.timestep]),
      [
        ["step", 1, 3, 667],
        ["step", 2, 3, 334],
        ["step", 3, 3, 1],
      ],
    );
    for (const e of events) assert.ok(typeof e.elapsed_s === "number" && e.elapsed_s >= 0);
    const summary = JSON.parse(r.stdout);
    assert.deepEqual(summary.outputs, [out]);
    assert.equal(summary.seed, "0");
    assert.equal(summary.width, 128);
    assert.equal(summary.scheduler, "DDIMScheduler");
    assert.ok(summary.seconds > 0);
    assert.deepEqual(readdirSync(dir), ["cat-x4.png"], "no temporary files left");
  });

  for (const name of ["tiny_default", "tiny_two_prompts", "tiny_euler_ancestral"]) {
    test(`golden case ${name} through the CLI (npy)`, async () => {
      const c = pipelineGroup().get(name);
      const out = join(outDir(), `${name}.npy`);
      const r = await runCli([...caseArgs(c), "-o", out]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, `${out}\n`);
      const got = await readNpy(out);
      const expected = tensorOf(pipelineGroup(), c, "image");
      assert.deepEqual(got.shape, expected.shape);
      assert.ok(got.data instanceof Float32Array);
      assertClose(got.data, expected.data, c.tolerance, `${name} via CLI`);
    });
  }

  test("noise level above the model's max: exit 2 naming --noise-level, nothing written", async () => {
    const dir = outDir();
    const r = await runCli(
      ["upscale", CAT, "-o", join(dir, "x.png"), "--model", TINY, "--steps", "3"].concat([
        "--noise-level",
        "99999",
      ]),
    );
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /--noise-level .*99999/);
    assert.doesNotMatch(r.stderr, /\n\s+at /, "no stack trace");
    assert.deepEqual(readdirSync(dir), []);
  });

  test("Ctrl-C during the steps: exit 130, nothing written", async () => {
    const dir = outDir();
    let sent = false;
    const r = await runCli(
      ["upscale", CAT, "-o", join(dir, "x.png"), "--model", TINY, "--steps", "500", "--seed", "1"],
      (all, child) => {
        if (!sent && all.includes('"event":"step"')) {
          sent = true;
          child.kill("SIGINT");
        }
      },
    );
    assert.ok(sent, "a step event was seen");
    assert.equal(r.code, 130, r.stderr);
    assert.match(r.stderr, /interrupted/);
    const steps = r.stderr.split("\n").filter((l) => l.startsWith("{"));
    assert.ok(steps.length < 500, "stopped early");
    assert.deepEqual(readdirSync(dir), []);
  });
});

describe("sdx4 usage errors (before loading the model)", { concurrency: 2 }, () => {
  test("a corrupt PNG: exit 2 naming the file, nothing written", async () => {
    const dir = outDir();
    const bad = join(work, "corrupt.png");
    writeFileSync(bad, Buffer.from("\x89PNG\r\n\x1a\nthis is not a png"));
    const r = await runCli(["upscale", bad, "-o", join(dir, "x.png"), "--model", TINY]);
    assert.equal(r.code, 2, r.stderr);
    assert.ok(r.stderr.includes(bad), r.stderr);
    assert.doesNotMatch(r.stderr, /\n\s+at /);
    assert.deepEqual(readdirSync(dir), []);
  });

  test("a missing input: exit 2 naming the file", async () => {
    const missing = join(work, "no-such.png");
    const r = await runCli(["upscale", missing, "-o", join(outDir(), "x.png"), "--model", TINY]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /no-such\.png: file not found/);
  });

  test("bad flag values: exit 2 naming the flag", async () => {
    const cases: [string[], RegExp][] = [
      [["--steps", "zero"], /--steps/],
      [["--scheduler", "Nope"], /--scheduler.*DDIMScheduler/],
    ];
    await Promise.all(
      cases.map(async ([extra, re]) => {
        const r = await runCli(["upscale", CAT, "-o", join(outDir(), "x.png"), "--model", TINY, ...extra]);
        assert.equal(r.code, 2, `${extra.join(" ")}: ${r.stderr}`);
        assert.match(r.stderr, re);
      }),
    );
  });

  test("a model folder that does not exist: exit 1 naming it", async () => {
    const r = await runCli(["upscale", CAT, "-o", join(outDir(), "x.png"), "--model", join(work, "nomodel")]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /nomodel/);
    assert.doesNotMatch(r.stderr, /\n\s+at /);
  });
});
