/**
 * model_index.json of a StableDiffusionUpscalePipeline folder: which class each component is, and the pipeline's
 * own registered config (`max_noise_level`). Validated in one place, with errors naming the file and key.
 */
import { existsSync, statSync } from "node:fs";
import { join } from "node:path";
import { ModelFileError, readJson } from "../io/model_files.js";

export const PIPELINE_CLASS = "StableDiffusionUpscalePipeline";

/** Components the pipeline needs, with the classes sdx4 implements for them. */
export const REQUIRED_COMPONENTS: Readonly<Record<string, readonly string[]>> = {
  text_encoder: ["CLIPTextModel"],
  tokenizer: ["CLIPTokenizer", "CLIPTokenizerFast"],
  unet: ["UNet2DConditionModel"],
  vae: ["AutoencoderKL"],
  scheduler: [],
  low_res_scheduler: ["DDPMScheduler"],
};

/** Optional components: never loaded from disk (pluggable as functions). */
export const OPTIONAL_COMPONENTS = ["safety_checker", "feature_extractor", "watermarker"] as const;

export interface PipelineIndex {
  path: string;
  classes: Record<string, string>;
  maxNoiseLevel: number;
  optional: Record<string, string | null>;
  raw: Record<string, unknown>;
}

export function readPipelineIndex(dir: string): PipelineIndex {
  const path = join(dir, "model_index.json");
  const raw = readJson(path);
  const cls = raw._class_name;
  if (cls !== PIPELINE_CLASS) {
    throw new ModelFileError(
      `${path}: _class_name is ${JSON.stringify(cls)}; sdx4 loads ${PIPELINE_CLASS} folders`,
    );
  }
  const classes: Record<string, string> = {};
  for (const [name, allowed] of Object.entries(REQUIRED_COMPONENTS)) {
    const entry = raw[name];
    if (!Array.isArray(entry) || entry.length !== 2 || typeof entry[1] !== "string") {
      throw new ModelFileError(`${path}: component "${name}" is missing or not a [library, class] pair`);
    }
    const c = entry[1];
    if (allowed.length && !allowed.includes(c)) {
      throw new ModelFileError(`${path}: ${name} is ${c}; sdx4 supports ${allowed.join(" / ")}`);
    }
    classes[name] = c;
    const folder = join(dir, name);
    if (!existsSync(folder) || !statSync(folder).isDirectory()) {
      throw new ModelFileError(`${folder}: component folder not found (${path} lists ${name} as ${c})`);
    }
  }
  const optional: Record<string, string | null> = {};
  for (const name of OPTIONAL_COMPONENTS) {
    const entry = raw[name];
    optional[name] = Array.isArray(entry) && typeof entry[1] === "string" ? entry[1] : null;
  }
  const mnl = raw.max_noise_level ?? 350;
  if (typeof mnl !== "number" || !Number.isInteger(mnl) || mnl < 0) {
    throw new ModelFileError(
      `${path}: max_noise_level must be a non-negative integer, got ${JSON.stringify(mnl)}`,
    );
  }
  return { path, classes, maxNoiseLevel: mnl, optional, raw };
}
