/**
 * Every scheduler of diffusers' KarrasDiffusionSchedulers family (plus DDPM, the upscaler's low_res_scheduler),
 * and `schedulerFromConfig`, which picks the class from a config's `_class_name` as diffusers' loaders do.
 * DPMSolverSDEScheduler is not supported: it needs torchsde's Brownian tree, which has no reference here.
 */

import type { Scheduler, SchedulerConfig } from "./scheduler_utils.js";
import { DDIMScheduler } from "./scheduling_ddim.js";
import { DDPMScheduler } from "./scheduling_ddpm.js";
import { DEISMultistepScheduler } from "./scheduling_deis_multistep.js";
import { DPMSolverMultistepScheduler } from "./scheduling_dpmsolver_multistep.js";
import { DPMSolverSinglestepScheduler } from "./scheduling_dpmsolver_singlestep.js";
import { EulerAncestralDiscreteScheduler } from "./scheduling_euler_ancestral_discrete.js";
import { EulerDiscreteScheduler } from "./scheduling_euler_discrete.js";
import { HeunDiscreteScheduler } from "./scheduling_heun_discrete.js";
import { KDPM2AncestralDiscreteScheduler } from "./scheduling_k_dpm_2_ancestral_discrete.js";
import { KDPM2DiscreteScheduler } from "./scheduling_k_dpm_2_discrete.js";
import { LMSDiscreteScheduler } from "./scheduling_lms_discrete.js";
import { PNDMScheduler } from "./scheduling_pndm.js";
import { UniPCMultistepScheduler } from "./scheduling_unipc_multistep.js";

export {
  type Scheduler,
  type SchedulerConfig,
  SchedulerConfigError,
  type SchedulerOutput,
  type SchedulerStepOptions,
} from "./scheduler_utils.js";
export {
  DDIMScheduler,
  DDPMScheduler,
  DEISMultistepScheduler,
  DPMSolverMultistepScheduler,
  DPMSolverSinglestepScheduler,
  EulerAncestralDiscreteScheduler,
  EulerDiscreteScheduler,
  HeunDiscreteScheduler,
  KDPM2AncestralDiscreteScheduler,
  KDPM2DiscreteScheduler,
  LMSDiscreteScheduler,
  PNDMScheduler,
  UniPCMultistepScheduler,
};

interface SchedulerClass {
  fromConfig(config?: SchedulerConfig): Scheduler;
}

/** Scheduler classes by diffusers class name. */
export const SCHEDULERS: Readonly<Record<string, SchedulerClass>> = {
  DDIMScheduler,
  DDPMScheduler,
  PNDMScheduler,
  LMSDiscreteScheduler,
  EulerDiscreteScheduler,
  EulerAncestralDiscreteScheduler,
  HeunDiscreteScheduler,
  DPMSolverMultistepScheduler,
  DPMSolverSinglestepScheduler,
  KDPM2DiscreteScheduler,
  KDPM2AncestralDiscreteScheduler,
  DEISMultistepScheduler,
  UniPCMultistepScheduler,
};

/** diffusers' KarrasDiffusionSchedulers (0.23.0) that sdx4 implements: every member but DPMSolverSDEScheduler. */
export const KARRAS_DIFFUSION_SCHEDULERS: readonly string[] = [
  "DDIMScheduler",
  "DDPMScheduler",
  "PNDMScheduler",
  "LMSDiscreteScheduler",
  "EulerDiscreteScheduler",
  "HeunDiscreteScheduler",
  "EulerAncestralDiscreteScheduler",
  "DPMSolverMultistepScheduler",
  "DPMSolverSinglestepScheduler",
  "KDPM2DiscreteScheduler",
  "KDPM2AncestralDiscreteScheduler",
  "DEISMultistepScheduler",
  "UniPCMultistepScheduler",
];

/**
 * Builds a scheduler from a config. The class is `className` when given (swapping schedulers the diffusers way:
 * `EulerDiscreteScheduler.fromConfig(pipe.scheduler.config)`), else the config's `_class_name`.
 */
export function schedulerFromConfig(config: SchedulerConfig, className?: string): Scheduler {
  const name = className ?? (config._class_name as string | undefined);
  if (!name) throw new Error("scheduler config has no _class_name; pass the class name");
  if (name === "DPMSolverSDEScheduler") {
    throw new Error("DPMSolverSDEScheduler is not supported (it needs torchsde's Brownian-tree noise)");
  }
  const cls = SCHEDULERS[name];
  if (!cls) {
    throw new Error(`unknown scheduler class "${name}"; supported: ${Object.keys(SCHEDULERS).join(", ")}`);
  }
  const { _class_name: _, ...rest } = config;
  return cls.fromConfig(rest);
}
