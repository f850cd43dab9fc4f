/**
 * Atomic file output: the bytes go to a temporary file in the destination's folder, which is flushed and then
 * renamed over the destination. A reader sees either the old file or the complete new one, never a partial
 * write; on any error the temporary file is removed and the destination is left untouched.
 */
import { randomBytes } from "node:crypto";
import { open, rename, unlink } from "node:fs/promises";
import { basename, dirname, join } from "node:path";

export type AtomicWriteSource = Uint8Array | Iterable<Uint8Array> | AsyncIterable<Uint8Array>;

function isChunks(x: AtomicWriteSource): x is Iterable<Uint8Array> | AsyncIterable<Uint8Array> {
  return !(x instanceof Uint8Array);
}

/** Temporary name next to `path`: ".<name>.<pid>.<random>.tmp". */
export function tempPathFor(path: string): string {
  return join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`);
}

/**
 * Write `bytes` (one buffer, or chunks from a sync/async iterable) to `path` atomically. The temp file is
 * created exclusively with mode 0o666 (before umask), fsync'ed, closed and renamed; on failure it is removed.
 */
export async function writeFileAtomic(path: string, bytes: AtomicWriteSource): Promise<void> {
  const tmp = tempPathFor(path);
  const fh = await open(tmp, "wx", 0o666);
  let closed = false;
  try {
    if (isChunks(bytes)) {
      for await (const chunk of bytes) await fh.write(chunk);
    } else {
      await fh.write(bytes);
    }
    await fh.sync();
    closed = true;
    await fh.close();
    await rename(tmp, path);
  } catch (e) {
    if (!closed) await fh.close().catch(() => {});
    await unlink(tmp).catch(() => {});
    throw e;
  }
}
