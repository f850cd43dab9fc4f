/** loadImage: file / buffer / raw inputs, EXIF orientation, colour conversions, alpha policy, every bad input. */
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import sharp from "sharp";
import { loadImage, MAX_INPUT_PIXELS } from "../../src/image/decode.js";
import { ImageInputError } from "../../src/image/errors.js";
import { FIXTURES } from "../helpers/fixtures.js";
import { encodePng } from "./png_writer.js";

let dir = "";
before(async () => {
  dir = await mkdtemp(join(tmpdir(), "sdx4-decode-"));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** w x h RGB gradient with distinct pixels. */
function gradient(w: number, h: number): Uint8Array {
  const d = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const i = (y * w + x) * 3;
      d[i] = (x * 37) & 0xff;
      d[i + 1] = (y * 53) & 0xff;
      d[i + 2] = (x * 11 + y * 7) & 0xff;
    }
  }
  return d;
}

async function rejectsWith(p: Promise<unknown>, re: RegExp): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof ImageInputError, `not an ImageInputError: ${String(e)}`);
    assert.match(e.message, re);
    return true;
  });
}

describe("loadImage: formats and conversions", () => {
  test("fixture PNG from a path and from a buffer", async () => {
    const p = join(FIXTURES, "components/input_chelsea_30x22.png");
    const a = await loadImage(p);
    assert.equal(a.width, 30);
    assert.equal(a.height, 22);
    assert.equal(a.data.length, 30 * 22 * 3);
    const b = await loadImage(await sharp(p).png().toBuffer());
    assert.deepEqual(b.data, a.data);
  });

  test("RGB PNG round trip is exact", async () => {
    const d = gradient(9, 6);
    const png = encodePng({ width: 9, height: 6, colorType: 2, bitDepth: 8, samples: d });
    const img = await loadImage(png);
    assert.deepEqual(img.data, d);
  });

  test("EXIF orientation 6 (rotate 90° clockwise) is applied", async () => {
    const w = 8;
    const h = 5;
    const d = new Uint8Array(w * h * 3);
    // a red mark at the top-left pixel, rest dark grey
    d.fill(40);
    d[0] = 255;
    d[1] = 0;
    d[2] = 0;
    const jpg = await sharp(d, { raw: { width: w, height: h, channels: 3 } })
      .jpeg({ quality: 100, chromaSubsampling: "4:4:4" })
      .withMetadata({ orientation: 6 })
      .toBuffer();
    assert.equal((await sharp(jpg).metadata()).orientation, 6);
    const img = await loadImage(jpg);
    assert.equal(img.width, h);
    assert.equal(img.height, w);
    // rotated 90° clockwise: the top-left corner moves to the top-right corner
    const px = (x: number, y: number) =>
      Array.from(img.data.subarray((y * img.width + x) * 3, (y * img.width + x) * 3 + 3));
    const tr = px(img.width - 1, 0);
    const tl = px(0, 0);
    assert.ok((tr[0] as number) > 150 && (tr[1] as number) < 100, `top-right ${tr}`);
    assert.ok((tl[0] as number) < 100, `top-left ${tl}`);
  });

  test("RGBA: alpha is dropped, colours kept (PIL convert('RGB'))", async () => {
    const w = 4;
    const h = 4;
    const rgba = new Uint8Array(w * h * 4);
    for (let i = 0; i < w * h; i++) rgba.set([10 * i, 200 - i, 7, i * 16], i * 4);
    const png = encodePng({ width: w, height: h, colorType: 6, bitDepth: 8, samples: rgba });
    const img = await loadImage(png);
    for (let i = 0; i < w * h; i++)
      assert.deepEqual(Array.from(img.data.subarray(i * 3, i * 3 + 3)), [10 * i, 200 - i, 7]);
  });

  test("grey 8-bit and grey+alpha become equal RGB", async () => {
    const g = Uint8Array.from({ length: 20 }, (_, i) => i * 12);
    for (const png of [
      encodePng({ width: 5, height: 4, colorType: 0, bitDepth: 8, samples: g }),
      encodePng({
        width: 5,
        height: 4,
        colorType: 4,
        bitDepth: 8,
        samples: Array.from(g).flatMap((v) => [v, 99]),
      }),
    ]) {
      const img = await loadImage(png);
      assert.equal(img.width, 5);
      for (let i = 0; i < 20; i++)
        assert.deepEqual(Array.from(img.data.subarray(i * 3, i * 3 + 3)), [g[i], g[i], g[i]]);
    }
  });

  test("16-bit RGB and grey PNGs become 8-bit (high byte)", async () => {
    const rgb16 = Array.from({ length: 4 * 4 * 3 }, (_, i) => (i * 5000) & 0xffff);
    const a = await loadImage(encodePng({ width: 4, height: 4, colorType: 2, bitDepth: 16, samples: rgb16 }));
    for (let i = 0; i < rgb16.length; i++)
      assert.ok(Math.abs((a.data[i] as number) - ((rgb16[i] as number) >> 8)) <= 1, `sample ${i}`);
    const g16 = Array.from({ length: 16 }, (_, i) => i * 4000 + 255);
    const b = await loadImage(encodePng({ width: 4, height: 4, colorType: 0, bitDepth: 16, samples: g16 }));
    for (let i = 0; i < 16; i++) {
      const v = b.data[i * 3] as number;
      assert.equal(b.data[i * 3 + 1], v);
      assert.equal(b.data[i * 3 + 2], v);
      assert.ok(Math.abs(v - ((g16[i] as number) >> 8)) <= 1, `grey sample ${i}: ${v}`);
    }
  });

  test("palette PNG with tRNS: palette colours, transparency dropped", async () => {
    const palette = [255, 0, 0, 0, 255, 0, 0, 0, 255, 12, 34, 56];
    const idx = Array.from({ length: 16 }, (_, i) => i % 4);
    const png = encodePng({
      width: 4,
      height: 4,
      colorType: 3,
      bitDepth: 8,
      samples: idx,
      palette,
      trns: [255, 0, 128, 255],
    });
    const img = await loadImage(png);
    for (let i = 0; i < 16; i++) {
      const k = idx[i] as number;
      assert.deepEqual(Array.from(img.data.subarray(i * 3, i * 3 + 3)), palette.slice(k * 3, k * 3 + 3));
    }
  });

  test("CMYK JPEG becomes RGB (through a CMYK profile, so only approximately the original)", async () => {
    const src = [200, 30, 90];
    const d = Uint8Array.from({ length: 8 * 8 * 3 }, (_, i) => src[i % 3] as number);
    const jpg = await sharp(d, { raw: { width: 8, height: 8, channels: 3 } })
      .toColourspace("cmyk")
      .jpeg({ quality: 100 })
      .toBuffer();
    assert.equal((await sharp(jpg).metadata()).space, "cmyk");
    const img = await loadImage(jpg);
    assert.equal(img.data.length, 8 * 8 * 3);
    for (const [i, v] of img.data.entries()) {
      assert.ok(Math.abs(v - (src[i % 3] as number)) <= 24, `sample ${i}: ${v}`);
    }
  });

  test("embedded ICC profile of an RGB image is ignored (PIL never applies it)", async () => {
    const d = Uint8Array.from({ length: 6 * 6 * 3 }, (_, i) => [230, 40, 60][i % 3] as number);
    const png = await sharp(d, { raw: { width: 6, height: 6, channels: 3 } })
      .withIccProfile("p3")
      .png()
      .toBuffer();
    assert.equal((await sharp(png).metadata()).hasProfile, true);
    const stored = await sharp(png, { ignoreIcc: true }).raw().toBuffer();
    const managed = await sharp(png).toColourspace("srgb").raw().toBuffer();
    assert.notDeepEqual(stored, managed, "test image must be one where colour management changes values");
    const img = await loadImage(png);
    assert.deepEqual(Buffer.from(img.data), stored);
  });

  test("WebP and JPEG decode to 8-bit RGB of the right size", async () => {
    const d = gradient(12, 7);
    for (const buf of [
      await sharp(d, { raw: { width: 12, height: 7, channels: 3 } })
        .webp({ lossless: true })
        .toBuffer(),
      await sharp(d, { raw: { width: 12, height: 7, channels: 3 } })
        .jpeg()
        .toBuffer(),
    ]) {
      const img = await loadImage(buf);
      assert.equal(img.width, 12);
      assert.equal(img.height, 7);
    }
    const lossless = await loadImage(
      await sharp(d, { raw: { width: 12, height: 7, channels: 3 } })
        .webp({ lossless: true })
        .toBuffer(),
    );
    assert.deepEqual(lossless.data, d);
  });

  test("raw inputs: 1, 2, 3, 4 channels, Uint8ClampedArray", async () => {
    const w = 4;
    const h = 4;
    const n = w * h;
    const g = Uint8Array.from({ length: n }, (_, i) => i * 3);
    const rgb = gradient(w, h);
    const r1 = await loadImage({ data: g, width: w, height: h, channels: 1 });
    const r2 = await loadImage({
      data: Uint8Array.from(Array.from(g).flatMap((v) => [v, 0])),
      width: w,
      height: h,
      channels: 2,
    });
    assert.deepEqual(r1.data, r2.data);
    assert.deepEqual(Array.from(r1.data.subarray(15, 18)), [15, 15, 15]);
    const r3 = await loadImage({ data: rgb, width: w, height: h, channels: 3 });
    assert.deepEqual(r3.data, rgb);
    assert.notEqual(r3.data, rgb);
    const rgba = new Uint8ClampedArray(n * 4);
    for (let i = 0; i < n; i++)
      rgba.set([rgb[i * 3] as number, rgb[i * 3 + 1] as number, rgb[i * 3 + 2] as number, 0], i * 4);
    const r4 = await loadImage({ data: rgba, width: w, height: h, channels: 4 });
    assert.deepEqual(r4.data, rgb);
  });
});

describe("loadImage: bad inputs", () => {
  test("missing file and directory", async () => {
    const missing = join(dir, "nope.png");
    await rejectsWith(loadImage(missing), /nope\.png: file not found/);
    await rejectsWith(loadImage(dir), /is not a regular file/);
  });

  test("undecodable bytes, empty buffer, non-image file", async () => {
    await rejectsWith(loadImage(Buffer.from("definitely not an image")), /^buffer: not a decodable image/);
    await rejectsWith(loadImage(new Uint8Array(0)), /empty/);
    const txt = join(dir, "notes.png");
    await writeFile(txt, "hello");
    await rejectsWith(loadImage(txt), /notes\.png: not a decodable image/);
    await rejectsWith(loadImage(Buffer.from("x"), { name: "upload.png" }), /^upload\.png: /);
  });

  test("truncated PNG and JPEG fail", async () => {
    const noise = {
      width: 64,
      height: 64,
      channels: 3 as const,
      background: "#000000",
      noise: { type: "gaussian" as const, mean: 128, sigma: 40 },
    };
    const png = await sharp({ create: noise }).png().toBuffer();
    const jpg = await sharp({ create: noise }).jpeg().toBuffer();
    const cutPng = join(dir, "cut.png");
    await writeFile(cutPng, png.subarray(0, Math.floor(png.length * 0.6)));
    await rejectsWith(loadImage(cutPng), /cut\.png: cannot decode image/);
    await rejectsWith(loadImage(jpg.subarray(0, Math.floor(jpg.length * 0.6))), /cannot decode image/);
    // the intact files decode
    assert.equal((await loadImage(png)).width, 64);
    assert.equal((await loadImage(jpg)).width, 64);
  });

  test("smaller than 4x4", async () => {
    await rejectsWith(
      loadImage(encodePng({ width: 3, height: 8, colorType: 2, bitDepth: 8, samples: new Uint8Array(72) })),
      /3x8; it must be at least 4x4/,
    );
    await rejectsWith(
      loadImage({ data: new Uint8Array(4 * 2 * 3), width: 4, height: 2, channels: 3 }),
      /at least 4x4/,
    );
  });

  test("above the pixel cap (default and custom)", async () => {
    assert.equal(MAX_INPUT_PIXELS, 1024 * 1024);
    const big = await sharp({ create: { width: 1025, height: 1024, channels: 3, background: "#808080" } })
      .png()
      .toBuffer();
    await rejectsWith(loadImage(big), /1025x1024 = 1049600 pixels, above the limit of 1048576/);
    const ok = await sharp({ create: { width: 1024, height: 1024, channels: 3, background: "#808080" } })
      .png()
      .toBuffer();
    assert.equal((await loadImage(ok)).width, 1024);
    await rejectsWith(loadImage(ok, { maxPixels: 1000 }), /above the limit of 1000/);
    assert.equal((await loadImage(big, { maxPixels: 2_000_000 })).width, 1025);
    await rejectsWith(
      loadImage({ data: new Uint8Array(40 * 30), width: 40, height: 30, channels: 1 }, { maxPixels: 1000 }),
      /limit of 1000/,
    );
  });

  test("raw data length and channel count", async () => {
    await rejectsWith(
      loadImage({ data: new Uint8Array(47), width: 4, height: 4, channels: 3 }),
      /has 47 bytes, expected width\*height\*channels = 4\*4\*3 = 48/,
    );
    await rejectsWith(
      loadImage({ data: new Uint8Array(80), width: 4, height: 4, channels: 5 as never }),
      /channels must be 1, 2, 3 or 4/,
    );
    await rejectsWith(
      loadImage({ data: new Uint8Array(0), width: 0, height: 4, channels: 3 }),
      /invalid size/,
    );
  });
});
