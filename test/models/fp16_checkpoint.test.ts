/**
 * fp16 variants of the tiny upscaler's UNet, VAE and text encoder (loaded with `variant: "fp16"`): their weights
 * are expanded to float32 in a temporary spill file (src/onnx/spill_file.ts), so each component gives exactly the
 * outputs of a float32 checkpoint holding the same (fp16-representable) values, and leaves no spill folder behind.
 */
import assert from "node:assert/strict";
import { copyFileSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { SafetensorsFile } from "../../src/io/safetensors.js";
import { type TensorToWrite, writeSafetensors } from "../../src/io/safetensors_writer.js";
import { CLIPTextModel } from "../../src/models/clip/clip_text_model.js";
import { UNet2DConditionModel } from "../../src/models/unet/unet_2d_condition.js";
import { AutoencoderKL } from "../../src/models/vae/autoencoder_kl.js";
import { spillFoldersIn } from "../../src/onnx/spill_file.js";
import { float32Tensor } from "../../src/runtime/host_tensor.js";
import { RuntimeHost } from "../../src/runtime/worker_host.js";
import { FIXTURES } from "../helpers/fixtures.js";

const TINY = join(FIXTURES, "models/tiny-upscaler");

function rand(n: number, seed: number): Float32Array {
  let s = seed;
  return Float32Array.from({ length: n }, () => {
    s = (s * 1103515245 + 12345) % 2 ** 31;
    return s / 2 ** 31 - 0.5;
  });
}

let root: string;
let host: RuntimeHost;

/**
 * `<root>/<name>/{fp16,f32}/`: the component's config, its weights as F16 (`<base>.fp16.safetensors`) and the
 * same values exactly as F32 (`<base>.safetensors`). Non-float tensors are copied as they are.
 */
function variants(component: string, base: string): { fp16: string; f32: string } {
  const src = SafetensorsFile.open(join(TINY, component, `${base}.safetensors`));
  const dirs = { fp16: join(root, component, "fp16"), f32: join(root, component, "f32") };
  try {
    const half: Record<string, TensorToWrite> = {};
    for (const k of src.keys()) {
      const t = src.info(k);
      half[k] =
        t.dtype === "F32"
          ? { dtype: "F16", shape: t.shape, data: src.getFloat32(k) }
          : { dtype: t.dtype, shape: t.shape, data: src.getTyped(k) };
    }
    for (const d of Object.values(dirs)) {
      mkdirSync(d, { recursive: true });
      copyFileSync(join(TINY, component, "config.json"), join(d, "config.json"));
    }
    const halfFile = join(dirs.fp16, `${base}.fp16.safetensors`);
    writeSafetensors(halfFile, half);
    const back = SafetensorsFile.open(halfFile);
    try {
      const exact: Record<string, TensorToWrite> = {};
      for (const k of back.keys()) {
        const t = back.info(k);
        exact[k] =
          t.dtype === "F16"
            ? { dtype: "F32", shape: t.shape, data: back.getFloat32(k) }
            : { dtype: t.dtype, shape: t.shape, data: back.getTyped(k) };
      }
      writeSafetensors(join(dirs.f32, `${base}.safetensors`), exact);
    } finally {
      back.close();
    }
  } finally {
    src.close();
  }
  return dirs;
}

/** What `run` gives on the fp16 checkpoint, then on its exact float32 copy (one model alive at a time). */
async function bothCheckpoints(
  dirs: { fp16: string; f32: string },
  run: (dir: string, variant: "fp16" | undefined) => Promise<Float32Array>,
): Promise<[Float32Array, Float32Array]> {
  const half = await run(dirs.fp16, "fp16");
  return [half, await run(dirs.f32, undefined)];
}

describe("fp16 checkpoints of the tiny upscaler", () => {
  before(() => {
    root = mkdtempSync(join(tmpdir(), "sdx4-fp16-"));
    host = new RuntimeHost();
  });
  after(async () => {
    await host.close();
    rmSync(root, { recursive: true, force: true });
  });

  test("UNet: outputs equal the float32 checkpoint's, bit for bit", async () => {
    const dirs = variants("unet", "diffusion_pytorch_model");
    const before = spillFoldersIn();
    const inputs = {
      sample: float32Tensor(rand(7 * 16 * 16, 1), [1, 7, 16, 16]),
      timestep: 500,
      encoderHiddenStates: float32Tensor(rand(77 * 32, 2), [1, 77, 32]),
      classLabels: 20,
    };
    const out = await bothCheckpoints(dirs, async (dir, variant) => {
      const unet = await UNet2DConditionModel.fromPretrained(dir, { variant, runtime: host });
      try {
        return (await unet.forward(inputs)).data as Float32Array;
      } finally {
        unet.release();
      }
    });
    assert.deepEqual(out[0], out[1]);
    assert.deepEqual(spillFoldersIn(), before, "no spill folder left");
  });

  test("VAE decoder: outputs equal the float32 checkpoint's, bit for bit", async () => {
    const dirs = variants("vae", "diffusion_pytorch_model");
    const z = float32Tensor(rand(4 * 8 * 8, 3), [1, 4, 8, 8]);
    const out = await bothCheckpoints(dirs, async (dir, variant) => {
      const vae = await AutoencoderKL.fromPretrained(dir, { variant, runtime: host });
      try {
        return (await vae.decode(z)).data as Float32Array;
      } finally {
        vae.release();
      }
    });
    assert.deepEqual(out[0], out[1]);
    assert.equal(spillFoldersIn().length, 0);
  });

  test("text encoder: outputs equal the float32 checkpoint's, bit for bit", async () => {
    const dirs = variants("text_encoder", "model");
    const out = await bothCheckpoints(dirs, async (dir, variant) => {
      const te = await CLIPTextModel.fromPretrained(dir, { variant, runtime: host });
      try {
        return (await te.forward({ inputIds: [[49406, 320, 1929, 49407]] })).lastHiddenState
          .data as Float32Array;
      } finally {
        await te.release();
      }
    });
    assert.deepEqual(out[0], out[1]);
    assert.equal(spillFoldersIn().length, 0);
  });
});
