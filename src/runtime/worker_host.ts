/**
 * RuntimeHost: creates onnxruntime sessions in a worker thread so that onnxruntime-node's synchronous native
 * session creation and run() never block the calling thread's event loop (onnxruntime issues #26968, #19611).
 *
 *   const host = defaultRuntimeHost();
 *   const unet = await host.createSession(modelBytes, { name: "unet", externalDataFolder: dir, threads: 8 });
 *   const { out_sample } = await unet.run({ sample, timestep, encoder_hidden_states }, { signal });
 *
 * One host owns one worker (started lazily on the first createSession, `unref`'d while idle so it never keeps
 * the process alive). All sessions of a host share that worker and run one at a time, in call order; use
 * several hosts to run sessions concurrently. `inProcess: true` gives the same API on the calling thread.
 * If the worker crashes, pending calls reject, its sessions become unusable, and the next createSession starts
 * a fresh worker.
 *
 * Shutdown: onnxruntime-node 1.30 aborts the whole process (SIGABRT, "terminate called after throwing an
 * instance of 'Napi::Error'") when a worker is terminated while a native run is in progress. close() therefore
 * never terminates the worker: it rejects pending calls at once and resolves once the worker has finished the
 * run in progress and exited by itself. For the same reason, `await host.close()` before calling
 * process.exit() while runs may be in flight.
 */
import { realpath, stat } from "node:fs/promises";
import { errorMessage, RuntimeError } from "./errors.js";
import {
  createWithGraphCache,
  type GraphCacheOutcome,
  openGraphCacheDir,
  resolveGraphCacheOption,
} from "./graph_cache.js";
import { RemoteSession } from "./remote_session.js";
import { InProcessBackend, type SessionBackend, WorkerBackend } from "./session_backends.js";
import {
  cudaInstallHint,
  ExecutionProviderUnavailableError,
  type RuntimeOptions,
  toOrtSessionOptions,
} from "./session_options.js";

export { RemoteSession, type SessionRunOptions } from "./remote_session.js";

export interface RuntimeHostOptions {
  /** Run sessions on the calling thread instead of a worker (blocks its event loop during runs). */
  inProcess?: boolean;
}

export interface CreateSessionOptions extends RuntimeOptions {
  /** Used in every error message about this session and as onnxruntime's log id. Default "session-<n>". */
  name?: string;
  /**
   * Folder that external-data `location`s of the model resolve against (realpath'd here, since onnxruntime
   * rejects symlinks). Without it onnxruntime resolves them against the process cwd.
   */
  externalDataFolder?: string;
  /**
   * Makes the model's external data available (e.g. writes the float32 spill file of an fp16 checkpoint, see
   * src/onnx/spill_file.ts); awaited once, before onnxruntime first reads the model, and not called when the
   * graph cache serves the session from an entry. Its rejection fails the creation.
   */
  prepareExternalData?: () => Promise<void>;
}

async function resolveFolder(folder: string): Promise<string> {
  if (typeof folder !== "string" || folder === "") {
    throw new TypeError(`externalDataFolder must be a non-empty path, got ${JSON.stringify(folder)}`);
  }
  let real: string;
  try {
    real = await realpath(folder);
  } catch (e) {
    throw new Error(`externalDataFolder ${JSON.stringify(folder)} cannot be resolved: ${errorMessage(e)}`);
  }
  if (!(await stat(real)).isDirectory()) {
    throw new Error(`externalDataFolder ${JSON.stringify(folder)} is not a directory`);
  }
  return real;
}

export class RuntimeHost {
  readonly inProcess: boolean;
  private backend: SessionBackend | undefined;
  private closed = false;
  private sessionCount = 0;

  constructor(options: RuntimeHostOptions = {}) {
    this.inProcess = options.inProcess === true;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** The live backend, (re)starting the worker if there is none or the last one died. */
  private liveBackend(): SessionBackend {
    if (!this.backend || this.backend.lostReason) {
      this.backend = this.inProcess ? new InProcessBackend() : new WorkerBackend();
    }
    return this.backend;
  }

  async createSession(model: Uint8Array, options: CreateSessionOptions = {}): Promise<RemoteSession> {
    const name = options.name ?? `session-${++this.sessionCount}`;
    const label = `session "${name}"`;
    if (this.closed) throw new RuntimeError(`${label}: the runtime host is closed`, "CLOSED", name);
    if (!(model instanceof Uint8Array) || model.byteLength === 0) {
      throw new RuntimeError(
        `${label}: model must be a non-empty Uint8Array of ONNX bytes`,
        "INVALID_OPTIONS",
        name,
      );
    }
    let ortOptions: ReturnType<typeof toOrtSessionOptions>;
    let externalDataFolder: string | undefined;
    let cacheDir: string | undefined;
    try {
      externalDataFolder =
        options.externalDataFolder === undefined
          ? undefined
          : await resolveFolder(options.externalDataFolder);
      ortOptions = toOrtSessionOptions(options, { externalDataFolder, logId: name });
      const wanted = resolveGraphCacheOption(options.graphCache);
      if (wanted !== undefined) cacheDir = await openGraphCacheDir(wanted);
    } catch (e) {
      const code = e instanceof ExecutionProviderUnavailableError ? "EP_UNAVAILABLE" : "INVALID_OPTIONS";
      throw new RuntimeError(`${label}: ${errorMessage(e)}`, code, name, e);
    }
    if (this.closed) throw new RuntimeError(`${label}: the runtime host is closed`, "CLOSED", name);
    const backend = this.liveBackend();
    let prepared: Promise<void> | undefined;
    // A path is a graph cache entry (weights inside it); bytes read the model's own external data.
    const create = async (m: Uint8Array | string, o: typeof ortOptions) => {
      if (typeof m !== "string" && options.prepareExternalData) {
        prepared ??= options.prepareExternalData();
        await prepared;
      }
      return backend.create(name, m, o);
    };
    try {
      let graphCache: GraphCacheOutcome | undefined;
      let info: Awaited<ReturnType<typeof backend.create>>;
      if (cacheDir === undefined) info = await create(model, ortOptions);
      else {
        ({ info, outcome: graphCache } = await createWithGraphCache({
          dir: cacheDir,
          name,
          model,
          options: ortOptions,
          externalDataFolder,
          create,
        }));
      }
      return new RemoteSession(name, info, backend, graphCache);
    } catch (e) {
      let message = `${label}: cannot create the session: ${errorMessage(e)}`;
      const ep = options.executionProvider;
      if (ep === "cuda" && /load (shared )?librar/i.test(errorMessage(e))) {
        message += ` (the CUDA execution provider could not be loaded; ${cudaInstallHint()})`;
      }
      const code = backend.lostReason ? (this.closed ? "CLOSED" : "WORKER_GONE") : "ORT_ERROR";
      throw new RuntimeError(message, code, name, e);
    }
  }

  /**
   * Ends the worker: pending calls reject at once, sessions become unusable; resolves when the worker thread has
   * exited (after the run in progress, if any, has finished). The host cannot be reused.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const backend = this.backend;
    this.backend = undefined;
    await backend?.close(new RuntimeError("the runtime host was closed", "CLOSED"));
  }

  /** @internal Test hook: makes the worker throw an uncaught exception. */
  simulateWorkerCrash(): Promise<unknown> {
    const backend = this.liveBackend();
    if (!(backend instanceof WorkerBackend)) throw new Error("in-process hosts have no worker");
    return backend.simulateCrash();
  }
}

let defaultHost: RuntimeHost | undefined;

/** The process-wide worker-backed host (created on first use; a new one after it was closed). */
export function defaultRuntimeHost(): RuntimeHost {
  if (!defaultHost || defaultHost.isClosed) defaultHost = new RuntimeHost();
  return defaultHost;
}
