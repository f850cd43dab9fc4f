/**
 * Strict parsers for flag values: each takes the flag name and the raw string and either returns the value or
 * throws a UsageError naming the flag, the value and what was expected. "", "1e", "0x10", " 3", "Infinity" and
 * the like are rejected (Number() would accept several of them).
 */
import type { FreeUConfig } from "../models/unet/freeu.js";
import { UsageError } from "./errors.js";

const INT_RE = /^[+-]?\d+$/;
const NUM_RE = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;

function bad(flag: string, value: string, expected: string): UsageError {
  return new UsageError(`${flag}: expected ${expected}, got ${JSON.stringify(value)}`);
}

/** A finite decimal number. */
export function parseNumber(flag: string, value: string, opts: { min?: number } = {}): number {
  const what = opts.min === undefined ? "a finite number" : `a finite number >= ${opts.min}`;
  if (!NUM_RE.test(value)) throw bad(flag, value, what);
  const x = Number(value);
  if (!Number.isFinite(x) || (opts.min !== undefined && x < opts.min)) throw bad(flag, value, what);
  return x;
}

/** A decimal integer within [min, max] (safe-integer range). */
export function parseInteger(flag: string, value: string, opts: { min?: number; max?: number } = {}): number {
  const { min, max } = opts;
  const what =
    min !== undefined && max !== undefined
      ? `an integer in ${min}..${max}`
      : min === 1
        ? "a positive integer"
        : min !== undefined
          ? `an integer >= ${min}`
          : "an integer";
  if (!INT_RE.test(value)) throw bad(flag, value, what);
  const x = Number(value);
  if (!Number.isSafeInteger(x) || (min !== undefined && x < min) || (max !== undefined && x > max)) {
    throw bad(flag, value, what);
  }
  return x;
}

/** `torch.Generator.manual_seed` range: an integer in [-2^63, 2^64), exact through BigInt. */
export function parseSeed(flag: string, value: string): bigint {
  const what = "an integer in [-2^63, 2^64)";
  if (!INT_RE.test(value)) throw bad(flag, value, what);
  const s = BigInt(value);
  if (s < -(2n ** 63n) || s >= 2n ** 64n) throw bad(flag, value, what);
  return s;
}

/** One of a fixed set of strings. */
export function parseChoice<T extends string>(flag: string, value: string, choices: readonly T[]): T {
  if ((choices as readonly string[]).includes(value)) return value as T;
  throw new UsageError(`${flag}: expected one of ${choices.join(", ")}, got ${JSON.stringify(value)}`);
}

/** `--freeu s1,s2,b1,b2`: exactly four finite numbers (diffusers' enable_freeu(s1, s2, b1, b2)). */
export function parseFreeU(flag: string, value: string): FreeUConfig {
  const parts = value.split(",").map((p) => p.trim());
  if (parts.length !== 4) {
    throw bad(flag, value, "four comma-separated numbers s1,s2,b1,b2 (e.g. 0.9,0.2,1.2,1.4)");
  }
  const [s1, s2, b1, b2] = parts.map((p) => {
    if (!NUM_RE.test(p) || !Number.isFinite(Number(p))) {
      throw bad(flag, value, "four comma-separated finite numbers s1,s2,b1,b2");
    }
    return Number(p);
  }) as [number, number, number, number];
  return { s1, s2, b1, b2 };
}

/** `--attention-slicing [size]`: no value or "auto" → "auto", "max", or a positive integer slice size. */
export function parseSliceSize(flag: string, value: string | true): "auto" | "max" | number {
  if (value === true || value === "auto") return "auto";
  if (value === "max") return "max";
  if (INT_RE.test(value)) return parseInteger(flag, value, { min: 1 });
  throw bad(flag, value, '"auto", "max" or a positive integer slice size (put the flag after the inputs)');
}

/** A non-empty string (model ids, revisions, folders). */
export function parseNonEmpty(flag: string, value: string): string {
  if (value.trim() === "") throw bad(flag, value, "a non-empty value");
  return value;
}
