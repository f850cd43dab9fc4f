/** The CLI's note before an untiled decode of a large input (src/cli/memory_note.ts). */
import assert from "node:assert/strict";
import { test } from "node:test";
import { untiledDecodeNote } from "../../src/cli/memory_note.js";

const img = (width: number, height = width) => ({ width, height });

test("no note up to 256² inputs, with --vae-tiling, or without inputs", () => {
  const plan = { vaeTiling: false, numImagesPerPrompt: 1 };
  assert.equal(untiledDecodeNote(plan, [img(256)]), undefined);
  assert.equal(untiledDecodeNote(plan, [img(128, 512)]), undefined, "by pixel count");
  assert.equal(untiledDecodeNote({ ...plan, vaeTiling: true }, [img(512)]), undefined);
  assert.equal(untiledDecodeNote(plan, []), undefined);
});

test("above 256²: the estimate grows with pixels and batch, and names --vae-tiling", () => {
  const one = untiledDecodeNote({ vaeTiling: false, numImagesPerPrompt: 1 }, [img(512)]);
  assert.match(
    one ?? "",
    /^sdx4: note: decoding a 512x512 input to 2048x2048 in one piece takes about 17 GiB/,
  );
  assert.match(one ?? "", /--vae-tiling/);
  assert.ok(one?.endsWith("\n"));
  const batch = untiledDecodeNote({ vaeTiling: false, numImagesPerPrompt: 2 }, [img(300), img(300)]);
  assert.match(batch ?? "", /decoding 4 images of 300x300 to 1200x1200 in one piece takes about 24 GiB/);
});
