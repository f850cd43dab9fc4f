export { defaultGenerator, initialSeed, manualSeed } from "./default_generator.js";
export { DEFAULT_RNG_SEED, Generator, type RandomDtype } from "./generator.js";
export { randnTensor } from "./randn_tensor.js";
