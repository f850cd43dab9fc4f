/**
 * Where a model comes from: a local folder, the Hugging Face cache (as diffusers / huggingface_hub write it, so a
 * user who ran diffusers once needs no download), or the hub (downloaded with @huggingface/hub into the same cache
 * layout: blobs/<etag>, snapshots/<commit>/<path> symlinks, refs/<revision>).
 */
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { downloadFileToCacheDir } from "@huggingface/hub";

export class ModelNotFoundError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ModelNotFoundError";
  }
}

export interface DownloadProgress {
  file: string;
  /** Bytes received so far for this file. */
  loaded: number;
  /** Size of this file when known. */
  total?: number;
  /** Index of this file and the number of files to download. */
  index: number;
  count: number;
}

export interface ResolveOptions {
  /** Branch, tag or commit hash (default "main"). */
  revision?: string;
  /** Hub cache folder (default: $HF_HUB_CACHE, $HF_HOME/hub, ~/.cache/huggingface/hub). */
  cacheDir?: string;
  /** Never download (also when $HF_HUB_OFFLINE=1). */
  localFilesOnly?: boolean;
  /** Weight variant to fetch, e.g. "fp16". */
  variant?: string;
  /** Access token (default $HF_TOKEN). */
  token?: string;
  /** Hub endpoint (default $HF_ENDPOINT or https://huggingface.co). */
  hubUrl?: string;
  onProgress?: (p: DownloadProgress) => void;
  /** fetch implementation (tests). */
  fetch?: typeof fetch;
}

const COMMIT_RE = /^[0-9a-f]{40}$/;
const REPO_ID_RE = /^[A-Za-z0-9][A-Za-z0-9._-]*\/[A-Za-z0-9][A-Za-z0-9._-]*$/;

/** The hub cache folder, following huggingface_hub's environment variables. */
export function hubCacheDir(cacheDir?: string): string {
  if (cacheDir) return cacheDir;
  if (process.env.HF_HUB_CACHE) return process.env.HF_HUB_CACHE;
  if (process.env.HF_HOME) return join(process.env.HF_HOME, "hub");
  const xdg = process.env.XDG_CACHE_HOME;
  return join(xdg ?? join(homedir(), ".cache"), "huggingface", "hub");
}

export function repoFolderName(repoId: string): string {
  return `models--${repoId.replace(/\//g, "--")}`;
}

/** A cached snapshot folder of repoId@revision, or undefined. */
export function findCachedSnapshot(repoId: string, revision = "main", cacheDir?: string): string | undefined {
  const repoDir = join(hubCacheDir(cacheDir), repoFolderName(repoId));
  let commit = revision;
  if (!COMMIT_RE.test(revision)) {
    const ref = join(repoDir, "refs", revision);
    if (!existsSync(ref)) return undefined;
    commit = readFileSync(ref, "utf8").trim();
  }
  const snap = join(repoDir, "snapshots", commit);
  return existsSync(join(snap, "model_index.json")) ? snap : undefined;
}

function isDir(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}

/**
 * Resolves a local folder or a hub repo id to a local folder holding model_index.json: local path first, then the
 * cache, then (unless offline) the hub.
 */
export async function resolvePretrained(pathOrRepoId: string, options: ResolveOptions = {}): Promise<string> {
  if (isDir(pathOrRepoId)) {
    if (!existsSync(join(pathOrRepoId, "model_index.json"))) {
      throw new ModelNotFoundError(
        `${pathOrRepoId}: folder has no model_index.json (not a diffusers pipeline folder)`,
      );
    }
    return pathOrRepoId;
  }
  if (!REPO_ID_RE.test(pathOrRepoId)) {
    throw new ModelNotFoundError(
      `${pathOrRepoId}: no such folder, and not a hub repo id of the form "org/name"`,
    );
  }
  const revision = options.revision ?? "main";
  const cacheDir = hubCacheDir(options.cacheDir);
  const cached = findCachedSnapshot(pathOrRepoId, revision, cacheDir);
  if (cached) return cached;
  const offline =
    options.localFilesOnly ||
    ["1", "true", "yes", "on"].includes((process.env.HF_HUB_OFFLINE ?? "").toLowerCase());
  if (offline) {
    throw new ModelNotFoundError(
      `${pathOrRepoId}@${revision} is not in the Hugging Face cache (${cacheDir}) and downloads are disabled ` +
        `(localFilesOnly or HF_HUB_OFFLINE). Download it once, e.g. \`huggingface-cli download ${pathOrRepoId} ` +
        `--exclude "*.ckpt" "*.bin" "x4-upscaler-ema.safetensors"\`, or pass a local folder with model_index.json.`,
    );
  }
  return downloadSnapshot(pathOrRepoId, revision, cacheDir, options);
}

/** Files a pipeline needs: model_index.json plus each component folder's configs, tokenizer files and weights. */
export function selectPipelineFiles(
  files: string[],
  modelIndex: Record<string, unknown>,
  variant?: string,
): string[] {
  const components = Object.entries(modelIndex)
    .filter(([k, v]) => !k.startsWith("_") && Array.isArray(v) && v[0] !== null && v[1] !== null)
    .map(([k]) => k);
  const out = ["model_index.json"];
  for (const c of components) {
    const inDir = files.filter((f) => f.startsWith(`${c}/`) && !f.slice(c.length + 1).includes("/"));
    const names = inDir.map((f) => f.slice(c.length + 1));
    for (const n of names)
      if (/\.(json|txt)$/.test(n) && !/\.safetensors\.index/.test(n)) out.push(`${c}/${n}`);
    const weights = names.filter((n) => n.endsWith(".safetensors"));
    const isVariant = (n: string) =>
      variant !== undefined && new RegExp(`\\.${variant}\\.safetensors$|\\.${variant}-\\d`).test(n);
    const plain = weights.filter(
      (n) => !/\.(fp16|fp32|bf16|ema|non_ema)[.-]/.test(n) && !/\.(fp16|bf16)\.safetensors$/.test(n),
    );
    const chosen = variant ? weights.filter(isVariant) : plain;
    const pick = chosen.length ? chosen : plain;
    for (const n of pick) out.push(`${c}/${n}`);
    for (const n of names) {
      if (!/\.safetensors\.index(\.[a-z0-9]+)?\.json$|\.safetensors\.index\.json$/.test(n)) continue;
      const v = variant ? n.includes(`.${variant}.`) : !/\.(fp16|bf16)\./.test(n);
      if (v) out.push(`${c}/${n}`);
    }
  }
  return [...new Set(out)];
}

async function downloadSnapshot(
  repoId: string,
  revision: string,
  cacheDir: string,
  options: ResolveOptions,
): Promise<string> {
  const hubUrl = (options.hubUrl ?? process.env.HF_ENDPOINT ?? "https://huggingface.co").replace(/\/$/, "");
  const token = options.token ?? process.env.HF_TOKEN;
  const baseFetch = options.fetch ?? fetch;
  const headers: Record<string, string> = token ? { Authorization: `Bearer ${token}` } : {};
  let info: { sha?: string; siblings?: { rfilename: string }[] };
  try {
    const res = await baseFetch(`${hubUrl}/api/models/${repoId}/revision/${encodeURIComponent(revision)}`, {
      headers,
    });
    if (res.status === 401 || res.status === 403) {
      throw new ModelNotFoundError(
        `${repoId}: access denied by the hub (${res.status}); set HF_TOKEN for gated or private models`,
      );
    }
    if (res.status === 404)
      throw new ModelNotFoundError(`${repoId}@${revision}: not found on the hub (${hubUrl})`);
    if (!res.ok) throw new ModelNotFoundError(`${repoId}: hub answered ${res.status} ${res.statusText}`);
    info = (await res.json()) as typeof info;
  } catch (e) {
    if (e instanceof ModelNotFoundError) throw e;
    throw new ModelNotFoundError(
      `${repoId}: could not reach the hub at ${hubUrl} (${(e as Error).message}) and the model is not in the cache ` +
        `(${cacheDir}); download it where you have network access, or pass a local folder`,
    );
  }
  const sha = info.sha;
  if (!sha || !COMMIT_RE.test(sha))
    throw new ModelNotFoundError(`${repoId}: hub returned no commit hash for ${revision}`);
  const files = (info.siblings ?? []).map((s) => s.rfilename);
  if (!files.includes("model_index.json")) {
    throw new ModelNotFoundError(`${repoId}: no model_index.json in the repo (not a diffusers pipeline)`);
  }
  const common = {
    repo: { type: "model" as const, name: repoId },
    revision: sha,
    cacheDir,
    hubUrl,
    accessToken: token,
  };
  const indexPath = await downloadFileToCacheDir({ ...common, path: "model_index.json", fetch: baseFetch });
  const modelIndex = JSON.parse(readFileSync(indexPath, "utf8")) as Record<string, unknown>;
  const wanted = selectPipelineFiles(files, modelIndex, options.variant).filter(
    (f) => f !== "model_index.json",
  );
  let index = 0;
  for (const file of wanted) {
    index++;
    const progressFetch: typeof fetch = async (input, init) => {
      const res = await baseFetch(input, init);
      if (
        !options.onProgress ||
        !res.body ||
        (init?.headers as Record<string, string> | undefined)?.Range === "bytes=0-0"
      ) {
        return res;
      }
      const total = Number(res.headers.get("content-length")) || undefined;
      let loaded = 0;
      const i = index;
      const counted = res.body.pipeThrough(
        new TransformStream<Uint8Array, Uint8Array>({
          transform(chunk, ctl) {
            loaded += chunk.byteLength;
            options.onProgress?.({ file, loaded, total, index: i, count: wanted.length });
            ctl.enqueue(chunk);
          },
        }),
      );
      return new Response(counted, { status: res.status, statusText: res.statusText, headers: res.headers });
    };
    await downloadFileToCacheDir({ ...common, path: file, fetch: progressFetch });
  }
  const repoDir = join(cacheDir, repoFolderName(repoId));
  if (!COMMIT_RE.test(revision)) {
    mkdirSync(join(repoDir, "refs"), { recursive: true });
    writeFileSync(join(repoDir, "refs", revision), sha);
  }
  return join(repoDir, "snapshots", sha);
}
