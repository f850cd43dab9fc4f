/**
 * What the k-diffusion sigma schedulers (Euler, Euler ancestral, Heun, KDPM2, KDPM2 ancestral) share around their
 * update rule: the config, the noise-schedule and training-sigma tables, the schedule fields, `init_noise_sigma`
 * and the step index. Each subclass keeps its own schedule construction and `step`.
 */
import { initNoiseSigmaOf, type SigmaTables, sigmaTables } from "./k_diffusion_common.js";
import { mergeConfig, type SchedulerConfig, stepIndexFor } from "./scheduler_utils.js";
import type { TimestepSpacing } from "./timestep_spacing.js";

export abstract class SigmaSchedulerBase<
  C extends SchedulerConfig,
  P extends { numTrain: number; spacing: TimestepSpacing },
> {
  readonly config: Readonly<C>;
  readonly betas: Float32Array;
  readonly alphas: Float32Array;
  readonly alphasCumprod: Float32Array;
  sigmas: Float32Array = new Float32Array(0);
  timesteps: number[] = [];
  numInferenceSteps: number | undefined = undefined;

  protected readonly p: P;
  protected readonly tables: SigmaTables;
  protected stepIndexValue: number | undefined = undefined;

  protected constructor(
    protected readonly name: string,
    defaults: C,
    config: SchedulerConfig | undefined,
    parse: (cfg: C) => P,
    tableOptions?: Parameters<typeof sigmaTables>[3],
  ) {
    const cfg = mergeConfig(defaults, config) as C;
    this.config = Object.freeze({ ...cfg });
    this.p = parse(cfg);
    this.tables = sigmaTables(name, cfg, this.p.numTrain, tableOptions);
    this.betas = this.tables.betas;
    this.alphas = this.tables.alphas;
    this.alphasCumprod = this.tables.alphasCumprod;
  }

  get initNoiseSigma(): number {
    return initNoiseSigmaOf(this.sigmas, this.p.spacing);
  }

  /** Index of the next step (diffusers `step_index`); undefined until the first step. */
  get stepIndex(): number | undefined {
    return this.stepIndexValue;
  }

  /** diffusers' `_init_step_index` on first use, then the running index (the timestep must match it). */
  protected ensureStepIndex(timestep: number, caller: string): number {
    const ready = this.numInferenceSteps !== undefined;
    this.stepIndexValue = stepIndexFor(
      this.name,
      caller,
      this.timesteps,
      this.stepIndexValue,
      timestep,
      ready,
    );
    return this.stepIndexValue;
  }
}
