/** sdx4 output naming (file / folder / {n} pattern / batched npy), format choice, target checks, writes. */
import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { UsageError } from "../../src/cli/errors.js";
import {
  checkOutputTargets,
  encodeOutputs,
  type OutputPlan,
  planOutputs,
  writeOutputs,
} from "../../src/cli/outputs.js";
import { decodeNpy } from "../../src/image/npy.js";

const paths = (p: OutputPlan) => p.files.map((f) => f.path);

describe("planOutputs", () => {
  test("one output: -o is the file; format from the extension, else png", () => {
    assert.deepEqual(planOutputs("x.png", ["a.png"], 1, undefined), {
      format: "png",
      mode: "file",
      files: [{ path: "x.png", indices: [0] }],
    });
    assert.equal(planOutputs("x.JPEG", ["a.png"], 1, undefined).format, "jpg");
    assert.equal(planOutputs("x.webp", ["a.png"], 1, undefined).format, "webp");
    assert.equal(planOutputs("x.npy", ["a.png"], 1, undefined).format, "npy");
    assert.equal(planOutputs("result", ["a.png"], 1, undefined).format, "png");
    assert.equal(planOutputs("result", ["a.png"], 1, "webp").format, "webp");
    assert.equal(planOutputs("x.jpg", ["a.png"], 1, "jpg").format, "jpg");
  });

  test("--output-type contradicting the extension, or an unknown extension: usage error", () => {
    assert.throws(() => planOutputs("x.png", ["a.png"], 1, "npy"), /-o x\.png.*png.*--output-type is npy/);
    assert.throws(() => planOutputs("x.bmp", ["a.png"], 1, undefined), UsageError);
    assert.throws(() => planOutputs("", ["a.png"], 1, undefined), UsageError);
  });

  test("several outputs: a folder named after the inputs", () => {
    const p = planOutputs("out", ["dir/a.png", "b.jpg"], 1, undefined);
    assert.equal(p.mode, "folder");
    assert.deepEqual(paths(p), [join("out", "a.png"), join("out", "b.png")]);
    assert.deepEqual(
      p.files.map((f) => f.indices),
      [[0], [1]],
    );
    const q = planOutputs("out/", ["a.png", "b.png"], 2, "webp");
    assert.deepEqual(
      paths(q),
      ["a-0", "a-1", "b-0", "b-1"].map((s) => join("out", `${s}.webp`)),
    );
    assert.deepEqual(
      q.files.map((f) => f.indices),
      [[0], [1], [2], [3]],
      "input-major: the images of one input are together",
    );
  });

  test("a trailing slash makes a folder even for one output", () => {
    const p = planOutputs("out/", ["x/cat.png"], 1, "jpg");
    assert.equal(p.mode, "folder");
    assert.deepEqual(paths(p), [join("out", "cat.jpg")]);
  });

  test("inputs sharing a stem get their index as a prefix", () => {
    const p = planOutputs("out", ["a/cat.png", "b/cat.jpg", "dog.png"], 1, undefined);
    assert.deepEqual(
      paths(p),
      ["0_cat.png", "1_cat.png", "2_dog.png"].map((s) => join("out", s)),
    );
  });

  test("{n} pattern names every output, n from 0", () => {
    const p = planOutputs("up-{n}.jpg", ["a.png", "b.png"], 2, undefined);
    assert.equal(p.mode, "pattern");
    assert.equal(p.format, "jpg");
    assert.deepEqual(paths(p), ["up-0.jpg", "up-1.jpg", "up-2.jpg", "up-3.jpg"]);
    assert.deepEqual(paths(planOutputs("x{n}.png", ["a.png"], 1, undefined)), ["x0.png"]);
  });

  test("npy: one .npy file holds the whole batch; a folder gives one file per output", () => {
    const p = planOutputs("all.npy", ["a.png", "b.png"], 2, undefined);
    assert.equal(p.mode, "batch");
    assert.deepEqual(p.files, [{ path: "all.npy", indices: [0, 1, 2, 3] }]);
    const q = planOutputs("out", ["a.png", "b.png"], 1, "npy");
    assert.deepEqual(paths(q), [join("out", "a.npy"), join("out", "b.npy")]);
  });

  test("a single-file name for several images is a usage error", () => {
    assert.throws(() => planOutputs("x.png", ["a.png", "b.png"], 1, undefined), /2 outputs/);
    assert.throws(() => planOutputs("x.png", ["a.png"], 3, undefined), /3 outputs/);
  });
});

describe("checkOutputTargets", () => {
  const never = () => false;
  test("refuses to overwrite an input", () => {
    assert.throws(
      () => checkOutputTargets(planOutputs(".", ["a.png", "b.png"], 1, "png"), ["a.png", "b.png"], never),
      /would overwrite an input/,
    );
    assert.throws(
      () => checkOutputTargets(planOutputs("a.png", ["a.png"], 1, undefined), ["./a.png"], never),
      /overwrite/,
    );
  });
  test("refuses an existing folder as a single output file", () => {
    const p = planOutputs("somedir", ["a.png"], 1, undefined);
    assert.throws(() => checkOutputTargets(p, ["a.png"], (x) => x === "somedir"), /is a folder/);
    assert.doesNotThrow(() => checkOutputTargets(p, ["a.png"], never));
  });
  test("refuses two outputs on one path", () => {
    const p = planOutputs("same.png", ["a.png"], 1, undefined);
    const dup: OutputPlan = { ...p, mode: "pattern", files: [p.files[0]!, p.files[0]!] };
    assert.throws(() => checkOutputTargets(dup, ["a.png"], never), /two outputs/);
  });
});

describe("encode and write", () => {
  const dir = mkdtempSync(join(tmpdir(), "sdx4-outputs-"));
  after(() => rmSync(dir, { recursive: true, force: true }));

  test("npy per output slices [1,H,W,3]; batch keeps [N,H,W,3]", async () => {
    const data = Float32Array.from({ length: 2 * 2 * 3 * 3 }, (_, i) => i / 100);
    const result = { kind: "np" as const, data, shape: [2, 2, 3, 3] as [number, number, number, number] };
    const per = planOutputs(join(dir, "np-{n}.npy"), ["a.png", "b.png"], 1, undefined);
    const bytes = await encodeOutputs(per, result);
    const second = decodeNpy(bytes[1]!);
    assert.deepEqual(second.shape, [1, 2, 3, 3]);
    assert.deepEqual(second.data, data.slice(18));
    const batch = await encodeOutputs(planOutputs("b.npy", ["a.png", "b.png"], 1, undefined), result);
    assert.deepEqual(decodeNpy(batch[0]!).shape, [2, 2, 3, 3]);
  });

  test("writes into a new folder; no temporary files left", async () => {
    const img = { width: 2, height: 2, data: new Uint8Array(12).fill(200) };
    const p = planOutputs(join(dir, "new", "sub/"), ["a.png", "b.png"], 1, "png");
    await writeOutputs(p, await encodeOutputs(p, { kind: "images", images: [img, img] }));
    assert.deepEqual(readdirSync(join(dir, "new", "sub")).sort(), ["a.png", "b.png"]);
    assert.equal(
      readFileSync(join(dir, "new", "sub", "a.png"))
        .subarray(1, 4)
        .toString(),
      "PNG",
    );
  });

  test("a failing write removes the files already written", async () => {
    const img = { width: 2, height: 2, data: new Uint8Array(12) };
    mkdirSync(join(dir, "blocked"));
    const p: OutputPlan = {
      format: "png",
      mode: "pattern",
      files: [
        { path: join(dir, "first.png"), indices: [0] },
        { path: join(dir, "blocked"), indices: [1] }, // a folder: the rename fails
      ],
    };
    const bytes = await encodeOutputs(p, { kind: "images", images: [img, img] });
    await assert.rejects(writeOutputs(p, bytes));
    assert.equal(existsSync(join(dir, "first.png")), false);
    assert.deepEqual(
      readdirSync(dir).filter((f) => f.endsWith(".tmp")),
      [],
    );
  });
});
