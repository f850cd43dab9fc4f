/**
 * Finding a component's files in a diffusers / transformers folder: `config.json` and its safetensors weights
 * (`diffusion_pytorch_model[.<variant>].safetensors`, `model[.<variant>].safetensors`, or shards listed in
 * `<name>.safetensors.index.json`). Pickle checkpoints are refused with a message saying to use safetensors.
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { WeightSet } from "../onnx/weights.js";
import { SafetensorsFile } from "./safetensors.js";

export class ModelFileError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ModelFileError";
  }
}

/** Reads and parses a JSON config, naming the file on any failure. */
export function readJson(path: string): Record<string, unknown> {
  if (!existsSync(path)) throw new ModelFileError(`${path}: file not found`);
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(path, "utf8"));
  } catch (e) {
    throw new ModelFileError(`${path}: not valid JSON (${(e as Error).message})`);
  }
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw new ModelFileError(`${path}: expected a JSON object`);
  }
  return json as Record<string, unknown>;
}

export interface WeightFileOptions {
  /** e.g. "fp16" selects `diffusion_pytorch_model.fp16.safetensors`. */
  variant?: string;
}

const BASE_NAMES = ["diffusion_pytorch_model", "model"];

/** The safetensors file(s) holding a component's weights. */
export function findWeightFiles(dir: string, options: WeightFileOptions = {}): string[] {
  if (!existsSync(dir)) throw new ModelFileError(`${dir}: folder not found`);
  const v = options.variant ? `.${options.variant}` : "";
  for (const base of BASE_NAMES) {
    const single = join(dir, `${base}${v}.safetensors`);
    if (existsSync(single)) return [single];
    const index = join(dir, `${base}.safetensors.index${v}.json`);
    const index2 = join(dir, `${base}${v}.safetensors.index.json`);
    for (const idx of [index, index2]) {
      if (!existsSync(idx)) continue;
      const map = readJson(idx).weight_map as Record<string, string> | undefined;
      if (!map || typeof map !== "object") throw new ModelFileError(`${idx}: no "weight_map"`);
      const files = [...new Set(Object.values(map))].sort().map((f) => join(dir, f));
      for (const f of files) if (!existsSync(f)) throw new ModelFileError(`${idx}: shard ${f} not found`);
      return files;
    }
  }
  const present = readdirSync(dir);
  const pickle = present.find((f) => /\.(bin|ckpt|pt|pth)$/.test(f));
  if (pickle) {
    throw new ModelFileError(
      `${dir}: only a pickle checkpoint (${pickle}) is present; sdx4 loads safetensors only (pickle can run arbitrary code). ` +
        `Convert it, e.g. with diffusers: save_pretrained(dir, safe_serialization=True)`,
    );
  }
  const other = present.filter((f) => f.endsWith(".safetensors"));
  throw new ModelFileError(
    `${dir}: no weights ${BASE_NAMES.map((b) => `${b}${v}.safetensors`).join(" or ")}` +
      (other.length ? ` (found ${other.join(", ")}${v ? "" : "; pass a variant?"})` : ""),
  );
}

/** Opens a component's weights as a WeightSet (external data, nothing read eagerly). */
export function loadWeightSet(dir: string, options: WeightFileOptions = {}): WeightSet {
  const files = findWeightFiles(dir, options).map((f) => SafetensorsFile.open(f));
  return WeightSet.fromSafetensors(files, dir);
}
