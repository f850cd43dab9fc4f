/**
 * Validation of run() feeds and requested outputs against a session's declared inputs/outputs, done on the
 * calling thread before anything is sent to onnxruntime. Returns a list of problems (empty = fine).
 *
 * Checked: names (missing / unexpected), HostTensor well-formedness, element type, rank and static dims.
 * Symbolic dims (strings) match any size; an input declared without a shape skips the rank check.
 */
import { describeTensor, type HostTensor, validateHostTensor } from "./host_tensor.js";
import type { ValueInfo } from "./protocol.js";

function quoteList(names: readonly string[]): string {
  return names.map((n) => JSON.stringify(n)).join(", ");
}

function declaredShape(shape: readonly (number | string)[]): string {
  return `[${shape.map((d) => (typeof d === "number" ? String(d) : d === "" ? "?" : d)).join(", ")}]`;
}

export function checkFeeds(inputs: readonly ValueInfo[], feeds: unknown): string[] {
  if (feeds === null || typeof feeds !== "object" || Array.isArray(feeds)) {
    return [`feeds must be an object mapping input names to HostTensors, got ${feeds}`];
  }
  const problems: string[] = [];
  const declared = new Map(inputs.map((i) => [i.name, i]));
  const given = Object.keys(feeds);
  const missing = inputs.map((i) => i.name).filter((n) => !Object.hasOwn(feeds, n));
  const unexpected = given.filter((n) => !declared.has(n));
  if (missing.length > 0) problems.push(`missing input(s) ${quoteList(missing)}`);
  if (unexpected.length > 0) problems.push(`unexpected input(s) ${quoteList(unexpected)}`);
  if (missing.length > 0 || unexpected.length > 0) {
    problems.push(`the session's inputs are ${quoteList(inputs.map((i) => i.name))}`);
  }
  for (const name of given) {
    const info = declared.get(name);
    if (!info) continue;
    const t = (feeds as Record<string, unknown>)[name];
    try {
      validateHostTensor(t, `input "${name}"`);
    } catch (e) {
      problems.push((e as Error).message);
      continue;
    }
    problems.push(...checkAgainstDeclared(name, t, info));
  }
  return problems;
}

function checkAgainstDeclared(name: string, t: HostTensor, info: ValueInfo): string[] {
  if (!info.isTensor) return [`input "${name}" is not a tensor input; HostTensor feeds cannot fill it`];
  const problems: string[] = [];
  const shape = info.shape ?? [];
  const want = `${info.type ?? "?"}${declaredShape(shape)}`;
  if (info.type !== undefined && info.type !== t.type) {
    problems.push(`input "${name}": expected ${want}, got ${describeTensor(t)} (wrong element type)`);
  }
  if (shape.length > 0) {
    if (shape.length !== t.dims.length) {
      problems.push(`input "${name}": expected ${want}, got ${describeTensor(t)} (wrong rank)`);
    } else {
      const bad = shape.flatMap((d, i) => (typeof d === "number" && d >= 0 && d !== t.dims[i] ? [i] : []));
      if (bad.length > 0) {
        problems.push(
          `input "${name}": expected ${want}, got ${describeTensor(t)} (dim ${bad.join(", ")} differs)`,
        );
      }
    }
  }
  return problems;
}

export function checkOutputs(outputNames: readonly string[], requested: unknown): string[] {
  if (requested === undefined) return [];
  if (!Array.isArray(requested) || requested.some((n) => typeof n !== "string")) {
    return ["outputs must be an array of output names"];
  }
  if (requested.length === 0) return ["outputs must name at least one output"];
  const unknown = requested.filter((n) => !outputNames.includes(n));
  const dup = requested.filter((n, i) => requested.indexOf(n) !== i);
  const problems: string[] = [];
  if (unknown.length > 0) {
    problems.push(
      `unknown output(s) ${quoteList(unknown)}; the session's outputs are ${quoteList(outputNames)}`,
    );
  }
  if (dup.length > 0) problems.push(`output(s) requested twice: ${quoteList(dup)}`);
  return problems;
}
