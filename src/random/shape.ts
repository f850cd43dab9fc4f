/** Validation shared by the random functions: shapes of non-negative integers and the supported dtypes. */

export type RandomDtype = "float32" | "float64";

/** Checks that `shape` is an array of non-negative safe integers and returns its element count. */
export function numelOf(shape: readonly number[], what = "shape"): number {
  if (!Array.isArray(shape)) throw new TypeError(`${what} must be an array of non-negative integers`);
  let n = 1;
  for (let i = 0; i < shape.length; i++) {
    const d = shape[i];
    if (typeof d !== "number" || !Number.isSafeInteger(d) || d < 0) {
      throw new TypeError(
        `${what} must contain non-negative integers, got ${String(d)} at dimension ${i} of [${shape.join(", ")}]`,
      );
    }
    n *= d;
  }
  if (!Number.isSafeInteger(n)) throw new RangeError(`${what} [${shape.join(", ")}] has too many elements`);
  return n;
}

/** Returns the dtype named in `options` (default float32); throws a TypeError for anything else. */
export function dtypeOf(options: { dtype?: RandomDtype } | undefined): RandomDtype {
  const dtype = options?.dtype ?? "float32";
  if (dtype !== "float32" && dtype !== "float64") {
    throw new TypeError(`dtype must be "float32" or "float64", got ${JSON.stringify(dtype)}`);
  }
  return dtype;
}
