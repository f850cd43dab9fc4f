/** sdx4 argument parsing: defaults, the prompt-pairing rule, and every bad value → UsageError naming the flag. */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { buildRunPlan, callOptions, DEFAULT_MODEL, pairPrompts, parseCli } from "../../src/cli/args.js";
import { EXIT_USAGE, exitCodeOf, formatError, UsageError } from "../../src/cli/errors.js";
import { flagError } from "../../src/cli/run.js";
import { UpscaleInputError } from "../../src/pipelines/upscale_inputs.js";

const base = ["upscale", "in.png", "-o", "out.png"];
const plan = (...extra: string[]) => buildRunPlan([...base, ...extra]);

/** Asserts that argv is a usage error (exit code 2) whose message contains every `needle`. */
function assertUsage(argv: string[], ...needles: string[]): void {
  assert.throws(
    () => buildRunPlan(argv),
    (e: unknown) => {
      assert.ok(e instanceof UsageError, `expected a UsageError, got ${String(e)}`);
      assert.equal(exitCodeOf(e), EXIT_USAGE);
      for (const n of needles) assert.ok(e.message.includes(n), `"${e.message}" should mention ${n}`);
      return true;
    },
  );
}

describe("defaults", () => {
  test("as diffusers: 75 steps, guidance 9, noise level 20, eta 0, one image, the x4 upscaler", () => {
    const p = plan();
    assert.equal(p.numInferenceSteps, 75);
    assert.equal(p.guidanceScale, 9);
    assert.equal(p.noiseLevel, 20);
    assert.equal(p.eta, 0);
    assert.equal(p.numImagesPerPrompt, 1);
    assert.equal(p.model, DEFAULT_MODEL);
    assert.equal(p.model, "stabilityai/stable-diffusion-x4-upscaler");
    assert.deepEqual(p.prompt, [""], "the default prompt is the empty string");
    assert.equal(p.negativePrompt, undefined);
    assert.equal(p.seed, undefined);
    assert.equal(p.scheduler, undefined);
    assert.equal(p.clipSkip, undefined);
    assert.equal(p.freeu, undefined);
    assert.equal(p.attentionSlicing, undefined);
    assert.equal(p.vaeTiling, false);
    assert.equal(p.memoryEfficientAttention, false);
    assert.equal(p.json, false);
    assert.deepEqual(p.load, { localFilesOnly: false, winogradFilters: "run" });
    assert.equal(p.output.format, "png");
  });

  test("every flag maps to the plan", () => {
    const p = plan(
      ...["--model", "some/repo", "--prompt", "a cat", "--negative-prompt", "blurry", "--steps", "3"],
      ...["--guidance", "7.5", "--noise-level", "0", "--seed", "18446744073709551615"],
      ...["--scheduler", "EulerAncestralDiscreteScheduler", "--eta", "0.5", "--clip-skip", "1"],
      ...["--freeu", "0.9,0.2,1.2,1.4", "--attention-slicing", "max", "--vae-tiling"],
      ...["--memory-efficient-attention", "--threads", "4", "--device", "cuda", "--variant", "fp16"],
      ...["--revision", "abc", "--local-files-only", "--cache-dir", "/c", "--json", "--precision", "float32"],
      ...["--winograd-filters", "session"],
    );
    assert.equal(p.model, "some/repo");
    assert.deepEqual(p.prompt, ["a cat"]);
    assert.deepEqual(p.negativePrompt, ["blurry"]);
    assert.equal(p.numInferenceSteps, 3);
    assert.equal(p.guidanceScale, 7.5);
    assert.equal(p.noiseLevel, 0);
    assert.equal(p.seed, 2n ** 64n - 1n);
    assert.equal(p.scheduler, "EulerAncestralDiscreteScheduler");
    assert.equal(p.eta, 0.5);
    assert.equal(p.clipSkip, 1);
    assert.deepEqual(p.freeu, { s1: 0.9, s2: 0.2, b1: 1.2, b2: 1.4 });
    assert.equal(p.attentionSlicing, "max");
    assert.equal(p.vaeTiling, true);
    assert.equal(p.memoryEfficientAttention, true);
    assert.deepEqual(p.load, {
      localFilesOnly: true,
      winogradFilters: "session",
      variant: "fp16",
      revision: "abc",
      device: "cuda",
      threads: 4,
      precision: "float32",
      cacheDir: "/c",
    });
    assert.equal(p.json, true);
  });

  test("--graph-cache: no value = the default folder, or a folder", () => {
    assert.equal(plan("--graph-cache").load.graphCache, true);
    assert.equal(plan("--graph-cache", "/tmp/g").load.graphCache, "/tmp/g");
    assert.equal(plan("--graph-cache=g", "--device", "cpu").load.graphCache, "g");
    assert.equal(plan().load.graphCache, undefined);
  });

  test("model offload is the CLI's default (each model runs once per call); --no-model-offload keeps them", () => {
    assert.equal(plan().modelOffload, true);
    assert.equal(plan("--model-offload").modelOffload, true);
    assert.equal(plan("--no-model-offload").modelOffload, false);
    assert.equal(plan("--low-memory", "--no-model-offload").modelOffload, false);
    assert.equal(plan("--no-model-offload", "--model-offload").modelOffload, true, "the last one wins");
  });

  test("--low-memory: model offload + memory-efficient attention, no tiling (it changes the image)", () => {
    const p = plan("--low-memory");
    assert.equal(p.modelOffload, true);
    assert.equal(p.memoryEfficientAttention, true);
    assert.equal(p.vaeTiling, false);
    assert.equal(plan("--low-memory", "--vae-tiling").vaeTiling, true);
    assert.equal(plan().memoryEfficientAttention, false);
    // Winograd's transformed weights take memory: the preset builds direct convolutions unless told otherwise.
    assert.equal(p.load.convAlgorithm, "direct");
    assert.equal(plan("--low-memory", "--conv-algorithm", "auto").load.convAlgorithm, "auto");
  });

  test("--conv-algorithm: auto (default: left to the library), direct, winograd", () => {
    assert.equal(plan().load.convAlgorithm, undefined);
    assert.equal(plan("--conv-algorithm", "direct").load.convAlgorithm, "direct");
    assert.equal(plan("--conv-algorithm", "winograd").load.convAlgorithm, "winograd");
  });

  test('--winograd-filters: "run" by default for the CLI (memory), "session" on request', () => {
    assert.equal(plan().load.winogradFilters, "run");
    assert.equal(plan("--winograd-filters", "session").load.winogradFilters, "session");
    assert.equal(plan("--winograd-filters", "run").load.winogradFilters, "run");
  });

  test("--attention-slicing without a value is auto; a number is a slice size", () => {
    assert.equal(
      buildRunPlan(["upscale", "in.png", "-o", "o.png", "--attention-slicing"]).attentionSlicing,
      "auto",
    );
    assert.equal(plan("--attention-slicing", "2").attentionSlicing, 2);
    assert.equal(plan("--attention-slicing=auto").attentionSlicing, "auto");
  });

  test("seeds: negative and 2^64-1 accepted exactly", () => {
    assert.equal(plan("--seed", "-1").seed, -1n);
    assert.equal(plan("--seed", "0").seed, 0n);
    assert.equal(plan("--seed", "9007199254740993").seed, 9007199254740993n);
  });

  test("values starting with a dash are taken as values", () => {
    const p = plan("--prompt", "-x", "--guidance", "-1");
    assert.deepEqual(p.prompt, ["-x"]);
    assert.equal(p.guidanceScale, -1);
  });
});

describe("prompt pairing", () => {
  const two = ["upscale", "a.png", "b.png", "-o", "out/"];
  test("none → the empty string for every input", () => {
    assert.deepEqual(buildRunPlan(two).prompt, ["", ""]);
    assert.equal(buildRunPlan(two).negativePrompt, undefined);
  });
  test("once → replicated per input", () => {
    const p = buildRunPlan([...two, "--prompt", "x", "--negative-prompt", "n"]);
    assert.deepEqual(p.prompt, ["x", "x"]);
    assert.deepEqual(p.negativePrompt, ["n", "n"]);
  });
  test("once per input → paired in order", () => {
    const p = buildRunPlan([...two, "-p", "x", "-p", "y", "-n", "nx", "-n", "ny"]);
    assert.deepEqual(p.prompt, ["x", "y"]);
    assert.deepEqual(p.negativePrompt, ["nx", "ny"]);
  });
  test("any other count is a usage error naming the flag", () => {
    assertUsage([...two, "-p", "x", "-p", "y", "-p", "z"], "--prompt", "3 times", "2 inputs");
    assertUsage([...two, "-n", "x", "-n", "y", "-n", "z"], "--negative-prompt", "3 times");
    assertUsage([...base, "-p", "x", "-p", "y"], "--prompt", "2 times", "1 inputs");
  });
  test("pairPrompts", () => {
    assert.equal(pairPrompts("--prompt", [], 3), undefined);
    assert.deepEqual(pairPrompts("--prompt", ["a"], 3), ["a", "a", "a"]);
    assert.deepEqual(pairPrompts("--prompt", ["a", "b", "c"], 3), ["a", "b", "c"]);
    assert.throws(() => pairPrompts("--prompt", ["a", "b"], 3), UsageError);
  });
});

describe("bad values: usage error (exit 2) naming the flag", () => {
  const cases: [string[], string[]][] = [
    [
      ["--steps", "abc"],
      ["--steps", '"abc"', "positive integer"],
    ],
    [["--steps", "0"], ["--steps"]],
    [
      ["--winograd-filters", "once"],
      ["--winograd-filters", "session", "run"],
    ],
    [["--steps", "2.5"], ["--steps"]],
    [["--steps", ""], ["--steps"]],
    [["--steps", "1e2"], ["--steps"]],
    [
      ["--guidance", "nan"],
      ["--guidance", "finite"],
    ],
    [["--guidance", "Infinity"], ["--guidance"]],
    [["--guidance", "1e999"], ["--guidance"]],
    [["--guidance", "0x10"], ["--guidance"]],
    [["--noise-level", "-1"], ["--noise-level"]],
    [["--noise-level", "1.5"], ["--noise-level"]],
    [["--seed", "1.5"], ["--seed"]],
    [
      ["--seed", "18446744073709551616"],
      ["--seed", "2^64"],
    ],
    [["--seed", "-9223372036854775809"], ["--seed"]],
    [["--seed", "abc"], ["--seed"]],
    [
      ["--eta", "-0.1"],
      ["--eta", ">= 0"],
    ],
    [["--eta", "x"], ["--eta"]],
    [["--clip-skip", "-1"], ["--clip-skip"]],
    [["--clip-skip", "one"], ["--clip-skip"]],
    [["--num-images", "0"], ["--num-images"]],
    [
      ["--freeu", "0.9,0.2,1.2"],
      ["--freeu", "four"],
    ],
    [["--freeu", "0.9,0.2,1.2,1.4,1"], ["--freeu"]],
    [["--freeu", "0.9,0.2,x,1.4"], ["--freeu"]],
    [["--freeu", "0.9,0.2,,1.4"], ["--freeu"]],
    [["--attention-slicing", "0"], ["--attention-slicing"]],
    [["--attention-slicing", "half"], ["--attention-slicing"]],
    [["--threads", "0"], ["--threads"]],
    [["--threads", "four"], ["--threads"]],
    [
      ["--precision", "bf16"],
      ["--precision", "float32, int8"],
    ],
    [
      ["--precision", "int8", "--device", "cuda"],
      ["--precision int8", "--device cuda"],
    ],
    [
      ["--conv-algorithm", "fft"],
      ["--conv-algorithm", "auto, direct, winograd"],
    ],
    [
      ["--device", "tpu"],
      ["--device", "cpu, cuda, webgpu"],
    ],
    [
      ["--output-type", "gif"],
      ["--output-type", "png, jpg, webp, npy"],
    ],
    [
      ["--output-type", "jpg"],
      ["-o out.png", "png", "jpg"],
    ],
    [
      ["--scheduler", "FooScheduler"],
      ["--scheduler", "FooScheduler", "DDIMScheduler", "UniPCMultistepScheduler"],
    ],
    [["--scheduler", "DPMSolverSDEScheduler"], ["--scheduler"]],
    [["--variant", "../x"], ["--variant"]],
    [["--variant", ""], ["--variant"]],
    [["--model", ""], ["--model"]],
    [["--revision", " "], ["--revision"]],
    [["--cache-dir", ""], ["--cache-dir"]],
    [["--graph-cache="], ["--graph-cache"]],
    [
      ["--graph-cache", "--device", "cuda"],
      ["--graph-cache", "--device cpu only"],
    ],
    [
      ["--stepz", "3"],
      ["--stepz", "--steps"],
    ],
    [["--steps"], ["--steps", "argument missing"]],
  ];
  for (const [extra, needles] of cases) {
    test(extra.join(" "), () => assertUsage([...base, ...extra], ...needles));
  }
  test("missing -o, missing input, unknown command", () => {
    assertUsage(["upscale", "in.png"], "--output");
    assertUsage(["upscale", "-o", "x.png"], "input");
    assertUsage(["frobnicate"], "frobnicate");
  });
  test("several outputs to a single-file name", () => {
    assertUsage(["upscale", "a.png", "b.png", "-o", "x.png"], "-o x.png", "2 outputs");
    assertUsage([...base, "--num-images", "2"], "-o out.png", "2 outputs", "--num-images");
    assertUsage(["upscale", "a.png", "-o", "x.tif"], "-o x.tif", ".tif");
  });
});

describe("help and version", () => {
  test("--help prints to stdout with exit 0; no command prints help with exit 2", () => {
    const h = parseCli(["upscale", "--help"]);
    assert.equal(h.kind, "print");
    if (h.kind !== "print") return;
    assert.equal(h.exitCode, 0);
    assert.equal(h.stream, "stdout");
    assert.match(h.text, /--noise-level/);
    assert.match(h.text, /"stabilityai\/stable-diffusion-x4-upscaler"/);
    const none = parseCli([]);
    assert.equal(none.kind === "print" && none.exitCode, 2);
    const v = parseCli(["--version"], { version: "9.8.7" });
    assert.deepEqual(v, { kind: "print", text: "9.8.7\n", stream: "stdout", exitCode: 0 });
  });
});

describe("call options and error reporting", () => {
  test("callOptions: arrays of prompts, np for npy, pil for images", () => {
    const p = buildRunPlan(["upscale", "a.png", "b.png", "-o", "o.npy", "-p", "x", "--clip-skip", "1"]);
    const o = callOptions(p, { image: [] });
    assert.deepEqual(o.prompt, ["x", "x"]);
    assert.equal(o.outputType, "np");
    assert.equal(o.clipSkip, 1);
    assert.equal(o.negativePrompt, undefined);
    assert.equal("negativePrompt" in o, false);
    assert.equal(callOptions(plan(), { image: [] }).outputType, "pil");
    assert.equal(callOptions(plan("--output-type", "png"), { image: [] }).outputType, "pil");
  });

  test("pipeline input errors are reworded to name the flag", () => {
    const e = flagError(new UpscaleInputError("noiseLevel must be an integer in 0..350, got 99999"));
    assert.equal(e.message, "--noise-level must be an integer in 0..350, got 99999");
    assert.equal(
      flagError(new UpscaleInputError("numInferenceSteps must be an integer in 1..1000, got 5000")).message,
      "--steps must be an integer in 1..1000, got 5000",
    );
    assert.match(flagError(new UpscaleInputError("clipSkip must be ...")).message, /^--clip-skip/);
    assert.equal(flagError(new UpscaleInputError("image is required")).message, "image is required");
  });

  test("formatError: message only, stack only with debug", () => {
    const usage = formatError(new UsageError("--steps: bad"), false);
    assert.equal(usage, "sdx4: error: --steps: bad\n(see sdx4 upscale --help)\n");
    const bug = formatError(new TypeError("oops"), false);
    assert.match(bug, /^sdx4: error: oops\n\(set SDX4_DEBUG=1/);
    assert.doesNotMatch(bug, /at /);
    assert.match(formatError(new TypeError("oops"), true), /TypeError: oops\n\s+at /);
    assert.equal(exitCodeOf(new Error("x")), 1);
  });
});
