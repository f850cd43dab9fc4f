/**
 * The process-wide default CPU generator, like torch's `torch.default_generator`: used when no generator is given.
 * As in torch it starts from a non-deterministic seed; `manualSeed(s)` mirrors `torch.manual_seed(s)`.
 */
import { Generator } from "./generator.js";

export const defaultGenerator: Generator = new Generator();
defaultGenerator.seed();

/** `torch.manual_seed`: reseeds the default generator and returns it. */
export function manualSeed(seed: number | bigint): Generator {
  return defaultGenerator.manualSeed(seed);
}

/** `torch.initial_seed`: the default generator's initial seed. */
export function initialSeed(): bigint {
  return defaultGenerator.initialSeed();
}
