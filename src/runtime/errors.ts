/** Errors of the runtime host. Every error about a session names it: `session "unet": ...`. */

export type RuntimeErrorCode =
  /** Bad RuntimeOptions / createSession arguments. */
  | "INVALID_OPTIONS"
  /** The requested execution provider is not usable with the installed onnxruntime-node. */
  | "EP_UNAVAILABLE"
  /** Feeds or requested outputs do not match the session (checked on the calling thread). */
  | "INVALID_FEEDS"
  /** onnxruntime rejected the model or failed during a run. */
  | "ORT_ERROR"
  /** The worker thread crashed or exited; its sessions are gone. */
  | "WORKER_GONE"
  /** The session was released. */
  | "RELEASED"
  /** The host was closed. */
  | "CLOSED";

export class RuntimeError extends Error {
  readonly code: RuntimeErrorCode;
  readonly sessionName: string | undefined;

  constructor(message: string, code: RuntimeErrorCode, sessionName?: string, cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = "RuntimeError";
    this.code = code;
    this.sessionName = sessionName;
  }
}

/** An error thrown on the other side of the worker boundary, rebuilt on this side. */
export class RemoteError extends Error {
  readonly remoteName: string;
  readonly cancelled: boolean;
  constructor(name: string, message: string, stack: string | undefined, cancelled: boolean) {
    super(message);
    this.name = "RemoteError";
    this.remoteName = name;
    this.cancelled = cancelled;
    if (stack !== undefined) this.stack = `${this.name}: ${message}\n--- in the session worker ---\n${stack}`;
  }
}

export function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
