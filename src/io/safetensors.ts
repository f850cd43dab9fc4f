/**
 * safetensors reader: header parsed eagerly, tensor data read lazily by offset (never the whole file).
 * Format: https://github.com/huggingface/safetensors — u64 LE header length N, N bytes of JSON, data section.
 */
import { closeSync, fstatSync, openSync, readSync } from "node:fs";

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

export class SafetensorsError extends Error {
  constructor(
    readonly file: string,
    problem: string,
  ) {
    super(`${file}: ${problem}`);
    this.name = "SafetensorsError";
  }
}

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
        "pickle checkpoints (.bin/.ckpt/.pt) are never loaded (they can run arbitrary code); convert the model to safetensors",
      );
    }
    const fd = openSync(path, "r");
    try {
      const size = fstatSync(fd).size;
      const { headerLength, metadata, tensors } = parseHeader(path, fd, size);
      return new SafetensorsFile(path, fd, size, headerLength, metadata, tensors);
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

  /** Raw little-endian bytes of one tensor. */
  readBytes(name: string): Buffer {
    const t = this.info(name);
    if (this.fd === undefined) throw new SafetensorsError(this.path, "file is closed");
    const buf = Buffer.allocUnsafe(t.byteLength);
    let done = 0;
    while (done < t.byteLength) {
      const n = readSync(this.fd, buf, done, t.byteLength - done, t.fileOffset + done);
      if (n <= 0) throw new SafetensorsError(this.path, `unexpected end of file reading "${name}"`);
      done += n;
    }
    return buf;
  }

  /** The tensor in its own dtype (F16/BF16 as Uint16Array, BOOL as Uint8Array). */
  getTyped(
    name: string,
  ):
    | Float64Array
    | Float32Array
    | Uint16Array
    | BigInt64Array
    | Int32Array
    | Int16Array
    | Int8Array
    | Uint8Array {
    const t = this.info(name);
    const b = this.readBytes(name);
    const ab = b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength);
    switch (t.dtype) {
      case "F64":
        return new Float64Array(ab);
      case "F32":
        return new Float32Array(ab);
      case "F16":
      case "BF16":
        return new Uint16Array(ab);
      case "I64":
        return new BigInt64Array(ab);
      case "I32":
        return new Int32Array(ab);
      case "I16":
        return new Int16Array(ab);
      case "I8":
        return new Int8Array(ab);
      case "U8":
      case "BOOL":
        return new Uint8Array(ab);
    }
  }

  /** The tensor converted to float32 (I64 via Number; BOOL as 0/1). */
  getFloat32(name: string): Float32Array {
    const t = this.info(name);
    const a = this.getTyped(name);
    if (a instanceof Float32Array) return a;
    const out = new Float32Array(a.length);
    if (t.dtype === "F16") for (let i = 0; i < a.length; i++) out[i] = halfToFloat(a[i] as number);
    else if (t.dtype === "BF16") for (let i = 0; i < a.length; i++) out[i] = bfloat16ToFloat(a[i] as number);
    else for (let i = 0; i < a.length; i++) out[i] = Number(a[i]);
    return out;
  }

  /** The tensor converted to float64. */
  getFloat64(name: string): Float64Array {
    const t = this.info(name);
    const a = this.getTyped(name);
    if (a instanceof Float64Array) return a;
    if (t.dtype === "F16" || t.dtype === "BF16") return Float64Array.from(this.getFloat32(name));
    const out = new Float64Array(a.length);
    for (let i = 0; i < a.length; i++) out[i] = Number(a[i]);
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

const f32buf = new Float32Array(1);
const u32buf = new Uint32Array(f32buf.buffer);

export function bfloat16ToFloat(h: number): number {
  u32buf[0] = h << 16;
  return f32buf[0] as number;
}

export function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? Number.NaN : s * Number.POSITIVE_INFINITY;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

function parseHeader(
  path: string,
  fd: number,
  size: number,
): { headerLength: number; metadata: Record<string, string>; tensors: Map<string, TensorInfo> } {
  if (size < 8) throw new SafetensorsError(path, `file is ${size} bytes, too small to be safetensors`);
  const lenBuf = Buffer.alloc(8);
  readSync(fd, lenBuf, 0, 8, 0);
  const n = lenBuf.readBigUInt64LE(0);
  if (n > 100_000_000n) throw new SafetensorsError(path, `header length ${n} exceeds 100,000,000 bytes`);
  const headerLength = Number(n);
  if (8 + headerLength > size) {
    throw new SafetensorsError(path, `header length ${n} runs past the end of the ${size}-byte file`);
  }
  const hb = Buffer.alloc(headerLength);
  readSync(fd, hb, 0, headerLength, 8);
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(hb);
  } catch {
    throw new SafetensorsError(path, "header is not valid UTF-8");
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new SafetensorsError(path, `header is not valid JSON (${(e as Error).message})`);
  }
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw new SafetensorsError(path, "header is not a JSON object");
  }
  const metadata: Record<string, string> = {};
  const tensors = new Map<string, TensorInfo>();
  const dataStart = 8 + headerLength;
  for (const [name, v] of Object.entries(json as Record<string, unknown>)) {
    if (name === "__metadata__") {
      for (const [k, mv] of Object.entries((v ?? {}) as Record<string, unknown>)) {
        if (typeof mv !== "string")
          throw new SafetensorsError(path, `__metadata__ value "${k}" is not a string`);
        metadata[k] = mv;
      }
      continue;
    }
    const o = v as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    const dtype = o?.dtype as SafetensorsDtype;
    if (typeof dtype !== "string" || !(dtype in DTYPE_SIZES)) {
      throw new SafetensorsError(path, `tensor "${name}" has unknown dtype ${JSON.stringify(o?.dtype)}`);
    }
    const shape = o.shape as number[];
    const offs = o.data_offsets as [number, number];
    const [a, b] = offs;
    tensors.set(name, {
      name,
      dtype,
      shape,
      dataOffsets: [a, b],
      fileOffset: dataStart + a,
      byteLength: b - a,
    });
  }
  return { headerLength, metadata, tensors };
}
