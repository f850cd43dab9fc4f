/**
 * RemoteSession: the calling thread's handle on one onnxruntime session living in a RuntimeHost's backend.
 */
import { errorMessage, RuntimeError } from "./errors.js";
import { checkFeeds, checkOutputs } from "./feed_check.js";
import type { GraphCacheOutcome } from "./graph_cache.js";
import type { HostTensor } from "./host_tensor.js";
import type { SessionInfo, ValueInfo } from "./protocol.js";
import type { SessionBackend } from "./session_backends.js";
import { WorkerGoneError } from "./worker_channel.js";

export interface SessionRunOptions {
  /**
   * Aborting before the run starts rejects it without running (also when it is still queued behind other runs
   * in the worker). onnxruntime cannot interrupt a run in progress: a run aborted while executing finishes in
   * the worker, then its promise rejects with `signal.reason` and the outputs are dropped.
   */
  signal?: AbortSignal;
  /** Output names to compute (default: all outputs of the model). */
  outputs?: readonly string[];
  /**
   * Worker hosts copy each input once on the calling thread by default. With `transferInputs: true` an input
   * whose typed array spans its whole ArrayBuffer is moved to the worker instead: the caller's array is
   * detached (length 0) as soon as run() is called. Views into a larger buffer are still copied. Ignored by
   * in-process hosts (they read inputs in place). Outputs always come back transferred, never copied.
   */
  transferInputs?: boolean;
}

export class RemoteSession {
  readonly name: string;
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
  /** Declared element types and shapes (symbolic dims are strings). */
  readonly inputs: readonly ValueInfo[];
  readonly outputs: readonly ValueInfo[];
  /** How RuntimeOptions.graphCache served this session (undefined when the cache was off). */
  readonly graphCache: GraphCacheOutcome | undefined;
  private readonly backend: SessionBackend;
  private readonly sessionId: number;
  private released = false;

  /** @internal Created by RuntimeHost.createSession. */
  constructor(name: string, info: SessionInfo, backend: SessionBackend, graphCache?: GraphCacheOutcome) {
    this.name = name;
    this.graphCache = graphCache;
    this.sessionId = info.sessionId;
    this.inputNames = Object.freeze([...info.inputNames]);
    this.outputNames = Object.freeze([...info.outputNames]);
    this.inputs = Object.freeze(info.inputs);
    this.outputs = Object.freeze(info.outputs);
    this.backend = backend;
  }

  get isReleased(): boolean {
    return this.released;
  }

  private get label(): string {
    return `session "${this.name}"`;
  }

  /** Rejects if the session can no longer be used. */
  private checkUsable(): void {
    if (this.released) throw new RuntimeError(`${this.label} has been released`, "RELEASED", this.name);
    const lost = this.backend.lostReason;
    if (lost) {
      const code = lost instanceof WorkerGoneError ? "WORKER_GONE" : "CLOSED";
      throw new RuntimeError(`${this.label} is no longer available: ${lost.message}`, code, this.name, lost);
    }
  }

  async run(
    feeds: Record<string, HostTensor>,
    options: SessionRunOptions = {},
  ): Promise<Record<string, HostTensor>> {
    const { signal } = options;
    this.checkUsable();
    signal?.throwIfAborted();
    const problems = [...checkFeeds(this.inputs, feeds), ...checkOutputs(this.outputNames, options.outputs)];
    if (problems.length > 0) {
      throw new RuntimeError(
        `${this.label}: invalid run() call: ${problems.join("; ")}`,
        "INVALID_FEEDS",
        this.name,
      );
    }
    let result: Record<string, HostTensor>;
    try {
      result = await this.backend.run(this.sessionId, feeds, {
        outputs: options.outputs ? [...options.outputs] : undefined,
        transferInputs: options.transferInputs === true,
        signal,
      });
    } catch (e) {
      signal?.throwIfAborted();
      throw this.wrap("run failed", e);
    }
    // onnxruntime could not be interrupted; the run finished but its caller gave up on it.
    signal?.throwIfAborted();
    return result;
  }

  /** Frees the session in its backend. Further run() calls reject; releasing twice is a no-op. */
  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    if (this.backend.lostReason) return;
    try {
      await this.backend.release(this.sessionId);
    } catch (e) {
      if (this.backend.lostReason) return;
      throw this.wrap("release failed", e);
    }
  }

  private wrap(what: string, e: unknown): RuntimeError {
    if (e instanceof RuntimeError && e.sessionName === this.name) return e;
    const code =
      e instanceof WorkerGoneError ? "WORKER_GONE" : e instanceof RuntimeError ? e.code : "ORT_ERROR";
    return new RuntimeError(`${this.label}: ${what}: ${errorMessage(e)}`, code, this.name, e);
  }
}
