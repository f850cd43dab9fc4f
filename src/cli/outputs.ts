/**
 * Output files of `sdx4 upscale`: the naming rules (pure, unit-tested) and the all-or-nothing write.
 *
 * Naming (`-o`), with outputs = inputs × --num-images, in batch order n = input·numImages + k (each input's images
 * together, as the pipeline returns them):
 * - one output: `-o` is the file (`-o out/` with a trailing slash is a folder);
 * - several outputs: `-o` is a folder (created if missing), holding `<stem>.<ext>` per input, or `<stem>-<k>.<ext>`
 *   with --num-images > 1 (k from 0); when two inputs share a stem, every name is prefixed with the input's index
 *   (`<i>_<stem>`);
 * - a `{n}` pattern (`-o out/up-{n}.png`) names every output (n from 0), whatever the count;
 * - npy: `-o x.npy` receives the whole batch as one float32 [N, H, W, 3] array, exactly diffusers'
 *   `output_type="np"`; a folder or `{n}` pattern gives one [1, H, W, 3] file per output.
 * Format: --output-type, else the extension of `-o` (.png, .jpg/.jpeg, .webp, .npy), else png. An extension that
 * contradicts --output-type, an unknown extension, or a single-file name for several images is a usage error.
 */
import { mkdir, unlink } from "node:fs/promises";
import { basename, dirname, extname, join, resolve } from "node:path";
import { writeFileAtomic } from "../image/atomic_write.js";
import { encodeImage } from "../image/encode.js";
import { encodeNpy } from "../image/npy.js";
import type { RgbImage } from "../image/types.js";
import { UsageError } from "./errors.js";

export type OutputFormat = "png" | "jpg" | "webp" | "npy";
export const OUTPUT_FORMATS: readonly OutputFormat[] = ["png", "jpg", "webp", "npy"];

export interface OutputFile {
  path: string;
  /** Indices into the output batch written to this file (one, or all for a batched .npy). */
  indices: number[];
}

export interface OutputPlan {
  format: OutputFormat;
  /** "file": -o as given; "folder": names derived from the inputs; "pattern": -o with {n}; "batch": one .npy. */
  mode: "file" | "folder" | "pattern" | "batch";
  files: OutputFile[];
}

const PATTERN = "{n}";

/** The format an extension names, undefined for no extension; throws for an unknown one. */
export function formatFromExtension(path: string): OutputFormat | undefined {
  const ext = extname(basename(path)).toLowerCase();
  if (ext === "") return undefined;
  if (ext === ".png") return "png";
  if (ext === ".jpg" || ext === ".jpeg") return "jpg";
  if (ext === ".webp") return "webp";
  if (ext === ".npy") return "npy";
  throw new UsageError(
    `-o ${path}: unknown extension ${ext}; use .png, .jpg, .webp or .npy (or set --output-type)`,
  );
}

function isFolderSpelling(o: string): boolean {
  return o.endsWith("/") || o.endsWith("\\") || o === "." || o === "..";
}

function stemOf(input: string): string {
  const b = basename(input);
  const e = extname(b);
  return e ? b.slice(0, -e.length) : b;
}

/**
 * Where each output goes. `outputType` is the --output-type value (already validated) or undefined.
 * Pure: an existing folder given as `-o` for a single output is caught later (checkOutputTargets).
 */
export function planOutputs(
  o: string,
  inputs: readonly string[],
  numImages: number,
  outputType: OutputFormat | undefined,
): OutputPlan {
  if (o === "") throw new UsageError("-o: the output path is empty");
  const total = inputs.length * numImages;
  const pattern = o.includes(PATTERN);
  const folder = !pattern && (isFolderSpelling(o) || total > 1);
  const extFormat = folder && isFolderSpelling(o) ? undefined : formatFromExtension(o);
  if (outputType && extFormat && extFormat !== outputType) {
    throw new UsageError(`-o ${o} has the extension of ${extFormat}, but --output-type is ${outputType}`);
  }
  const format: OutputFormat = outputType ?? extFormat ?? "png";

  if (pattern) {
    const files = Array.from({ length: total }, (_, n) => ({
      path: o.split(PATTERN).join(String(n)),
      indices: [n],
    }));
    return { format, mode: "pattern", files };
  }
  if (!folder) return { format, mode: "file", files: [{ path: o, indices: [0] }] };
  if (format === "npy" && extFormat === "npy") {
    return {
      format,
      mode: "batch",
      files: [{ path: o, indices: Array.from({ length: total }, (_, n) => n) }],
    };
  }
  if (extFormat !== undefined) {
    throw new UsageError(
      `-o ${o} names one file, but there are ${total} outputs (${inputs.length} input(s) × --num-images ` +
        `${numImages}); pass a folder or a pattern with {n}` +
        (format === "npy" ? "" : ", or --output-type npy with a .npy file for one batched array"),
    );
  }
  const stems = inputs.map(stemOf);
  const clash = new Set(stems).size !== stems.length;
  const files: OutputFile[] = [];
  stems.forEach((stem, i) => {
    const base = clash ? `${i}_${stem}` : stem;
    for (let k = 0; k < numImages; k++) {
      const name = numImages > 1 ? `${base}-${k}.${format}` : `${base}.${format}`;
      files.push({ path: join(o, name), indices: [i * numImages + k] });
    }
  });
  return { format, mode: "folder", files };
}

/** Usage errors that need the file system: overwriting an input, a folder where a file is meant. */
export function checkOutputTargets(
  plan: OutputPlan,
  inputs: readonly string[],
  isDirectory: (p: string) => boolean,
): void {
  const inputSet = new Set(inputs.map((p) => resolve(p)));
  const seen = new Set<string>();
  for (const f of plan.files) {
    const abs = resolve(f.path);
    if (inputSet.has(abs)) throw new UsageError(`-o: output ${f.path} would overwrite an input file`);
    if (seen.has(abs)) throw new UsageError(`-o: two outputs would be written to ${f.path}`);
    seen.add(abs);
    if (isDirectory(f.path)) {
      throw new UsageError(
        `-o ${f.path} is a folder; for one output -o names a file (end it with / to write into the folder)`,
      );
    }
  }
}

export type UpscaleResult =
  | { kind: "images"; images: RgbImage[] }
  | { kind: "np"; data: Float32Array; shape: [number, number, number, number] };

/** The bytes of every output file, encoded in memory (nothing touches the disk yet). */
export async function encodeOutputs(plan: OutputPlan, result: UpscaleResult): Promise<Buffer[]> {
  return Promise.all(
    plan.files.map(async (f) => {
      if (result.kind === "np") {
        const [, h, w, c] = result.shape;
        const per = h * w * c;
        const first = f.indices[0] as number;
        const count = f.indices.length;
        const data = result.data.subarray(first * per, (first + count) * per);
        return encodeNpy(data, [count, h, w, c]);
      }
      if (plan.format === "npy") throw new Error("npy output needs the float array");
      const img = result.images[f.indices[0] as number];
      if (!img) throw new Error(`no image ${f.indices[0]} in the result`);
      return encodeImage(img, plan.format);
    }),
  );
}

/**
 * Writes every file atomically (temporary file + rename), creating missing folders. A file is complete or
 * absent; if a later write fails, the files this call already wrote are removed again.
 */
export async function writeOutputs(plan: OutputPlan, bytes: Buffer[]): Promise<void> {
  const written: string[] = [];
  try {
    for (const [i, f] of plan.files.entries()) {
      await mkdir(dirname(f.path), { recursive: true });
      await writeFileAtomic(f.path, bytes[i] as Buffer);
      written.push(f.path);
    }
  } catch (e) {
    await Promise.all(written.map((p) => unlink(p).catch(() => {})));
    throw e;
  }
}
