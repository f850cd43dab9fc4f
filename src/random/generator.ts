/**
 * STUB — being replaced by the torch-compatible implementation (mt19937 + torch 1.13 CPU randn/rand).
 * The public API below is fixed; other modules code against it.
 */
export type RandomDtype = "float32" | "float64";

export class Generator {
  /** torch keeps seed & 0xffffffff for the mt19937 state; initialSeed() reports the full value. */
  manualSeed(_seed: number | bigint): this {
    throw new Error("not implemented yet");
  }
  initialSeed(): bigint {
    throw new Error("not implemented yet");
  }
  randn(shape: readonly number[], options?: { dtype?: "float32" }): Float32Array;
  randn(shape: readonly number[], options: { dtype: "float64" }): Float64Array;
  randn(_shape: readonly number[], _options?: { dtype?: RandomDtype }): Float32Array | Float64Array {
    throw new Error("not implemented yet");
  }
  rand(shape: readonly number[], options?: { dtype?: "float32" }): Float32Array;
  rand(shape: readonly number[], options: { dtype: "float64" }): Float64Array;
  rand(_shape: readonly number[], _options?: { dtype?: RandomDtype }): Float32Array | Float64Array {
    throw new Error("not implemented yet");
  }
}
