/** encodeImage (PNG/JPEG/WebP), .npy v1.0 writer/reader and the atomic file write. */
import assert from "node:assert/strict";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import sharp from "sharp";
import { loadImage } from "../../src/image/decode.js";
import {
  decodeNpy,
  encodeImage,
  encodeNpy,
  formatFromPath,
  readNpy,
  writeFileAtomic,
  writeNpy,
} from "../../src/image/encode.js";
import type { RgbImage } from "../../src/image/types.js";

let dir = "";
before(async () => {
  dir = await mkdtemp(join(tmpdir(), "sdx4-encode-"));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

function image(w: number, h: number): RgbImage {
  const data = Uint8Array.from({ length: w * h * 3 }, (_, i) => (i * 29 + (i >> 4)) & 0xff);
  return { data, width: w, height: h };
}

describe("encodeImage", () => {
  test("PNG is lossless", async () => {
    const img = image(13, 7);
    const png = await encodeImage(img, "png");
    const m = await sharp(png).metadata();
    assert.equal(m.format, "png");
    assert.equal(m.channels, 3);
    assert.deepEqual((await loadImage(png)).data, img.data);
  });

  test("JPEG and WebP have the right format and size; WebP lossless is exact", async () => {
    const img = image(16, 9);
    for (const [fmt, name] of [
      ["jpg", "jpeg"],
      ["webp", "webp"],
    ] as const) {
      const buf = await encodeImage(img, fmt, { quality: 90 });
      const m = await sharp(buf).metadata();
      assert.equal(m.format, name);
      assert.equal(m.width, 16);
      assert.equal(m.height, 9);
    }
    const ll = await encodeImage(img, "webp", { lossless: true });
    assert.deepEqual((await loadImage(ll)).data, img.data);
  });

  test("bad inputs", async () => {
    await assert.rejects(encodeImage({ data: new Uint8Array(5), width: 2, height: 2 }, "png"), /expected 12/);
    await assert.rejects(encodeImage(image(2, 2), "jpg", { quality: 0 }), /quality/);
    await assert.rejects(encodeImage(image(2, 2), "gif" as never), /unknown format/);
  });

  test("formatFromPath", () => {
    assert.equal(formatFromPath("out/a.PNG"), "png");
    assert.equal(formatFromPath("a.jpeg"), "jpg");
    assert.equal(formatFromPath("a.jpg"), "jpg");
    assert.equal(formatFromPath("a.webp"), "webp");
    assert.equal(formatFromPath("a.npy"), undefined);
    assert.equal(formatFromPath("dir.png/file"), undefined);
  });
});

describe("npy", () => {
  test("header is exactly NumPy's v1.0 layout, padded to 64 bytes", () => {
    const buf = encodeNpy(Float32Array.from([1, 2, 3, 4, 5, 6]), [1, 2, 3]);
    assert.deepEqual(Array.from(buf.subarray(0, 8)), [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0]);
    const hlen = buf.readUInt16LE(8);
    assert.equal((10 + hlen) % 64, 0);
    const header = buf.subarray(10, 10 + hlen).toString("latin1");
    assert.equal(
      header,
      `${"{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2, 3), }".padEnd(hlen - 1, " ")}\n`,
    );
    assert.equal(buf.length, 10 + hlen + 24);
    assert.equal(buf.readFloatLE(10 + hlen + 4), 2);
    // what numpy 1.x writes for this array (np.save of np.arange(1,7,dtype='<f4').reshape(1,2,3))
    assert.equal(hlen, 118);
  });

  test("shape repr: 1-D tuple has a trailing comma, 0-D is ()", () => {
    const one = encodeNpy(Float32Array.from([7]), [1]);
    assert.match(one.toString("latin1", 10, 10 + one.readUInt16LE(8)), /'shape': \(1,\), \}/);
    const zero = encodeNpy(Float32Array.from([7]), []);
    assert.match(zero.toString("latin1", 10, 10 + zero.readUInt16LE(8)), /'shape': \(\), \}/);
    assert.deepEqual(decodeNpy(zero).shape, []);
  });

  test("round trip f4 and u1 through files", async () => {
    const f = Float32Array.from({ length: 2 * 3 * 4 * 5 }, (_, i) => Math.fround(Math.sin(i) * 1e3));
    f[3] = Number.NaN;
    f[4] = -0;
    const p = join(dir, "a.npy");
    await writeNpy(p, f, [2, 3, 4, 5]);
    const r = await readNpy(p);
    assert.deepEqual(r.shape, [2, 3, 4, 5]);
    assert.ok(r.data instanceof Float32Array);
    assert.deepEqual(r.data, f);
    assert.ok(Object.is(r.data[4], -0));
    const u = Uint8Array.from({ length: 4 * 4 * 3 }, (_, i) => i);
    const pu = join(dir, "u.npy");
    await writeNpy(pu, u, [1, 4, 4, 3]);
    const ru = await readNpy(pu);
    assert.ok(ru.data instanceof Uint8Array);
    assert.deepEqual(ru.data, u);
    assert.match((await readFile(pu)).toString("latin1", 10, 80), /'descr': '\|u1'/);
  });

  test("errors", () => {
    assert.throws(() => encodeNpy(new Float32Array(5), [2, 3]), /needs 6 values/);
    assert.throws(() => decodeNpy(Buffer.from("not npy at all")), /not a \.npy/);
    const buf = encodeNpy(new Float32Array(6), [2, 3]);
    assert.throws(() => decodeNpy(buf.subarray(0, buf.length - 1)), /truncated/);
    const f8 = Buffer.from(buf);
    f8.write("<f8", buf.indexOf("<f4"), "latin1");
    assert.throws(() => decodeNpy(f8), /not supported/);
  });
});

describe("writeFileAtomic", () => {
  const leftovers = async (d: string) => (await readdir(d)).filter((f) => f.endsWith(".tmp"));

  test("writes and overwrites, leaving no temp file", async () => {
    const p = join(dir, "out.bin");
    await writeFileAtomic(p, Buffer.from("first"));
    assert.equal(await readFile(p, "utf8"), "first");
    await writeFileAtomic(p, [Buffer.from("sec"), Buffer.from("ond")]);
    assert.equal(await readFile(p, "utf8"), "second");
    assert.deepEqual(await leftovers(dir), []);
  });

  test("a failure mid-write leaves the old file intact and removes the temp file", async () => {
    const sub = join(dir, "fail-mid");
    await mkdir(sub);
    const p = join(sub, "out.png");
    await writeFile(p, "old content");
    async function* chunks() {
      yield Buffer.alloc(1 << 16, 1);
      yield Buffer.alloc(1 << 16, 2);
      throw new Error("encoder crashed");
    }
    await assert.rejects(writeFileAtomic(p, chunks()), /encoder crashed/);
    assert.equal(await readFile(p, "utf8"), "old content");
    assert.deepEqual(await readdir(sub), ["out.png"]);
    // and when there was no old file, nothing appears
    const q = join(sub, "new.png");
    await assert.rejects(writeFileAtomic(q, chunks()), /encoder crashed/);
    assert.deepEqual(await readdir(sub), ["out.png"]);
  });

  test("a failing rename (target is a directory) removes the temp file", async () => {
    const sub = join(dir, "fail-rename");
    await mkdir(join(sub, "target"), { recursive: true });
    await assert.rejects(writeFileAtomic(join(sub, "target"), Buffer.from("x")));
    assert.deepEqual(await readdir(sub), ["target"]);
  });

  test("a missing folder fails without creating anything", async () => {
    await assert.rejects(writeFileAtomic(join(dir, "no-such-dir", "x.bin"), Buffer.from("x")), /ENOENT/);
  });
});
