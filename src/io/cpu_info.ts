/**
 * The CPU's model name and feature flags, read once. Both decide things that are hardware specific: the int8
 * weight range (onnx/quantize.ts: VNNI / AMX or not) and the optimized-graph cache key (runtime/graph_cache.ts:
 * onnxruntime's NCHWc layout picks the vector width).
 */
import { readFileSync } from "node:fs";
import { cpus } from "node:os";

export interface CpuIdentity {
  /** os.cpus()[0].model, e.g. "AMD EPYC 7B13" ("unknown" if absent). */
  model: string;
  /** /proc/cpuinfo `flags` (x86 Linux) or `Features` (Arm Linux), space separated; "" elsewhere. */
  flags: string;
}

let memo: CpuIdentity | undefined;

export function cpuIdentity(): CpuIdentity {
  if (memo) return memo;
  let flags = "";
  try {
    flags = /^(?:flags|Features)\s*:\s*(.*)$/m.exec(readFileSync("/proc/cpuinfo", "utf8"))?.[1]?.trim() ?? "";
  } catch {
    // Not Linux: the model name is all there is (it implies the feature set on macOS and Windows machines).
  }
  memo = { model: cpus()[0]?.model.trim() ?? "unknown", flags };
  return memo;
}

/** The feature flags as a list (undefined when the platform does not expose them). */
export function cpuFlags(): string[] | undefined {
  const { flags } = cpuIdentity();
  return flags ? flags.split(/\s+/) : undefined;
}
