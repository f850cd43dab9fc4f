/**
 * CLIPTokenizer: transformers 4.35's slow `CLIPTokenizer` as diffusers 0.23.0 uses it, with ftfy absent.
 *
 * Encoding: split on added tokens (every special token, Trie), clean each other piece with BERT's
 * BasicTokenizer (lower-cased), cut it with the CLIP regex, byte-level BPE each match, map to ids (unknown ->
 * unk), then `[bos] + ids + [eos]`, truncation from the right and right padding with the pad id. Decoding:
 * ids -> tokens -> bytes -> UTF-8 (errors replaced), `</w>` -> space, strip, optional clean-up of spaces.
 * Names mirror the Python API in camelCase.
 */
import { TextDecoder } from "node:util";
import { clipNormalize, pyLstrip, pyRstrip, pyStrip } from "./basic_tokenizer.js";
import { BYTE_DECODER, BytePairEncoder, byteEncode, CLIP_PATTERN } from "./bpe.js";
import {
  type AddedTokenSpec,
  readTokenizerFiles,
  SPECIAL_TOKEN_KEYS,
  type SpecialTokenKey,
  type TokenizerSettings,
  type TokenSetting,
} from "./files.js";
import { Trie } from "./trie.js";

export { TokenizerFileError } from "./files.js";

/** transformers' `VERY_LARGE_INTEGER` (model_max_length when none is configured) and `LARGE_INTEGER`. */
export const VERY_LARGE_INTEGER = 1e30;
const LARGE_INTEGER = 1e20;

export type PaddingOption = boolean | "longest" | "max_length" | "do_not_pad";
export type TruncationOption = boolean | "longest_first" | "only_first" | "do_not_truncate";

export interface CallOptions {
  /** `true` = "longest"; default false. */
  padding?: PaddingOption;
  /** `true` = "longest_first". Left undefined with a maxLength and no padding, truncation is switched on (as HF). */
  truncation?: TruncationOption;
  /** Default: modelMaxLength where padding "max_length" or truncation needs one. */
  maxLength?: number;
  padToMultipleOf?: number;
  /** Add bos/eos (default true). */
  addSpecialTokens?: boolean;
}

export interface BatchEncoding {
  inputIds: number[][];
  attentionMask: number[][];
}

export interface DecodeOptions {
  skipSpecialTokens?: boolean;
  /** Default: the tokenizer's setting (true unless tokenizer_config.json says otherwise). */
  cleanUpTokenizationSpaces?: boolean;
  spacesBetweenSpecialTokens?: boolean;
}

export interface CLIPTokenizerInit {
  vocab: ReadonlyMap<string, number>;
  /** `"first second"` (one space), in rank order, as parseMerges returns them. */
  merges: readonly string[];
  settings?: Partial<TokenizerSettings>;
}

/** CLIPTokenizer's own defaults for the special tokens. */
const CLIP_DEFAULTS: Partial<Record<SpecialTokenKey, string>> = {
  unk_token: "<|endoftext|>",
  bos_token: "<|startoftext|>",
  eos_token: "<|endoftext|>",
  pad_token: "<|endoftext|>",
};

const contentOf = (t: TokenSetting): string => (typeof t === "string" ? t : t.content);

type Strategy = "longest" | "max_length" | "do_not_pad";

export class CLIPTokenizer {
  readonly modelMaxLength: number;
  readonly cleanUpTokenizationSpaces: boolean;
  private readonly encoder: ReadonlyMap<string, number>;
  private decoderCache?: Map<number, string>;
  private readonly bpeModel: BytePairEncoder;
  private readonly specialTokens = new Map<SpecialTokenKey, string>();
  private readonly additionalSpecialTokens: string[] = [];
  private readonly addedTokensDecoder = new Map<number, AddedTokenSpec>();
  private readonly addedTokensEncoder = new Map<string, number>();
  private readonly trie = new Trie();
  private readonly textDecoder: TextDecoder;

  /** Loads `vocab.json`, `merges.txt` and the optional `tokenizer_config.json` / `special_tokens_map.json`. */
  static fromPretrained(dir: string): CLIPTokenizer {
    const { vocab, merges, settings } = readTokenizerFiles(dir);
    return new CLIPTokenizer({ vocab, merges, settings });
  }

  constructor(init: CLIPTokenizerInit) {
    const settings = init.settings ?? {};
    this.encoder = init.vocab;
    this.bpeModel = new BytePairEncoder(init.merges, ["<|startoftext|>", "<|endoftext|>"]);
    this.modelMaxLength = settings.modelMaxLength ?? VERY_LARGE_INTEGER;
    this.cleanUpTokenizationSpaces = settings.cleanUpTokenizationSpaces ?? true;
    const errors = settings.errors ?? "replace";
    if (errors !== "replace" && errors !== "strict") {
      throw new Error(`CLIPTokenizer: unsupported decode error handler ${JSON.stringify(errors)}`);
    }
    this.textDecoder = new TextDecoder("utf-8", { fatal: errors === "strict", ignoreBOM: true });

    // Special tokens: defaults, then the files' settings; bos/eos/unk given as strings become AddedTokens.
    const extended: AddedTokenSpec[] = [];
    const seen = new Set<string>();
    const addExtended = (t: TokenSetting) => {
      const spec =
        typeof t === "string"
          ? { content: t, lstrip: false, rstrip: false, singleWord: false, normalized: false, special: true }
          : { ...t, special: true };
      if (seen.has(spec.content)) return;
      seen.add(spec.content);
      extended.push(spec);
    };
    for (const key of SPECIAL_TOKEN_KEYS) {
      const t = settings.special?.[key] ?? CLIP_DEFAULTS[key];
      if (t === undefined) continue;
      this.specialTokens.set(key, contentOf(t));
      addExtended(t);
    }
    for (const t of settings.additionalSpecialTokens ?? []) {
      this.additionalSpecialTokens.push(contentOf(t));
      addExtended(t);
    }
    for (const [id, t] of settings.addedTokensDecoder ?? []) {
      this.addedTokensDecoder.set(id, t);
      this.addedTokensEncoder.set(t.content, id);
    }
    // `_add_tokens(all_special_tokens_extended, special_tokens=True)`: tokens missing from the vocab get new ids.
    let nextId = this.encoder.size;
    for (const t of this.addedTokensEncoder.keys()) if (!this.encoder.has(t)) nextId++;
    for (const spec of extended) {
      if (spec.content === "" || this.addedTokensEncoder.has(spec.content)) continue;
      const id = this.encoder.get(spec.content) ?? nextId++;
      this.addedTokensDecoder.set(id, spec);
      this.addedTokensEncoder.set(spec.content, id);
    }
    for (const t of this.addedTokensDecoder.values()) this.trie.add(t.content);
  }

  /** Size of the base vocabulary (vocab.json), without added tokens. */
  get vocabSize(): number {
    return this.encoder.size;
  }

  get bosToken(): string | undefined {
    return this.specialTokens.get("bos_token");
  }
  get eosToken(): string | undefined {
    return this.specialTokens.get("eos_token");
  }
  get unkToken(): string | undefined {
    return this.specialTokens.get("unk_token");
  }
  get padToken(): string | undefined {
    return this.specialTokens.get("pad_token");
  }
  get bosTokenId(): number | undefined {
    return this.idOf(this.bosToken);
  }
  get eosTokenId(): number | undefined {
    return this.idOf(this.eosToken);
  }
  get unkTokenId(): number | undefined {
    return this.idOf(this.unkToken);
  }
  get padTokenId(): number | undefined {
    return this.idOf(this.padToken);
  }

  /** Every special token string (bos, eos, unk, ..., additional), deduplicated, in HF's order. */
  get allSpecialTokens(): string[] {
    return [...new Set([...this.specialTokens.values(), ...this.additionalSpecialTokens])];
  }

  get allSpecialIds(): number[] {
    return this.convertTokensToIds(this.allSpecialTokens);
  }

  private idOf(token: string | undefined): number | undefined {
    return token === undefined ? undefined : this.convertTokenToId(token);
  }

  /** Token -> id: added tokens first, then the vocab, else the unk id. */
  convertTokenToId(token: string): number {
    const id = this.addedTokensEncoder.get(token) ?? this.encoder.get(token);
    if (id !== undefined) return id;
    const unk = this.unkToken;
    const unkId = unk === undefined ? undefined : (this.addedTokensEncoder.get(unk) ?? this.encoder.get(unk));
    if (unkId === undefined)
      throw new Error(`CLIPTokenizer: token ${JSON.stringify(token)} is unknown and no unk`);
    return unkId;
  }

  convertTokensToIds(tokens: readonly string[]): number[] {
    return tokens.map((t) => this.convertTokenToId(t));
  }

  /** Vocab id -> token (`{v: k for k, v in encoder.items()}`), built on first use. */
  private get decoder(): Map<number, string> {
    if (!this.decoderCache) {
      this.decoderCache = new Map();
      for (const [token, id] of this.encoder) this.decoderCache.set(id, token);
    }
    return this.decoderCache;
  }

  /** Id -> token (added tokens first); throws for an id that is in neither table. */
  convertIdToToken(id: number): string {
    const token = this.addedTokensDecoder.get(id)?.content ?? this.decoder.get(id);
    if (token === undefined) throw new RangeError(`CLIPTokenizer: no token has id ${id}`);
    return token;
  }

  convertIdsToTokens(ids: ArrayLike<number | bigint>, skipSpecialTokens = false): string[] {
    const special = new Set(skipSpecialTokens ? this.allSpecialIds : []);
    const out: string[] = [];
    for (const id of toIds(ids)) {
      if (!special.has(id)) out.push(this.convertIdToToken(id));
    }
    return out;
  }

  /** HF `tokenize(text)`: BPE tokens and added tokens, without bos/eos. */
  tokenize(text: string): string[] {
    checkText(text, "text");
    const pieces = this.trie.split(text);
    for (let i = 0; i < pieces.length; i++) {
      const id = this.addedTokensEncoder.get(pieces[i]!);
      if (id === undefined) continue;
      const tok = this.addedTokensDecoder.get(id)!;
      const left = i > 0 ? pieces[i - 1] : undefined;
      const right = i < pieces.length - 1 ? pieces[i + 1] : undefined;
      if (tok.rstrip && right) pieces[i + 1] = pyLstrip(right);
      if (tok.lstrip && left) pieces[i - 1] = pyRstrip(left);
      if (tok.singleWord && left && !left.endsWith(" ")) {
        pieces[i - 1] += pieces[i]!;
        pieces[i] = "";
      } else if (tok.singleWord && right && !right.startsWith(" ")) {
        pieces[i] += right;
        pieces[i + 1] = "";
      }
    }
    const tokens: string[] = [];
    for (const piece of pieces) {
      if (!piece) continue;
      if (this.addedTokensEncoder.has(piece)) tokens.push(piece);
      else for (const t of this.bpeTokenize(piece)) tokens.push(t);
    }
    return tokens;
  }

  /** CLIPTokenizer._tokenize: BasicTokenizer clean-up, CLIP regex, byte-level BPE. */
  private bpeTokenize(text: string): string[] {
    const out: string[] = [];
    for (const match of clipNormalize(text).matchAll(CLIP_PATTERN)) {
      for (const t of this.bpeModel.bpe(byteEncode(match[0]))) out.push(t);
    }
    return out;
  }

  /** `tokenizer(text, ...)`: one string or a batch; the result is always batched. */
  call(text: string | readonly string[], options: CallOptions = {}): BatchEncoding {
    const texts = typeof text === "string" ? [text] : checkBatch(text);
    const { strategy, truncate, maxLength } = this.strategies(options);
    const addSpecial = options.addSpecialTokens ?? true;
    const rows = texts.map((t) =>
      this.prepare(this.convertTokensToIds(this.tokenize(t)), truncate, maxLength, addSpecial),
    );
    let target = maxLength;
    if (strategy === "longest") target = rows.reduce((m, r) => Math.max(m, r.length), 0);
    const mult = options.padToMultipleOf;
    if (target !== undefined && mult !== undefined && target % mult !== 0)
      target = (Math.floor(target / mult) + 1) * mult;
    const inputIds: number[][] = [];
    const attentionMask: number[][] = [];
    for (const row of rows) {
      const mask = row.map(() => 1);
      if (strategy !== "do_not_pad" && target !== undefined && row.length < target) {
        const padId = this.padTokenId!;
        const diff = target - row.length;
        for (let k = 0; k < diff; k++) {
          row.push(padId);
          mask.push(0);
        }
      }
      inputIds.push(row);
      attentionMask.push(mask);
    }
    return { inputIds, attentionMask };
  }

  /** `encode(text)`: the ids of one text, with bos/eos unless addSpecialTokens is false. */
  encode(text: string, options: CallOptions = {}): number[] {
    checkText(text, "text");
    return this.call(text, options).inputIds[0]!;
  }

  /** `_get_padding_truncation_strategies` of transformers 4.35. */
  private strategies(options: CallOptions): { strategy: Strategy; truncate: boolean; maxLength?: number } {
    let { padding = false, truncation, maxLength } = options;
    if (maxLength !== undefined && (!Number.isInteger(maxLength) || maxLength < 0)) {
      throw new RangeError(`maxLength must be a non-negative integer, got ${maxLength}`);
    }
    if (maxLength !== undefined && padding === false && truncation === undefined)
      truncation = "longest_first";
    let strategy: Strategy;
    if (padding === true || padding === "longest") strategy = "longest";
    else if (padding === "max_length") strategy = "max_length";
    else if (padding === false || padding === "do_not_pad") strategy = "do_not_pad";
    else
      throw new TypeError(`padding must be false, true, "longest" or "max_length", got ${String(padding)}`);
    let truncate: boolean;
    if (truncation === true || truncation === "longest_first" || truncation === "only_first") truncate = true;
    else if (truncation === undefined || truncation === false || truncation === "do_not_truncate")
      truncate = false;
    else throw new TypeError(`truncation must be a boolean, got ${String(truncation)}`);
    if (maxLength === undefined) {
      if (strategy === "max_length") {
        if (this.modelMaxLength > LARGE_INTEGER) strategy = "do_not_pad";
        else maxLength = this.modelMaxLength;
      }
      if (truncate) {
        if (this.modelMaxLength > LARGE_INTEGER) truncate = false;
        else maxLength = this.modelMaxLength;
      }
    }
    if (strategy !== "do_not_pad" && this.padTokenId === undefined) {
      throw new Error("CLIPTokenizer: asked to pad but the tokenizer has no pad token");
    }
    const mult = options.padToMultipleOf;
    if (mult !== undefined && (!Number.isInteger(mult) || mult <= 0)) {
      throw new RangeError(`padToMultipleOf must be a positive integer, got ${mult}`);
    }
    if (truncate && strategy !== "do_not_pad" && mult !== undefined && maxLength !== undefined) {
      if (maxLength % mult !== 0) {
        throw new RangeError(
          `truncation and padding: maxLength (${maxLength}) must be a multiple of ${mult}`,
        );
      }
    }
    return { strategy, truncate, maxLength };
  }

  /** `prepare_for_model` for one sequence: truncate from the right, then add bos/eos. */
  private prepare(
    ids: number[],
    truncate: boolean,
    maxLength: number | undefined,
    addSpecial: boolean,
  ): number[] {
    const total = ids.length + (addSpecial ? 2 : 0);
    if (truncate && maxLength && total > maxLength) {
      const remove = total - maxLength;
      // HF only truncates when the sequence is longer than what must go (else it logs an error and keeps all).
      if (ids.length > remove) ids = ids.slice(0, ids.length - remove);
    }
    return addSpecial ? [this.bosTokenId!, ...ids, this.eosTokenId!] : ids;
  }

  /** Tokens -> text: byte-decode, `</w>` -> space, strip. */
  convertTokensToString(tokens: readonly string[]): string {
    const text = tokens.join("");
    const bytes: number[] = [];
    for (const ch of text) {
      const b = BYTE_DECODER.get(ch);
      if (b === undefined) throw new Error(`CLIPTokenizer: ${JSON.stringify(ch)} is not a byte-level symbol`);
      bytes.push(b);
    }
    return pyStrip(this.textDecoder.decode(new Uint8Array(bytes)).replaceAll("</w>", " "));
  }

  decode(ids: number | bigint | ArrayLike<number | bigint>, options: DecodeOptions = {}): string {
    const list = typeof ids === "number" || typeof ids === "bigint" ? [ids] : ids;
    const skip = options.skipSpecialTokens ?? false;
    const tokens = this.convertIdsToTokens(list, skip);
    // Added tokens that are not special ("legacy") are decoded on their own, as HF does.
    const special = new Set(this.allSpecialTokens);
    const legacy = new Set([...this.addedTokensEncoder.keys()].filter((t) => !special.has(t)));
    for (const t of this.additionalSpecialTokens)
      if (this.convertTokenToId(t) >= this.vocabSize) legacy.add(t);
    const subTexts: string[] = [];
    let current: string[] = [];
    for (const token of tokens) {
      if (legacy.has(token)) {
        if (current.length > 0) {
          const s = this.convertTokensToString(current);
          if (s.length > 0) subTexts.push(s);
          current = [];
        }
        subTexts.push(token);
      } else {
        current.push(token);
      }
    }
    if (current.length > 0) subTexts.push(this.convertTokensToString(current));
    const text = subTexts.join((options.spacesBetweenSpecialTokens ?? true) ? " " : "");
    const cleanUp = options.cleanUpTokenizationSpaces ?? this.cleanUpTokenizationSpaces;
    return cleanUp ? cleanUpTokenization(text) : text;
  }

  batchDecode(sequences: ReadonlyArray<ArrayLike<number | bigint>>, options: DecodeOptions = {}): string[] {
    return Array.from(sequences, (ids) => this.decode(ids, options));
  }
}

/** `clean_up_tokenization`: drop the space before punctuation and English contractions. */
export function cleanUpTokenization(text: string): string {
  return text
    .replaceAll(" .", ".")
    .replaceAll(" ?", "?")
    .replaceAll(" !", "!")
    .replaceAll(" ,", ",")
    .replaceAll(" ' ", "'")
    .replaceAll(" n't", "n't")
    .replaceAll(" 'm", "'m")
    .replaceAll(" 's", "'s")
    .replaceAll(" 've", "'ve")
    .replaceAll(" 're", "'re");
}

function checkText(text: unknown, what: string): asserts text is string {
  if (typeof text !== "string") {
    throw new TypeError(
      `${what} must be a string (or, for call(), a list of strings), got ${describe(text)}`,
    );
  }
}

function checkBatch(texts: unknown): string[] {
  if (!Array.isArray(texts)) {
    throw new TypeError(`text must be a string or a list of strings, got ${describe(texts)}`);
  }
  texts.forEach((t, i) => {
    checkText(t, `text[${i}]`);
  });
  return texts as string[];
}

function describe(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "an array";
  return typeof v;
}

function toIds(ids: ArrayLike<number | bigint>): number[] {
  if (ids === null || typeof ids !== "object" || typeof ids.length !== "number") {
    throw new TypeError(`token ids must be a number or a list of numbers, got ${describe(ids)}`);
  }
  return Array.from(ids, (v) => {
    const n = typeof v === "bigint" ? Number(v) : v;
    if (typeof n !== "number" || !Number.isInteger(n)) {
      throw new TypeError(`token ids must be integers, got ${String(v)}`);
    }
    return n;
  });
}
