/**
 * safetensors writer: header (`__metadata__` first, then tensors in sorted-name order, padded with spaces to a
 * multiple of 8), then each tensor's bytes, contiguous. Streams tensor by tensor with fs.writeSync: a tensor's
 * data may be a function called only when that tensor is written (returning one typed array or an iterable of
 * chunks), so a model of hundreds of MB never sits in memory at once. Writes `<path>.<pid>.<rand>.tmp`, fsyncs,
 * then renames over `path` (atomic on one filesystem); the temp file is removed on any error.
 * Little-endian hosts are assumed (as in the reader).
 */
import { randomBytes } from "node:crypto";
import { closeSync, fsyncSync, mkdirSync, openSync, renameSync, rmSync, writeSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { DTYPE_SIZES, type SafetensorsDtype, SafetensorsError } from "./safetensors.js";

/** Typed arrays a tensor's data may be given as. */
export type TensorChunk =
  | Float64Array
  | Float32Array
  | Uint16Array
  | BigInt64Array
  | Int32Array
  | Int16Array
  | Int8Array
  | Uint8Array;

/**
 * Data layout per dtype: F64 Float64Array, F32 Float32Array, F16/BF16 Uint16Array (bit patterns), I64
 * BigInt64Array, I32 Int32Array, I16 Int16Array, I8 Int8Array, U8/BOOL Uint8Array. Also accepted: a Uint8Array
 * (or Buffer) of raw little-endian bytes for any dtype, and Float32Array/Float64Array for F16/BF16/F32/F64
 * (converted, round-to-nearest-even).
 */
export interface TensorToWrite {
  dtype: SafetensorsDtype;
  shape: readonly number[];
  data: TensorChunk | (() => TensorChunk | Iterable<TensorChunk>);
}

const WRITE_CHUNK = 1 << 26; // bytes per writeSync call (also bounds conversion buffers)

// ---------------------------------------------------------------------------------------------------------
// float32 → F16 / BF16, round to nearest even (NaN stays NaN, overflow gives ±inf)

/** F16 bit pattern of a float32 given by its bit pattern. */
export function f32BitsToF16Bits(x: number): number {
  const sign = (x >>> 16) & 0x8000;
  const abs = x & 0x7fffffff;
  if (abs >= 0x7f800000) return sign | 0x7c00 | (abs > 0x7f800000 ? 0x200 | ((abs >>> 13) & 0x3ff) : 0);
  if (abs >= 0x47800000) return sign | 0x7c00; // >= 2^16: overflow
  if (abs < 0x38800000) {
    // result is a subnormal half (or zero): value in units of 2^-24, rounded
    if (abs < 0x33000000) return sign; // < 2^-25 (2^-25 itself is a tie that rounds to even 0)
    const e = abs >>> 23;
    const mant = (abs & 0x7fffff) | 0x800000;
    const shift = 126 - e;
    let q = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && q & 1)) q++;
    return sign | q;
  }
  let q = (abs >>> 13) - (112 << 10);
  const rem = abs & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && q & 1)) q++; // may carry into the exponent, up to inf: correct
  return sign | q;
}

/** BF16 bit pattern of a float32 given by its bit pattern. */
export function f32BitsToBf16Bits(x: number): number {
  x >>>= 0;
  if ((x & 0x7fffffff) > 0x7f800000) return (x >>> 16) | 0x40; // NaN, kept quiet
  return (x + 0x7fff + ((x >>> 16) & 1)) >>> 16;
}

const cvt32 = new Float32Array(1);
const cvtBits = new Uint32Array(cvt32.buffer);

export function floatToHalf(v: number): number {
  cvt32[0] = v;
  return f32BitsToF16Bits(cvtBits[0] as number);
}

export function floatToBfloat16(v: number): number {
  cvt32[0] = v;
  return f32BitsToBf16Bits(cvtBits[0] as number);
}

// ---------------------------------------------------------------------------------------------------------

const NATIVE: Record<SafetensorsDtype, string> = {
  F64: "Float64Array",
  F32: "Float32Array",
  F16: "Uint16Array",
  BF16: "Uint16Array",
  I64: "BigInt64Array",
  I32: "Int32Array",
  I16: "Int16Array",
  I8: "Int8Array",
  U8: "Uint8Array",
  BOOL: "Uint8Array",
};

function kindOf(a: TensorChunk): string {
  if (a instanceof Uint8Array) return "Uint8Array"; // Buffer included
  return Object.prototype.toString.call(a).slice(8, -1);
}

/** Little-endian bytes of one chunk in `dtype`, converting float arrays where needed. */
function* chunkBytes(
  file: string,
  name: string,
  dtype: SafetensorsDtype,
  a: TensorChunk,
): Generator<Uint8Array> {
  const kind = kindOf(a);
  const isFloat = a instanceof Float32Array || a instanceof Float64Array;
  if (kind === NATIVE[dtype] || kind === "Uint8Array") {
    for (let off = 0; off < a.byteLength; off += WRITE_CHUNK) {
      yield new Uint8Array(a.buffer, a.byteOffset + off, Math.min(WRITE_CHUNK, a.byteLength - off));
    }
    return;
  }
  if (!isFloat || !(dtype === "F16" || dtype === "BF16" || dtype === "F32" || dtype === "F64")) {
    throw new SafetensorsError(
      file,
      `tensor "${name}": data is a ${kind}, expected ${NATIVE[dtype]} for ${dtype}`,
    );
  }
  const step = WRITE_CHUNK / 8;
  for (let start = 0; start < a.length; start += step) {
    const src = a.subarray(start, Math.min(a.length, start + step));
    if (dtype === "F32") yield new Uint8Array(Float32Array.from(src).buffer);
    else if (dtype === "F64") yield new Uint8Array(Float64Array.from(src).buffer);
    else {
      const f = src instanceof Float32Array ? src : Float32Array.from(src);
      const f32 = new Uint32Array(f.buffer, f.byteOffset, f.length);
      const out = new Uint16Array(src.length);
      const conv = dtype === "F16" ? f32BitsToF16Bits : f32BitsToBf16Bits;
      for (let i = 0; i < out.length; i++) out[i] = conv(f32[i] as number);
      yield new Uint8Array(out.buffer);
    }
  }
}

function writeAll(fd: number, bytes: Uint8Array): void {
  let done = 0;
  while (done < bytes.byteLength) done += writeSync(fd, bytes, done, bytes.byteLength - done);
}

/** UTF-8 byte order, as the reference (Rust String Ord) sorts names. */
function compareUtf8(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8"));
}

/**
 * Writes `tensors` (and optional string `metadata`) to `path` as safetensors, atomically. Creates the parent
 * folder if needed. Throws a SafetensorsError naming the tensor for a bad dtype/shape or data of the wrong size.
 */
export function writeSafetensors(
  path: string,
  tensors: Record<string, TensorToWrite>,
  metadata?: Record<string, string>,
): void {
  const err = (problem: string) => new SafetensorsError(path, problem);
  const names = Object.keys(tensors).sort(compareUtf8);
  const header: Record<string, unknown> = {};
  if (metadata) {
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== "string") throw err(`__metadata__ value "${k}" is not a string`);
    }
    header.__metadata__ = metadata;
  }
  let offset = 0;
  const plan: { name: string; t: TensorToWrite; nbytes: number }[] = [];
  for (const name of names) {
    if (name === "__metadata__") throw err('"__metadata__" cannot be a tensor name');
    const t = tensors[name] as TensorToWrite;
    if (!Object.hasOwn(DTYPE_SIZES, t.dtype))
      throw err(`tensor "${name}": unknown dtype ${JSON.stringify(t.dtype)}`);
    if (!Array.isArray(t.shape) || !t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw err(
        `tensor "${name}": shape must be an array of non-negative integers, got ${JSON.stringify(t.shape)}`,
      );
    }
    const nbytes = t.shape.reduce((p, d) => p * d, DTYPE_SIZES[t.dtype]);
    if (!Number.isSafeInteger(nbytes))
      throw err(`tensor "${name}": shape ${JSON.stringify(t.shape)} is too large`);
    header[name] = { dtype: t.dtype, shape: [...t.shape], data_offsets: [offset, offset + nbytes] };
    plan.push({ name, t, nbytes });
    offset += nbytes;
  }
  let json = Buffer.from(JSON.stringify(header), "utf8");
  const pad = (8 - (json.length % 8)) % 8;
  if (pad) json = Buffer.concat([json, Buffer.alloc(pad, 0x20)]);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));

  mkdirSync(dirname(path), { recursive: true });
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`);
  const fd = openSync(tmp, "w");
  let closed = false;
  try {
    writeAll(fd, len);
    writeAll(fd, json);
    for (const { name, t, nbytes } of plan) {
      const produced = typeof t.data === "function" ? t.data() : t.data;
      const chunks: Iterable<TensorChunk> = ArrayBuffer.isView(produced) ? [produced] : produced;
      let written = 0;
      for (const chunk of chunks) {
        if (!ArrayBuffer.isView(chunk)) throw err(`tensor "${name}": data chunk is not a typed array`);
        for (const bytes of chunkBytes(path, name, t.dtype, chunk)) {
          if (written + bytes.byteLength > nbytes) {
            throw err(
              `tensor "${name}": data is larger than shape [${t.shape.join(", ")}] of ${t.dtype} (${nbytes} bytes)`,
            );
          }
          writeAll(fd, bytes);
          written += bytes.byteLength;
        }
      }
      if (written !== nbytes) {
        throw err(
          `tensor "${name}": data has ${written} bytes but shape [${t.shape.join(", ")}] of ${t.dtype} needs ${nbytes}`,
        );
      }
    }
    fsyncSync(fd);
    closeSync(fd);
    closed = true;
    renameSync(tmp, path);
  } catch (e) {
    if (!closed) closeSync(fd);
    rmSync(tmp, { force: true });
    throw e;
  }
}
