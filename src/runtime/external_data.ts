/**
 * Where onnxruntime should look for an external-data file.
 *
 * onnxruntime (1.30) only accepts external-data `location`s that are relative, contain no `..`, and whose
 * resolved real path stays inside the session's external-data folder. Hugging Face hub caches store each
 * `snapshots/<rev>/<file>` as a symlink to `../../blobs/<sha>`, which fails that check. Resolving the file first
 * gives a (folder, location) pair onnxruntime accepts: folder = dirname(realpath(file)), location = its basename.
 */
import { realpath } from "node:fs/promises";
import path from "node:path";

export interface ExternalDataFile {
  /** Real (symlink-free) folder; pass as createSession's `externalDataFolder`. */
  folder: string;
  /** File name inside `folder`; use as the initializers' external-data `location`. */
  location: string;
}

export async function resolveExternalDataFile(file: string): Promise<ExternalDataFile> {
  const real = await realpath(file);
  return { folder: path.dirname(real), location: path.basename(real) };
}
