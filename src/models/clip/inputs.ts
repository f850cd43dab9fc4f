/**
 * Token-id and attention-mask inputs of the CLIP text encoder: nested arrays or flat int64 data, validated into
 * int64 HostTensors [batch, seq] with errors that name the argument.
 */
import { type HostTensor, hostTensor } from "../../runtime/index.js";

/** `number[][]` / `bigint[][]` rows, a flat BigInt64Array with `dims`, or an int64 HostTensor. */
export type TokenMatrix =
  | readonly (readonly number[])[]
  | readonly (readonly bigint[])[]
  | BigInt64Array
  | HostTensor;

export class CLIPInputError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "CLIPInputError";
  }
}

/** Converts a token matrix to an int64 [batch, seq] tensor (flat data is used as is, not copied). */
export function toInt64Matrix(x: TokenMatrix, dims: readonly number[] | undefined, what: string): HostTensor {
  const fail = (why: string): never => {
    throw new CLIPInputError(`${what}: ${why}`);
  };
  if (x instanceof BigInt64Array) {
    if (!dims) fail("a flat BigInt64Array needs dims [batch, seq]");
    const d = dims as readonly number[];
    if (
      d.length !== 2 ||
      d.some((n) => !Number.isInteger(n) || n < 0) ||
      (d[0] ?? 0) * (d[1] ?? 0) !== x.length
    ) {
      fail(`dims [${d}] do not describe a [batch, seq] matrix of ${x.length} values`);
    }
    return hostTensor("int64", x, d);
  }
  if (!Array.isArray(x)) {
    const t = x as HostTensor;
    if (t.type !== "int64" || !(t.data instanceof BigInt64Array))
      fail(`expected an int64 tensor, got ${t.type}`);
    if (t.dims.length !== 2) fail(`expected dims [batch, seq], got [${t.dims}]`);
    return hostTensor("int64", t.data, t.dims);
  }
  const rows = x as readonly (readonly (number | bigint)[])[];
  const seq = rows[0]?.length ?? 0;
  const data = new BigInt64Array(rows.length * seq);
  rows.forEach((row, i) => {
    if (!Array.isArray(row) || row.length !== seq) {
      fail(
        `row ${i} has ${Array.isArray(row) ? row.length : "no"} entries, row 0 has ${seq} (rows must be equal length)`,
      );
    }
    row.forEach((v, j) => {
      if (typeof v === "bigint") data[i * seq + j] = v;
      else if (Number.isSafeInteger(v)) data[i * seq + j] = BigInt(v);
      else fail(`[${i}][${j}] = ${v} is not an integer`);
    });
  });
  return hostTensor("int64", data, [rows.length, seq]);
}

/** Checks input_ids [batch, seq]: batch >= 1, 1 <= seq <= maxPositions, every id in [0, vocabSize). */
export function checkInputIds(ids: HostTensor, vocabSize: number, maxPositions: number): void {
  const [batch = 0, seq = 0] = ids.dims;
  if (batch < 1 || seq < 1) throw new CLIPInputError(`input_ids: empty input [${ids.dims}]`);
  if (seq > maxPositions) {
    throw new CLIPInputError(
      `input_ids: sequence length ${seq} is longer than max_position_embeddings ${maxPositions}`,
    );
  }
  const data = ids.data as BigInt64Array;
  const vocab = BigInt(vocabSize);
  for (let i = 0; i < data.length; i++) {
    const v = data[i] as bigint;
    if (v < 0n || v >= vocab) {
      throw new CLIPInputError(
        `input_ids: token id ${v} at [${Math.floor(i / seq)}][${i % seq}] is outside the vocabulary [0, ${vocabSize})`,
      );
    }
  }
}

/** An all-ones mask (bit-identical results to no mask: a 1 adds 0 to every score). */
export function onesMask(dims: readonly number[]): HostTensor {
  return hostTensor("int64", new BigInt64Array((dims[0] ?? 0) * (dims[1] ?? 0)).fill(1n), dims);
}
