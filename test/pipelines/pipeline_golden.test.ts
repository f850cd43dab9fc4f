/** Every pipeline fixture case (diffusers 0.23.0 StableDiffusionUpscalePipeline) at its tolerance. */
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { StableDiffusionUpscalePipeline } from "../../src/pipelines/pipeline_stable_diffusion_upscale.js";
import { RuntimeHost } from "../../src/runtime/worker_host.js";
import { FIXTURES, SHARED_FIXTURES } from "../helpers/fixtures.js";
import { checkCase, pipelineGroup, runCase } from "./pipeline_cases.js";

const runtime = new RuntimeHost();
const cases = pipelineGroup().cases;

describe("pipeline golden cases (tiny model)", () => {
  let pipe: StableDiffusionUpscalePipeline;
  before(async () => {
    pipe = await StableDiffusionUpscalePipeline.fromPretrained(join(FIXTURES, "models/tiny-upscaler"), {
      runtime,
    });
  });
  for (const c of cases.filter((c) => c.params.model === "tiny-upscaler")) {
    test(c.name, async () => checkCase(c, await runCase(pipe, c)));
  }
});

describe("pipeline golden cases (twin model, from ../shared/fixtures)", {
  skip: !SHARED_FIXTURES && "../shared/fixtures not present",
}, () => {
  let pipe: StableDiffusionUpscalePipeline;
  before(async () => {
    pipe = await StableDiffusionUpscalePipeline.fromPretrained(
      join(SHARED_FIXTURES!, "models/twin-upscaler"),
      { runtime },
    );
  });
  for (const c of cases.filter((c) => c.params.model === "twin-upscaler")) {
    test(c.name, async () => checkCase(c, await runCase(pipe, c)));
  }
});

after(() => runtime.close());
