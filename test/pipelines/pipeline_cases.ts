/** Runs one pipeline fixture case (test/fixtures/pipeline) through StableDiffusionUpscalePipeline. */
import { join } from "node:path";
import { loadImage } from "../../src/image/decode.js";
import type {
  StableDiffusionUpscalePipeline,
  UpscaleOutput,
} from "../../src/pipelines/pipeline_stable_diffusion_upscale.js";
import type { UpscaleCallOptions } from "../../src/pipelines/upscale_inputs.js";
import { Generator } from "../../src/random/generator.js";
import type { HostTensor } from "../../src/runtime/host_tensor.js";
import { schedulerFromConfig } from "../../src/schedulers/index.js";
import { assertClose, type FixtureCase, loadGroup, tensorOf } from "../helpers/fixtures.js";

export const pipelineGroup = () => loadGroup("pipeline");

function hostOf(c: FixtureCase, role: string): HostTensor {
  const t = tensorOf(pipelineGroup(), c, role);
  return { type: "float32", dims: t.shape, data: t.data };
}

export interface CaseRun {
  output: UpscaleOutput;
  traces: Map<string, HostTensor[]>;
  callbackLatents: HostTensor[];
}

/** The call options a fixture case describes (params mirror diffusers' arguments). */
export async function caseOptions(c: FixtureCase): Promise<UpscaleCallOptions> {
  const p = c.params;
  const g = pipelineGroup();
  const pngs: string[] = Array.isArray(p.image_png) ? p.image_png : [p.image_png];
  const images = await Promise.all(pngs.map((f) => loadImage(join(g.dir, f))));
  const o: UpscaleCallOptions = {
    prompt: p.prompt ?? undefined,
    image: Array.isArray(p.image_png) ? images : images[0]!,
    numInferenceSteps: p.num_inference_steps,
    guidanceScale: p.guidance_scale,
    noiseLevel: p.noise_level,
    generator: new Generator().manualSeed(p.seed),
    outputType: p.output_type,
  };
  if (p.negative_prompt !== undefined) o.negativePrompt = p.negative_prompt;
  if (p.num_images_per_prompt !== undefined) o.numImagesPerPrompt = p.num_images_per_prompt;
  if (p.clip_skip !== undefined) o.clipSkip = p.clip_skip;
  if (p.eta !== undefined) o.eta = p.eta;
  if (c.tensors.input_prompt_embeds) o.promptEmbeds = hostOf(c, "input_prompt_embeds");
  if (c.tensors.input_negative_prompt_embeds)
    o.negativePromptEmbeds = hostOf(c, "input_negative_prompt_embeds");
  if (c.tensors.input_latents) o.latents = hostOf(c, "input_latents");
  return o;
}

export async function runCase(pipe: StableDiffusionUpscalePipeline, c: FixtureCase): Promise<CaseRun> {
  const p = c.params;
  const traces = new Map<string, HostTensor[]>();
  const callbackLatents: HostTensor[] = [];
  const defaultScheduler = pipe.scheduler;
  pipe.scheduler = schedulerFromConfig(p.scheduler_config, p.scheduler);
  if (p.freeu) pipe.enableFreeU(p.freeu);
  if (p.attention_slicing) pipe.enableAttentionSlicing(p.attention_slicing);
  try {
    const output = await pipe.call({
      ...(await caseOptions(c)),
      callback: (_i, _t, latents) =>
        void callbackLatents.push({ ...latents, data: (latents.data as Float32Array).slice() }),
      trace: (stage, t) => {
        const list = traces.get(stage) ?? [];
        list.push(t);
        traces.set(stage, list);
      },
    });
    return { output, traces, callbackLatents };
  } finally {
    pipe.scheduler = defaultScheduler;
    pipe.disableFreeU();
    pipe.disableAttentionSlicing();
  }
}

function stack(ts: HostTensor[]): Float32Array {
  const out = new Float32Array(ts.reduce((a, t) => a + t.data.length, 0));
  let off = 0;
  for (const t of ts) {
    out.set(t.data as Float32Array, off);
    off += t.data.length;
  }
  return out;
}

/** Compares every recorded role, stage by stage, so a mismatch names where it starts. */
export function checkCase(c: FixtureCase, run: CaseRun): void {
  const g = pipelineGroup();
  const tol = c.tolerance;
  const exp = (role: string) => tensorOf(g, c, role).data;
  const stages: [string, Float32Array | undefined][] = [
    ["prompt_embeds", run.traces.get("prompt_embeds")?.[0]?.data as Float32Array | undefined],
    ["preprocessed_image", run.traces.get("preprocessed_image")?.[0]?.data as Float32Array | undefined],
    ["low_res_noise", run.traces.get("low_res_noise")?.[0]?.data as Float32Array | undefined],
    ["noised_image", run.traces.get("noised_image")?.[0]?.data as Float32Array | undefined],
    ["initial_latents", run.traces.get("initial_latents")?.[0]?.data as Float32Array | undefined],
    ["unet_out", run.traces.has("unet_out") ? stack(run.traces.get("unet_out")!) : undefined],
    ["callback_latents", run.callbackLatents.length ? stack(run.callbackLatents) : undefined],
  ];
  for (const [role, actual] of stages) {
    if (!c.tensors[role]) continue;
    if (!actual) throw new Error(`${c.name}: no ${role} produced`);
    assertClose(actual, exp(role), tol, `${c.name} ${role}`);
  }
  const images = run.output.images;
  if (images.outputType === "pil") {
    const flat = new Uint8Array(images.images.reduce((a, im) => a + im.data.length, 0));
    let off = 0;
    for (const im of images.images) {
      flat.set(im.data, off);
      off += im.data.length;
    }
    assertClose(flat, exp("image"), tol, `${c.name} image (uint8)`);
  } else {
    assertClose(images.data, exp("image"), tol, `${c.name} image`);
  }
}
