/** sdx4 — Stable Diffusion x4 upscaling for TypeScript. */

export { loadSafetensors, SafetensorsError, SafetensorsFile } from "./io/safetensors.js";
export { Generator } from "./random/generator.js";
