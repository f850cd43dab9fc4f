/**
 * One benchmark measurement, run in its own process (bench.ts spawns one child per measurement, so that
 * `process.resourceUsage().maxRSS`, which covers the onnxruntime worker thread of the same process, is the peak of
 * that measurement alone).
 *
 * Modes:
 *  - run: a component's forward through its public API (UNet2DConditionModel.forward, AutoencoderKL.decode,
 *    CLIPTextModel.forward) or the whole StableDiffusionUpscalePipeline.call: warm-up call(s) (the first creates the
 *    session), then timed runs; output shape and finiteness checked.
 *  - sessions: graph build + cold and warm RuntimeHost.createSession of a component's graph (no run); with
 *    graphCache also a cache miss then a hit (a fresh cache folder unless one is given; it is then kept).
 *  - profile: onnxruntime's profiler over a component's warm-up and one run; returns the op-type totals of that run.
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { cpus, loadavg } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import * as ort from "onnxruntime-node";
import { CLIPTextModel } from "../src/models/clip/index.js";
import { UNet2DConditionModel } from "../src/models/unet/index.js";
import { AutoencoderKL } from "../src/models/vae/index.js";
import type { ConvAlgorithm, WinogradFilters } from "../src/onnx/conv_plan.js";
import type { Precision } from "../src/onnx/quantize.js";
import { StableDiffusionUpscalePipeline } from "../src/pipelines/pipeline_stable_diffusion_upscale.js";
import { Generator } from "../src/random/generator.js";
import { randnTensor } from "../src/random/randn_tensor.js";
import type { HostTensor } from "../src/runtime/host_tensor.js";
import type { RuntimeOptions } from "../src/runtime/session_options.js";
import { RuntimeHost } from "../src/runtime/worker_host.js";
import { CLIPTokenizer } from "../src/tokenizers/clip_tokenizer.js";

export type BenchComponent = "unet" | "vae" | "text" | "pipeline";
export type BenchMode = "run" | "sessions" | "profile";

export interface MeasureOptions {
  component: BenchComponent;
  mode: BenchMode;
  /** Latent side (UNet / VAE / pipeline: the low-res image side; ignored for text). */
  size: number;
  runs: number;
  warmup: number;
  /** Pipeline denoising steps. */
  steps: number;
  modelDir: string;
  threads?: number;
  /** VAE: onnxruntime's fused attention + diffusers tiling (needed for 256² latents). */
  tiled?: boolean;
  /** UNet / VAE / pipeline: onnxruntime's fused MultiHeadAttention (enableMemoryEfficientAttention). */
  memoryEfficient?: boolean;
  /** Pipeline: enableModelOffload (one session alive at a time). */
  offload?: boolean;
  /** RuntimeOptions.memoryPattern / memoryArena (default: sdx4's, pattern off and arena on). */
  memoryPattern?: boolean;
  memoryArena?: boolean;
  /** UNet / pipeline: "int8" builds the UNet's dynamically quantized graph. */
  precision?: Precision;
  /** RuntimeOptions.convAlgorithm (default "auto"). */
  convAlgorithm?: ConvAlgorithm;
  /** RuntimeOptions.winogradFilters (default: the library's, per model). */
  winogradFilters?: WinogradFilters;
  /** RuntimeOptions.graphCache folder; "" = sessions: a fresh temp folder, run: bench/cache/optimized-graphs. */
  graphCache?: string;
}

export interface OutputCheck {
  name: string;
  dims: number[];
  expected: number[];
  finite: boolean;
  mean: number;
  std: number;
}

export interface Measurement {
  label: string;
  component: BenchComponent;
  mode: BenchMode;
  size: number | null;
  /** Times of the timed runs (s). */
  seconds: number[];
  median: number | null;
  runs: number;
  warmup_seconds: number[];
  /** fromPretrained (headers, strict binding; nothing is read eagerly). */
  load_s?: number;
  /** First call: graph build + session creation + first run. */
  first_call_s?: number;
  graph_build_s?: number;
  graph_bytes?: number;
  session_cold_s?: number;
  session_warm_s?: number;
  /** With graphCache: the two cached creations after the plain ones (statuses say miss / hit). */
  graph_cache?: { first_s: number; first: string; second_s: number; second: string; entry_bytes: number };
  /**
   * Pipeline: median step time (UNet batch 2 + scheduler) over steps 2..N, the time until the end of step 1 (checks,
   * text encoding, preprocessing, noise, step 1), and the time after the last step (VAE decode + postprocess).
   */
  pipeline_breakdown?: { step_median_s: number; until_first_step_end_s: number; after_steps_s: number };
  outputs: OutputCheck[];
  peak_rss_mb: number;
  rss_at_start_mb: number;
  loadavg_start: number[];
  loadavg_end: number[];
  cpu_model: string;
  logical_cpus: number;
  threads: number | "ort-default";
  onnxruntime_version: string;
  node_version: string;
  wall_s: number;
  profile?: ProfileSummary;
}

export interface ProfileSummary {
  file: string;
  total_node_ms: number;
  run_ms: number;
  by_op: { op: string; ms: number; pct: number; count: number }[];
}

const now = () => performance.now() / 1000;
const rssMb = () => process.resourceUsage().maxRSS / 1024;
const round = (x: number, d = 3) => Math.round(x * 10 ** d) / 10 ** d;

function median(xs: number[]): number | null {
  if (xs.length === 0) return null;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

function check(name: string, t: { dims: readonly number[]; data: unknown }, expected: number[]): OutputCheck {
  const data = t.data as ArrayLike<number>;
  let sum = 0;
  let sq = 0;
  let finite = true;
  const n = data.length;
  for (let i = 0; i < n; i++) {
    const v = data[i] as number;
    if (!Number.isFinite(v)) finite = false;
    else {
      sum += v;
      sq += v * v;
    }
  }
  const mean = sum / n;
  return {
    name,
    dims: [...t.dims],
    expected,
    finite,
    mean: round(mean, 5),
    std: round(Math.sqrt(Math.max(0, sq / n - mean * mean)), 5),
  };
}

function randn(shape: number[], seed: number): HostTensor {
  return { type: "float32", dims: shape, data: randnTensor(shape, new Generator().manualSeed(seed)) };
}

function textIds(modelDir: string): number[][] {
  const tok = CLIPTokenizer.fromPretrained(join(modelDir, "tokenizer"));
  return tok.call(["a white cat", ""], { padding: "max_length", maxLength: 77, truncation: true }).inputIds;
}

/** A deterministic 8-bit RGB test pattern. */
function testImage(side: number) {
  const data = new Uint8Array(side * side * 3);
  for (let y = 0; y < side; y++) {
    for (let x = 0; x < side; x++) {
      const i = (y * side + x) * 3;
      data[i] = (x * 255) / (side - 1);
      data[i + 1] = (y * 255) / (side - 1);
      data[i + 2] = ((x ^ y) & 16) * 15;
    }
  }
  return { data, width: side, height: side, channels: 3 as const };
}

interface Target {
  label: string;
  /** One call of the measured operation; returns the checked outputs. */
  call: () => Promise<OutputCheck[]>;
  release: () => Promise<void> | void;
  load_s: number;
  /** Pipeline: marks (call start, after each step, call end) of every call. */
  stepTimes?: number[][];
  /** Pipeline: overrides the step count (the warm-up uses 2). */
  steps?: number | undefined;
}

async function makeTarget(o: MeasureOptions, host: RuntimeHost, ro: RuntimeOptions): Promise<Target> {
  const dir = o.modelDir;
  const S = o.size;
  const common = { runtime: host, runtimeOptions: ro };
  let t0 = now();
  if (o.component === "unet") {
    const unet = await UNet2DConditionModel.fromPretrained(join(dir, "unet"), {
      ...common,
      precision: o.precision,
    });
    const load_s = now() - t0;
    if (o.memoryEfficient) unet.enableMemoryEfficientAttention();
    const cin = unet.config.in_channels;
    const cross = unet.layout.crossAttentionDim[0] as number;
    const feeds = {
      sample: randn([2, cin, S, S], 1),
      timestep: 500,
      encoderHiddenStates: randn([2, 77, cross], 2),
      classLabels: [20, 20],
      // [unconditional; conditional], as the pipeline runs it: the int8 UNet then runs its guidance-halves graph.
      guidancePairs: true,
    };
    return {
      label: `unet forward batch 2 (CFG), sample 2x${cin}x${S}x${S}, 77x${cross} text, class labels${o.memoryEfficient ? " (memory-efficient attention)" : ""}${o.precision === "int8" ? " (int8)" : ""}`,
      load_s,
      call: async () => [check("out_sample", await unet.forward(feeds), [2, unet.config.out_channels, S, S])],
      release: () => unet.release(),
    };
  }
  if (o.component === "vae") {
    const vae = await AutoencoderKL.fromPretrained(join(dir, "vae"), common);
    const load_s = now() - t0;
    if (o.tiled || o.memoryEfficient) vae.enableMemoryEfficientAttention();
    if (o.tiled) vae.enableTiling();
    const z = randn([1, 4, S, S], 3);
    const f = vae.scaleFactor;
    return {
      label: `vae decode 1x4x${S}x${S} -> 1x3x${S * f}x${S * f}${o.tiled ? " (memory-efficient attention + tiling)" : o.memoryEfficient ? " (memory-efficient attention)" : ""}`,
      load_s,
      call: async () => [check("sample", await vae.decode(z), [1, 3, S * f, S * f])],
      release: () => vae.release(),
    };
  }
  if (o.component === "text") {
    const te = await CLIPTextModel.fromPretrained(join(dir, "text_encoder"), common);
    const load_s = now() - t0;
    const ids = textIds(dir);
    const H = te.config.hidden_size;
    return {
      label: `text encoder 2x77 ids (${te.numHiddenLayers} layers, width ${H})`,
      load_s,
      call: async () => {
        const out = await te.forward({ inputIds: ids });
        return [
          check("last_hidden_state", out.lastHiddenState, [2, 77, H]),
          check("pooler_output", out.poolerOutput, [2, H]),
        ];
      },
      release: () => te.release(),
    };
  }
  t0 = now();
  const pipe = await StableDiffusionUpscalePipeline.fromPretrained(dir, {
    ...common,
    precision: o.precision,
  });
  const load_s = now() - t0;
  if (o.memoryEfficient) pipe.enableMemoryEfficientAttention();
  if (o.offload) pipe.enableModelOffload();
  if (o.tiled) pipe.enableVaeTiling();
  const image = testImage(S);
  const f = pipe.vaeScaleFactor;
  const stepTimes: number[][] = [];
  const target: Target = {
    label: `pipeline ${o.steps} steps, ${S}x${S} -> ${S * f}x${S * f}, CFG 9 (UNet batch 2), DDIM, output np${o.memoryEfficient ? ", memory-efficient attention" : ""}${o.offload ? ", model offload" : ""}${o.tiled ? ", VAE tiling" : ""}${o.precision === "int8" ? ", int8 UNet" : ""}`,
    load_s,
    stepTimes,
    call: async () => {
      const marks = [now()];
      const out = await pipe.call({
        prompt: "a white cat",
        image,
        numInferenceSteps: target.steps ?? o.steps,
        generator: new Generator().manualSeed(0),
        outputType: "np",
        onProgress: () => marks.push(now()),
      });
      marks.push(now());
      stepTimes.push(marks);
      const imgs = out.images;
      if (imgs.outputType === "pil") throw new Error("unexpected pil output");
      return [check("image", { dims: imgs.shape, data: imgs.data }, [1, S * f, S * f, 3])];
    },
    release: () => pipe.release(),
  };
  return target;
}

function baseInfo(o: MeasureOptions) {
  return {
    cpu_model: cpus()[0]?.model ?? "unknown",
    logical_cpus: cpus().length,
    threads: o.threads ?? ("ort-default" as const),
    onnxruntime_version: ort.env.versions.node ?? "unknown",
    node_version: process.version,
    conv_algorithm: o.convAlgorithm ?? "auto",
    winograd_filters: o.winogradFilters ?? "default",
  };
}

/** Cold and warm session creation of a component's graph(s), through RuntimeHost.createSession. */
async function measureSessions(o: MeasureOptions, host: RuntimeHost, ro: RuntimeOptions) {
  const dir = o.modelDir;
  let build: () => { bytes: Uint8Array; folder: string | undefined; name: string };
  const t0 = now();
  if (o.component === "unet") {
    const m = await UNet2DConditionModel.fromPretrained(join(dir, "unet"), { runtimeOptions: ro });
    build = () => {
      const b = m.buildGraph();
      return { bytes: b.serialize(), folder: b.externalDataFolder, name: "unet" };
    };
  } else if (o.component === "vae") {
    const m = await AutoencoderKL.fromPretrained(join(dir, "vae"), { runtimeOptions: ro });
    build = () => {
      const b = m.buildDecodeGraph();
      return { bytes: b.serialize(), folder: b.externalDataFolder, name: "vae_decoder" };
    };
  } else if (o.component === "text") {
    const m = await CLIPTextModel.fromPretrained(join(dir, "text_encoder"));
    build = () => {
      const b = m.buildGraph({ attentionMask: true, outputHiddenStates: true });
      return { bytes: b.serialize(), folder: b.externalDataFolder, name: "text_encoder" };
    };
  } else throw new Error("session timing is per component (unet, vae, text)");
  const load_s = now() - t0;
  const t1 = now();
  const g = build();
  const graph_build_s = now() - t1;
  const create = async () => {
    const bytes = new Uint8Array(g.bytes); // a copy: createSession transfers (detaches) the buffer to the worker
    const t = now();
    const s = await host.createSession(bytes, { ...ro, name: g.name, externalDataFolder: g.folder });
    const dt = now() - t;
    await s.release();
    return dt;
  };
  const session_cold_s = await create();
  const session_warm_s = await create();
  const out = { load_s, graph_build_s, graph_bytes: g.bytes.byteLength, session_cold_s, session_warm_s };
  if (o.graphCache === undefined) return out;
  const bench = fileURLToPath(new URL("./cache/", import.meta.url));
  mkdirSync(bench, { recursive: true });
  const cacheDir = o.graphCache || mkdtempSync(join(bench, `graph-cache-${o.component}-`));
  try {
    const cached = async () => {
      const t = now();
      const s = await host.createSession(new Uint8Array(g.bytes), {
        ...ro,
        graphCache: cacheDir,
        name: g.name,
        externalDataFolder: g.folder,
      });
      const dt = round(now() - t);
      await s.release();
      return { s: dt, status: s.graphCache?.status ?? "off", entry: s.graphCache?.entry };
    };
    const first = await cached();
    const second = await cached();
    const entry = second.entry;
    const entry_bytes = entry ? readdirSync(entry).reduce((n, f) => n + statSync(join(entry, f)).size, 0) : 0;
    return {
      ...out,
      graph_cache: {
        first_s: first.s,
        first: first.status,
        second_s: second.s,
        second: second.status,
        entry_bytes,
      },
    };
  } finally {
    if (!o.graphCache) rmSync(cacheDir, { recursive: true, force: true });
  }
}

/** Sums a chrome-trace profile of onnxruntime by op type (Node events, kernel time). */
export function summariseProfile(file: string): ProfileSummary {
  const events = JSON.parse(readFileSync(file, "utf8")) as {
    cat?: string;
    name?: string;
    ts?: number;
    dur?: number;
    args?: { op_name?: string };
  }[];
  // Only the last run (the earlier ones include first-run allocations).
  const runs = events.filter((e) => e.cat === "Session" && e.name === "model_run");
  const last = runs[runs.length - 1];
  if (!last) throw new Error(`${file}: no model_run event`);
  const from = last.ts ?? 0;
  const to = from + (last.dur ?? 0);
  const byOp = new Map<string, { us: number; count: number }>();
  let total = 0;
  for (const e of events) {
    if (e.cat !== "Node" || !e.name?.endsWith("_kernel_time")) continue;
    if ((e.ts ?? 0) < from || (e.ts ?? 0) > to) continue;
    const op = e.args?.op_name ?? "?";
    const r = byOp.get(op) ?? { us: 0, count: 0 };
    r.us += e.dur ?? 0;
    r.count++;
    byOp.set(op, r);
    total += e.dur ?? 0;
  }
  const by_op = [...byOp.entries()]
    .map(([op, r]) => ({
      op,
      ms: round(r.us / 1000, 1),
      pct: round((100 * r.us) / total, 1),
      count: r.count,
    }))
    .sort((a, b) => b.ms - a.ms);
  return { file, total_node_ms: round(total / 1000, 1), run_ms: round((last.dur ?? 0) / 1000, 1), by_op };
}

export async function measure(o: MeasureOptions): Promise<Measurement> {
  const wall0 = now();
  const rss_at_start_mb = round(rssMb(), 1);
  const loadavg_start = loadavg().map((x) => round(x, 2));
  const host = new RuntimeHost();
  const ro: RuntimeOptions = o.threads ? { threads: o.threads } : {};
  if (o.memoryPattern !== undefined) ro.memoryPattern = o.memoryPattern;
  if (o.memoryArena !== undefined) ro.memoryArena = o.memoryArena;
  if (o.convAlgorithm !== undefined) ro.convAlgorithm = o.convAlgorithm;
  if (o.winogradFilters !== undefined) ro.winogradFilters = o.winogradFilters;
  if (o.graphCache !== undefined && o.mode !== "sessions") {
    ro.graphCache = o.graphCache || fileURLToPath(new URL("./cache/optimized-graphs/", import.meta.url));
  }
  const base = {
    component: o.component,
    mode: o.mode,
    size: o.component === "text" ? null : o.size,
    ...baseInfo(o),
  };
  try {
    if (o.mode === "sessions") {
      const r = await measureSessions(o, host, ro);
      return {
        ...base,
        label: `${o.component} session creation (cold = first in the process, warm = second)`,
        seconds: [],
        median: null,
        runs: 0,
        warmup_seconds: [],
        ...Object.fromEntries(
          Object.entries(r).map(([k, v]) => [k, typeof v !== "number" || k === "graph_bytes" ? v : round(v)]),
        ),
        outputs: [],
        peak_rss_mb: round(rssMb(), 1),
        rss_at_start_mb,
        loadavg_start,
        loadavg_end: loadavg().map((x) => round(x, 2)),
        wall_s: round(now() - wall0, 1),
      };
    }
    let profileDir: string | undefined;
    if (o.mode === "profile") {
      if (o.component === "pipeline") throw new Error("--profile is for one component (unet, vae, text)");
      const results = fileURLToPath(new URL("./results/", import.meta.url));
      mkdirSync(results, { recursive: true });
      profileDir = mkdtempSync(join(results, `profile-${o.component}-`));
      ro.enableProfiling = true;
      ro.profileFilePrefix = join(profileDir, o.component);
    }
    const target = await makeTarget(o, host, ro);
    const warmup_seconds: number[] = [];
    let first_call_s: number | undefined;
    let outputs: OutputCheck[] = [];
    const warmups = o.mode === "profile" ? 1 : o.warmup;
    for (let i = 0; i < warmups; i++) {
      const t = now();
      if (o.component === "pipeline") target.steps = Math.min(2, o.steps); // creates every session, cheaply
      outputs = await target.call();
      warmup_seconds.push(round(now() - t));
      if (i === 0) first_call_s = warmup_seconds[0];
    }
    target.steps = undefined;
    target.stepTimes?.splice(0);
    const seconds: number[] = [];
    const runs = o.mode === "profile" ? 1 : o.runs;
    for (let i = 0; i < runs; i++) {
      const t = now();
      outputs = await target.call();
      seconds.push(round(now() - t));
    }
    await target.release();
    let profile: ProfileSummary | undefined;
    if (profileDir) {
      await host.close(); // ends the sessions: onnxruntime writes the trace
      const file = readdirSync(profileDir).find((f) => f.endsWith(".json"));
      if (!file) throw new Error(`no profile written into ${profileDir}`);
      profile = summariseProfile(join(profileDir, file)); // the trace stays there (chrome://tracing, perfetto)
    }
    let pipeline_breakdown: Measurement["pipeline_breakdown"];
    if (target.stepTimes?.length) {
      const steps: number[] = [];
      const before: number[] = [];
      const after: number[] = [];
      for (const m of target.stepTimes) {
        // marks: call start, after each step, call end
        before.push((m[1] as number) - (m[0] as number));
        for (let i = 2; i < m.length - 1; i++) steps.push((m[i] as number) - (m[i - 1] as number));
        after.push((m[m.length - 1] as number) - (m[m.length - 2] as number));
      }
      pipeline_breakdown = {
        step_median_s: round(median(steps) ?? Number.NaN),
        until_first_step_end_s: round(median(before) ?? Number.NaN),
        after_steps_s: round(median(after) ?? Number.NaN),
      };
    }
    const med = median(seconds);
    return {
      ...base,
      label: target.label,
      seconds,
      median: med === null ? null : round(med),
      runs,
      warmup_seconds,
      load_s: round(target.load_s),
      first_call_s,
      ...(pipeline_breakdown ? { pipeline_breakdown } : {}),
      outputs,
      peak_rss_mb: round(rssMb(), 1),
      rss_at_start_mb,
      loadavg_start,
      loadavg_end: loadavg().map((x) => round(x, 2)),
      wall_s: round(now() - wall0, 1),
      ...(profile ? { profile } : {}),
    };
  } finally {
    await host.close();
  }
}
