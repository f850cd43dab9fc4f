/** enableModelOffload keeps one session at a time and gives the same result as the default golden case. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, test } from "node:test";
import { StableDiffusionUpscalePipeline } from "../../src/pipelines/pipeline_stable_diffusion_upscale.js";
import { RuntimeHost } from "../../src/runtime/worker_host.js";
import { FIXTURES } from "../helpers/fixtures.js";
import { checkCase, pipelineGroup, runCase } from "./pipeline_cases.js";

const runtime = new RuntimeHost();
after(() => runtime.close());

test("model offload: tiny_default still matches, each stage's session freed after use", async () => {
  const pipe = await StableDiffusionUpscalePipeline.fromPretrained(join(FIXTURES, "models/tiny-upscaler"), {
    runtime,
  });
  pipe.enableModelOffload();
  const released: string[] = [];
  const wrap = (name: string, obj: { release(): unknown }) => {
    const orig = obj.release.bind(obj);
    obj.release = () => {
      released.push(name);
      return orig();
    };
  };
  wrap("text_encoder", pipe.textEncoder);
  wrap("unet", pipe.unet);
  wrap("vae", pipe.vae);
  const c = pipelineGroup().get("tiny_default");
  checkCase(c, await runCase(pipe, c));
  // (getSession also calls release() before creating a session, hence the de-duplication)
  assert.deepEqual(
    released.filter((n, i) => released[i - 1] !== n),
    ["text_encoder", "unet", "vae"],
  );
  // a second call recreates the sessions and gives the same result
  checkCase(c, await runCase(pipe, c));
  await pipe.release();
});
