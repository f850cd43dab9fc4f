/**
 * The onnxruntime side: owns InferenceSessions of the thread it runs in (the session worker, or the calling
 * thread for in-process hosts) and converts HostTensor <-> ort.Tensor. Its errors are onnxruntime's own; the host
 * adds the session name.
 */
import * as ort from "onnxruntime-node";
import { type HostTensor, type HostTensorData, isHostTensorType, validateHostTensor } from "./host_tensor.js";
import type { SessionInfo, ValueInfo } from "./protocol.js";

export class CancelledError extends Error {
  constructor() {
    super("run cancelled before it started");
    this.name = "CancelledError";
  }
}

function toValueInfo(m: ort.InferenceSession.ValueMetadata): ValueInfo {
  if (!m.isTensor) return { name: m.name, isTensor: false };
  return { name: m.name, isTensor: true, type: m.type, shape: [...m.shape] };
}

function toOrtTensor(name: string, t: HostTensor): ort.Tensor {
  validateHostTensor(t, `input "${name}"`);
  // ort.Tensor's typings tie each type to a data class; HostTensor validation guarantees they match.
  return new ort.Tensor(t.type, t.data as Float32Array, t.dims);
}

function toHostTensor(name: string, value: ort.OnnxValue): HostTensor {
  const t = value as ort.Tensor;
  const type = t.type as string;
  if (!isHostTensorType(type)) {
    throw new TypeError(`output "${name}" has type ${type}, which HostTensor does not support`);
  }
  let data = t.data as HostTensorData;
  // Runtimes with a native Float16Array may hand float16 data out as one; HostTensor keeps the raw bits.
  if (type === "float16" && !(data instanceof Uint16Array)) {
    const view = data as unknown as ArrayBufferView;
    data = new Uint16Array(view.buffer, view.byteOffset, view.byteLength / 2);
  }
  return { type, dims: [...t.dims], data };
}

interface Entry {
  name: string;
  session: ort.InferenceSession;
}

export class SessionTable {
  private readonly sessions = new Map<number, Entry>();
  private nextId = 1;

  async create(
    name: string,
    model: Uint8Array | string,
    options: ort.InferenceSession.SessionOptions,
  ): Promise<SessionInfo> {
    const session =
      typeof model === "string"
        ? await ort.InferenceSession.create(model, options)
        : await ort.InferenceSession.create(model, options);
    const sessionId = this.nextId++;
    this.sessions.set(sessionId, { name, session });
    return {
      sessionId,
      inputNames: [...session.inputNames],
      outputNames: [...session.outputNames],
      inputs: session.inputMetadata.map(toValueInfo),
      outputs: session.outputMetadata.map(toValueInfo),
    };
  }

  private get(sessionId: number): Entry {
    const entry = this.sessions.get(sessionId);
    if (!entry) throw new Error(`no live session with id ${sessionId} (already released?)`);
    return entry;
  }

  /**
   * Runs a session. `isCancelled` is consulted right before onnxruntime is entered (after any runs queued
   * ahead of this one finished); a run already inside onnxruntime cannot be interrupted.
   */
  async run(
    sessionId: number,
    feeds: Record<string, HostTensor>,
    outputs: readonly string[] | undefined,
    isCancelled?: () => boolean,
  ): Promise<Record<string, HostTensor>> {
    const { session } = this.get(sessionId);
    const ortFeeds: Record<string, ort.Tensor> = {};
    for (const [name, t] of Object.entries(feeds)) ortFeeds[name] = toOrtTensor(name, t);
    if (isCancelled?.()) throw new CancelledError();
    const result = outputs ? await session.run(ortFeeds, outputs) : await session.run(ortFeeds);
    const out: Record<string, HostTensor> = {};
    for (const [name, value] of Object.entries(result)) out[name] = toHostTensor(name, value);
    return out;
  }

  async release(sessionId: number): Promise<void> {
    const entry = this.sessions.get(sessionId);
    if (!entry) return;
    this.sessions.delete(sessionId);
    await entry.session.release();
  }

  async releaseAll(): Promise<void> {
    const ids = [...this.sessions.keys()];
    for (const id of ids) await this.release(id);
  }
}

/** Distinct, transferable ArrayBuffers behind these tensors (for a postMessage transfer list). */
export function transferableBuffers(tensors: Iterable<HostTensor>): ArrayBuffer[] {
  const seen = new Set<ArrayBuffer>();
  for (const t of tensors) {
    const buffer = t.data.buffer;
    // SharedArrayBuffers are shared, not transferred; the tag test also works across realms.
    if (Object.prototype.toString.call(buffer) === "[object ArrayBuffer]") seen.add(buffer as ArrayBuffer);
  }
  return [...seen];
}
