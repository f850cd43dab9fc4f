/**
 * Reading a CLIP tokenizer folder (`vocab.json`, `merges.txt`, `tokenizer_config.json`,
 * `special_tokens_map.json`) the way transformers 4.35 `CLIPTokenizer.from_pretrained` does, with strict
 * validation: every problem is reported with the file it is in.
 */
import { existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { pySplit, pyStrip } from "./basic_tokenizer.js";

export class TokenizerFileError extends Error {
  constructor(
    readonly file: string,
    problem: string,
  ) {
    super(`${file}: ${problem}`);
    this.name = "TokenizerFileError";
  }
}

/** The merges CLIPTokenizer keeps: `read().strip().split("\n")[1 : 49152 - 256 - 2 + 1]`. */
export const CLIP_MERGE_LIMIT = 49152 - 256 - 2;

/** A special / added token with its AddedToken flags. */
export interface AddedTokenSpec {
  content: string;
  lstrip: boolean;
  rstrip: boolean;
  singleWord: boolean;
  normalized: boolean;
  special: boolean;
}

/** A token setting as it appears in the JSON files: a plain string or an AddedToken object. */
export type TokenSetting = string | AddedTokenSpec;

export const SPECIAL_TOKEN_KEYS = [
  "bos_token",
  "eos_token",
  "unk_token",
  "sep_token",
  "pad_token",
  "cls_token",
  "mask_token",
] as const;
export type SpecialTokenKey = (typeof SPECIAL_TOKEN_KEYS)[number];

export interface TokenizerSettings {
  special: Partial<Record<SpecialTokenKey, TokenSetting>>;
  additionalSpecialTokens: TokenSetting[];
  /** `added_tokens_decoder` of tokenizer_config.json (saved by transformers >= 4.34): id -> token. */
  addedTokensDecoder: Map<number, AddedTokenSpec>;
  modelMaxLength?: number;
  cleanUpTokenizationSpaces?: boolean;
  errors?: string;
}

function readText(path: string, file: string): string {
  if (!existsSync(path)) throw new TokenizerFileError(file, `missing (looked for ${path})`);
  try {
    return readFileSync(path, "utf8");
  } catch (e) {
    throw new TokenizerFileError(file, `cannot be read: ${(e as Error).message}`);
  }
}

function parseJson(text: string, file: string): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new TokenizerFileError(file, `not valid JSON: ${(e as Error).message}`);
  }
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** vocab.json: an object mapping each token to a non-negative integer id. */
export function parseVocab(text: string, file = "vocab.json"): Map<string, number> {
  const fast = scanVocab(text);
  if (fast && fast.size > 0) return fast;
  // The general path: JSON.parse, then explain what is wrong.
  const json = parseJson(text, file);
  if (!isRecord(json)) throw new TokenizerFileError(file, "expected a JSON object mapping tokens to ids");
  const vocab = new Map<string, number>();
  for (const token of Object.keys(json)) {
    const id = json[token];
    if (typeof id !== "number" || !Number.isSafeInteger(id) || id < 0) {
      throw new TokenizerFileError(
        file,
        `token ${JSON.stringify(token)} has id ${JSON.stringify(id)}, expected a non-negative integer`,
      );
    }
    vocab.set(token, id);
  }
  if (vocab.size === 0) throw new TokenizerFileError(file, "the vocabulary is empty");
  return vocab;
}

const isJsonSpace = (c: number) => c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;

/**
 * A fast reader for the usual vocab.json, `{"token": id, ...}` with plain integer ids: about 4x quicker than
 * JSON.parse plus copying 49k properties into a Map. It accepts only valid JSON and gives the same result as
 * JSON.parse (later duplicates win); on anything else it returns undefined and the general path takes over.
 */
function scanVocab(text: string): Map<string, number> | undefined {
  const n = text.length;
  const vocab = new Map<string, number>();
  let i = 0;
  const skipSpace = () => {
    while (i < n && isJsonSpace(text.charCodeAt(i))) i++;
  };
  skipSpace();
  if (text.charCodeAt(i++) !== 0x7b /* { */) return undefined;
  skipSpace();
  if (text.charCodeAt(i) === 0x7d /* } */) return undefined; // empty: let the general path report it
  for (;;) {
    if (text.charCodeAt(i) !== 0x22 /* " */) return undefined;
    let j = i + 1;
    let escaped = false;
    for (; ; j++) {
      if (j >= n) return undefined;
      const c = text.charCodeAt(j);
      if (c === 0x22) break;
      if (c < 0x20) return undefined;
      if (c === 0x5c /* \ */) {
        escaped = true;
        j++;
      }
    }
    let token: string;
    if (escaped) {
      try {
        token = JSON.parse(text.slice(i, j + 1)) as string;
      } catch {
        return undefined;
      }
    } else {
      token = text.slice(i + 1, j);
    }
    i = j + 1;
    skipSpace();
    if (text.charCodeAt(i++) !== 0x3a /* : */) return undefined;
    skipSpace();
    const digits = i;
    let id = 0;
    for (let c = text.charCodeAt(i); c >= 0x30 && c <= 0x39; c = text.charCodeAt(++i))
      id = id * 10 + (c - 0x30);
    const len = i - digits;
    if (len === 0 || len > 15 || (len > 1 && text.charCodeAt(digits) === 0x30)) return undefined;
    vocab.set(token, id);
    skipSpace();
    const c = text.charCodeAt(i++);
    if (c === 0x7d) break;
    if (c !== 0x2c /* , */) return undefined;
    skipSpace();
  }
  skipSpace();
  return i === n ? vocab : undefined;
}

/** Python whitespace other than the space and the line feed. */
// biome-ignore lint/suspicious/noControlCharactersInRegex: Python's whitespace set includes U+001C..U+001F.
const OTHER_WHITESPACE = /[\t\v\f\r\x1c-\x1f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]/u;

/**
 * merges.txt: a `#version` header line, then one merge per line, two symbols separated by whitespace. As in the
 * reference, the first line is always skipped and only the first CLIP_MERGE_LIMIT merges are used. Returns each
 * merge as `"first second"` (one space), in rank order.
 */
export function parseMerges(text: string, file = "merges.txt"): string[] {
  const lines = pyStrip(text).split("\n");
  const header = lines[0] ?? "";
  if (!header.startsWith("#")) {
    throw new TokenizerFileError(
      file,
      `line 1 should be the '#version: ...' header, found ${JSON.stringify(header)}`,
    );
  }
  const used = lines.slice(1, 1 + CLIP_MERGE_LIMIT);
  if (used.length === 0) throw new TokenizerFileError(file, "no merges after the header line");
  // Fast path: a line with exactly one space, not at either end, and no other whitespace is already "a b".
  const onlySpaces = !OTHER_WHITESPACE.test(text);
  for (let i = 0; i < used.length; i++) {
    const line = used[i]!;
    const sp = line.indexOf(" ");
    if (onlySpaces && sp > 0 && sp < line.length - 1 && line.indexOf(" ", sp + 1) < 0) continue;
    const parts = pySplit(line);
    if (parts.length !== 2) {
      throw new TokenizerFileError(
        file,
        `line ${i + 2} should hold two symbols separated by a space, found ${JSON.stringify(line)}`,
      );
    }
    used[i] = `${parts[0]} ${parts[1]}`;
  }
  return used;
}

function parseAddedToken(v: unknown, file: string, where: string, special: boolean): AddedTokenSpec {
  if (!isRecord(v) || typeof v.content !== "string") {
    throw new TokenizerFileError(file, `${where} should be a string or an object with a string "content"`);
  }
  const flag = (name: string, dflt: boolean): boolean => {
    const f = v[name];
    if (f === undefined) return dflt;
    if (typeof f !== "boolean")
      throw new TokenizerFileError(file, `${where}.${name} should be true or false`);
    return f;
  };
  // AddedToken defaults: lstrip/rstrip/single_word false, normalized = not special.
  const isSpecial = flag("special", special);
  return {
    content: v.content,
    lstrip: flag("lstrip", false),
    rstrip: flag("rstrip", false),
    singleWord: flag("single_word", false),
    normalized: flag("normalized", !isSpecial),
    special: isSpecial,
  };
}

function parseTokenSetting(v: unknown, file: string, where: string): TokenSetting {
  return typeof v === "string" ? v : parseAddedToken(v, file, where, false);
}

/** Applies one JSON file's special-token entries (`null` entries are ignored, as HF does). */
function applySpecialTokens(json: Record<string, unknown>, file: string, settings: TokenizerSettings): void {
  for (const key of SPECIAL_TOKEN_KEYS) {
    const v = json[key];
    if (v === undefined || v === null) continue;
    settings.special[key] = parseTokenSetting(v, file, key);
  }
  const extra = json.additional_special_tokens;
  if (extra !== undefined && extra !== null) {
    if (!Array.isArray(extra))
      throw new TokenizerFileError(file, "additional_special_tokens should be a list");
    settings.additionalSpecialTokens = extra.map((t, i) =>
      parseTokenSetting(t, file, `additional_special_tokens[${i}]`),
    );
  }
}

/**
 * tokenizer_config.json first, then special_tokens_map.json on top (from_pretrained lets the map override the
 * config). Both files are optional, as in the reference; a present but malformed one is an error.
 */
export function readSettings(dir: string): TokenizerSettings {
  const settings: TokenizerSettings = {
    special: {},
    additionalSpecialTokens: [],
    addedTokensDecoder: new Map(),
  };
  const configPath = join(dir, "tokenizer_config.json");
  if (existsSync(configPath)) {
    const file = "tokenizer_config.json";
    const config = parseJson(readText(configPath, file), file);
    if (!isRecord(config)) throw new TokenizerFileError(file, "expected a JSON object");
    applySpecialTokens(config, file, settings);
    const maxLen = config.model_max_length ?? config.max_len;
    if (maxLen !== undefined && maxLen !== null) {
      if (typeof maxLen !== "number" || !(maxLen > 0)) {
        throw new TokenizerFileError(file, `model_max_length should be a positive number, found ${maxLen}`);
      }
      settings.modelMaxLength = maxLen;
    }
    const cleanUp = config.clean_up_tokenization_spaces;
    if (cleanUp !== undefined && cleanUp !== null) {
      if (typeof cleanUp !== "boolean") {
        throw new TokenizerFileError(file, "clean_up_tokenization_spaces should be true or false");
      }
      settings.cleanUpTokenizationSpaces = cleanUp;
    }
    if (config.errors !== undefined && config.errors !== null) {
      if (config.errors !== "replace" && config.errors !== "strict") {
        throw new TokenizerFileError(
          file,
          `errors: only "replace" and "strict" are supported, found ${config.errors}`,
        );
      }
      settings.errors = config.errors;
    }
    const decoder = config.added_tokens_decoder;
    if (decoder !== undefined && decoder !== null) {
      if (!isRecord(decoder)) throw new TokenizerFileError(file, "added_tokens_decoder should be an object");
      for (const [id, tok] of Object.entries(decoder)) {
        if (!/^\d+$/.test(id))
          throw new TokenizerFileError(file, `added_tokens_decoder key ${id} is not an id`);
        settings.addedTokensDecoder.set(
          Number(id),
          parseAddedToken(tok, file, `added_tokens_decoder.${id}`, false),
        );
      }
    }
  }
  const mapPath = join(dir, "special_tokens_map.json");
  if (existsSync(mapPath)) {
    const file = "special_tokens_map.json";
    const map = parseJson(readText(mapPath, file), file);
    if (!isRecord(map)) throw new TokenizerFileError(file, "expected a JSON object");
    applySpecialTokens(map, file, settings);
  }
  return settings;
}

export interface TokenizerFiles {
  vocab: Map<string, number>;
  /** `"first second"`, in rank order. */
  merges: string[];
  settings: TokenizerSettings;
}

/** Reads and validates a tokenizer folder. vocab.json and merges.txt are required. */
export function readTokenizerFiles(dir: string): TokenizerFiles {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) {
    throw new TokenizerFileError(dir, "not a tokenizer folder (no such directory)");
  }
  const vocab = parseVocab(readText(join(dir, "vocab.json"), "vocab.json"));
  const merges = parseMerges(readText(join(dir, "merges.txt"), "merges.txt"));
  return { vocab, merges, settings: readSettings(dir) };
}
