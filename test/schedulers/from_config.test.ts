import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { readJson } from "../../src/io/model_files.js";
import {
  DDIMScheduler,
  EulerAncestralDiscreteScheduler,
  KARRAS_DIFFUSION_SCHEDULERS,
  SCHEDULERS,
  schedulerFromConfig,
} from "../../src/schedulers/index.js";
import { FIXTURES } from "../helpers/fixtures.js";

const ddimConfig = readJson(`${FIXTURES}/models/tiny-upscaler/scheduler/scheduler_config.json`);

describe("schedulerFromConfig", () => {
  test("picks the class from _class_name", () => {
    const s = schedulerFromConfig(ddimConfig);
    assert.ok(s instanceof DDIMScheduler);
    s.setTimesteps(3);
    assert.deepEqual(s.timesteps, [667, 334, 1]);
  });

  test("every Karras-family class is built from the DDIM config, as diffusers' from_config does", () => {
    for (const name of KARRAS_DIFFUSION_SCHEDULERS) {
      const s = schedulerFromConfig(ddimConfig, name);
      assert.ok(s instanceof (SCHEDULERS[name] as unknown as new () => unknown), name);
      s.setTimesteps(4);
      assert.ok(s.timesteps.length >= 4, name);
    }
    const ea = schedulerFromConfig(ddimConfig, "EulerAncestralDiscreteScheduler");
    assert.ok(ea instanceof EulerAncestralDiscreteScheduler);
    assert.equal(ea.config.prediction_type, "v_prediction");
  });

  test("unknown and unsupported classes are clear errors", () => {
    assert.throws(
      () => schedulerFromConfig(ddimConfig, "FooScheduler"),
      /unknown scheduler class "FooScheduler"/,
    );
    assert.throws(() => schedulerFromConfig(ddimConfig, "DPMSolverSDEScheduler"), /not supported/);
    assert.throws(() => schedulerFromConfig({}), /no _class_name/);
  });
});
