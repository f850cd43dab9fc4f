/**
 * Weights for graph initializers: safetensors tensors referenced as ONNX external data (no copy: onnxruntime
 * maps the file; float16 / bfloat16 ones through a float32 spill file, see model_builder.ts), or in-memory arrays
 * inlined (tests, small constants). Binding is strict: missing, unexpected and
 * mis-shaped keys are reported together in one error (nanoGPT-style from_pretrained checks).
 */
import { realpathSync } from "node:fs";
import { basename, dirname } from "node:path";
import type { SafetensorsFile } from "../io/safetensors.js";
import type { ParamStore } from "./params.js";
import { type ElemType, SAFETENSORS_TO_ELEM } from "./proto.js";

export type WeightEntry =
  | {
      kind: "external";
      key: string;
      dtype: ElemType;
      shape: number[];
      /** File name relative to WeightSet.folder (onnxruntime rejects `..`, absolute paths and symlinks). */
      location: string;
      offset: number;
      length: number;
      /** The open file, for reading values at build time (int8 weight quantization). */
      file: SafetensorsFile;
    }
  | { kind: "inline"; key: string; dtype: "float32"; shape: number[]; data: Float32Array };

export class WeightError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "WeightError";
  }
}

export class WeightSet {
  private constructor(
    readonly entries: ReadonlyMap<string, WeightEntry>,
    /** Real folder holding every external file (undefined when all weights are inline). */
    readonly folder: string | undefined,
    readonly label: string,
  ) {}

  /**
   * Weights of one or more safetensors files (shards) of one model. Files are resolved through symlinks (the
   * Hugging Face cache links snapshots to blobs) and must all live in one real folder.
   */
  static fromSafetensors(files: SafetensorsFile[], label = files[0]?.path ?? "weights"): WeightSet {
    const entries = new Map<string, WeightEntry>();
    let folder: string | undefined;
    for (const f of files) {
      const real = realpathSync(f.path);
      const dir = dirname(real);
      if (folder !== undefined && folder !== dir) {
        throw new WeightError(`${label}: weight files live in different folders (${folder} and ${dir})`);
      }
      folder = dir;
      for (const t of f.tensors.values()) {
        // Any dtype is kept (checkpoints carry int64 buffers such as position_ids); bindWeights refuses a
        // non-float tensor only where a parameter would use it.
        const dtype = SAFETENSORS_TO_ELEM[t.dtype] ?? "uint8";
        if (entries.has(t.name))
          throw new WeightError(`${label}: tensor "${t.name}" appears in more than one shard`);
        entries.set(t.name, {
          kind: "external",
          key: t.name,
          dtype,
          shape: t.shape,
          location: basename(real),
          offset: t.fileOffset,
          length: t.byteLength,
          file: f,
        });
      }
    }
    return new WeightSet(entries, folder, label);
  }

  /** A weight's values as float32 (fp16 / bf16 converted exactly), read now. */
  readFloat32(key: string): Float32Array {
    const e = this.entries.get(key);
    if (!e) throw new WeightError(`${this.label}: no weight "${key}"`);
    return e.kind === "inline" ? e.data : e.file.getFloat32(key);
  }

  /** In-memory float32 weights (inlined into the graph). */
  static fromArrays(
    arrays: Record<string, { shape: number[]; data: Float32Array }>,
    label = "weights",
  ): WeightSet {
    const entries = new Map<string, WeightEntry>();
    for (const [key, { shape, data }] of Object.entries(arrays)) {
      const numel = shape.reduce((a, b) => a * b, 1);
      if (numel !== data.length)
        throw new WeightError(`${label}: "${key}" has ${data.length} values for shape [${shape}]`);
      entries.set(key, { kind: "inline", key, dtype: "float32", shape, data });
    }
    return new WeightSet(entries, undefined, label);
  }
}

const FLOAT_TYPES: readonly ElemType[] = ["float32", "float16", "bfloat16"];

export interface BindOptions {
  /** Checkpoint keys that may be present without a parameter (e.g. non-persistent buffers). */
  ignoreUnexpected?: RegExp[];
}

/** Checks declared parameters against the available weights; one error lists every problem. */
export function bindWeights(store: ParamStore, weights: WeightSet, options: BindOptions = {}): BoundWeights {
  const missing: string[] = [];
  const mismatched: string[] = [];
  const unexpected: string[] = [];
  for (const p of store.params.values()) {
    const e = weights.entries.get(p.key);
    if (!e) missing.push(p.key);
    else if (!FLOAT_TYPES.includes(e.dtype))
      mismatched.push(`${p.key}: checkpoint dtype ${e.dtype}, expected a float type`);
    else if (e.shape.length !== p.shape.length || e.shape.some((d, i) => d !== p.shape[i])) {
      mismatched.push(`${p.key}: checkpoint [${e.shape}] vs model [${p.shape}]`);
    }
  }
  for (const k of weights.entries.keys()) {
    if (!store.params.has(k) && !(options.ignoreUnexpected ?? []).some((r) => r.test(k))) unexpected.push(k);
  }
  if (missing.length || mismatched.length || unexpected.length) {
    const list = (title: string, xs: string[]) =>
      xs.length
        ? `\n  ${title} (${xs.length}):\n    ${xs.slice(0, 50).join("\n    ")}${xs.length > 50 ? "\n    ..." : ""}`
        : "";
    throw new WeightError(
      `${weights.label}: weights do not match the model config` +
        list("missing keys", missing) +
        list("shape mismatches", mismatched) +
        list("unexpected keys", unexpected),
    );
  }
  return new BoundWeights(weights);
}

export class BoundWeights {
  constructor(readonly weights: WeightSet) {}

  get folder(): string | undefined {
    return this.weights.folder;
  }

  get(key: string): WeightEntry {
    const e = this.weights.entries.get(key);
    if (!e) throw new WeightError(`${this.weights.label}: no weight "${key}"`);
    return e;
  }

  readFloat32(key: string): Float32Array {
    return this.weights.readFloat32(key);
  }
}
