/**
 * What the DPM-Solver family (DPMSolverMultistep, DPMSolverSinglestep, DEISMultistep, UniPCMultistep) shares
 * around its solver: the noise-schedule tables, the config, the schedule fields, the step index, the identity
 * `scale_model_input` and `add_noise` by solver sigma (diffusers marks these "Copied from" across the four files).
 * Each subclass keeps its own `setTimesteps` and `step`, i.e. what makes it that solver.
 */
import { noiseSchedule } from "./beta_schedules.js";
import { addNoiseBySolverSigma } from "./dpm_solver_common.js";
import { configInt, mergeConfig, type SchedulerConfig } from "./scheduler_utils.js";

export abstract class SolverSchedulerBase<
  C extends SchedulerConfig,
  P extends { order: number; numTrain: number },
> {
  readonly order = 1;
  readonly initNoiseSigma = 1.0;
  readonly betas: Float32Array;
  readonly alphas: Float32Array;
  readonly alphasCumprod: Float32Array;
  timesteps: number[];
  sigmas: Float32Array = new Float32Array(0);
  numInferenceSteps: number | undefined = undefined;

  protected readonly cfg: C;
  protected readonly p: P;
  /** The last `order` converted model outputs, newest last. */
  protected modelOutputs: (Float32Array | null)[];
  protected stepIdx: number | undefined = undefined;

  protected constructor(
    protected readonly name: string,
    defaults: C,
    config: SchedulerConfig | undefined,
    parse: (cfg: C, numTrain: number) => P,
  ) {
    const cfg = mergeConfig({ ...defaults }, config);
    const numTrain = configInt(name, "num_train_timesteps", cfg.num_train_timesteps, 1);
    const tables = noiseSchedule(name, cfg, numTrain);
    this.betas = tables.betas;
    this.alphas = tables.alphas;
    this.alphasCumprod = tables.alphasCumprod;
    this.p = parse(cfg, numTrain);
    this.cfg = cfg;
    this.timesteps = Array.from({ length: numTrain }, (_, i) => numTrain - 1 - i);
    this.modelOutputs = new Array(this.p.order).fill(null);
  }

  get config(): Readonly<C> {
    return this.cfg;
  }

  /** Index of the next step (diffusers `step_index`); undefined until the first step. */
  get stepIndex(): number | undefined {
    return this.stepIdx;
  }

  scaleModelInput(sample: Float32Array, _timestep?: number): Float32Array {
    return sample;
  }

  addNoise(originalSamples: Float32Array, noise: Float32Array, timesteps: readonly number[]): Float32Array {
    const { sigmas, numInferenceSteps: n, timesteps: schedule } = this;
    return addNoiseBySolverSigma(this.name, sigmas, n, schedule, originalSamples, noise, timesteps);
  }

  /** Clears the solver state when a new schedule is set. */
  protected resetSolverState(): void {
    this.modelOutputs = new Array(this.p.order).fill(null);
    this.stepIdx = undefined;
  }
}
