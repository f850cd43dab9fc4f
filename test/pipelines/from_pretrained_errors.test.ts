/** StableDiffusionUpscalePipeline.fromPretrained: a bad model folder gets an error naming the file. */
import assert from "node:assert/strict";
import { mkdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { StableDiffusionUpscalePipeline } from "../../src/pipelines/pipeline_stable_diffusion_upscale.js";
import { MODEL, testWorkspace } from "./tiny_harness.js";

const { runtime, tmp: TMP } = testWorkspace("from-pretrained");

describe("fromPretrained errors name the file", () => {
  const COMPONENTS = ["low_res_scheduler", "scheduler", "text_encoder", "tokenizer", "unet", "vae"];
  /** A copy of the tiny model folder (components symlinked) with `edit` applied. */
  function folder(name: string, edit: (dir: string) => void, skip: string[] = []): string {
    const dir = join(TMP, name);
    mkdirSync(dir);
    writeFileSync(join(dir, "model_index.json"), readFileSync(join(MODEL, "model_index.json")));
    for (const c of COMPONENTS) if (!skip.includes(c)) symlinkSync(join(MODEL, c), join(dir, c));
    edit(dir);
    return dir;
  }
  const load = (dir: string) => StableDiffusionUpscalePipeline.fromPretrained(dir, { runtime });

  test("a bad precision, or int8 off the CPU, is refused before anything is resolved", async () => {
    const missing = join(TMP, "does-not-exist");
    const opts = (o: object) => StableDiffusionUpscalePipeline.fromPretrained(missing, { runtime, ...o });
    await assert.rejects(opts({ precision: "fp8" }), /precision must be one of float32, int8, got "fp8"/);
    await assert.rejects(opts({ precision: "int8", device: "cuda" }), /precision "int8" is a CPU path/);
  });

  test("model_index.json of another pipeline class", async () => {
    const dir = folder("other-class", (d) => {
      const index = JSON.parse(readFileSync(join(d, "model_index.json"), "utf8"));
      index._class_name = "StableDiffusionPipeline";
      writeFileSync(join(d, "model_index.json"), JSON.stringify(index));
    });
    await assert.rejects(
      load(dir),
      /model_index\.json: _class_name is "StableDiffusionPipeline"; sdx4 loads StableDiffusionUpscalePipeline/,
    );
  });

  test("a missing component folder", async () => {
    const dir = folder("no-vae", () => {}, ["vae"]);
    await assert.rejects(load(dir), (e: Error) => {
      assert.match(
        e.message,
        /no-vae[/\\]vae: component folder not found \(.*model_index\.json lists vae as AutoencoderKL\)/,
      );
      return true;
    });
  });

  test("a component missing from model_index.json", async () => {
    const dir = folder("index-no-unet", (d) => {
      const index = JSON.parse(readFileSync(join(d, "model_index.json"), "utf8"));
      delete index.unet;
      writeFileSync(join(d, "model_index.json"), JSON.stringify(index));
    });
    await assert.rejects(load(dir), /model_index\.json: component "unet" is missing/);
  });

  test("corrupt JSON: model_index.json, a component config", async () => {
    const dir = folder("corrupt-index", (d) => writeFileSync(join(d, "model_index.json"), "{ not json"));
    await assert.rejects(load(dir), /corrupt-index[/\\]model_index\.json: not valid JSON/);
    const dir2 = folder(
      "corrupt-scheduler",
      (d) => {
        mkdirSync(join(d, "scheduler"));
        writeFileSync(join(d, "scheduler", "scheduler_config.json"), '{"num_train_timesteps": 1000,');
      },
      ["scheduler"],
    );
    await assert.rejects(
      load(dir2),
      /corrupt-scheduler[/\\]scheduler[/\\]scheduler_config\.json: not valid JSON/,
    );
  });

  test("a pickle-only unet folder", async () => {
    const dir = folder(
      "pickle-unet",
      (d) => {
        mkdirSync(join(d, "unet"));
        writeFileSync(join(d, "unet", "config.json"), readFileSync(join(MODEL, "unet", "config.json")));
        writeFileSync(join(d, "unet", "diffusion_pytorch_model.bin"), "PK\x03\x04 pickle");
      },
      ["unet"],
    );
    await assert.rejects(
      load(dir),
      /pickle-unet[/\\]unet: only a pickle checkpoint \(diffusion_pytorch_model\.bin\) is present; sdx4 loads safetensors only/,
    );
  });
});
