/**
 * Access to the golden fixtures recorded from diffusers 0.23.0 / torch 1.13.1 (see test/fixtures/README.md).
 * Tiny-model and unit fixtures are copied into test/fixtures; twin-model cases read ../shared/fixtures when present.
 */
import { existsSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { SafetensorsFile } from "../../src/io/safetensors.js";

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
export const FIXTURES = join(REPO_ROOT, "test/fixtures");
/** ../shared/fixtures (or $SDX4_SHARED_FIXTURES) when present: the twin model lives only there. */
export const SHARED_FIXTURES: string | undefined = [
  process.env.SDX4_SHARED_FIXTURES,
  resolve(REPO_ROOT, "../shared/fixtures"),
].find((p): p is string => !!p && existsSync(join(p, "models/twin-upscaler")));

export interface FixtureCase {
  name: string;
  description?: string;
  // biome-ignore lint/suspicious/noExplicitAny: fixture params are free-form JSON
  params: Record<string, any>;
  tensors: Record<string, string>;
  tolerance: { atol: number; rtol: number };
}

export interface FixtureGroup {
  dir: string;
  cases: FixtureCase[];
  tensors: SafetensorsFile;
  get(name: string): FixtureCase;
}

const groups = new Map<string, FixtureGroup>();

export function loadGroup(group: string): FixtureGroup {
  let g = groups.get(group);
  if (g) return g;
  const dir = join(FIXTURES, group);
  const json = JSON.parse(readFileSync(join(dir, "cases.json"), "utf8")) as { cases: FixtureCase[] };
  const tensors = SafetensorsFile.open(join(dir, "tensors.safetensors"));
  const byName = new Map(json.cases.map((c) => [c.name, c]));
  g = {
    dir,
    cases: json.cases,
    tensors,
    get(name: string) {
      const c = byName.get(name);
      if (!c) throw new Error(`no fixture case ${group}/${name}`);
      return c;
    },
  };
  groups.set(group, g);
  return g;
}

export function tensorOf(
  g: FixtureGroup,
  c: FixtureCase,
  role: string,
): { data: Float32Array; shape: number[] } {
  const key = c.tensors[role];
  if (!key) throw new Error(`case ${c.name} has no role ${role}`);
  return { data: g.tensors.getFloat32(key), shape: g.tensors.info(key).shape };
}

/** Element-wise |a - e| <= atol + rtol*|e|; throws with the worst element on failure. */
export function assertClose(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  tol: { atol: number; rtol: number },
  label = "",
): void {
  if (actual.length !== expected.length) {
    throw new Error(`${label}: length ${actual.length} != expected ${expected.length}`);
  }
  let worst = -1;
  let worstExcess = 0;
  let bad = 0;
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i] as number;
    const e = expected[i] as number;
    const excess = Math.abs(a - e) - (tol.atol + tol.rtol * Math.abs(e));
    if (!(excess <= 0) && !(Number.isNaN(a) && Number.isNaN(e))) {
      bad++;
      if (worst < 0 || excess > worstExcess || Number.isNaN(excess)) {
        worst = i;
        worstExcess = excess;
      }
    }
  }
  if (bad > 0) {
    throw new Error(
      `${label}: ${bad}/${expected.length} elements out of tolerance (atol ${tol.atol}, rtol ${tol.rtol}); ` +
        `worst at ${worst}: actual ${actual[worst]} expected ${expected[worst]}`,
    );
  }
}
