/** Messages between RuntimeHost (main thread) and the session worker. Everything here is structured-cloneable. */
import type { InferenceSession } from "onnxruntime-node";
import type { HostTensor } from "./host_tensor.js";

/** Declared type of a model input or output, as onnxruntime reports it. */
export interface ValueInfo {
  name: string;
  isTensor: boolean;
  /** Element type ("float32", "int64", ...) for tensors. */
  type?: string;
  /** Static dims are numbers; symbolic or unknown dims are strings (possibly ""). */
  shape?: (number | string)[];
}

export interface SessionInfo {
  sessionId: number;
  inputNames: string[];
  outputNames: string[];
  inputs: ValueInfo[];
  outputs: ValueInfo[];
}

export type Request =
  | {
      op: "create";
      id: number;
      name: string;
      /** ONNX bytes, or the path of a model file (graph cache hits). */
      model: Uint8Array | string;
      options: InferenceSession.SessionOptions;
    }
  | {
      op: "run";
      id: number;
      sessionId: number;
      feeds: Record<string, HostTensor>;
      outputs: string[] | undefined;
      /** Int32Array over a SharedArrayBuffer; element 0 set to 1 = cancelled before the run starts. */
      cancel: Int32Array | undefined;
    }
  | { op: "release"; id: number; sessionId: number }
  /** Releases all sessions, then ends the worker thread (after the request in progress, if any). */
  | { op: "shutdown"; id: number }
  /** Test hook: throws an uncaught exception inside the worker. */
  | { op: "crash"; id: number };

/**
 * `workerData` of the session worker. `control[0]` set to 1 by the host = closing: the worker skips every
 * request still queued (their callers were already rejected) until it reaches "shutdown".
 */
export interface WorkerData {
  control: Int32Array;
}

export interface SerializedError {
  name: string;
  message: string;
  stack?: string;
  /** Set when the worker skipped a run because its cancel flag was set. */
  cancelled?: boolean;
}

export type Response =
  | { id: number; ok: true; value: unknown }
  | { id: number; ok: false; error: SerializedError };

export function serializeError(e: unknown): SerializedError {
  if (e instanceof Error) {
    const out: SerializedError = { name: e.name, message: e.message };
    if (e.stack !== undefined) out.stack = e.stack;
    return out;
  }
  return { name: "Error", message: String(e) };
}
