/** Errors of the sdx4 command line, their exit codes and how they are reported. */
import { ImageInputError } from "../image/errors.js";
import { UpscaleInputError } from "../pipelines/upscale_inputs.js";

/** A bad command line: flag value, counts, input file, scheduler name. Exit code 2. */
export class UsageError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "UsageError";
  }
}

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;
/** 128 + SIGINT, what shells report for a process ended by Ctrl-C. */
export const EXIT_INTERRUPTED = 130;

/** Errors whose message says everything; others get a hint about SDX4_DEBUG. */
const EXPECTED = new Set([
  "UsageError",
  "UpscaleInputError",
  "ImageInputError",
  "ModelNotFoundError",
  "ModelFileError",
  "RuntimeError",
  "NonFiniteError",
  "SchedulerConfigError",
  "ExecutionProviderUnavailableError",
  "SafetensorsError",
]);

export function exitCodeOf(e: unknown): number {
  if (e instanceof UsageError || e instanceof UpscaleInputError || e instanceof ImageInputError) {
    return EXIT_USAGE;
  }
  return EXIT_FAILURE;
}

/** The stderr text for an error: the message, and the stack (with causes) only when `debug`. */
export function formatError(e: unknown, debug: boolean): string {
  const err = e instanceof Error ? e : new Error(String(e));
  const lines = [`sdx4: error: ${err.message}`];
  if (exitCodeOf(e) === EXIT_USAGE) lines.push("(see sdx4 upscale --help)");
  if (debug) {
    let c: unknown = err;
    for (let depth = 0; c instanceof Error && depth < 5; depth++, c = c.cause) {
      lines.push(depth === 0 ? (c.stack ?? "") : `caused by: ${c.stack ?? c.message}`);
    }
  } else if (!EXPECTED.has(err.name)) {
    lines.push("(set SDX4_DEBUG=1 for the stack trace)");
  }
  return `${lines.join("\n")}\n`;
}

/** SDX4_DEBUG set to anything but "", "0" or "false". */
export function debugEnabled(env: NodeJS.ProcessEnv = process.env): boolean {
  const v = (env.SDX4_DEBUG ?? "").toLowerCase();
  return v !== "" && v !== "0" && v !== "false";
}
