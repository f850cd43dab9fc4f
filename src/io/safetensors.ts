/**
 * safetensors reader: header parsed and validated eagerly, tensor data read lazily by offset (never the whole
 * file). Format: https://github.com/huggingface/safetensors — u64 LE header length N, N bytes of JSON header
 * `{name: {dtype, shape, data_offsets: [start, end]}, "__metadata__"?: {str: str}}`, then the data section.
 * Validation follows the reference Rust reader (safetensors/src/tensor.rs, `read_metadata` + `validate`), plus
 * duplicate-key detection (strict_json.ts keeps every key and every number's exact text).
 * Little-endian hosts are assumed (every platform Node ships prebuilt binaries for).
 */
import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import { bf16BitsToF32Bits, f16BitsToF32Bits } from "./half_float.js";
import {
  DuplicateKeyError,
  describe,
  JsonNumber,
  JsonObject,
  JsonParser,
  JsonSyntaxError,
  type JsonValue,
} from "./strict_json.js";

export type SafetensorsDtype = "F64" | "F32" | "F16" | "BF16" | "I64" | "I32" | "I16" | "I8" | "U8" | "BOOL";

export const DTYPE_SIZES: Record<SafetensorsDtype, number> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U8: 1,
  BOOL: 1,
};

export interface TensorInfo {
  name: string;
  dtype: SafetensorsDtype;
  shape: number[];
  /** Offsets relative to the data section, as in the header. */
  dataOffsets: [number, number];
  /** Absolute byte offset of the tensor's data in the file. */
  fileOffset: number;
  byteLength: number;
}

export type SafetensorsTypedArray =
  | Float64Array
  | Float32Array
  | Uint16Array
  | BigInt64Array
  | Int32Array
  | Int16Array
  | Int8Array
  | Uint8Array;

export class SafetensorsError extends Error {
  constructor(
    readonly file: string,
    problem: string,
  ) {
    super(`${file}: ${problem}`);
    this.name = "SafetensorsError";
  }
}

const TYPED_VIEWS: Record<SafetensorsDtype, new (b: ArrayBuffer) => SafetensorsTypedArray> = {
  F64: Float64Array,
  F32: Float32Array,
  F16: Uint16Array,
  BF16: Uint16Array,
  I64: BigInt64Array,
  I32: Int32Array,
  I16: Int16Array,
  I8: Int8Array,
  U8: Uint8Array,
  BOOL: Uint8Array,
};

/** Largest header the reference reader accepts. */
export const MAX_HEADER_SIZE = 100_000_000;
const TWO_POW_53 = 2n ** 53n;
/** Bytes per readSync call (readSync cannot take more than 2 GiB at once). */
const READ_CHUNK = 1 << 30;
/** Elements per chunk when converting F16/BF16 to float32 (bounds the temporary buffer to 32 MiB). */
const CONVERT_CHUNK = 1 << 24;

export class SafetensorsFile {
  private fd: number | undefined;

  private constructor(
    readonly path: string,
    fd: number,
    readonly fileSize: number,
    readonly headerLength: number,
    readonly metadata: Record<string, string>,
    readonly tensors: ReadonlyMap<string, TensorInfo>,
  ) {
    this.fd = fd;
  }

  /** Byte offset of the data section (8 + header length). */
  get dataStart(): number {
    return 8 + this.headerLength;
  }

  static open(path: string): SafetensorsFile {
    const lower = path.toLowerCase();
    if (/\.(bin|ckpt|pt|pth|pkl)$/.test(lower)) {
      throw new SafetensorsError(
        path,
        "pickle checkpoints (.bin/.ckpt/.pt/.pth) are never loaded (they can run arbitrary code); convert the model to safetensors",
      );
    }
    let fd: number;
    try {
      fd = openSync(path, "r");
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === "ENOENT") throw new SafetensorsError(path, "file not found");
      if (code === "EISDIR") throw new SafetensorsError(path, "is a directory, not a safetensors file");
      throw new SafetensorsError(path, `cannot open file (${(e as Error).message})`);
    }
    try {
      const st = fstatSync(fd);
      if (st.isDirectory()) throw new SafetensorsError(path, "is a directory, not a safetensors file");
      const { headerLength, metadata, tensors } = parseHeader(path, fd, st.size);
      return new SafetensorsFile(path, fd, st.size, headerLength, metadata, tensors);
    } catch (e) {
      closeSync(fd);
      throw e;
    }
  }

  keys(): string[] {
    return [...this.tensors.keys()];
  }

  has(name: string): boolean {
    return this.tensors.has(name);
  }

  info(name: string): TensorInfo {
    const t = this.tensors.get(name);
    if (!t) throw new SafetensorsError(this.path, `no tensor named "${name}"`);
    return t;
  }

  /** Reads `dst.byteLength` bytes of tensor `t`, starting `at` bytes into its data. */
  private readInto(t: TensorInfo, dst: Uint8Array, at = 0): void {
    if (this.fd === undefined) throw new SafetensorsError(this.path, "file is closed");
    let done = 0;
    while (done < dst.byteLength) {
      const len = Math.min(dst.byteLength - done, READ_CHUNK);
      const n = readSync(this.fd, dst, done, len, t.fileOffset + at + done);
      if (n <= 0) throw new SafetensorsError(this.path, `unexpected end of file reading "${t.name}"`);
      done += n;
    }
  }

  /** Raw little-endian bytes of one tensor (a fresh, 8-byte-aligned buffer). */
  readBytes(name: string): Buffer {
    const t = this.info(name);
    const ab = new ArrayBuffer(t.byteLength);
    this.readInto(t, new Uint8Array(ab));
    return Buffer.from(ab);
  }

  /** The tensor in its own dtype (F16/BF16 as Uint16Array bit patterns, BOOL as Uint8Array). */
  getTyped(name: string): SafetensorsTypedArray {
    const t = this.info(name);
    const ab = new ArrayBuffer(t.byteLength);
    this.readInto(t, new Uint8Array(ab));
    return new TYPED_VIEWS[t.dtype](ab);
  }

  /** The tensor converted to float32 (F16/BF16 exactly; F64 and I64 rounded; BOOL as 0/1). */
  getFloat32(name: string): Float32Array {
    const t = this.info(name);
    if (t.dtype === "F16" || t.dtype === "BF16") {
      // Chunked: the whole tensor is never held twice (large F16 weights are hundreds of MB).
      const n = t.byteLength / 2;
      const out = new Float32Array(n);
      const outBits = new Uint32Array(out.buffer);
      const chunk = new Uint16Array(Math.min(n, CONVERT_CHUNK));
      const chunkBytes = new Uint8Array(chunk.buffer);
      for (let start = 0; start < n; start += chunk.length) {
        const len = Math.min(chunk.length, n - start);
        this.readInto(t, chunkBytes.subarray(0, len * 2), start * 2);
        const src = chunk.subarray(0, len);
        const dst = outBits.subarray(start, start + len);
        if (t.dtype === "F16") f16BitsToF32Bits(src, dst);
        else bf16BitsToF32Bits(src, dst);
      }
      return out;
    }
    const a = this.getTyped(name);
    if (a instanceof Float32Array) return a;
    const out = new Float32Array(a.length);
    if (a instanceof BigInt64Array) for (let i = 0; i < a.length; i++) out[i] = Number(a[i] as bigint);
    else out.set(a as Exclude<SafetensorsTypedArray, BigInt64Array>);
    return out;
  }

  /** The tensor converted to float64 (I64 beyond 2^53 rounded). */
  getFloat64(name: string): Float64Array {
    const t = this.info(name);
    if (t.dtype === "F16" || t.dtype === "BF16") return Float64Array.from(this.getFloat32(name));
    const a = this.getTyped(name);
    if (a instanceof Float64Array) return a;
    const out = new Float64Array(a.length);
    if (a instanceof BigInt64Array) for (let i = 0; i < a.length; i++) out[i] = Number(a[i] as bigint);
    else out.set(a as Exclude<SafetensorsTypedArray, BigInt64Array | Uint16Array>);
    return out;
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }
}

/** Opens and validates a safetensors file; data is read lazily. */
export function loadSafetensors(path: string): SafetensorsFile {
  return SafetensorsFile.open(path);
}

// ---------------------------------------------------------------------------------------------------------
// Header validation (reference: read_metadata + Metadata::validate)

/** A non-negative integer (exact JSON text) of at most 2^53, as a number; else an error message. */
function toIndex(v: JsonValue | undefined, what: string): number | string {
  if (!(v instanceof JsonNumber) || !/^(?:0|[1-9][0-9]*)$/.test(v.raw)) {
    return `${what} must be a non-negative integer, got ${v === undefined ? "nothing" : describe(v)}`;
  }
  const big = BigInt(v.raw);
  if (big > TWO_POW_53) return `${what} ${v.raw} is above 2^53`;
  return Number(big);
}

interface Parsed {
  headerLength: number;
  metadata: Record<string, string>;
  tensors: Map<string, TensorInfo>;
}

function readExactly(path: string, fd: number, buf: Uint8Array, position: number): void {
  let done = 0;
  while (done < buf.byteLength) {
    const n = readSync(fd, buf, done, Math.min(buf.byteLength - done, READ_CHUNK), position + done);
    if (n <= 0) throw new SafetensorsError(path, "unexpected end of file reading the header");
    done += n;
  }
}

/** Hint for a common mistake: a PyTorch checkpoint (zip or raw pickle) saved under a .safetensors name. */
function pickleHint(lenBuf: Buffer): string {
  if (lenBuf[0] === 0x50 && lenBuf[1] === 0x4b && lenBuf[2] === 0x03 && lenBuf[3] === 0x04) {
    return " (this looks like a zip / PyTorch checkpoint, which is never loaded: convert it to safetensors)";
  }
  if (lenBuf[0] === 0x80 && (lenBuf[1] ?? 0) >= 2 && (lenBuf[1] ?? 0) <= 5) {
    return " (this looks like a Python pickle, which is never loaded: convert it to safetensors)";
  }
  return "";
}

function parseHeader(path: string, fd: number, size: number): Parsed {
  const fail: (problem: string) => never = (problem) => {
    throw new SafetensorsError(path, problem);
  };
  if (size < 8) fail(`file is ${size} bytes, too small to be safetensors (at least 8 needed)`);
  const lenBuf = Buffer.alloc(8);
  readExactly(path, fd, lenBuf, 0);
  const n = lenBuf.readBigUInt64LE(0);
  if (n > BigInt(MAX_HEADER_SIZE)) {
    fail(`header length ${n} exceeds the ${MAX_HEADER_SIZE}-byte limit${pickleHint(lenBuf)}`);
  }
  const headerLength = Number(n);
  if (8 + headerLength > size) {
    fail(`header length ${n} runs past the end of the ${size}-byte file${pickleHint(lenBuf)}`);
  }
  const hb = Buffer.alloc(headerLength);
  readExactly(path, fd, hb, 8);
  let text = "";
  try {
    text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(hb);
  } catch {
    fail("header is not valid UTF-8");
  }
  let root: JsonValue = null;
  try {
    root = new JsonParser(text).parseDocument();
  } catch (e) {
    if (e instanceof DuplicateKeyError) {
      if (e.depth === 1) fail(`duplicate tensor name "${e.key}" in the header`);
      fail(`duplicate key "${e.key}" in the header`);
    }
    if (e instanceof JsonSyntaxError) fail(`header is not valid JSON (${e.message})`);
    throw e;
  }
  if (!(root instanceof JsonObject)) return fail(`header is not a JSON object (got ${describe(root)})`);

  const metadata: Record<string, string> = {};
  const list: TensorInfo[] = [];
  const dataStart = 8 + headerLength;
  for (const [name, v] of root.entries) {
    if (name === "__metadata__") {
      if (v === null) continue; // the reference reads it as Option<HashMap>: null means none
      if (!(v instanceof JsonObject)) return fail(`__metadata__ must be an object, got ${describe(v)}`);
      for (const [k, mv] of v.entries) {
        if (typeof mv !== "string") fail(`__metadata__ value "${k}" is not a string (got ${describe(mv)})`);
        metadata[k] = mv;
      }
      continue;
    }
    const where = `tensor "${name}"`;
    if (!(v instanceof JsonObject)) return fail(`${where}: entry must be an object, got ${describe(v)}`);
    const dtypeV = v.entries.get("dtype");
    if (dtypeV === undefined) fail(`${where}: missing "dtype"`);
    if (typeof dtypeV !== "string" || !Object.hasOwn(DTYPE_SIZES, dtypeV)) {
      return fail(
        `${where}: unknown or unsupported dtype ${describe(dtypeV ?? null)} (supported: ${Object.keys(DTYPE_SIZES).join(", ")})`,
      );
    }
    const dtype = dtypeV as SafetensorsDtype;
    const shapeV = v.entries.get("shape");
    if (!Array.isArray(shapeV)) {
      return fail(
        `${where}: "shape" must be an array of non-negative integers, got ${shapeV === undefined ? "nothing" : describe(shapeV)}`,
      );
    }
    const shape: number[] = [];
    for (const [i, d] of shapeV.entries()) {
      const r = toIndex(d, `"shape"[${i}]`);
      if (typeof r === "string") fail(`${where}: ${r}`);
      shape.push(r);
    }
    const offV = v.entries.get("data_offsets");
    if (!Array.isArray(offV) || offV.length !== 2) {
      return fail(
        `${where}: "data_offsets" must be an array [start, end], got ${offV === undefined ? "nothing" : describe(offV)}`,
      );
    }
    const begin = toIndex(offV[0], '"data_offsets" start');
    const end = toIndex(offV[1], '"data_offsets" end');
    if (typeof begin === "string") return fail(`${where}: ${begin}`);
    if (typeof end === "string") return fail(`${where}: ${end}`);
    if (begin > end) fail(`${where}: data_offsets [${begin}, ${end}] have start > end`);
    const nbytes = shape.reduce((p, d) => p * BigInt(d), BigInt(DTYPE_SIZES[dtype]));
    if (nbytes > TWO_POW_53) {
      fail(
        `${where}: shape [${shape.join(", ")}] × ${DTYPE_SIZES[dtype]} bytes (${dtype}) overflows (${nbytes} bytes)`,
      );
    }
    if (BigInt(end - begin) !== nbytes) {
      fail(
        `${where}: data_offsets [${begin}, ${end}] span ${end - begin} bytes but shape [${shape.join(", ")}] of ${dtype} needs ${nbytes}`,
      );
    }
    list.push({
      name,
      dtype,
      shape,
      dataOffsets: [begin, end],
      fileOffset: dataStart + begin,
      byteLength: end - begin,
    });
  }

  // Spans sorted by (start, end) must tile the data section exactly: no gap, no overlap, nothing after.
  const dataSize = size - dataStart;
  const sorted = [...list].sort(
    (a, b) => a.dataOffsets[0] - b.dataOffsets[0] || a.dataOffsets[1] - b.dataOffsets[1],
  );
  let cursor = 0;
  let prev: TensorInfo | undefined;
  for (const t of sorted) {
    const [s, e] = t.dataOffsets;
    const after = prev ? ` (after tensor "${prev.name}", which ends at ${cursor})` : "";
    if (s > cursor)
      fail(`tensor "${t.name}": gap in the data section: it starts at ${s}, expected ${cursor}${after}`);
    if (s < cursor) fail(`tensor "${t.name}": data_offsets [${s}, ${e}] overlap the previous tensor${after}`);
    if (e > dataSize) {
      fail(
        `tensor "${t.name}": data_offsets [${s}, ${e}] run past the end of the data section (${dataSize} bytes; file truncated?)`,
      );
    }
    cursor = e;
    prev = t;
  }
  if (cursor !== dataSize) {
    fail(
      `data section is ${dataSize} bytes but the tensors cover ${cursor}: ${dataSize - cursor} trailing bytes at the end of the file`,
    );
  }
  return { headerLength, metadata, tensors: new Map(list.map((t) => [t.name, t])) };
}
