/**
 * diffusers 0.23.0 `randn_tensor` (utils/torch_utils.py) on the CPU:
 * - a list of generators of length 1 is unwrapped to that generator;
 * - a list of several: one `torch.randn((1, ...shape[1:]), generator=generators[i])` per batch row i, then
 *   concatenated along dim 0 (each generator keeps its own state);
 * - a single generator: one `torch.randn(shape, generator)` over the whole batch;
 * - no generator: the default generator (`torch.randn(shape)`).
 * Unlike diffusers, a list whose length differs from the batch size is rejected with a clear error.
 */
import { defaultGenerator } from "./default_generator.js";
import { Generator } from "./generator.js";
import { dtypeOf, numelOf, type RandomDtype } from "./shape.js";

export function randnTensor(
  shape: readonly number[],
  generator?: Generator | readonly Generator[] | null,
  options?: { dtype?: "float32" },
): Float32Array;
export function randnTensor(
  shape: readonly number[],
  generator: Generator | readonly Generator[] | null | undefined,
  options: { dtype: "float64" },
): Float64Array;
export function randnTensor(
  shape: readonly number[],
  generator?: Generator | readonly Generator[] | null,
  options?: { dtype?: RandomDtype },
): Float32Array | Float64Array;
export function randnTensor(
  shape: readonly number[],
  generator?: Generator | readonly Generator[] | null,
  options?: { dtype?: RandomDtype },
): Float32Array | Float64Array {
  const numel = numelOf(shape);
  const dtype = dtypeOf(options);
  if (shape.length === 0) throw new TypeError("randnTensor needs a shape with a batch dimension, got []");
  let gen: Generator | readonly Generator[] = generator ?? defaultGenerator;
  if (Array.isArray(gen)) {
    const list = gen as readonly Generator[];
    list.forEach((g, i) => {
      if (!(g instanceof Generator)) throw new TypeError(`generator[${i}] is not a Generator`);
    });
    if (list.length === 1) gen = list[0]!;
  } else if (!(gen instanceof Generator)) {
    throw new TypeError("generator must be a Generator, a list of Generators, or undefined");
  }
  if (gen instanceof Generator) return gen.randn(shape, { dtype });

  const list = gen as readonly Generator[];
  const batch = shape[0]!;
  if (list.length !== batch) {
    throw new RangeError(
      `you passed a list of ${list.length} generators but the batch size is ${batch}: ` +
        "pass one generator per batch row (or a single generator)",
    );
  }
  const rowShape = [1, ...shape.slice(1)];
  const rowSize = batch === 0 ? 0 : numel / batch;
  const out = dtype === "float64" ? new Float64Array(numel) : new Float32Array(numel);
  for (let i = 0; i < batch; i++) out.set(list[i]!.randn(rowShape, { dtype }), i * rowSize);
  return out;
}
