/**
 * One session worker thread and the request/response bookkeeping around it.
 *
 * - The worker is `unref`'d whenever no request is pending, so an idle host never keeps the process alive;
 *   while a request is pending it is `ref`'d (the process waits for the answer).
 * - If the worker dies (uncaught error, exit), every pending request is rejected with `lostReason` and the
 *   channel is dead for good; the host starts a new channel for new sessions.
 * - close() rejects pending requests at once but lets the worker finish its native call before it exits.
 */
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import { errorMessage, RemoteError } from "./errors.js";
import type { Request, Response, WorkerData } from "./protocol.js";

/** A request without its id (the channel assigns ids). */
export type RequestBody = Request extends infer R ? (R extends Request ? Omit<R, "id"> : never) : never;

interface Pending {
  resolve: (value: unknown) => void;
  reject: (error: Error) => void;
}

export class WorkerGoneError extends Error {
  constructor(message: string, cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = "WorkerGoneError";
  }
}

/**
 * Starts the worker entry next to this module: `session_worker.js` in the build, `session_worker.ts` when
 * running from sources under tsx. On Node versions where tsx's `--import` hook does not reach worker threads
 * (Node 20), the worker registers tsx itself through `tsx/esm/api` before importing the entry.
 */
function startWorker(workerData: WorkerData): Worker {
  const ext = path.extname(fileURLToPath(import.meta.url));
  const entry = new URL(`./session_worker${ext === ".ts" ? ".ts" : ".js"}`, import.meta.url);
  const options = { name: "sdx4-onnxruntime", workerData };
  if (ext !== ".ts") return new Worker(entry, options);
  let tsxApi: string | undefined;
  try {
    tsxApi = import.meta.resolve("tsx/esm/api");
  } catch {
    tsxApi = undefined;
  }
  const bootstrap = `
const entry = ${JSON.stringify(entry.href)};
const tsxApi = ${JSON.stringify(tsxApi ?? null)};
import(entry).catch(async (e) => {
  if (!e || e.code !== "ERR_UNKNOWN_FILE_EXTENSION") throw e;
  if (tsxApi === null) throw new Error("the runtime worker runs from TypeScript sources and needs tsx, which was not found");
  (await import(tsxApi)).register();
  await import(entry + "?tsx");
});`;
  return new Worker(bootstrap, { ...options, eval: true });
}

export class WorkerChannel {
  private readonly worker: Worker;
  private readonly pending = new Map<number, Pending>();
  /** Shared with the worker: [0] = 1 once closing (the worker skips queued requests). */
  private readonly control = new Int32Array(new SharedArrayBuffer(4));
  private readonly exited: Promise<void>;
  private hasExited = false;
  private shuttingDown = false;
  private nextId = 1;
  private lost: Error | undefined;

  constructor() {
    this.worker = startWorker({ control: this.control });
    this.worker.unref();
    this.worker.on("message", (msg: Response) => this.onMessage(msg));
    this.worker.on("error", (err) =>
      this.fail(new WorkerGoneError(`the runtime worker crashed: ${errorMessage(err)}`, err)),
    );
    this.worker.on("messageerror", (err) => {
      this.fail(
        new WorkerGoneError(`a message from the runtime worker could not be read: ${errorMessage(err)}`, err),
      );
      this.shutdown();
    });
    this.exited = new Promise((resolve) => {
      this.worker.on("exit", (code) => {
        this.hasExited = true;
        this.fail(new WorkerGoneError(`the runtime worker exited (exit code ${code})`));
        resolve();
      });
    });
  }

  /** Why this channel can no longer serve requests; undefined while it is alive. */
  get lostReason(): Error | undefined {
    return this.lost;
  }

  get pendingCount(): number {
    return this.pending.size;
  }

  /** Sends a request; `transfer` buffers are moved to the worker (detached here). */
  call(body: RequestBody, transfer: ArrayBuffer[] = []): Promise<unknown> {
    if (this.lost) return Promise.reject(this.lost);
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      if (this.pending.size === 1) this.worker.ref();
      try {
        this.worker.postMessage({ ...body, id }, transfer);
      } catch (e) {
        this.settle(id);
        reject(e instanceof Error ? e : new Error(String(e)));
      }
    });
  }

  private settle(id: number): Pending | undefined {
    const p = this.pending.get(id);
    if (!p) return undefined;
    this.pending.delete(id);
    if (this.pending.size === 0 && !this.shuttingDown) this.worker.unref();
    return p;
  }

  private onMessage(msg: Response): void {
    const p = this.settle(msg.id);
    if (!p) return;
    if (msg.ok) p.resolve(msg.value);
    else
      p.reject(
        new RemoteError(msg.error.name, msg.error.message, msg.error.stack, msg.error.cancelled === true),
      );
  }

  private fail(reason: Error): void {
    if (this.lost) return;
    this.lost = reason;
    const all = [...this.pending.values()];
    this.pending.clear();
    if (!this.shuttingDown) this.worker.unref();
    for (const p of all) p.reject(reason);
  }

  /**
   * Asks the worker to end its thread once the native call in progress (if any) has returned. Never
   * Worker.terminate(): terminating during an onnxruntime call aborts the whole process (see session_worker.ts).
   * The worker stays ref'd until it has exited, so the process cannot exit (and terminate it) meanwhile.
   */
  private shutdown(): void {
    if (this.shuttingDown || this.hasExited) return;
    this.shuttingDown = true;
    Atomics.store(this.control, 0, 1);
    this.worker.ref();
    this.worker.postMessage({ op: "shutdown", id: 0 });
  }

  /**
   * Rejects pending requests with `reason` at once, then ends the worker; resolves when its thread has exited,
   * i.e. after a run in progress has finished (onnxruntime cannot interrupt it).
   */
  async close(reason: Error): Promise<void> {
    this.fail(reason);
    this.shutdown();
    await this.exited;
  }
}
