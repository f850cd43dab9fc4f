/**
 * Golden bicubic checks against real Pillow 9.4.0 beyond the fixtures' 30x22 → 28x20: 105 up-, down- and
 * non-uniform resizes (RGB and L) recorded by gen_bicubic_pillow94.py as SHA-256 of Pillow's output bytes. The
 * inputs are rebuilt here from integers with the same formulas, so no image data is stored.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { resizeBicubicU8 } from "../../src/image/resize_bicubic.js";
import { REPO_ROOT } from "../helpers/fixtures.js";

interface GoldenCase {
  kind: "noise" | "pattern" | "noiseL";
  w: number;
  h: number;
  ow: number;
  oh: number;
  seed: number;
  sha256: string;
}

const golden = JSON.parse(readFileSync(join(REPO_ROOT, "test/image/bicubic_pillow94.json"), "utf8")) as {
  reference: string;
  cases: GoldenCase[];
};

/** xorshift32 bytes, as the generator's xorshift_bytes. */
function xorshiftBytes(n: number, seed: number): Uint8Array {
  let s = seed >>> 0 || 1;
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    s = (s ^ (s << 13)) >>> 0;
    s = (s ^ (s >>> 17)) >>> 0;
    s = (s ^ (s << 5)) >>> 0;
    out[i] = s & 0xff;
  }
  return out;
}

function patternBytes(w: number, h: number): Uint8Array {
  const out = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const i = (y * w + x) * 3;
      out[i] = Math.floor((x * 255) / Math.max(w - 1, 1));
      out[i + 1] = ((x + 2 * y) * 13) & 0xff;
      out[i + 2] = ((x * x + y * y) * 5) & 0xff;
    }
  }
  return out;
}

describe(`bicubic vs ${golden.reference}`, () => {
  assert.ok(golden.cases.length >= 100);
  for (const c of golden.cases) {
    test(`${c.kind} ${c.w}x${c.h} → ${c.ow}x${c.oh}`, () => {
      const channels = c.kind === "noiseL" ? 1 : 3;
      const input =
        c.kind === "pattern" ? patternBytes(c.w, c.h) : xorshiftBytes(c.w * c.h * channels, c.seed);
      const out = resizeBicubicU8(input, c.w, c.h, channels, c.ow, c.oh);
      assert.equal(createHash("sha256").update(out).digest("hex"), c.sha256);
    });
  }
});
