/**
 * The float32 spill file of a graph whose checkpoint stores weights as float16 / bfloat16.
 *
 * Why: referencing the fp16 tensors as external data behind a `Cast` to float32 makes onnxruntime fold the Casts
 * at session creation while it still holds the fp16 data: the x4 UNet peaked at 3.7 GB (2.2 GB from a float32
 * checkpoint). Instead, the weights the graph uses are expanded (exactly) to float32 into one temporary file that
 * the graph references as external data, so onnxruntime sees a plain float32 checkpoint.
 *
 * Layout: every external weight of the graph, float32 ones copied too, since onnxruntime resolves external data
 * against a single folder per session. Tensors are 64-byte aligned, in graph order.
 *
 * The file name carries the identity of what it was made from (`<name>.fp32.id-<hex>.bin`: a hash of the source
 * files' real paths, sizes and mtimes and of the layout), so the graph bytes, and with them the graph cache key,
 * are the same on every run for the same checkpoint (src/runtime/graph_cache.ts keys such a self-identified file
 * by its name instead of its path and mtime: a fresh temporary file would otherwise always miss).
 *
 * Lifetime: written into a fresh private folder under os.tmpdir() (honours TMPDIR) just before the session is
 * created, removed right after creation settles (resolved or rejected). onnxruntime 1.30 maps external data
 * (mmap, MAP_PRIVATE) and may keep mappings for the session's life (weights it does not repack); removing the
 * file then is safe on Linux and macOS (the data stays reachable until unmapped, the disk space is freed when the
 * session goes). Windows refuses to delete a mapped file (expected from its semantics, not tested here): there the
 * removal fails quietly and is retried at process exit; a folder left by a process that died is removed by the
 * next spill of any sdx4 process.
 */
import { createHash } from "node:crypto";
import { readdirSync, rmSync, statSync } from "node:fs";
import { type FileHandle, mkdtemp, open, readdir, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { bf16BitsToF32Bits, f16BitsToF32Bits } from "../io/half_float.js";

/** One weight as stored in its source file. */
export interface SpillSource {
  /** Real path of the safetensors file. */
  file: string;
  /** Absolute byte offset and byte length of the tensor data in that file. */
  offset: number;
  length: number;
  dtype: "float32" | "float16" | "bfloat16";
}

export interface SpillItem {
  source: SpillSource;
  /** Byte offset and length of the float32 data in the spill file. */
  offset: number;
  length: number;
}

export interface SpillLayout {
  /** File name inside the spill folder (the graph's external-data `location`). */
  location: string;
  items: SpillItem[];
  /** Size of the spill file in bytes. */
  totalBytes: number;
}

const ALIGN = 64;
/** Source bytes per read (the float32 output buffer is twice that for fp16 / bf16). */
const CHUNK = 8 << 20;
const FOLDER_PREFIX = "sdx4-spill-";
/**
 * A dead process's folder is swept only after this long: a pid seen from another pid namespace (containers
 * sharing a temp folder) may look dead while its spill is being read; a spill is needed for seconds only.
 */
const STALE_MS = 60 * 60 * 1000;
/** Bumped when the file layout changes meaning (it is part of the identity hash). */
const SPILL_FORMAT = 1;

export class SpillFileError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "SpillFileError";
  }
}

/**
 * Places the float32 copy of each source weight (in order) and names the file after its identity. Stats the
 * source files (their size and mtime are part of the name).
 */
export function planSpill(name: string, sources: SpillSource[]): SpillLayout {
  const files = [...new Set(sources.map((s) => s.file))];
  const hash = createHash("sha256");
  hash.update(JSON.stringify({ format: SPILL_FORMAT, align: ALIGN }));
  for (const f of files) {
    const st = statSync(f);
    hash.update(JSON.stringify({ file: f, size: st.size, mtime_ms: st.mtimeMs }));
  }
  const items: SpillItem[] = [];
  let end = 0;
  for (const s of sources) {
    const elemBytes = s.dtype === "float32" ? 4 : 2;
    if (s.length % elemBytes !== 0) {
      throw new SpillFileError(
        `${s.file}: the tensor data at byte ${s.offset} (${s.length} bytes) is not a whole number of ${s.dtype} values`,
      );
    }
    const offset = Math.ceil(end / ALIGN) * ALIGN;
    const length = (s.length / elemBytes) * 4;
    items.push({ source: s, offset, length });
    end = offset + length;
    hash.update(`${files.indexOf(s.file)}:${s.offset}:${s.length}:${s.dtype}:${offset}\n`);
  }
  const safe = name.replace(/[^A-Za-z0-9_-]+/g, "_").slice(0, 40) || "graph";
  return { location: `${safe}.fp32.id-${hash.digest("hex").slice(0, 32)}.bin`, items, totalBytes: end };
}

/** Folders to delete at exit: spills being written or in use, and removals that failed. */
const pending = new Set<string>();
let exitHookInstalled = false;

function track(folder: string): void {
  pending.add(folder);
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once("exit", () => {
    for (const f of pending) {
      try {
        rmSync(f, { recursive: true, force: true });
      } catch {
        // Still mapped (Windows) or already gone: the next spill's sweep retries.
      }
    }
  });
}

/** Whether process `pid` is gone (EPERM: it exists under another user). */
function isDead(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return false;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "ESRCH";
  }
}

/** Removes old spill folders of processes that no longer exist (killed before their exit hook ran). */
export async function sweepStaleSpills(dir = tmpdir()): Promise<void> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return;
  }
  for (const n of names) {
    const m = /^sdx4-spill-(\d+)-/.exec(n);
    if (!m || Number(m[1]) === process.pid || !isDead(Number(m[1]))) continue;
    const p = path.join(dir, n);
    const age = await stat(p).then(
      (st) => Date.now() - st.mtimeMs,
      () => 0,
    );
    if (age > STALE_MS) await rm(p, { recursive: true, force: true }).catch(() => {});
  }
}

/**
 * A fresh private folder for one spill file (created now, empty: the runtime wants the external-data folder to
 * exist before it knows whether it will read it); `write` fills it, `remove` deletes it.
 */
export class SpillFolder {
  private written: Promise<string> | undefined;

  private constructor(readonly folder: string) {}

  /** Creates the folder under `dir` (default os.tmpdir()), first sweeping folders that dead processes left. */
  static async create(dir = tmpdir()): Promise<SpillFolder> {
    await sweepStaleSpills(dir);
    let folder: string;
    try {
      folder = await mkdtemp(path.join(dir, `${FOLDER_PREFIX}${process.pid}-`));
    } catch (e) {
      throw new SpillFileError(`cannot create a temporary folder in ${dir}: ${(e as Error).message}`);
    }
    track(folder);
    return new SpillFolder(folder);
  }

  /**
   * Writes the spill file of `layout` (once: later calls return the same promise), streaming: one chunk of one
   * weight in memory at a time. Resolves to the file's path; a failure deletes what was written.
   */
  write(layout: SpillLayout): Promise<string> {
    this.written ??= this.writeOnce(layout);
    return this.written;
  }

  private async writeOnce(layout: SpillLayout): Promise<string> {
    const file = path.join(this.folder, layout.location);
    try {
      await writeItems(file, layout);
    } catch (e) {
      await rm(file, { force: true }).catch(() => {});
      if (e instanceof SpillFileError) throw e;
      const gb = (layout.totalBytes / 1e9).toFixed(2);
      const hint =
        (e as NodeJS.ErrnoException).code === "ENOSPC"
          ? " (set TMPDIR to a folder with more free space)"
          : "";
      throw new SpillFileError(
        `cannot write the float32 copy of the float16/bfloat16 weights (${gb} GB) to ${file}: ${(e as Error).message}${hint}`,
      );
    }
    return file;
  }

  /** Deletes the folder. Never throws: on Windows a file onnxruntime still maps is left for the exit hook. */
  async remove(): Promise<void> {
    try {
      await this.written?.catch(() => {}); // never delete under a write in progress
      await rm(this.folder, { recursive: true, force: true });
      pending.delete(this.folder);
    } catch {
      // Windows: onnxruntime still maps it; the exit hook (or a later sweep) removes it.
    }
  }
}

async function writeItems(file: string, layout: SpillLayout): Promise<void> {
  const out = await open(file, "wx", 0o600);
  const sources = new Map<string, FileHandle>();
  // Two buffer slots: chunk i is written (libuv thread pool) while chunk i + 1 is read and converted.
  const slots = [0, 1].map(() => ({
    in: new Uint8Array(CHUNK),
    out: new Uint8Array(CHUNK * 2),
    writing: undefined as Promise<void> | undefined,
  }));
  let next = 0;
  try {
    for (const item of layout.items) {
      const s = item.source;
      let src = sources.get(s.file);
      if (!src) {
        src = await open(s.file, "r");
        sources.set(s.file, src);
      }
      for (let done = 0; done < s.length; ) {
        const slot = slots[next]!;
        next = 1 - next;
        await slot.writing;
        const n = Math.min(CHUNK, s.length - done);
        await readFully(src, s.file, slot.in.subarray(0, n), s.offset + done);
        let data = slot.in.subarray(0, n);
        if (s.dtype !== "float32") {
          const half = new Uint16Array(slot.in.buffer, 0, n / 2);
          const bits = new Uint32Array(slot.out.buffer, 0, n / 2);
          if (s.dtype === "float16") f16BitsToF32Bits(half, bits);
          else bf16BitsToF32Bits(half, bits);
          data = slot.out.subarray(0, n * 2);
        }
        slot.writing = writeFully(out, data, item.offset + (s.dtype === "float32" ? done : done * 2));
        slot.writing.catch(() => {}); // awaited when the slot is reused or at the end
        done += n;
      }
    }
    for (const slot of slots) await slot.writing;
    // A trailing empty tensor is placed past the last byte written: make the size exact.
    await out.truncate(layout.totalBytes);
  } finally {
    await Promise.allSettled(slots.map((slot) => slot.writing));
    await out.close().catch(() => {});
    for (const h of sources.values()) await h.close().catch(() => {});
  }
}

async function writeFully(h: FileHandle, data: Uint8Array, position: number): Promise<void> {
  for (let done = 0; done < data.byteLength; ) {
    const { bytesWritten } = await h.write(data, done, data.byteLength - done, position + done);
    done += bytesWritten;
  }
}

async function readFully(h: FileHandle, name: string, dst: Uint8Array, position: number): Promise<void> {
  for (let done = 0; done < dst.byteLength; ) {
    const { bytesRead } = await h.read(dst, done, dst.byteLength - done, position + done);
    if (bytesRead <= 0)
      throw new SpillFileError(
        `${name}: unexpected end of file at byte ${position + done} (truncated or changed?)`,
      );
    done += bytesRead;
  }
}

/** @internal Test hook: spill folder names of this process under `dir`. */
export function spillFoldersIn(dir = tmpdir()): string[] {
  return readdirSync(dir).filter((n) => n.startsWith(`${FOLDER_PREFIX}${process.pid}-`));
}
