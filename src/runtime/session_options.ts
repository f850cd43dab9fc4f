/**
 * RuntimeOptions (this project's small, validated subset) -> onnxruntime-node session options.
 *
 * Always sets `session.intra_op.allow_spinning` and `session.inter_op.allow_spinning` to "0": a pipeline keeps
 * several sessions (text encoder, UNet, VAE) alive in one process, and spinning thread pools of idle sessions
 * would burn cores that the running session needs.
 */
import { existsSync, readdirSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import * as ort from "onnxruntime-node";
import { checkChoice } from "../io/choice.js";
import {
  type ConvAlgorithm,
  checkConvAlgorithm,
  checkWinogradFilters,
  type WinogradFilters,
} from "../onnx/conv_plan.js";

export type ExecutionProviderName = "cpu" | "cuda" | "webgpu";
export type GraphOptimizationLevel = "disabled" | "basic" | "extended" | "all";
export type LogSeverityLevel = 0 | 1 | 2 | 3 | 4;

export interface RuntimeOptions {
  /** Default "cpu". "cuda" needs onnxruntime-node's CUDA binaries (linux/x64 only), see cudaInstallHint(). */
  executionProvider?: ExecutionProviderName;
  /** Intra-op thread count (positive integer). Default: onnxruntime's choice (one per physical core). */
  threads?: number;
  /** Default "all". */
  graphOptimizationLevel?: GraphOptimizationLevel;
  /** Where onnxruntime writes the optimized graph (debugging). */
  optimizedModelFilePath?: string;
  /** Writes a chrome-trace JSON profile named `<profileFilePrefix>_<date>.json` into the process cwd. */
  enableProfiling?: boolean;
  profileFilePrefix?: string;
  /** 0 verbose, 1 info, 2 warning (default), 3 error, 4 fatal. */
  logSeverityLevel?: LogSeverityLevel;
  /**
   * On-disk cache of onnxruntime-optimized graphs (see graph_cache.ts): a folder, or `true` for the default
   * folder (`$SDX4_CACHE_DIR`, else `$XDG_CACHE_HOME/sdx4`, else `~/.cache/sdx4`; then `optimized-graphs/`).
   * Default off. A warm UNet session is created ~3x faster, but each entry stores the graph's weights once more
   * as float32 (x4 upscaler: ~3.5 GB for all three models). CPU execution provider only.
   */
  graphCache?: string | boolean;
  /**
   * onnxruntime's memory pattern (`enableMemPattern`). Default false, unlike onnxruntime: after a first run,
   * onnxruntime plans the activations of that input shape as one block and allocates it on the second run next
   * to the arena chunks the first run left, so every repeated run (the denoising loop) held about twice the
   * activation memory (UNet, 128² latents, batch 2: +0.45 GB; 512²: several GB). Without it the arena reuses
   * the first run's chunks; no measurable speed difference on CPU (README, "Memory").
   */
  memoryPattern?: boolean;
  /**
   * onnxruntime's CPU memory arena (`enableCpuMemArena`). Default true. The arena keeps the largest activation
   * memory a session ever needed until the session is released; false hands it back to the system after every
   * run (lower memory while several sessions stay loaded), at the cost of fresh page faults on every run.
   */
  memoryArena?: boolean;
  /**
   * How float32 3×3 convolutions are built (src/onnx/winograd.ts). "auto" (default): Winograd's F(4×4, 3×3) on
   * the CPU execution provider where it is measured faster (both channel counts from 256 to 512: the UNet's and
   * VAE's large convolutions, 1.5-2.6x faster each), onnxruntime's Conv elsewhere and on other providers; above
   * 256² latents (UNet) and 128² (VAE) the graph is built without Winograd (WINOGRAD_AUTO_MAX_LATENT_AREA: the
   * transforms' memory grows with the map, their gain shrinks).
   * "direct": always onnxruntime's Conv (bit-closest to PyTorch; the weights of those layers take 4x less memory).
   * "winograd": every eligible convolution (stride 1, padding 1, groups 1), also on GPU providers.
   */
  convAlgorithm?: ConvAlgorithm;
  /**
   * When the Winograd layers' transformed filters are computed (conv_plan.ts, WinogradFilters): "session" once
   * when the session is created and held with it (4x the memory of those 3×3 filters: UNet +0.9 GB, VAE
   * +0.6 GB for the x4 upscaler), "run" in every run (nothing held; ~0.2 s per UNet step and ~0.1 s per VAE
   * decode on a 2-core CPU). Default per model: "session" for the UNet, "run" for the VAE
   * (WINOGRAD_FILTERS_DEFAULT). The CLI uses "run" for both.
   */
  winogradFilters?: WinogradFilters;
}

export const EXECUTION_PROVIDERS: readonly ExecutionProviderName[] = ["cpu", "cuda", "webgpu"];
const GRAPH_LEVELS: readonly GraphOptimizationLevel[] = ["disabled", "basic", "extended", "all"];

/** Session config key that makes onnxruntime resolve external-data `location`s against this folder. */
export const EXTERNAL_DATA_FOLDER_KEY = "session.model_external_initializers_file_folder_path";
export const INTRA_OP_SPINNING_KEY = "session.intra_op.allow_spinning";
export const INTER_OP_SPINNING_KEY = "session.inter_op.allow_spinning";

export class ExecutionProviderUnavailableError extends Error {
  readonly executionProvider: string;
  constructor(executionProvider: string, message: string) {
    super(message);
    this.name = "ExecutionProviderUnavailableError";
    this.executionProvider = executionProvider;
  }
}

/** How to get onnxruntime-node's CUDA binaries (mechanism of onnxruntime-node's script/install.js, 1.30). */
export function cudaInstallHint(): string {
  return [
    "onnxruntime-node ships its CUDA execution provider (libonnxruntime_providers_cuda.so, _shared.so, _tensorrt.so)",
    "for linux/x64 only, and not inside the npm package: its postinstall script (script/install.js) downloads them",
    "from the NuGet package Microsoft.ML.OnnxRuntime.Gpu.Linux (needs network access to api.nuget.org).",
    "That download was skipped (ONNXRUNTIME_NODE_INSTALL=skip, or onnxruntime-node-install=skip in an .npmrc as in",
    "sdx4's own repository) or failed (no network during install).",
    "To opt in, rerun the install script with the flag set to cuda12, e.g.",
    "`ONNXRUNTIME_NODE_INSTALL=cuda12 npm rebuild onnxruntime-node`",
    "(or `npm rebuild onnxruntime-node --onnxruntime-node-install=cuda12`). The environment variable takes",
    "precedence over .npmrc; the older ONNXRUNTIME_NODE_INSTALL_CUDA=v12 is only read when no",
    "onnxruntime-node-install setting exists, so an .npmrc skip setting silently overrides it.",
    "At run time the CUDA EP also needs the CUDA 12 runtime and cuDNN 9 libraries on the library path.",
  ].join(" ");
}

/** Folder holding onnxruntime-node's native binaries for this platform (bin/napi-v*\/<platform>/<arch>). */
export function ortBinaryFolder(): string | undefined {
  try {
    const require = createRequire(import.meta.url);
    const root = path.join(path.dirname(require.resolve("onnxruntime-node")), "..", "bin");
    for (const napi of readdirSync(root).filter((d) => d.startsWith("napi-v"))) {
      const dir = path.join(root, napi, process.platform, process.arch);
      if (existsSync(dir)) return dir;
    }
  } catch {
    // fall through
  }
  return undefined;
}

export interface BackendProbe {
  /** `ort.listSupportedBackends()`: EPs compiled into the binding; `bundled: false` = libraries shipped apart. */
  backends: readonly { name: string; bundled: boolean }[];
  /** Whether the separately shipped libraries of a non-bundled EP are present. */
  hasProviderLibraries: (ep: string) => boolean;
}

function cudaLibraryNames(): string[] {
  return process.platform === "win32"
    ? ["onnxruntime_providers_cuda.dll", "onnxruntime_providers_shared.dll"]
    : ["libonnxruntime_providers_cuda.so", "libonnxruntime_providers_shared.so"];
}

export function defaultBackendProbe(): BackendProbe {
  return {
    backends: ort.listSupportedBackends(),
    hasProviderLibraries: (ep) => {
      if (ep !== "cuda") return true;
      const dir = ortBinaryFolder();
      return dir !== undefined && cudaLibraryNames().every((f) => existsSync(path.join(dir, f)));
    },
  };
}

/** Throws ExecutionProviderUnavailableError unless `ep` can be used by the installed onnxruntime-node. */
export function checkExecutionProvider(ep: string, probe: BackendProbe = defaultBackendProbe()): void {
  if (!(EXECUTION_PROVIDERS as readonly string[]).includes(ep)) {
    throw new ExecutionProviderUnavailableError(
      ep,
      `unknown execution provider ${JSON.stringify(ep)} (expected one of ${EXECUTION_PROVIDERS.join(", ")})`,
    );
  }
  const platform = `${process.platform}/${process.arch}`;
  const entry = probe.backends.find((b) => b.name === ep);
  if (!entry) {
    const available = probe.backends.map((b) => b.name).join(", ");
    const extra = ep === "cuda" ? " onnxruntime-node provides CUDA on linux/x64 only." : "";
    throw new ExecutionProviderUnavailableError(
      ep,
      `execution provider "${ep}" is not supported by onnxruntime-node ${ort.env.versions.node ?? ""} on ` +
        `${platform} (it supports: ${available}).${extra}`,
    );
  }
  if (!entry.bundled && !probe.hasProviderLibraries(ep)) {
    const hint = ep === "cuda" ? ` ${cudaInstallHint()}` : "";
    throw new ExecutionProviderUnavailableError(
      ep,
      `execution provider "${ep}" was requested, but onnxruntime-node was installed without its ${ep} ` +
        `binaries (missing from ${ortBinaryFolder() ?? "its bin folder"}).${hint}`,
    );
  }
}

/**
 * graphCache: a folder path or a boolean; it decides graph optimization and where the optimized graph is saved,
 * so it excludes optimizedModelFilePath; CPU only (optimized graphs of other providers are untested here).
 */
function checkGraphCacheOptions(options: RuntimeOptions, ep: string): void {
  const cache = options.graphCache;
  if (cache === undefined || cache === false) return;
  if (cache !== true && (typeof cache !== "string" || cache.trim() === "")) {
    throw new TypeError(
      `graphCache must be a non-empty folder path or a boolean, got ${typeof cache === "string" ? JSON.stringify(cache) : cache === null ? "null" : typeof cache}`,
    );
  }
  if (options.optimizedModelFilePath !== undefined) {
    throw new RangeError(
      "graphCache and optimizedModelFilePath cannot be combined (the cache saves the graph)",
    );
  }
  if (ep !== "cpu") {
    throw new RangeError(`graphCache supports the cpu execution provider only, got "${ep}"`);
  }
}

export interface SessionOptionsExtras {
  /** Already realpath'd folder external-data locations are resolved against. */
  externalDataFolder?: string;
  /** Shown by onnxruntime in its log lines. */
  logId?: string;
  probe?: BackendProbe;
}

/** Validates RuntimeOptions and converts them to onnxruntime-node session options (a plain, cloneable object). */
export function toOrtSessionOptions(
  options: RuntimeOptions = {},
  extras: SessionOptionsExtras = {},
): ort.InferenceSession.SessionOptions {
  const ep = options.executionProvider ?? "cpu";
  checkExecutionProvider(ep, extras.probe);
  const { threads } = options;
  if (
    threads !== undefined &&
    (typeof threads !== "number" || !Number.isSafeInteger(threads) || threads < 1)
  ) {
    throw new RangeError(`threads must be a positive integer, got ${threads}`);
  }
  const level = checkChoice(GRAPH_LEVELS, options.graphOptimizationLevel ?? "all", "graphOptimizationLevel");
  const log = options.logSeverityLevel;
  if (log !== undefined && ![0, 1, 2, 3, 4].includes(log)) {
    throw new RangeError(`logSeverityLevel must be 0..4, got ${log}`);
  }
  checkGraphCacheOptions(options, ep);
  if (options.convAlgorithm !== undefined) checkConvAlgorithm(options.convAlgorithm);
  if (options.winogradFilters !== undefined) checkWinogradFilters(options.winogradFilters);
  for (const key of ["memoryPattern", "memoryArena"] as const) {
    const v = options[key];
    if (v !== undefined && typeof v !== "boolean") throw new TypeError(`${key} must be a boolean, got ${v}`);
  }
  const extra: Record<string, string> = {
    [INTRA_OP_SPINNING_KEY]: "0",
    [INTER_OP_SPINNING_KEY]: "0",
  };
  if (extras.externalDataFolder !== undefined) extra[EXTERNAL_DATA_FOLDER_KEY] = extras.externalDataFolder;

  const out: ort.InferenceSession.SessionOptions = {
    executionProviders: [ep],
    graphOptimizationLevel: level,
    executionMode: "sequential",
    interOpNumThreads: 1,
    enableMemPattern: options.memoryPattern ?? false,
    enableCpuMemArena: options.memoryArena ?? true,
    extra,
  };
  if (threads !== undefined) out.intraOpNumThreads = threads;
  if (options.optimizedModelFilePath !== undefined)
    out.optimizedModelFilePath = options.optimizedModelFilePath;
  if (options.enableProfiling) {
    out.enableProfiling = true;
    // onnxruntime-node rejects enableProfiling without a prefix.
    out.profileFilePrefix = options.profileFilePrefix ?? "onnxruntime_profile";
  }
  if (log !== undefined) out.logSeverityLevel = log;
  if (extras.logId !== undefined) out.logId = extras.logId;
  return out;
}
