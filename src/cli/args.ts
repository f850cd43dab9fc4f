/**
 * The `sdx4` command line (commander) and its pure mapping to a RunPlan: every flag value is validated here,
 * before any model is loaded, and every problem is a UsageError naming the flag. Limits that depend on the model
 * (--noise-level above max_noise_level, --steps above num_train_timesteps, --clip-skip beyond the text encoder's
 * layers, an --attention-slicing size above the head count) are checked by the pipeline before any compute and
 * reported the same way (see run.ts).
 */
import { Command, CommanderError, Option } from "commander";
import type { FreeUConfig } from "../models/unet/freeu.js";
import {
  CONV_ALGORITHMS,
  type ConvAlgorithm,
  WINOGRAD_FILTERS,
  type WinogradFilters,
} from "../onnx/conv_plan.js";
import { PRECISIONS, type Precision } from "../onnx/quantize.js";
import type { UpscaleCallOptions } from "../pipelines/upscale_inputs.js";
import { KARRAS_DIFFUSION_SCHEDULERS } from "../schedulers/index.js";
import { UsageError } from "./errors.js";
import { OUTPUT_FORMATS, type OutputFormat, type OutputPlan, planOutputs } from "./outputs.js";
import {
  parseChoice,
  parseFreeU,
  parseInteger,
  parseNonEmpty,
  parseNumber,
  parseSeed,
  parseSliceSize,
} from "./values.js";

export const DEFAULT_MODEL = "stabilityai/stable-diffusion-x4-upscaler";
export const DEVICES = ["cpu", "cuda", "webgpu"] as const;
export type Device = (typeof DEVICES)[number];
/** --scheduler choices: the diffusers class names sdx4 implements. */
export const SCHEDULER_NAMES: readonly string[] = KARRAS_DIFFUSION_SCHEDULERS;

export interface RunPlan {
  inputs: string[];
  output: OutputPlan;
  model: string;
  load: {
    variant?: string;
    revision?: string;
    device?: Device;
    threads?: number;
    /** UNet precision: "float32" (default) or "int8" (the CPU fast path). */
    precision?: Precision;
    cacheDir?: string;
    /** --graph-cache: a folder, or true for the default one (RuntimeOptions.graphCache). */
    graphCache?: string | true;
    /** --conv-algorithm (RuntimeOptions.convAlgorithm); --low-memory makes it "direct" unless given. */
    convAlgorithm?: ConvAlgorithm;
    /** --winograd-filters (RuntimeOptions.winogradFilters); the CLI's default is "run" for both models. */
    winogradFilters: WinogradFilters;
    localFilesOnly: boolean;
  };
  /** One prompt per input (a single --prompt is replicated; none gives ""). */
  prompt: string[];
  /** One per input, or undefined (the pipeline then uses "" under guidance). */
  negativePrompt: string[] | undefined;
  numInferenceSteps: number;
  guidanceScale: number;
  noiseLevel: number;
  eta: number;
  clipSkip: number | undefined;
  numImagesPerPrompt: number;
  /** undefined: a random seed is drawn at run time (and reported). */
  seed: bigint | undefined;
  /** A diffusers scheduler class name to swap in, or undefined to keep the model's. */
  scheduler: string | undefined;
  freeu: FreeUConfig | undefined;
  attentionSlicing: "auto" | "max" | number | undefined;
  vaeTiling: boolean;
  memoryEfficientAttention: boolean;
  modelOffload: boolean;
  json: boolean;
}

export type CliCommand =
  | { kind: "run"; plan: RunPlan }
  /** Help or version: print `text` and exit with `exitCode`. */
  | { kind: "print"; text: string; stream: "stdout" | "stderr"; exitCode: number };

interface RawOptions {
  output: string;
  model: string;
  prompt: string[];
  negativePrompt: string[];
  steps: string;
  guidance: string;
  noiseLevel: string;
  seed?: string;
  scheduler?: string;
  eta?: string;
  clipSkip?: string;
  numImages: string;
  freeu?: string;
  attentionSlicing?: string | true;
  vaeTiling?: true;
  memoryEfficientAttention?: true;
  /** Commander's --model-offload / --no-model-offload pair: undefined (default), true or false. */
  modelOffload?: boolean;
  lowMemory?: true;
  threads?: string;
  precision?: string;
  convAlgorithm?: string;
  winogradFilters?: string;
  device?: string;
  outputType?: string;
  variant?: string;
  revision?: string;
  localFilesOnly?: true;
  cacheDir?: string;
  graphCache?: string | true;
  json?: true;
}

const collect = (v: string, prev: string[]) => [...prev, v];

const HELP_AFTER = `
Prompts: --prompt/--negative-prompt given once apply to every input; given once per input they pair in order.
  Without --prompt the prompt is "" (diffusers needs one; the empty string conditions on nothing).
Outputs (inputs × --num-images, input-major): one output → -o is the file; several → -o is a folder
  (<stem>.<ext>, or <stem>-<k>.<ext> with --num-images > 1), or a pattern with {n} (n from 0).
  npy: -o x.npy holds the whole float32 [N,H,W,3] batch, like diffusers' output_type="np".
  Format: --output-type, else the -o extension, else png. Files are written atomically, only on success.
Progress goes to stderr: a bar on a terminal, JSON lines otherwise. Exit codes: 0 ok, 1 failure, 2 usage error,
  130 interrupted. SDX4_DEBUG=1 prints stack traces.

Example:
  sdx4 upscale cat.png -o cat-x4.png --prompt "a white cat" --steps 50 --seed 0
`;

function buildProgram(
  version: string,
  captured: { out: string; err: string },
): {
  program: Command;
  result: { inputs?: string[]; opts?: RawOptions };
} {
  const result: { inputs?: string[]; opts?: RawOptions } = {};
  const program = new Command()
    .name("sdx4")
    .description("Stable Diffusion x4 upscaling (diffusers' StableDiffusionUpscalePipeline on onnxruntime)")
    .version(version, "-V, --version")
    .exitOverride()
    .showSuggestionAfterError(true)
    .configureOutput({
      writeOut: (s) => void (captured.out += s),
      writeErr: (s) => void (captured.err += s),
      outputError: () => {},
    });
  program
    .command("upscale")
    .description("upscale images 4x")
    .argument("<input...>", "input images (several form one batch)")
    .requiredOption("-o, --output <path>", "output file, folder, or pattern with {n}")
    .option("-m, --model <dir|repo-id>", "pipeline folder or hub repo id", DEFAULT_MODEL)
    .option("-p, --prompt <text>", "prompt (once, or once per input)", collect, [])
    .option("-n, --negative-prompt <text>", "negative prompt (once, or once per input)", collect, [])
    .option("--steps <N>", "number of inference steps", "75")
    .option("--guidance <G>", "classifier-free guidance scale (<= 1 disables guidance)", "9")
    .option("--noise-level <L>", "noise added to the low-res input (0..max_noise_level)", "20")
    .option("--seed <S>", "seed of the torch-compatible CPU generator (default: random, reported)")
    .addOption(
      new Option("--scheduler <name>", "diffusers scheduler class to swap in (default: the model's)"),
    )
    .option("--eta <E>", "DDIM eta (>= 0)")
    .option("--clip-skip <K>", "skip the last K CLIP layers")
    .option("--num-images <N>", "images per input", "1")
    .option("--freeu <s1,s2,b1,b2>", "enable FreeU with these factors")
    .option("--attention-slicing [size]", 'sliced attention: "auto" (default), "max" or a slice size')
    .option("--vae-tiling", "decode the VAE in tiles")
    .option(
      "--model-offload",
      "keep one model in memory at a time (the default: one run uses each model once, so it costs no time)",
    )
    .option(
      "--no-model-offload",
      "keep every model loaded for the whole run (same image and speed, about twice the peak memory)",
    )
    .option(
      "--memory-efficient-attention",
      "onnxruntime's fused MultiHeadAttention in the UNet too (the VAE's is fused by default on the CPU)",
    )
    .option(
      "--low-memory",
      "--memory-efficient-attention + --conv-algorithm direct (with the default model offload), the same " +
        "image up to float rounding (x4 model: 128->512 peaks at 2.4 GiB, 256->1024 at 4.5 GiB); from 512-px " +
        "inputs on add --vae-tiling (12.3 GiB; changes the image slightly)",
    )
    .option("--threads <N>", "intra-op threads per session")
    .option(
      "--precision <p>",
      'UNet precision: "float32" (default) or "int8" (dynamically quantized Linear layers, for CPUs with ' +
        "AMX / VNNI; image PSNR >= 40 dB against float32 in the README's tests)",
    )
    .addOption(
      new Option(
        "--conv-algorithm <a>",
        '3x3 convolutions: "auto" (default: Winograd F(4x4,3x3) for the large CPU ones, ~1.3x faster ' +
          'UNet), "direct" (onnxruntime\'s Conv) or "winograd" (every one)',
      ),
    )
    .addOption(
      new Option(
        "--winograd-filters <when>",
        'when Winograd\'s transformed filters are computed: "run" (default: in every UNet step and decode, ' +
          '~0.2 s a step, nothing held) or "session" (once per model, held: UNet +0.9 GB, VAE +0.6 GB)',
      ),
    )
    .addOption(new Option("--device <device>", `execution provider: ${DEVICES.join(", ")}`))
    .addOption(new Option("--output-type <type>", `output format: ${OUTPUT_FORMATS.join(", ")}`))
    .option("--variant <name>", 'weight variant, e.g. "fp16"')
    .option("--revision <rev>", "hub branch, tag or commit")
    .option("--local-files-only", "never download (cache or local folder only)")
    .option("--cache-dir <dir>", "Hugging Face hub cache folder")
    .option(
      "--graph-cache [dir]",
      "keep onnxruntime-optimized graphs on disk for faster warm starts (default folder " +
        "$SDX4_CACHE_DIR or ~/.cache/sdx4, then optimized-graphs/; ~3.5 GB for the x4 model; cpu only)",
    )
    .option("--json", "print a JSON summary on stdout")
    .addHelpText("after", HELP_AFTER)
    .action((inputs: string[], opts: RawOptions) => {
      result.inputs = inputs;
      result.opts = opts;
    });
  return { program, result };
}

function commanderMessage(e: CommanderError, captured: string): string {
  const text = (e.message || captured).trim().replace(/^error: /, "");
  return text.replace(/\n\(Did you mean/, " (did you mean");
}

/** Parses argv (the user arguments, without node and the script) into a command. Throws UsageError. */
export function parseCli(argv: readonly string[], options: { version?: string } = {}): CliCommand {
  const captured = { out: "", err: "" };
  const { program, result } = buildProgram(options.version ?? "0.0.0", captured);
  try {
    program.parse([...argv], { from: "user" });
  } catch (e) {
    if (!(e instanceof CommanderError)) throw e;
    if (e.code === "commander.helpDisplayed" || e.code === "commander.version") {
      return { kind: "print", text: captured.out, stream: "stdout", exitCode: 0 };
    }
    if (e.code === "commander.help" || e.code === "commander.executeSubCommandAsync") {
      return { kind: "print", text: captured.out + captured.err, stream: "stderr", exitCode: 2 };
    }
    throw new UsageError(commanderMessage(e, captured.err), { cause: e });
  }
  if (!result.inputs || !result.opts) {
    return { kind: "print", text: program.helpInformation(), stream: "stderr", exitCode: 2 };
  }
  return { kind: "run", plan: planFromOptions(result.inputs, result.opts) };
}

/** argv → RunPlan (pure; no file system, no model). Throws UsageError for help/version requests too. */
export function buildRunPlan(argv: readonly string[]): RunPlan {
  const cmd = parseCli(argv);
  if (cmd.kind !== "run") throw new UsageError(cmd.text.trim());
  return cmd.plan;
}

/** --prompt / --negative-prompt values → one per input: once → replicated, n → paired, 0 → `none`. */
export function pairPrompts(flag: string, values: readonly string[], inputs: number): string[] | undefined {
  if (values.length === 0) return undefined;
  if (values.length === 1) return Array(inputs).fill(values[0]);
  if (values.length === inputs) return [...values];
  throw new UsageError(
    `${flag} was given ${values.length} times for ${inputs} inputs; give it once (for every input) or once per input`,
  );
}

function planFromOptions(inputs: string[], o: RawOptions): RunPlan {
  for (const input of inputs) {
    if (input.trim() === "") throw new UsageError("<input>: an input path is empty");
  }
  const numImagesPerPrompt = parseInteger("--num-images", o.numImages, { min: 1 });
  const outputType =
    o.outputType === undefined ? undefined : parseChoice("--output-type", o.outputType, OUTPUT_FORMATS);
  const output = planOutputs(o.output, inputs, numImagesPerPrompt, outputType as OutputFormat | undefined);
  if (o.scheduler !== undefined && !SCHEDULER_NAMES.includes(o.scheduler)) {
    throw new UsageError(
      `--scheduler: unknown scheduler ${JSON.stringify(o.scheduler)}; supported: ${SCHEDULER_NAMES.join(", ")}`,
    );
  }
  const scheduler = o.scheduler;
  const variant = o.variant === undefined ? undefined : parseNonEmpty("--variant", o.variant);
  if (variant !== undefined && !/^[A-Za-z0-9_]+$/.test(variant)) {
    throw new UsageError(`--variant: expected a name such as "fp16", got ${JSON.stringify(variant)}`);
  }
  const load: RunPlan["load"] = {
    localFilesOnly: o.localFilesOnly === true,
    winogradFilters:
      o.winogradFilters !== undefined
        ? parseChoice("--winograd-filters", o.winogradFilters, WINOGRAD_FILTERS)
        : "run",
  };
  if (variant !== undefined) load.variant = variant;
  if (o.revision !== undefined) load.revision = parseNonEmpty("--revision", o.revision);
  if (o.device !== undefined) load.device = parseChoice("--device", o.device, DEVICES);
  if (o.threads !== undefined) load.threads = parseInteger("--threads", o.threads, { min: 1 });
  if (o.precision !== undefined) load.precision = parseChoice("--precision", o.precision, PRECISIONS);
  if (load.precision === "int8" && load.device !== undefined && load.device !== "cpu") {
    throw new UsageError(
      `--precision int8 is a CPU path (integer kernels); it does not run with --device ${load.device}`,
    );
  }
  if (o.convAlgorithm !== undefined) {
    load.convAlgorithm = parseChoice("--conv-algorithm", o.convAlgorithm, CONV_ALGORITHMS);
  } else if (o.lowMemory === true) {
    load.convAlgorithm = "direct";
  }
  if (o.cacheDir !== undefined) load.cacheDir = parseNonEmpty("--cache-dir", o.cacheDir);
  if (o.graphCache !== undefined) {
    load.graphCache = o.graphCache === true ? true : parseNonEmpty("--graph-cache", o.graphCache);
    if (load.device !== undefined && load.device !== "cpu") {
      throw new UsageError(`--graph-cache works with --device cpu only (got --device ${load.device})`);
    }
  }
  return {
    inputs,
    output,
    model: parseNonEmpty("--model", o.model),
    load,
    prompt: pairPrompts("--prompt", o.prompt, inputs.length) ?? Array(inputs.length).fill(""),
    negativePrompt: pairPrompts("--negative-prompt", o.negativePrompt, inputs.length),
    numInferenceSteps: parseInteger("--steps", o.steps, { min: 1 }),
    guidanceScale: parseNumber("--guidance", o.guidance),
    noiseLevel: parseInteger("--noise-level", o.noiseLevel, { min: 0 }),
    eta: o.eta === undefined ? 0 : parseNumber("--eta", o.eta, { min: 0 }),
    clipSkip: o.clipSkip === undefined ? undefined : parseInteger("--clip-skip", o.clipSkip, { min: 0 }),
    numImagesPerPrompt,
    seed: o.seed === undefined ? undefined : parseSeed("--seed", o.seed),
    scheduler,
    freeu: o.freeu === undefined ? undefined : parseFreeU("--freeu", o.freeu),
    attentionSlicing:
      o.attentionSlicing === undefined
        ? undefined
        : parseSliceSize("--attention-slicing", o.attentionSlicing),
    vaeTiling: o.vaeTiling === true,
    // --low-memory is a preset of the options that lower the peak without changing the image.
    memoryEfficientAttention: o.memoryEfficientAttention === true || o.lowMemory === true,
    // A CLI run uses each model once (text encoder, then UNet, then VAE), so freeing each after its stage costs
    // nothing and halves the peak (x4 model, 128² -> 512², stop 11: 3.5 GiB instead of 7.9 GiB; README "Memory").
    // --low-memory relies on it too; an explicit --no-model-offload wins, as --conv-algorithm does over the preset.
    modelOffload: o.modelOffload !== false,
    json: o.json === true,
  };
}

/** The pipeline call options of a plan (images and generator supplied by the caller). */
export function callOptions(
  plan: RunPlan,
  extras: Pick<UpscaleCallOptions, "image" | "generator" | "signal" | "onProgress">,
): UpscaleCallOptions {
  const o: UpscaleCallOptions = {
    ...extras,
    prompt: plan.prompt,
    numInferenceSteps: plan.numInferenceSteps,
    guidanceScale: plan.guidanceScale,
    noiseLevel: plan.noiseLevel,
    numImagesPerPrompt: plan.numImagesPerPrompt,
    eta: plan.eta,
    outputType: plan.output.format === "npy" ? "np" : "pil",
  };
  if (plan.negativePrompt !== undefined) o.negativePrompt = plan.negativePrompt;
  if (plan.clipSkip !== undefined) o.clipSkip = plan.clipSkip;
  return o;
}
