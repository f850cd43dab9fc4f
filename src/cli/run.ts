/**
 * Executes a RunPlan: decode the inputs and check the output targets (usage errors, before any model is
 * loaded), load the pipeline, apply the options, call it, then encode every output in memory and write them
 * atomically. Nothing is written unless the whole run succeeded.
 */
import { existsSync, statSync } from "node:fs";
import { loadImage } from "../image/decode.js";
import { ImageInputError } from "../image/errors.js";
import type { RgbImage } from "../image/types.js";
import { StableDiffusionUpscalePipeline } from "../pipelines/pipeline_stable_diffusion_upscale.js";
import { UpscaleInputError } from "../pipelines/upscale_inputs.js";
import { Generator, nonDeterministicSeed } from "../random/generator.js";
import { checkExecutionProvider, ExecutionProviderUnavailableError } from "../runtime/session_options.js";
import type { RuntimeHost } from "../runtime/worker_host.js";
import { schedulerFromConfig } from "../schedulers/index.js";
import { callOptions, type RunPlan } from "./args.js";
import { UsageError } from "./errors.js";
import { checkOutputTargets, encodeOutputs, type UpscaleResult, writeOutputs } from "./outputs.js";
import type { Progress } from "./progress.js";

export interface RunContext {
  runtime: RuntimeHost;
  progress: Progress;
  signal: AbortSignal;
  /** Told when the run moves on (main.ts handles Ctrl-C differently while loading). */
  onPhase?: (phase: "load" | "run" | "write") => void;
}

export interface RunSummary {
  outputs: string[];
  /** Wall time of the whole run, in seconds. */
  seconds: number;
  load_seconds: number;
  run_seconds: number;
  /** The seed used (decimal string: seeds go up to 2^64). */
  seed: string;
  scheduler: string;
  steps: number;
  width: number;
  height: number;
}

function isDirectory(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}

/**
 * Checks that need the file system, before any model is loaded or downloaded: the output paths, the --device
 * (exit 1 when onnxruntime-node lacks it), and every input, decoded.
 */
export async function preflight(plan: RunPlan): Promise<RgbImage[]> {
  checkOutputTargets(plan.output, plan.inputs, isDirectory);
  const graphCache = plan.load.graphCache;
  // `--graph-cache [dir]` takes the next word as its folder: catch `--graph-cache in.png` before any work.
  if (typeof graphCache === "string" && existsSync(graphCache) && !isDirectory(graphCache)) {
    throw new UsageError(`--graph-cache: ${graphCache} exists and is not a folder`);
  }
  const device = plan.load.device;
  if (device !== undefined) {
    try {
      checkExecutionProvider(device);
    } catch (e) {
      if (!(e instanceof ExecutionProviderUnavailableError)) throw e;
      throw new ExecutionProviderUnavailableError(device, `--device ${device}: ${e.message}`);
    }
  }
  const images: RgbImage[] = [];
  for (const path of plan.inputs) {
    try {
      images.push(await loadImage(path));
    } catch (e) {
      if (e instanceof ImageInputError) throw new UsageError(e.message, { cause: e });
      throw e;
    }
  }
  return images;
}

const FLAG_OF_OPTION: Record<string, string> = {
  noiseLevel: "--noise-level",
  numInferenceSteps: "--steps",
  clipSkip: "--clip-skip",
  eta: "--eta",
  guidanceScale: "--guidance",
  numImagesPerPrompt: "--num-images",
  negativePrompt: "--negative-prompt",
  prompt: "--prompt",
};

/** The pipeline's input errors speak of call options; the CLI names the flag instead. */
export function flagError(e: UpscaleInputError): UsageError {
  const name = /^([A-Za-z]+)\b/.exec(e.message)?.[1] ?? "";
  const flag = Object.hasOwn(FLAG_OF_OPTION, name) ? FLAG_OF_OPTION[name] : undefined;
  const message = flag ? `${flag}${e.message.slice(name.length)}` : e.message;
  return new UsageError(message, { cause: e });
}

function configure(pipe: StableDiffusionUpscalePipeline, plan: RunPlan): void {
  const as = (flag: string, f: () => void) => {
    try {
      f();
    } catch (e) {
      throw new UsageError(`${flag}: ${(e as Error).message}`, { cause: e });
    }
  };
  if (plan.scheduler !== undefined) {
    const name = plan.scheduler;
    as("--scheduler", () => {
      pipe.scheduler = schedulerFromConfig(pipe.scheduler.config, name);
    });
  }
  if (plan.freeu) {
    const f = plan.freeu;
    as("--freeu", () => pipe.enableFreeU(f));
  }
  if (plan.attentionSlicing !== undefined) {
    const s = plan.attentionSlicing;
    as("--attention-slicing", () => pipe.enableAttentionSlicing(s));
  }
  if (plan.vaeTiling) pipe.enableVaeTiling();
  if (plan.memoryEfficientAttention) pipe.enableMemoryEfficientAttention();
  if (plan.modelOffload) pipe.enableModelOffload();
}

export async function runUpscale(plan: RunPlan, images: RgbImage[], ctx: RunContext): Promise<RunSummary> {
  const t0 = performance.now();
  ctx.onPhase?.("load");
  ctx.progress.loading(plan.model);
  const { graphCache, convAlgorithm, winogradFilters, ...load } = plan.load;
  const runtimeOptions = {
    winogradFilters,
    ...(graphCache !== undefined ? { graphCache } : {}),
    ...(convAlgorithm !== undefined ? { convAlgorithm } : {}),
  };
  const pipe = await StableDiffusionUpscalePipeline.fromPretrained(plan.model, {
    ...load,
    runtimeOptions,
    runtime: ctx.runtime,
    onProgress: (p) => ctx.progress.download(p),
  });
  ctx.signal.throwIfAborted();
  configure(pipe, plan);
  const t1 = performance.now();

  ctx.onPhase?.("run");
  const seed = plan.seed ?? nonDeterministicSeed();
  ctx.progress.startRun(plan.numInferenceSteps);
  let output: Awaited<ReturnType<StableDiffusionUpscalePipeline["call"]>>;
  try {
    output = await pipe.call(
      callOptions(plan, {
        image: images,
        generator: new Generator().manualSeed(seed),
        signal: ctx.signal,
        onProgress: (info) => ctx.progress.step(info),
      }),
    );
  } catch (e) {
    if (e instanceof UpscaleInputError) throw flagError(e);
    throw e;
  } finally {
    ctx.progress.stop();
  }
  const t2 = performance.now();

  const imgs = output.images;
  let result: UpscaleResult;
  let width: number;
  let height: number;
  if (imgs.outputType === "pil") {
    result = { kind: "images", images: imgs.images };
    width = imgs.images[0]?.width ?? 0;
    height = imgs.images[0]?.height ?? 0;
  } else if (imgs.outputType === "np") {
    result = { kind: "np", data: imgs.data, shape: imgs.shape };
    [, height, width] = imgs.shape;
  } else {
    throw new Error(`unexpected pipeline output type ${imgs.outputType}`);
  }
  const bytes = await encodeOutputs(plan.output, result);
  ctx.signal.throwIfAborted();
  ctx.onPhase?.("write");
  await writeOutputs(plan.output, bytes);
  const t3 = performance.now();
  return {
    outputs: plan.output.files.map((f) => f.path),
    seconds: round3((t3 - t0) / 1000),
    load_seconds: round3((t1 - t0) / 1000),
    run_seconds: round3((t2 - t1) / 1000),
    seed: seed.toString(),
    scheduler: (pipe.scheduler.constructor as { name: string }).name,
    steps: plan.numInferenceSteps,
    width,
    height,
  };
}

const round3 = (x: number) => Math.round(x * 1000) / 1000;
