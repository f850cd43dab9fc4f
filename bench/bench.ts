/**
 * `npm run bench`: real-size stable-diffusion-x4-upscaler components with RANDOM weights, on onnxruntime through
 * sdx4's public components and worker runtime.
 *
 *   npm run bench                       the suite: one child process per measurement, a table, bench/results/<ts>.json
 *   npm run bench -- --only unet-64,text,sessions-unet      a subset of the suite (names as in the table)
 *   npm run bench -- --component unet|vae|text|pipeline [--size 64] [--runs 3] [--warmup 1] [--json]
 *                                       one measurement in this process (prints one JSON object with --json)
 *   extra: --sessions (cold/warm session creation instead of runs), --profile (onnxruntime profile of one run by op
 *          type), --tiled (VAE: memory-efficient attention + tiling),
 *          --memory-efficient (UNet / VAE / pipeline: onnxruntime's fused attention), --steps N (pipeline, default 20),
 *          --precision float32|int8 (UNet / pipeline: the int8 fast path),
 *          --conv-algorithm auto|direct|winograd (RuntimeOptions.convAlgorithm; default auto),
 *          --winograd-filters session|run (RuntimeOptions.winogradFilters; default: the library's per model),
 *          --offload (pipeline: model offload), --tiled (pipeline: VAE tiling), --memory-pattern / --no-memory-arena
 *          (onnxruntime's memory pattern on / CPU arena off: RuntimeOptions.memoryPattern / memoryArena),
 *          --threads N (intra-op threads; default onnxruntime's choice), --model <dir> (default bench/cache/x4-random,
 *          built on first use with scripts/make_random_model.ts), --timeout <s> (per child, suite mode),
 *          --graph-cache [dir] (RuntimeOptions.graphCache; --sessions adds a cache miss + hit, in a fresh temp
 *          folder unless dir is given; runs use dir, default bench/cache/optimized-graphs)
 *
 * Times are medians of the timed runs after the warm-up call(s). Peak RSS is `process.resourceUsage().maxRSS` of
 * the measuring process (the onnxruntime worker is a thread of it). Benchmarks are never timed assertions in tests.
 */
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { availableParallelism, cpus, loadavg, totalmem } from "node:os";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { isCompleteRandomModel, makeRandomX4Pipeline } from "../scripts/make_random_model.js";
import { cpuIdentity } from "../src/io/cpu_info.js";
import {
  type ConvAlgorithm,
  checkConvAlgorithm,
  checkWinogradFilters,
  type WinogradFilters,
} from "../src/onnx/conv_plan.js";
import { checkPrecision, type Precision } from "../src/onnx/quantize.js";
import { type BenchComponent, type Measurement, type MeasureOptions, measure } from "./measure.js";

const HERE = dirname(fileURLToPath(import.meta.url));
const REPO = resolve(HERE, "..");
const DEFAULT_MODEL = join(HERE, "cache", "x4-random");
const REFERENCE = resolve(REPO, "..", "shared", "perf", "torch-cpu-reference.json");

interface Args {
  component?: BenchComponent;
  size?: number;
  runs?: number;
  warmup: number;
  steps: number;
  threads?: number;
  model: string;
  json: boolean;
  sessions: boolean;
  profile: boolean;
  tiled: boolean;
  memoryEfficient: boolean;
  offload: boolean;
  memoryPattern?: boolean;
  memoryArena?: boolean;
  precision: Precision;
  convAlgorithm?: ConvAlgorithm;
  winogradFilters?: WinogradFilters;
  /** --graph-cache [dir]: "" = the mode's default folder. */
  graphCache?: string;
  only?: string[];
  timeout: number;
}

function parseArgs(argv: string[]): Args {
  const a: Args = {
    warmup: 1,
    steps: 20,
    model: DEFAULT_MODEL,
    json: false,
    sessions: false,
    profile: false,
    tiled: false,
    memoryEfficient: false,
    offload: false,
    precision: "float32",
    timeout: 3600,
  };
  const int = (name: string, v: string | undefined, min: number) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) throw new Error(`--${name} must be an integer >= ${min}, got ${v}`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i] as string;
    const v = () => argv[++i];
    switch (k) {
      case "--component": {
        const c = v();
        if (!["unet", "vae", "text", "pipeline"].includes(c ?? "")) {
          throw new Error(`--component must be unet, vae, text or pipeline, got ${c}`);
        }
        a.component = c as BenchComponent;
        break;
      }
      case "--size":
        a.size = int("size", v(), 8);
        break;
      case "--runs":
        a.runs = int("runs", v(), 1);
        break;
      case "--warmup":
        a.warmup = int("warmup", v(), 0);
        break;
      case "--steps":
        a.steps = int("steps", v(), 1);
        break;
      case "--threads":
        a.threads = int("threads", v(), 1);
        break;
      case "--timeout":
        a.timeout = int("timeout", v(), 1);
        break;
      case "--model":
        a.model = resolve(v() ?? "");
        break;
      case "--only":
        a.only = (v() ?? "").split(",").filter(Boolean);
        break;
      case "--json":
        a.json = true;
        break;
      case "--sessions":
        a.sessions = true;
        break;
      case "--profile":
        a.profile = true;
        break;
      case "--tiled":
        a.tiled = true;
        break;
      case "--precision":
        a.precision = checkPrecision(v(), "--precision");
        break;
      case "--conv-algorithm":
        a.convAlgorithm = checkConvAlgorithm(v(), "--conv-algorithm");
        break;
      case "--winograd-filters":
        a.winogradFilters = checkWinogradFilters(v(), "--winograd-filters");
        break;
      case "--memory-efficient":
        a.memoryEfficient = true;
        break;
      case "--offload":
        a.offload = true;
        break;
      case "--memory-pattern":
        a.memoryPattern = true;
        break;
      case "--no-memory-arena":
        a.memoryArena = false;
        break;
      case "--graph-cache": {
        const next = argv[i + 1];
        a.graphCache = next !== undefined && !next.startsWith("--") ? resolve(v() as string) : "";
        break;
      }
      case "--help":
      case "-h":
        console.log(readFileSync(fileURLToPath(import.meta.url), "utf8").split("*/")[0]);
        process.exit(0);
        break;
      default:
        throw new Error(`unknown argument ${k} (see --help)`);
    }
  }
  return a;
}

function ensureModel(dir: string): void {
  if (isCompleteRandomModel(dir)) return;
  if (dir !== DEFAULT_MODEL && existsSync(join(dir, "model_index.json"))) return; // a real or other model folder
  console.error(`building the real-size random model into ${relative(process.cwd(), dir)} (~1 min, 3.5 GB)…`);
  makeRandomX4Pipeline(dir, { log: (l) => console.error(`  ${l}`) });
}

// ---------------------------------------------------------------------------------------------------------
// Machine and reference

function cpuFlags(): Record<string, boolean> {
  const set = new Set(cpuIdentity().flags.split(/\s+/));
  return Object.fromEntries(
    ["avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile", "amx_bf16"].map(
      (f) => [f, set.has(f)],
    ),
  );
}

function machine() {
  return {
    cpu_model: cpus()[0]?.model ?? "unknown",
    logical_cpus: availableParallelism(),
    cpu_flags: cpuFlags(),
    mem_gb: Math.round(totalmem() / 2 ** 30),
    node: process.version,
    platform: `${process.platform}/${process.arch}`,
  };
}

interface Reference {
  cpu_model: string;
  torch_version: string;
  threads: number;
  medians: Map<string, number>;
}

function loadReference(): Reference | undefined {
  if (!existsSync(REFERENCE)) return undefined;
  const r = JSON.parse(readFileSync(REFERENCE, "utf8")) as {
    cpu_model: string;
    torch_version: string;
    threads: number;
    components: Record<string, { measurements: { label: string; median_s: number }[] }>;
  };
  const medians = new Map<string, number>();
  for (const [comp, c] of Object.entries(r.components)) {
    for (const m of c.measurements) {
      const size = /x(\d+)x\d+(,| ->)/.exec(m.label)?.[1];
      const key = comp === "text_encoder" ? "text" : `${comp}-${size}`;
      medians.set(key, m.median_s);
    }
  }
  return { cpu_model: r.cpu_model, torch_version: r.torch_version, threads: r.threads, medians };
}

function refKey(m: Measurement): string | undefined {
  if (m.mode !== "run") return undefined;
  if (m.component === "text") return "text";
  if (m.component === "unet" || m.component === "vae") return `${m.component}-${m.size}`;
  return undefined;
}

// ---------------------------------------------------------------------------------------------------------
// Suite

interface SuiteEntry {
  name: string;
  args: string[];
}

function suite(a: Args): SuiteEntry[] {
  const common = [...(a.threads ? ["--threads", String(a.threads)] : []), "--model", a.model];
  const e = (name: string, ...args: string[]) => ({ name, args: [...args, ...common] });
  return [
    e("sessions-text", "--component", "text", "--sessions"),
    e("sessions-vae", "--component", "vae", "--sessions"),
    e("sessions-unet", "--component", "unet", "--sessions"),
    e("text", "--component", "text", "--runs", "5"),
    e("unet-64", "--component", "unet", "--size", "64", "--runs", "3"),
    e("unet-128", "--component", "unet", "--size", "128", "--runs", "3"),
    e("unet-128-direct", "--component", "unet", "--size", "128", "--conv-algorithm", "direct", "--runs", "3"),
    // The CLI's Winograd filters (transformed in every run): the cost per step and the memory it saves.
    e(
      "unet-64-filters-run",
      "--component",
      "unet",
      "--size",
      "64",
      "--winograd-filters",
      "run",
      "--runs",
      "3",
    ),
    e(
      "unet-128-filters-run",
      "--component",
      "unet",
      "--size",
      "128",
      "--winograd-filters",
      "run",
      "--runs",
      "3",
    ),
    e("unet-128-mea", "--component", "unet", "--size", "128", "--memory-efficient", "--runs", "3"),
    e("unet-64-int8", "--component", "unet", "--size", "64", "--precision", "int8", "--runs", "3"),
    e("unet-128-int8", "--component", "unet", "--size", "128", "--precision", "int8", "--runs", "3"),
    e("vae-64", "--component", "vae", "--size", "64", "--runs", "3"),
    e("vae-128", "--component", "vae", "--size", "128", "--runs", "3"),
    e("vae-128-direct", "--component", "vae", "--size", "128", "--conv-algorithm", "direct", "--runs", "3"),
    e(
      "vae-128-filters-session",
      "--component",
      "vae",
      "--size",
      "128",
      "--winograd-filters",
      "session",
      "--runs",
      "3",
    ),
    e("vae-256-tiled", "--component", "vae", "--size", "256", "--tiled", "--runs", "1", "--warmup", "0"),
    e("pipeline-128", "--component", "pipeline", "--size", "128", "--steps", String(a.steps), "--runs", "1"),
    // Peak memory of one call with the CLI's --low-memory options (2 steps: a repeated UNet run is included).
    e(
      "pipeline-128-low-memory",
      ...["--component", "pipeline", "--size", "128", "--steps", "2", "--warmup", "0", "--runs", "1"],
      ...["--offload", "--memory-efficient", "--conv-algorithm", "direct"],
    ),
    e("profile-unet-64", "--component", "unet", "--size", "64", "--profile"),
  ];
}

function runChild(
  entry: SuiteEntry,
  timeoutS: number,
): Promise<Measurement | { name: string; error: string }> {
  return new Promise((done) => {
    const child = spawn(
      process.execPath,
      ["--import", "tsx", fileURLToPath(import.meta.url), ...entry.args, "--json"],
      { cwd: REPO, stdio: ["ignore", "pipe", "pipe"] },
    );
    let out = "";
    let err = "";
    child.stdout.on("data", (d) => {
      out += d;
    });
    child.stderr.on("data", (d) => {
      err += d;
    });
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutS * 1000);
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      const line = out
        .trim()
        .split("\n")
        .reverse()
        .find((l) => l.startsWith("{"));
      if (code === 0 && line) {
        done(JSON.parse(line) as Measurement);
        return;
      }
      const why = signal
        ? `killed by ${signal}${signal === "SIGKILL" ? " (timeout or out of memory)" : ""}`
        : `exit ${code}`;
      done({ name: entry.name, error: `${why}: ${err.trim().split("\n").slice(-5).join(" | ")}` });
    });
  });
}

const fmt = (x: number | null | undefined, d = 2) => (x === null || x === undefined ? "-" : x.toFixed(d));

function row(name: string, m: Measurement, ref: Reference | undefined): string[] {
  const key = refKey(m);
  const r = key ? ref?.medians.get(key) : undefined;
  const ok = m.outputs.every((o) => o.finite && o.dims.join("x") === o.expected.join("x"));
  let time = fmt(m.median);
  let extra = m.seconds.length > 1 ? `runs ${m.seconds.map((s) => s.toFixed(2)).join(" ")}` : "";
  if (m.mode === "sessions") {
    time = "-";
    extra = `graph ${fmt(m.graph_build_s)} s (${((m.graph_bytes ?? 0) / 1e6).toFixed(1)} MB), load ${fmt(m.load_s)} s`;
    const gc = m.graph_cache;
    if (gc) {
      extra += `; graph cache ${gc.first} ${fmt(gc.first_s)} s, ${gc.second} ${fmt(gc.second_s)} s, entry ${(gc.entry_bytes / 1e9).toFixed(2)} GB`;
    }
  }
  if (m.pipeline_breakdown) {
    const p = m.pipeline_breakdown;
    extra = `step ${fmt(p.step_median_s)} s, start→step 1 end ${fmt(p.until_first_step_end_s)} s, decode+post ${fmt(p.after_steps_s)} s`;
  }
  if (m.profile)
    extra = `top: ${m.profile.by_op
      .slice(0, 3)
      .map((o) => `${o.op} ${o.pct}%`)
      .join(", ")}`;
  return [
    name,
    time,
    m.mode === "sessions" ? `${fmt(m.session_cold_s)} / ${fmt(m.session_warm_s)}` : fmt(m.first_call_s),
    m.peak_rss_mb.toFixed(0),
    r === undefined ? "-" : r.toFixed(2),
    r === undefined || m.median === null ? "-" : `${(m.median / r).toFixed(2)}x`,
    m.outputs.length ? (ok ? "ok" : "BAD") : "-",
    `${m.loadavg_start[0]?.toFixed(1)}→${m.loadavg_end[0]?.toFixed(1)}`,
    extra,
  ];
}

function table(rows: string[][]): string {
  const head = [
    "measurement",
    "median s",
    "first call / session cold/warm s",
    "peak RSS MB",
    "torch s",
    "ours/torch",
    "out",
    "load",
    "notes",
  ];
  const all = [head, ...rows];
  const w = head.map((_, i) => Math.max(...all.map((r) => (r[i] ?? "").length)));
  return all
    .map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(w[i] as number))).join("  "))
    .join("\n");
}

async function runSuite(a: Args): Promise<void> {
  ensureModel(a.model);
  const ref = loadReference();
  const entries = suite(a).filter((e) => !a.only || a.only.includes(e.name));
  const m = machine();
  console.log(
    `sdx4 bench: ${m.cpu_model}, ${m.logical_cpus} logical CPUs, ${m.mem_gb} GB, ${m.platform}, node ${m.node}`,
  );
  console.log(
    `  flags: ${Object.entries(m.cpu_flags)
      .map(([k, v]) => `${k}${v ? "+" : "-"}`)
      .join(" ")}`,
  );
  if (ref) {
    console.log(
      `  reference: PyTorch ${ref.torch_version} CPU fp32, ${ref.threads} threads, on "${ref.cpu_model}" ` +
        "(a different CPU: ratios compare machines as well as runtimes)",
    );
  }
  const results: (Measurement & { name: string })[] = [];
  const errors: { name: string; error: string }[] = [];
  const rows: string[][] = [];
  for (const e of entries) {
    process.stderr.write(`  ${e.name} (load ${loadavg()[0]?.toFixed(1)})… `);
    const r = await runChild(e, a.timeout);
    if ("error" in r) {
      process.stderr.write(`FAILED: ${r.error}\n`);
      errors.push(r);
      rows.push([e.name, "FAILED", "", "", "", "", "", "", r.error.slice(0, 120)]);
      continue;
    }
    process.stderr.write(`${r.median ?? r.session_cold_s ?? "-"} s (wall ${r.wall_s} s)\n`);
    results.push({ ...r, name: e.name });
    rows.push(row(e.name, r, ref));
  }
  console.log(`\n${table(rows)}`);
  const prof = results.find((r) => r.profile)?.profile;
  if (prof) {
    console.log(
      `\nonnxruntime profile, ${results.find((r) => r.profile)?.label}: ${prof.run_ms} ms run, ${prof.total_node_ms} ms in kernels`,
    );
    for (const o of prof.by_op.slice(0, 12))
      console.log(
        `  ${o.op.padEnd(28)} ${o.ms.toFixed(0).padStart(8)} ms  ${o.pct.toFixed(1).padStart(5)}%  ×${o.count}`,
      );
    console.log(`  trace: ${relative(process.cwd(), prof.file)}`);
  }
  const dir = join(HERE, "results");
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `${new Date().toISOString().replace(/[:.]/g, "-")}.json`);
  const ratios = Object.fromEntries(
    results.flatMap((r) => {
      const k = refKey(r);
      const t = k ? ref?.medians.get(k) : undefined;
      return k && t && r.median !== null
        ? [[k, { ours_s: r.median, torch_s: t, ratio: Math.round((r.median / t) * 100) / 100 }]]
        : [];
    }),
  );
  writeFileSync(
    file,
    `${JSON.stringify({ created: new Date().toISOString(), machine: m, model: a.model, reference: ref ? { file: REFERENCE, cpu_model: ref.cpu_model, torch_version: ref.torch_version } : null, ratios_vs_torch_reference: ratios, measurements: results, errors }, null, 1)}\n`,
  );
  console.log(`\nwrote ${relative(process.cwd(), file)}`);
  if (errors.length) process.exitCode = 1;
}

async function main(): Promise<void> {
  const a = parseArgs(process.argv.slice(2));
  if (!a.component) {
    await runSuite(a);
    return;
  }
  ensureModel(a.model);
  const c = a.component;
  const o: MeasureOptions = {
    component: c,
    mode: a.profile ? "profile" : a.sessions ? "sessions" : "run",
    size: a.size ?? (c === "pipeline" ? 128 : 64),
    runs: a.runs ?? (c === "pipeline" ? 1 : 3),
    warmup: a.warmup,
    steps: a.steps,
    modelDir: a.model,
    threads: a.threads,
    tiled: a.tiled,
    memoryEfficient: a.memoryEfficient,
    offload: a.offload,
    memoryPattern: a.memoryPattern,
    memoryArena: a.memoryArena,
    precision: a.precision,
    convAlgorithm: a.convAlgorithm,
    winogradFilters: a.winogradFilters,
    ...(a.graphCache !== undefined ? { graphCache: a.graphCache } : {}),
  };
  const m = await measure(o);
  if (a.json) {
    console.log(JSON.stringify(m));
    return;
  }
  const name = a.sessions
    ? `sessions-${c}`
    : `${a.profile ? "profile-" : ""}${c}${c === "text" ? "" : `-${o.size}`}`;
  console.log(table([row(name, m, loadReference())]));
  if (m.profile) {
    for (const x of m.profile.by_op.slice(0, 15)) console.log(`  ${x.op.padEnd(28)} ${x.ms} ms ${x.pct}%`);
    console.log(`  trace: ${relative(process.cwd(), m.profile.file)}`);
  }
}

main().catch((e) => {
  console.error(e instanceof Error ? (e.stack ?? e.message) : e);
  process.exitCode = 1;
});
