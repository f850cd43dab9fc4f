/** Validation of an option that takes one of a fixed list of values (precision, conv algorithm, ...). */

/** Returns `v` as one of `choices`, or throws `RangeError("<what> must be one of a, b, got <v>")`. */
export function checkChoice<T>(choices: readonly T[], v: unknown, what: string): T {
  if (!(choices as readonly unknown[]).includes(v)) {
    throw new RangeError(`${what} must be one of ${choices.join(", ")}, got ${JSON.stringify(v)}`);
  }
  return v as T;
}
