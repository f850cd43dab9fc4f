/**
 * Where a RuntimeHost's sessions live: in a worker thread (WorkerBackend) or in the calling thread
 * (InProcessBackend). Both speak the same small interface; RemoteSession and RuntimeHost sit on top.
 */
import type { InferenceSession } from "onnxruntime-node";
import type { HostTensor } from "./host_tensor.js";
import type { SessionInfo } from "./protocol.js";
import { SessionTable } from "./session_core.js";
import { WorkerChannel } from "./worker_channel.js";

export interface BackendRunOptions {
  outputs: string[] | undefined;
  /** Move (detach) the callers' input buffers instead of copying them. Worker backend only. */
  transferInputs: boolean;
  signal: AbortSignal | undefined;
}

export interface SessionBackend {
  /** Set once the backend can no longer serve its sessions (worker crashed / exited / closed). */
  readonly lostReason: Error | undefined;
  /** `model`: ONNX bytes, or the path of a model file. */
  create(
    name: string,
    model: Uint8Array | string,
    options: InferenceSession.SessionOptions,
  ): Promise<SessionInfo>;
  run(
    sessionId: number,
    feeds: Record<string, HostTensor>,
    opts: BackendRunOptions,
  ): Promise<Record<string, HostTensor>>;
  release(sessionId: number): Promise<void>;
  close(reason: Error): Promise<void>;
}

function isWholeArrayBuffer(view: ArrayBufferView): boolean {
  return (
    Object.prototype.toString.call(view.buffer) === "[object ArrayBuffer]" &&
    view.byteOffset === 0 &&
    view.byteLength === view.buffer.byteLength
  );
}

/**
 * Sessions in a worker thread. Inputs: by default each feed's data is copied once on the calling thread
 * (`slice()`, only the view's bytes) and that copy is transferred; with `transferInputs` a feed whose typed array
 * spans its whole ArrayBuffer is transferred as is (the caller's array becomes detached, length 0), others are
 * still copied. Outputs come back transferred (zero-copy). The model bytes are copied once, like inputs.
 */
export class WorkerBackend implements SessionBackend {
  private readonly channel = new WorkerChannel();

  get lostReason(): Error | undefined {
    return this.channel.lostReason;
  }

  async create(
    name: string,
    model: Uint8Array | string,
    options: InferenceSession.SessionOptions,
  ): Promise<SessionInfo> {
    if (typeof model === "string") {
      return (await this.channel.call({ op: "create", name, model, options })) as SessionInfo;
    }
    // A real copy: Buffer#slice (protobufjs returns Buffers in Node) is a view, and transferring its ArrayBuffer
    // would detach the caller's bytes (and any pooled Buffer sharing it).
    const bytes = new Uint8Array(model);
    return (await this.channel.call({ op: "create", name, model: bytes, options }, [
      bytes.buffer,
    ])) as SessionInfo;
  }

  async run(
    sessionId: number,
    feeds: Record<string, HostTensor>,
    opts: BackendRunOptions,
  ): Promise<Record<string, HostTensor>> {
    const transfer = new Set<ArrayBuffer>();
    const sent: Record<string, HostTensor> = {};
    for (const [name, t] of Object.entries(feeds)) {
      const data = opts.transferInputs && isWholeArrayBuffer(t.data) ? t.data : copyOf(t.data);
      transfer.add(data.buffer as ArrayBuffer);
      sent[name] = { type: t.type, dims: [...t.dims], data };
    }
    let cancel: Int32Array | undefined;
    let onAbort: (() => void) | undefined;
    if (opts.signal) {
      const flag = new Int32Array(new SharedArrayBuffer(4));
      onAbort = () => Atomics.store(flag, 0, 1);
      opts.signal.addEventListener("abort", onAbort, { once: true });
      cancel = flag;
    }
    try {
      return (await this.channel.call({ op: "run", sessionId, feeds: sent, outputs: opts.outputs, cancel }, [
        ...transfer,
      ])) as Record<string, HostTensor>;
    } finally {
      if (onAbort) opts.signal?.removeEventListener("abort", onAbort);
    }
  }

  async release(sessionId: number): Promise<void> {
    await this.channel.call({ op: "release", sessionId });
  }

  close(reason: Error): Promise<void> {
    return this.channel.close(reason);
  }

  /** Test hook: makes the worker throw an uncaught exception. */
  simulateCrash(): Promise<unknown> {
    return this.channel.call({ op: "crash" });
  }
}

/**
 * Sessions in the calling thread. onnxruntime-node's session creation and run() then block this thread's event
 * loop for their whole duration. Feeds are read in place (no copies), outputs are fresh arrays.
 */
export class InProcessBackend implements SessionBackend {
  private readonly table = new SessionTable();
  private lost: Error | undefined;

  get lostReason(): Error | undefined {
    return this.lost;
  }

  create(
    name: string,
    model: Uint8Array | string,
    options: InferenceSession.SessionOptions,
  ): Promise<SessionInfo> {
    return this.table.create(name, model, options);
  }

  run(
    sessionId: number,
    feeds: Record<string, HostTensor>,
    opts: BackendRunOptions,
  ): Promise<Record<string, HostTensor>> {
    const signal = opts.signal;
    return this.table.run(sessionId, feeds, opts.outputs, signal ? () => signal.aborted : undefined);
  }

  release(sessionId: number): Promise<void> {
    return this.table.release(sessionId);
  }

  async close(reason: Error): Promise<void> {
    this.lost ??= reason;
    await this.table.releaseAll();
  }
}

/** A copy with its own ArrayBuffer (TypedArray#slice copies, but a Node Buffer's slice is a view). */
function copyOf(data: HostTensor["data"]): HostTensor["data"] {
  return data instanceof Uint8Array ? new Uint8Array(data) : data.slice();
}
