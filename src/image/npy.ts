/**
 * NumPy .npy format version 1.0 (numpy/lib/format.py): magic "\x93NUMPY", version 1.0, u16 LE header length,
 * then an ASCII dict `{'descr': '<f4', 'fortran_order': False, 'shape': (N, H, W, C), }` padded with spaces and
 * ended by "\n" so that the data starts at a multiple of 64 bytes; then the data, C order, little-endian.
 * Written: float32 ('<f4') and uint8 ('|u1'). Read: those two (for tests and tools).
 */
import { readFile } from "node:fs/promises";
import { writeFileAtomic } from "./atomic_write.js";

const MAGIC = Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]); // \x93NUMPY

export type NpyData = Float32Array | Uint8Array;

function shapeRepr(shape: readonly number[]): string {
  if (shape.length === 1) return `(${shape[0]},)`;
  return `(${shape.join(", ")})`;
}

/** The complete .npy file for `data` with `shape`. */
export function encodeNpy(data: NpyData, shape: readonly number[]): Buffer {
  if (!shape.every((d) => Number.isInteger(d) && d >= 0))
    throw new Error(`npy: invalid shape [${shape.join(", ")}]`);
  const count = shape.reduce((a, d) => a * d, 1);
  if (count !== data.length)
    throw new Error(`npy: shape [${shape.join(", ")}] needs ${count} values, got ${data.length}`);
  const descr = data instanceof Float32Array ? "<f4" : "|u1";
  const dict = `{'descr': '${descr}', 'fortran_order': False, 'shape': ${shapeRepr(shape)}, }`;
  // 6 magic + 2 version + 2 length + dict + padding + "\n" ≡ 0 (mod 64)
  const unpadded = MAGIC.length + 2 + 2 + dict.length + 1;
  const header = `${dict + " ".repeat((64 - (unpadded % 64)) % 64)}\n`;
  if (header.length > 0xffff) throw new Error("npy: header too long for format 1.0");
  const pre = Buffer.alloc(10);
  MAGIC.copy(pre, 0);
  pre[6] = 1;
  pre[7] = 0;
  pre.writeUInt16LE(header.length, 8);
  const body = Buffer.alloc(data.byteLength);
  if (data instanceof Float32Array) {
    for (let i = 0; i < data.length; i++) body.writeFloatLE(data[i] as number, i * 4);
  } else body.set(data);
  return Buffer.concat([pre, Buffer.from(header, "latin1"), body]);
}

/** Write a .npy file atomically (see writeFileAtomic). */
export async function writeNpy(path: string, data: NpyData, shape: readonly number[]): Promise<void> {
  await writeFileAtomic(path, encodeNpy(data, shape));
}

/** Parse a .npy (v1.0-3.0) holding '<f4' or '|u1' / '<u1' data in C order. */
export function decodeNpy(buf: Uint8Array, name = "npy"): { data: NpyData; shape: number[] } {
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  if (b.length < 10 || !b.subarray(0, 6).equals(MAGIC)) throw new Error(`${name}: not a .npy file`);
  const major = b[6] as number;
  const lenBytes = major === 1 ? 2 : 4;
  const hlen = major === 1 ? b.readUInt16LE(8) : b.readUInt32LE(8);
  const start = 8 + lenBytes;
  const header = b.subarray(start, start + hlen).toString(major === 3 ? "utf8" : "latin1");
  const descr = /'descr':\s*'([^']+)'/.exec(header)?.[1];
  const fortran = /'fortran_order':\s*(True|False)/.exec(header)?.[1];
  const shapeText = /'shape':\s*\(([^)]*)\)/.exec(header)?.[1];
  if (!descr || !fortran || shapeText === undefined)
    throw new Error(`${name}: bad header ${JSON.stringify(header)}`);
  if (fortran === "True") throw new Error(`${name}: Fortran-order arrays are not supported`);
  const shape = shapeText
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s.length > 0)
    .map(Number);
  const count = shape.reduce((a, d) => a * d, 1);
  const dataStart = start + hlen;
  if (descr === "<f4") {
    if (b.length - dataStart < count * 4) throw new Error(`${name}: truncated data`);
    const data = new Float32Array(count);
    for (let i = 0; i < count; i++) data[i] = b.readFloatLE(dataStart + i * 4);
    return { data, shape };
  }
  if (descr === "|u1" || descr === "<u1") {
    if (b.length - dataStart < count) throw new Error(`${name}: truncated data`);
    return { data: new Uint8Array(b.subarray(dataStart, dataStart + count)), shape };
  }
  throw new Error(`${name}: dtype ${descr} is not supported (only <f4 and |u1)`);
}

/** Read a .npy file written by writeNpy or NumPy. */
export async function readNpy(path: string): Promise<{ data: NpyData; shape: number[] }> {
  return decodeNpy(await readFile(path), path);
}
