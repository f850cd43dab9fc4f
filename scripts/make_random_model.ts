/**
 * Writes diffusers folders with RANDOM weights of real-size (or any) configs, for benchmarks and real-size forward
 * checks without downloading a checkpoint.
 *
 *   npx tsx scripts/make_random_model.ts --preset x4-upscaler --out <dir> [--dtype fp32|fp16] [--seed N]
 *   npx tsx scripts/make_random_model.ts --config <config.json> --component unet|vae|text_encoder --out <dir>
 *
 * The preset writes a whole StableDiffusionUpscalePipeline folder: model_index.json (max_noise_level 350),
 * unet / vae / text_encoder (config.json + safetensors), the tokenizer, scheduler and low_res_scheduler files of
 * test/fixtures/models/tiny-upscaler, and `random_model.json` (provenance, written last: its presence means the
 * folder is complete). `--component` writes one component folder (config.json + safetensors).
 *
 * Keys and shapes come from the model classes' own ParamStore (the component is constructed from its config, as the
 * loader does), so the files bind strictly. Values: N(0, 1/fan_in) for ≥2-D weights, embeddings N(0, 0.02²),
 * 1-D weights (norm scales) 1, biases 0. Each tensor is drawn from its own stream (seeded by the seed and the key)
 * and produced chunk by chunk while the file is written, so the model never sits in memory. `--dtype fp16` writes
 * the fp16 variant files (diffusion_pytorch_model.fp16.safetensors, model.fp16.safetensors).
 */
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { type TensorToWrite, writeSafetensors } from "../src/io/safetensors_writer.js";
import { CLIPTextTransformer, clipTextArchitecture, parseCLIPTextConfig } from "../src/models/clip/index.js";
import { UNet2DConditionModel } from "../src/models/unet/index.js";
import { AutoencoderKL } from "../src/models/vae/index.js";
import { Linear } from "../src/onnx/nn.js";
import { type Param, ParamStore } from "../src/onnx/params.js";

export type Component = "unet" | "vae" | "text_encoder";
export type WeightDtype = "fp32" | "fp16";

const HERE = dirname(fileURLToPath(import.meta.url));
const REPO = resolve(HERE, "..");
export const PRESET_DIR = join(HERE, "configs", "x4-upscaler");
export const TINY_MODEL_DIR = join(REPO, "test", "fixtures", "models", "tiny-upscaler");

/** Parameter counts of the real stabilityai/stable-diffusion-x4-upscaler components (asserted for the preset). */
export const X4_PARAM_COUNTS: Readonly<Record<Component, number>> = {
  unet: 473_398_020,
  vae: 55_325_927,
  text_encoder: 340_387_840,
};

const WEIGHT_BASE: Record<Component, string> = {
  unet: "diffusion_pytorch_model",
  vae: "diffusion_pytorch_model",
  text_encoder: "model",
};

export function weightFileName(component: Component, dtype: WeightDtype): string {
  return `${WEIGHT_BASE[component]}${dtype === "fp16" ? ".fp16" : ""}.safetensors`;
}

/** The component's parameters (state-dict keys and shapes), from the model class constructed on `config`. */
export function componentParams(component: Component, config: Record<string, unknown>): Param[] {
  if (component === "unet") return [...new UNet2DConditionModel(config).store.params.values()];
  if (component === "vae") return [...new AutoencoderKL(config).store.params.values()];
  // CLIPTextModel binds weights in its constructor; declare its modules the way it does, into our own store.
  const c = parseCLIPTextConfig(config);
  const store = new ParamStore();
  const root = store.root();
  new CLIPTextTransformer(root.pp("text_model"), c);
  if (clipTextArchitecture(c) === "CLIPTextModelWithProjection") {
    new Linear(root.pp("text_projection"), c.hidden_size, c.projection_dim, false);
  }
  return [...store.params.values()];
}

export function paramCount(params: readonly Param[]): number {
  return params.reduce((n, p) => n + p.shape.reduce((a, d) => a * d, 1), 0);
}

// ---------------------------------------------------------------------------------------------------------
// Random values: xoshiro128** per tensor (seeded by splitmix32 of seed ^ FNV-1a(key)), Box–Muller normals.

function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

class Xoshiro128 {
  private a: number;
  private b: number;
  private c: number;
  private d: number;
  constructor(seed: number) {
    let x = seed >>> 0;
    const next = () => {
      x = (x + 0x9e3779b9) | 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.a = next();
    this.b = next();
    this.c = next();
    this.d = next() | 1;
  }
  /** Uniform in (0, 1]. */
  uniform(): number {
    const b = this.b;
    const t = b << 9;
    let r = Math.imul(b, 5);
    r = Math.imul((r << 7) | (r >>> 25), 9);
    this.c ^= this.a;
    this.d ^= b;
    this.b ^= this.c;
    this.a ^= this.d;
    this.c ^= t;
    this.d = (this.d << 11) | (this.d >>> 21);
    return ((r >>> 0) + 1) / 4294967296;
  }
}

/** Fills `out` with N(0, std²) values. */
function fillNormal(rng: Xoshiro128, out: Float32Array, std: number): void {
  const n = out.length;
  let i = 0;
  for (; i + 1 < n; i += 2) {
    const r = std * Math.sqrt(-2 * Math.log(rng.uniform()));
    const th = 2 * Math.PI * rng.uniform();
    out[i] = r * Math.cos(th);
    out[i + 1] = r * Math.sin(th);
  }
  if (i < n) out[i] = std * Math.sqrt(-2 * Math.log(rng.uniform())) * Math.cos(2 * Math.PI * rng.uniform());
}

export type InitRule = { kind: "const"; value: number } | { kind: "normal"; std: number };

/** How a parameter is initialised, from its key and shape. */
export function initRule(p: Param): InitRule {
  if (p.key.endsWith(".bias")) return { kind: "const", value: 0 };
  if (p.shape.length < 2) return { kind: "const", value: 1 }; // norm scales
  if (/(^|\.)(token|position|class)_embedding\.weight$/.test(p.key)) return { kind: "normal", std: 0.02 };
  const fanIn = p.shape.slice(1).reduce((a, d) => a * d, 1);
  return { kind: "normal", std: 1 / Math.sqrt(fanIn) };
}

const CHUNK = 1 << 20; // values per generated chunk

/** The lazily produced data of one parameter, in chunks of at most CHUNK float32 values. */
export function* paramValues(p: Param, seed: number): Generator<Float32Array> {
  const numel = p.shape.reduce((a, d) => a * d, 1);
  const rule = initRule(p);
  const rng = new Xoshiro128((seed ^ fnv1a(p.key)) >>> 0);
  for (let start = 0; start < numel; start += CHUNK) {
    const out = new Float32Array(Math.min(CHUNK, numel - start));
    if (rule.kind === "const") out.fill(rule.value);
    else fillNormal(rng, out, rule.std);
    yield out;
  }
}

// ---------------------------------------------------------------------------------------------------------

export interface MakeOptions {
  dtype?: WeightDtype;
  seed?: number;
  /** Checked against the parameter count (the preset passes X4_PARAM_COUNTS). */
  expectedParams?: number;
  log?: (line: string) => void;
}

export interface ComponentResult {
  component: Component;
  params: number;
  tensors: number;
  file: string;
  seconds: number;
}

/** Writes `<outDir>/config.json` and the component's random safetensors weights. */
export function makeRandomComponent(
  component: Component,
  config: Record<string, unknown>,
  outDir: string,
  options: MakeOptions = {},
): ComponentResult {
  const dtype = options.dtype ?? "fp32";
  const seed = options.seed ?? 0;
  const params = componentParams(component, config);
  const count = paramCount(params);
  if (options.expectedParams !== undefined && count !== options.expectedParams) {
    throw new Error(
      `${component}: the config declares ${count.toLocaleString("en-US")} parameters, expected ` +
        `${options.expectedParams.toLocaleString("en-US")}`,
    );
  }
  const t0 = performance.now();
  mkdirSync(outDir, { recursive: true });
  writeFileSync(join(outDir, "config.json"), `${JSON.stringify(config, null, 2)}\n`);
  const tensors: Record<string, TensorToWrite> = {};
  for (const p of params) {
    tensors[p.key] = {
      dtype: dtype === "fp16" ? "F16" : "F32",
      shape: p.shape,
      data: () => paramValues(p, seed),
    };
  }
  const file = join(outDir, weightFileName(component, dtype));
  writeSafetensors(file, tensors, { format: "pt" });
  const seconds = (performance.now() - t0) / 1000;
  options.log?.(
    `${component}: ${count.toLocaleString("en-US")} params, ${params.length} tensors → ${file} (${seconds.toFixed(1)} s)`,
  );
  return { component, params: count, tensors: params.length, file, seconds };
}

export function readConfig(path: string): Record<string, unknown> {
  const json: unknown = JSON.parse(readFileSync(path, "utf8"));
  if (typeof json !== "object" || json === null || Array.isArray(json))
    throw new Error(`${path}: not a JSON object`);
  return json as Record<string, unknown>;
}

const COMPONENTS: readonly Component[] = ["text_encoder", "vae", "unet"];
export const COMPLETE_MARKER = "random_model.json";

/** Writes a whole x4-upscaler pipeline folder with random weights (the marker file last). */
export function makeRandomX4Pipeline(outDir: string, options: MakeOptions = {}): ComponentResult[] {
  const dtype = options.dtype ?? "fp32";
  rmSync(join(outDir, COMPLETE_MARKER), { force: true });
  mkdirSync(outDir, { recursive: true });
  const results = COMPONENTS.map((c) =>
    makeRandomComponent(c, readConfig(join(PRESET_DIR, c, "config.json")), join(outDir, c), {
      ...options,
      expectedParams: X4_PARAM_COUNTS[c],
    }),
  );
  for (const sub of ["tokenizer", "scheduler", "low_res_scheduler"]) {
    const from = join(TINY_MODEL_DIR, sub);
    mkdirSync(join(outDir, sub), { recursive: true });
    for (const f of readdirSync(from)) copyFileSync(join(from, f), join(outDir, sub, f));
  }
  const index = readConfig(join(TINY_MODEL_DIR, "model_index.json"));
  index.max_noise_level = 350;
  writeFileSync(join(outDir, "model_index.json"), `${JSON.stringify(index, null, 2)}\n`);
  const marker = {
    preset: "x4-upscaler",
    note: "RANDOM weights (scripts/make_random_model.ts): for benchmarks and shape checks only",
    dtype,
    seed: options.seed ?? 0,
    params: Object.fromEntries(results.map((r) => [r.component, r.params])),
    created: new Date().toISOString(),
  };
  writeFileSync(join(outDir, COMPLETE_MARKER), `${JSON.stringify(marker, null, 2)}\n`);
  return results;
}

/** True when `dir` holds a complete random x4 folder of this dtype (written by makeRandomX4Pipeline). */
export function isCompleteRandomModel(dir: string, dtype: WeightDtype = "fp32"): boolean {
  const marker = join(dir, COMPLETE_MARKER);
  if (!existsSync(marker)) return false;
  try {
    const m = readConfig(marker);
    return m.dtype === dtype && COMPONENTS.every((c) => existsSync(join(dir, c, weightFileName(c, dtype))));
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------------------------------------

function usage(): string {
  return [
    "usage: npx tsx scripts/make_random_model.ts --preset x4-upscaler --out <dir> [--dtype fp32|fp16] [--seed N]",
    "       npx tsx scripts/make_random_model.ts --config <config.json> --component unet|vae|text_encoder --out <dir>",
    "                                             [--dtype fp32|fp16] [--seed N]",
  ].join("\n");
}

function main(argv: string[]): void {
  const args = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    if (a === "--help" || a === "-h") {
      console.log(usage());
      return;
    }
    const v = argv[i + 1];
    if (!a.startsWith("--") || v === undefined) throw new Error(`bad argument ${a}\n${usage()}`);
    args.set(a.slice(2), v);
    i++;
  }
  const out = args.get("out");
  if (!out) throw new Error(`--out is required\n${usage()}`);
  const dtype = (args.get("dtype") ?? "fp32") as WeightDtype;
  if (dtype !== "fp32" && dtype !== "fp16") throw new Error(`--dtype must be fp32 or fp16, got ${dtype}`);
  const seed = Number(args.get("seed") ?? 0);
  if (!Number.isInteger(seed)) throw new Error(`--seed must be an integer`);
  const log = (line: string) => console.log(line);
  const preset = args.get("preset");
  if (preset !== undefined) {
    if (preset !== "x4-upscaler") throw new Error(`unknown preset ${preset} (known: x4-upscaler)`);
    makeRandomX4Pipeline(out, { dtype, seed, log });
    console.log(`wrote ${out}`);
    return;
  }
  const config = args.get("config");
  const component = args.get("component") as Component | undefined;
  if (!config || !component || !COMPONENTS.includes(component)) {
    throw new Error(`--preset, or --config and --component unet|vae|text_encoder, is required\n${usage()}`);
  }
  makeRandomComponent(component, readConfig(config), out, { dtype, seed, log });
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  try {
    main(process.argv.slice(2));
  } catch (e) {
    console.error(e instanceof Error ? e.message : e);
    process.exitCode = 1;
  }
}
