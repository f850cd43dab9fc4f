/**
 * Host-side preparation of UNet2DConditionModel inputs, as diffusers v0.23.0 `UNet2DConditionModel.forward` does
 * before its first layer: a Python int / float or a 0-d / 1-element / per-row tensor timestep becomes one float32
 * value per batch row (`timesteps.expand(batch)`, then `.float()` in get_timestep_embedding); class labels are
 * checked against the embedding table and broadcast to the batch (torch broadcasts `emb + class_emb`).
 */
import { type HostTensor, validateHostTensor } from "../../runtime/host_tensor.js";

export class UNetInputError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UNetInputError";
  }
}

/** A timestep: a number (int or float), a bigint, a list, or a 0-d / [1] / [batch] HostTensor. */
export type TimestepInput = number | bigint | readonly number[] | HostTensor;
/** Class labels: one label for the whole batch, a list, or a HostTensor ([batch] int, or [batch, D] float). */
export type ClassLabelsInput = number | bigint | readonly number[] | HostTensor;

function isHostTensor(x: unknown): x is HostTensor {
  return typeof x === "object" && x !== null && "type" in x && "dims" in x && "data" in x;
}

/** The numeric values of a number-like input, with its dims. */
function valuesOf(
  x: number | bigint | readonly number[] | HostTensor,
  what: string,
): { values: number[]; dims: number[] } {
  if (typeof x === "number") return { values: [x], dims: [] };
  if (typeof x === "bigint") return { values: [Number(x)], dims: [] };
  if (Array.isArray(x)) return { values: [...(x as number[])], dims: [x.length] };
  if (!isHostTensor(x))
    throw new UNetInputError(`${what}: expected a number, a list or a HostTensor, got ${typeof x}`);
  validateHostTensor(x, what);
  if (x.type === "float16" || x.type === "bool" || x.type === "uint8") {
    throw new UNetInputError(`${what}: ${x.type} tensors are not supported (use float32, int64 or int32)`);
  }
  return { values: Array.from(x.data as ArrayLike<number | bigint>, (v) => Number(v)), dims: [...x.dims] };
}

/** diffusers' timestep handling → float32 [batch]. */
export function timestepTensor(t: TimestepInput, batch: number): HostTensor {
  const { values, dims } = valuesOf(t, "timestep");
  if (dims.length > 1)
    throw new UNetInputError(`timestep: expected a scalar or a 1-D tensor, got dims [${dims}]`);
  for (const v of values) {
    if (!Number.isFinite(v)) throw new UNetInputError(`timestep: ${v} is not a finite number`);
  }
  let out: number[];
  if (values.length === 1) out = Array.from({ length: batch }, () => values[0] as number);
  else if (values.length === batch) out = values;
  else
    throw new UNetInputError(
      `timestep: ${values.length} values cannot be expanded to the batch size ${batch}`,
    );
  return { type: "float32", dims: [batch], data: Float32Array.from(out) };
}

/** Integer class labels (nn.Embedding indices) → int64 [batch], each in [0, numClassEmbeds). */
export function classLabelIndices(
  labels: ClassLabelsInput,
  batch: number,
  numClassEmbeds: number,
): HostTensor {
  const { values, dims } = valuesOf(labels, "class_labels");
  if (dims.length > 1)
    throw new UNetInputError(`class_labels: expected a scalar or a 1-D tensor, got dims [${dims}]`);
  for (const v of values) {
    if (!Number.isInteger(v) || v < 0 || v >= numClassEmbeds) {
      throw new UNetInputError(
        `class_labels: ${v} is not a valid class index; the class embedding has num_class_embeds=${numClassEmbeds} ` +
          `rows (0..${numClassEmbeds - 1})`,
      );
    }
  }
  return {
    type: "int64",
    dims: [batch],
    data: BigInt64Array.from(broadcast(values, batch), (v) => BigInt(v)),
  };
}

/** class_embed_type "timestep": labels are timesteps → float32 [batch]. */
export function classLabelTimesteps(labels: ClassLabelsInput, batch: number): HostTensor {
  const { values, dims } = valuesOf(labels, "class_labels");
  if (dims.length > 1)
    throw new UNetInputError(`class_labels: expected a scalar or a 1-D tensor, got dims [${dims}]`);
  return { type: "float32", dims: [batch], data: Float32Array.from(broadcast(values, batch)) };
}

/** class_embed_type "identity" / "projection" / "simple_projection": float32 vectors [batch, dim]. */
export function classLabelVectors(labels: ClassLabelsInput, batch: number, dim: number): HostTensor {
  const { values, dims } = valuesOf(labels, "class_labels");
  const rows = dims.length === 2 ? (dims[0] as number) : dims.length === 1 && values.length === dim ? 1 : -1;
  if (rows < 0 || (dims.length === 2 && dims[1] !== dim)) {
    throw new UNetInputError(`class_labels: expected a [batch, ${dim}] tensor, got dims [${dims}]`);
  }
  let data: Float32Array;
  if (rows === batch) data = Float32Array.from(values);
  else if (rows === 1) {
    data = new Float32Array(batch * dim);
    for (let i = 0; i < batch; i++) data.set(values, i * dim);
  } else
    throw new UNetInputError(`class_labels: ${rows} rows cannot be broadcast to the batch size ${batch}`);
  return { type: "float32", dims: [batch, dim], data };
}

function broadcast(values: number[], batch: number): number[] {
  if (values.length === batch) return values;
  if (values.length === 1) return Array.from({ length: batch }, () => values[0] as number);
  throw new UNetInputError(
    `class_labels: ${values.length} labels cannot be broadcast to the batch size ${batch}`,
  );
}
