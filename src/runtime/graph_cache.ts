/**
 * On-disk cache of onnxruntime-optimized graphs (RuntimeOptions.graphCache), so that a warm session creation of
 * the real-size models skips onnxruntime's graph optimizations (most of the UNet's creation time).
 *
 * Miss: the session is created from the graph bytes as usual, with `optimizedModelFilePath` pointing into a
 * private temp folder of the cache; onnxruntime then also writes the optimized graph there (model.onnx) with every
 * initializer of 1 KiB or more in a side file (weights.bin). A manifest is added and the folder is renamed into
 * place in one step, so other processes see a whole entry or none.
 * Hit: the session is created from the entry's model.onnx with graph optimizations disabled (onnxruntime's
 * documented "offline mode": the graph is already optimized), weights resolved inside the entry.
 * A corrupt or unusable entry (bad manifest, missing or truncated file, onnxruntime refusing it) falls back to a
 * normal build that replaces it; a failure to write the cache never fails the session.
 *
 * Optimized graphs are hardware specific (onnxruntime warns: the NCHWc layout transformer picks the CPU's vector
 * width), so the key covers the graph bytes, the onnxruntime version, platform, CPU model and feature flags, the
 * execution provider, the optimization level, and the identity (real path, size, mtime) of every external-data
 * file the graph references. Intra-op threads do not change the optimized graph (checked with 1/2/4 threads) and
 * are not part of the key.
 *
 * Disk cost: an entry holds the whole model's weights once more, as float32 (fp16 checkpoints too): ~1.9 GB for the x4 UNet, 1.4 GB text encoder, 0.2 GB VAE decoder; one entry per distinct
 * graph (attention options, clip skip, encoder/decoder). Nothing is evicted: delete the folder to reclaim it.
 */
import { createHash, randomBytes } from "node:crypto";
import { mkdir, readdir, readFile, realpath, rename, rm, stat, utimes, writeFile } from "node:fs/promises";
import { homedir } from "node:os";
import path from "node:path";
import onnxProto from "onnx-proto";
import * as ort from "onnxruntime-node";
import { cpuIdentity } from "../io/cpu_info.js";
import { errorMessage } from "./errors.js";
import type { SessionInfo } from "./protocol.js";
import { EXTERNAL_DATA_FOLDER_KEY } from "./session_options.js";

/** Bumped whenever the entry layout or the key changes meaning; old entries then simply miss. */
export const GRAPH_CACHE_FORMAT = 1;
export const MODEL_FILE = "model.onnx";
export const WEIGHTS_FILE = "weights.bin";
export const MANIFEST_FILE = "manifest.json";
const OPTIMIZED_WEIGHTS_FILE_KEY = "session.optimized_model_external_initializers_file_name";
const OPTIMIZED_WEIGHTS_MIN_SIZE_KEY = "session.optimized_model_external_initializers_min_size_in_bytes";
/** Temp / trash folders of a process that died are removed after this long (a UNet miss takes ~20 s). */
const STALE_MS = 60 * 60 * 1000;

export type GraphCacheStatus =
  /** Created from a valid cache entry. */
  | "hit"
  /** No entry: created from the graph and the entry written. */
  | "miss"
  /** The entry was corrupt or unusable (see reason): created from the graph and the entry replaced. */
  | "replaced"
  /** Created from the graph, but the entry could not be written (see reason). */
  | "unsaved"
  /** The cache does not apply (graph optimizations disabled, or a referenced weight file is missing). */
  | "bypassed";

export interface GraphCacheOutcome {
  status: GraphCacheStatus;
  /** The entry folder (absent when bypassed). */
  entry?: string;
  reason?: string;
}

/** `$SDX4_CACHE_DIR`, else `$XDG_CACHE_HOME/sdx4`, else `~/.cache/sdx4`; then `optimized-graphs/`. */
export function defaultGraphCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  let root: string;
  if (env.SDX4_CACHE_DIR) root = path.resolve(env.SDX4_CACHE_DIR);
  // The XDG spec says relative values are invalid and must be ignored.
  else if (env.XDG_CACHE_HOME && path.isAbsolute(env.XDG_CACHE_HOME))
    root = path.join(env.XDG_CACHE_HOME, "sdx4");
  else root = path.join(homedir(), ".cache", "sdx4");
  return path.join(root, "optimized-graphs");
}

/**
 * The cache folder a `graphCache` option value asks for (undefined = off). Throws TypeError on a bad value.
 * A string is the folder itself (absolute, or relative to the process cwd); `true` is defaultGraphCacheDir().
 */
export function resolveGraphCacheOption(
  value: unknown,
  env: NodeJS.ProcessEnv = process.env,
): string | undefined {
  if (value === undefined || value === false) return undefined;
  if (value === true) return defaultGraphCacheDir(env);
  if (typeof value !== "string") {
    throw new TypeError(
      `graphCache must be a folder path or a boolean, got ${value === null ? "null" : typeof value}`,
    );
  }
  if (value.trim() === "" || value.includes("\0")) {
    throw new TypeError(`graphCache must be a non-empty folder path, got ${JSON.stringify(value)}`);
  }
  return path.resolve(value);
}

/** Creates the cache folder if needed and returns its real path (onnxruntime rejects weights behind symlinks). */
export async function openGraphCacheDir(dir: string): Promise<string> {
  try {
    await mkdir(dir, { recursive: true });
    const real = await realpath(dir);
    if (!(await stat(real)).isDirectory()) throw new Error("not a directory");
    return real;
  } catch (e) {
    throw new Error(`graphCache folder ${JSON.stringify(dir)} cannot be used: ${errorMessage(e)}`);
  }
}

type GraphProto = onnxProto.onnx.IGraphProto;

/** Every distinct external-data `location` of the model's initializers (subgraphs included), sorted. */
export function externalDataLocations(model: Uint8Array): string[] {
  const m = onnxProto.onnx.ModelProto.decode(model);
  const out = new Set<string>();
  const visit = (g: GraphProto | null | undefined) => {
    if (!g) return;
    for (const t of g.initializer ?? []) {
      if (t.dataLocation !== onnxProto.onnx.TensorProto.DataLocation.EXTERNAL) continue;
      const location = t.externalData?.find((e) => e.key === "location")?.value;
      if (location) out.add(location);
    }
    for (const n of g.node ?? []) {
      for (const a of n.attribute ?? []) {
        visit(a.g);
        for (const sub of a.graphs ?? []) visit(sub);
      }
    }
  };
  visit(m.graph);
  return [...out].sort();
}

export interface GraphCacheKeyFields {
  format: number;
  graph_sha256: string;
  onnxruntime: string;
  platform: string;
  cpu_model: string;
  cpu_flags: string;
  execution_provider: string;
  graph_optimization_level: string;
  external_data: { location: string; path: string; size: number; mtime_ms: number }[];
}

export interface GraphCacheKeyInput {
  model: Uint8Array;
  /** Real folder external-data locations resolve against (default: the process cwd, like onnxruntime). */
  externalDataFolder: string | undefined;
  executionProvider: string;
  graphOptimizationLevel: string;
}

/**
 * External-data files named after their own identity (`<name>.id-<32+ hex>.bin`: the float32 spill file of an
 * fp16 / bf16 checkpoint, src/onnx/spill_file.ts, whose name hashes its sources' paths, sizes and mtimes). The
 * name is in the graph bytes, so the key records only the name: such a file is a fresh temporary file on every
 * session creation (its path and mtime would make every lookup miss), written only when the entry misses
 * (CreateSessionOptions.prepareExternalData), so it need not exist when the key is computed.
 */
export const SELF_IDENTIFIED_LOCATION = /\.id-[0-9a-f]{32,}\.bin$/;

/** The cache key (sha256 hex) of a graph and the fields it was computed from. Throws if a weight file is missing. */
export async function graphCacheKey(
  input: GraphCacheKeyInput,
): Promise<{ key: string; fields: GraphCacheKeyFields }> {
  const folder = input.externalDataFolder ?? process.cwd();
  const external_data: GraphCacheKeyFields["external_data"] = [];
  for (const location of externalDataLocations(input.model)) {
    if (SELF_IDENTIFIED_LOCATION.test(location)) {
      external_data.push({ location, path: "", size: 0, mtime_ms: 0 });
      continue;
    }
    const file = await realpath(path.resolve(folder, location));
    const s = await stat(file);
    external_data.push({ location, path: file, size: s.size, mtime_ms: s.mtimeMs });
  }
  const cpu = cpuIdentity();
  const fields: GraphCacheKeyFields = {
    format: GRAPH_CACHE_FORMAT,
    graph_sha256: createHash("sha256").update(input.model).digest("hex"),
    onnxruntime: `${ort.env.versions.common ?? "?"}/${ort.env.versions.node ?? "?"}`,
    platform: `${process.platform}/${process.arch}`,
    cpu_model: cpu.model,
    cpu_flags: cpu.flags,
    execution_provider: input.executionProvider,
    graph_optimization_level: input.graphOptimizationLevel,
    external_data,
  };
  return { key: createHash("sha256").update(JSON.stringify(fields)).digest("hex"), fields };
}

/** Folder name of an entry: the session name (readable listings) and 128 bits of the key. */
export function entryName(name: string, key: string): string {
  const safe =
    name
      .toLowerCase()
      .replace(/[^a-z0-9_-]+/g, "_")
      .slice(0, 40) || "graph";
  return `${safe}-${key.slice(0, 32)}`;
}

export interface GraphCacheManifest {
  format: number;
  key: string;
  name: string;
  created: string;
  /** Seconds the miss took (session creation + writing the optimized graph). */
  build_seconds: number;
  /** Every file of the entry but the manifest, with its size in bytes. */
  files: Record<string, number>;
  total_bytes: number;
  fields: GraphCacheKeyFields;
}

export type EntryState =
  | { state: "valid"; manifest: GraphCacheManifest }
  | { state: "absent" }
  | { state: "corrupt"; reason: string };

/** Reads and checks an entry: its manifest matches the key and every file has the recorded size. */
export async function readEntry(entry: string, key: string): Promise<EntryState> {
  let text: string;
  try {
    text = await readFile(path.join(entry, MANIFEST_FILE), "utf8");
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOENT") {
      try {
        await stat(entry);
      } catch {
        return { state: "absent" };
      }
      return { state: "corrupt", reason: "the entry has no manifest" };
    }
    return { state: "corrupt", reason: `cannot read its manifest: ${errorMessage(e)}` };
  }
  let m: GraphCacheManifest;
  try {
    m = JSON.parse(text) as GraphCacheManifest;
  } catch (e) {
    return { state: "corrupt", reason: `bad manifest: ${errorMessage(e)}` };
  }
  if (typeof m !== "object" || m === null || m.format !== GRAPH_CACHE_FORMAT || m.key !== key) {
    return { state: "corrupt", reason: "the manifest does not match this graph (format or key)" };
  }
  const files = m.files;
  if (typeof files !== "object" || files === null || typeof files[MODEL_FILE] !== "number") {
    return { state: "corrupt", reason: `the manifest lists no ${MODEL_FILE}` };
  }
  for (const [file, size] of Object.entries(files)) {
    let actual: number;
    try {
      actual = (await stat(path.join(entry, path.basename(file)))).size;
    } catch {
      return { state: "corrupt", reason: `${file} is missing` };
    }
    if (actual !== size) return { state: "corrupt", reason: `${file} has ${actual} bytes, expected ${size}` };
  }
  return { state: "valid", manifest: m };
}

/** Removes temp and trash folders that crashed processes left behind (best effort). */
async function sweepStale(dir: string): Promise<void> {
  try {
    for (const name of await readdir(dir)) {
      if (!name.startsWith(".tmp-") && !name.startsWith(".trash-")) continue;
      const p = path.join(dir, name);
      const s = await stat(p).catch(() => undefined);
      if (s && Date.now() - s.mtimeMs > STALE_MS)
        await rm(p, { recursive: true, force: true }).catch(() => {});
    }
  } catch {
    // best effort
  }
}

const uniqueSuffix = () => `${process.pid}-${randomBytes(6).toString("hex")}`;

/**
 * Moves a finished temp folder into place. A whole entry published meanwhile by another process wins (ours is
 * dropped); a corrupt one is first moved aside, so readers only ever see a whole entry or none.
 */
async function publish(
  dir: string,
  tmp: string,
  entry: string,
  key: string,
  replace: boolean,
): Promise<void> {
  if (replace) {
    const trash = path.join(dir, `.trash-${uniqueSuffix()}`);
    try {
      await rename(entry, trash);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
    }
    await rm(trash, { recursive: true, force: true }).catch(() => {});
  }
  try {
    await rename(tmp, entry);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== "EEXIST" && code !== "ENOTEMPTY" && code !== "EPERM") throw e;
    await rm(tmp, { recursive: true, force: true });
    if ((await readEntry(entry, key)).state !== "valid") throw e;
  }
}

export type CreateFn = (
  model: Uint8Array | string,
  options: ort.InferenceSession.SessionOptions,
) => Promise<SessionInfo>;

export interface CachedCreateRequest {
  /** Real cache folder (openGraphCacheDir). */
  dir: string;
  name: string;
  model: Uint8Array;
  /** Options of the normal build (toOrtSessionOptions). */
  options: ort.InferenceSession.SessionOptions;
  /** Real external-data folder of the graph, if any. */
  externalDataFolder: string | undefined;
  create: CreateFn;
}

/** Creates a session through the cache (see the file comment). Only the normal build's own errors propagate. */
export async function createWithGraphCache(
  req: CachedCreateRequest,
): Promise<{ info: SessionInfo; outcome: GraphCacheOutcome }> {
  const { dir, options } = req;
  const level = String(options.graphOptimizationLevel ?? "all");
  if (level === "disabled") {
    return {
      info: await req.create(req.model, options),
      outcome: { status: "bypassed", reason: "graph optimizations are disabled" },
    };
  }
  let key: string;
  let fields: GraphCacheKeyFields;
  try {
    ({ key, fields } = await graphCacheKey({
      model: req.model,
      externalDataFolder: req.externalDataFolder,
      executionProvider: String(options.executionProviders?.[0] ?? "cpu"),
      graphOptimizationLevel: level,
    }));
  } catch (e) {
    // A missing weight file: the normal build reports it in onnxruntime's words.
    const info = await req.create(req.model, options);
    return { info, outcome: { status: "bypassed", reason: errorMessage(e) } };
  }
  const entry = path.join(dir, entryName(req.name, key));

  const found = await readEntry(entry, key);
  let problem = found.state === "corrupt" ? found.reason : undefined;
  if (found.state === "valid") {
    try {
      const info = await req.create(path.join(entry, MODEL_FILE), {
        ...options,
        graphOptimizationLevel: "disabled",
        extra: { ...(options.extra as Record<string, string>), [EXTERNAL_DATA_FOLDER_KEY]: entry },
      });
      const now = new Date();
      await utimes(path.join(entry, MANIFEST_FILE), now, now).catch(() => {}); // "last used", for manual pruning
      return { info, outcome: { status: "hit", entry } };
    } catch (e) {
      problem = `onnxruntime could not load it: ${errorMessage(e)}`;
    }
  }

  await sweepStale(dir);
  const tmp = path.join(dir, `.tmp-${uniqueSuffix()}`);
  const t0 = performance.now();
  let info: SessionInfo;
  try {
    await mkdir(tmp);
    info = await req.create(req.model, {
      ...options,
      optimizedModelFilePath: path.join(tmp, MODEL_FILE),
      // Unless the caller chose a level: hide onnxruntime's warning that the saved graph is hardware specific
      // (the key covers that), which it logs on every miss.
      logSeverityLevel: options.logSeverityLevel ?? 3,
      extra: {
        ...(options.extra as Record<string, string>),
        [OPTIMIZED_WEIGHTS_FILE_KEY]: WEIGHTS_FILE,
        [OPTIMIZED_WEIGHTS_MIN_SIZE_KEY]: "1024",
      },
    });
  } catch (e) {
    // Saving failed (e.g. disk full) or the graph itself is bad: a normal build decides.
    await rm(tmp, { recursive: true, force: true }).catch(() => {});
    const plain = await req.create(req.model, options);
    return {
      info: plain,
      outcome: { status: "unsaved", entry, reason: `writing the entry failed: ${errorMessage(e)}` },
    };
  }
  try {
    const files: Record<string, number> = {};
    for (const f of await readdir(tmp)) files[f] = (await stat(path.join(tmp, f))).size;
    if (files[MODEL_FILE] === undefined) throw new Error(`onnxruntime wrote no ${MODEL_FILE}`);
    const manifest: GraphCacheManifest = {
      format: GRAPH_CACHE_FORMAT,
      key,
      name: req.name,
      created: new Date().toISOString(),
      build_seconds: Math.round(performance.now() - t0) / 1000,
      files,
      total_bytes: Object.values(files).reduce((a, b) => a + b, 0),
      fields,
    };
    await writeFile(path.join(tmp, MANIFEST_FILE), `${JSON.stringify(manifest, null, 1)}\n`);
    await publish(dir, tmp, entry, key, found.state !== "absent");
  } catch (e) {
    await rm(tmp, { recursive: true, force: true }).catch(() => {});
    return {
      info,
      outcome: { status: "unsaved", entry, reason: `publishing the entry failed: ${errorMessage(e)}` },
    };
  }
  return problem === undefined
    ? { info, outcome: { status: "miss", entry } }
    : { info, outcome: { status: "replaced", entry, reason: problem } };
}
