/** Crafting safetensors bytes by hand for the reader/writer tests. */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export function makeTmpDir(): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), "sdx4-safetensors-"));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** u64 LE length + header bytes + data bytes. `header` objects are JSON-encoded; strings/Buffers used as is. */
export function craftBytes(
  header: string | Buffer | object,
  data: Uint8Array | number = 0,
  opts: { headerLength?: bigint } = {},
): Buffer {
  const hb = Buffer.isBuffer(header)
    ? header
    : Buffer.from(typeof header === "string" ? header : JSON.stringify(header), "utf8");
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(opts.headerLength ?? BigInt(hb.length));
  const db =
    typeof data === "number"
      ? Buffer.alloc(data)
      : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  return Buffer.concat([len, hb, db]);
}

let counter = 0;
/** Writes crafted bytes to a fresh file in `dir` and returns its path. */
export function craft(
  dir: string,
  header: string | Buffer | object,
  data: Uint8Array | number = 0,
  opts: { headerLength?: bigint; name?: string } = {},
): string {
  const path = join(dir, opts.name ?? `crafted-${counter++}.safetensors`);
  writeFileSync(path, craftBytes(header, data, opts));
  return path;
}

/** Bytes of a typed array. */
export function bytesOf(a: ArrayBufferView): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}
