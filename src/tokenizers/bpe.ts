/**
 * Byte-level BPE as in transformers 4.35 `CLIPTokenizer`: GPT-2's reversible byte <-> unicode table, the CLIP
 * pre-tokenisation regex and `bpe()` (the word's last symbol carries `</w>`; the lowest-ranked adjacent pair is
 * merged everywhere, left to right, until no ranked pair is left), with a cache.
 */

/** Python `regex`'s `\s` (Unicode White_Space); JS `\s` differs on U+0085 and U+FEFF. */
const REGEX_WHITESPACE =
  "\\t\\n\\v\\f\\r \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000";

/**
 * CLIP's pattern ``<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+``
 * compiled by Python `regex` with IGNORECASE. JS's `i` flag folds case differently, so the case-insensitive parts
 * are spelled out: ASCII letters in both cases, and U+017F (long s) also matches `s`. Under IGNORECASE, `regex`
 * lets U+0345 (combining ypogegrammeni, case-equivalent to iota) match none of the alternatives, so it is
 * excluded from the last class. Checked against `regex` on every assigned code point.
 */
export const CLIP_PATTERN = new RegExp(
  [
    "<\\|[sSſ][tT][aA][rR][tT][oO][fF][tT][eE][xX][tT]\\|>",
    "<\\|[eE][nN][dD][oO][fF][tT][eE][xX][tT]\\|>",
    "'[sSſ]",
    "'[tT]",
    "'[rR][eE]",
    "'[vV][eE]",
    "'[mM]",
    "'[lL][lL]",
    "'[dD]",
    "\\p{L}+",
    "\\p{N}",
    `[^${REGEX_WHITESPACE}\\p{L}\\p{N}\\u0345]+`,
  ].join("|"),
  "gu",
);

/** GPT-2 `bytes_to_unicode()`: byte value -> printable character (index = byte). */
export function bytesToUnicode(): string[] {
  const table: string[] = new Array(256);
  const printable = (b: number) =>
    (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  let n = 0;
  for (let b = 0; b < 256; b++) {
    table[b] = String.fromCharCode(printable(b) ? b : 256 + n++);
  }
  return table;
}

export const BYTE_ENCODER: readonly string[] = bytesToUnicode();
/** Inverse of BYTE_ENCODER: character -> byte. */
export const BYTE_DECODER: ReadonlyMap<string, number> = new Map(BYTE_ENCODER.map((c, b) => [c, b]));

const utf8 = new TextEncoder();

/** A pre-token's UTF-8 bytes as byte-level symbols (`"".join(byte_encoder[b] for b in token.encode("utf-8"))`). */
export function byteEncode(token: string): string {
  let out = "";
  for (const b of utf8.encode(token)) out += BYTE_ENCODER[b];
  return out;
}

const END_OF_WORD = "</w>";
/** The cache is unbounded in the reference; clearing it when full changes no result. */
const CACHE_LIMIT = 100_000;

export class BytePairEncoder {
  /** `"first second"` -> rank (symbols never contain spaces: merges.txt lines are split on whitespace). */
  private readonly ranks: Map<string, number>;
  private readonly cache = new Map<string, string[]>();
  private readonly fixed: ReadonlyMap<string, string[]>;

  /**
   * @param merges `"first second"` in rank order; a repeated pair keeps its last rank, as
   *   `dict(zip(merges, range(...)))` does.
   * @param unsplit tokens returned whole (the reference pre-fills its cache with `<|startoftext|>` and
   *   `<|endoftext|>`, so the regex's special-token alternatives come out without `</w>`).
   */
  constructor(merges: readonly string[], unsplit: readonly string[] = []) {
    this.ranks = new Map();
    for (let rank = 0; rank < merges.length; rank++) this.ranks.set(merges[rank]!, rank);
    this.fixed = new Map(unsplit.map((t) => [t, [t]]));
  }

  get mergeCount(): number {
    return this.ranks.size;
  }

  /** BPE symbols of one byte-encoded pre-token. */
  bpe(token: string): string[] {
    const fixed = this.fixed.get(token) ?? this.cache.get(token);
    if (fixed) return fixed;
    const chars = Array.from(token);
    if (chars.length === 0) return [];
    if (chars.length === 1) return [token + END_OF_WORD];
    let word = chars;
    word[word.length - 1] += END_OF_WORD;
    while (word.length > 1) {
      let best = Number.POSITIVE_INFINITY;
      let first = "";
      let second = "";
      for (let i = 0; i + 1 < word.length; i++) {
        const rank = this.ranks.get(`${word[i]} ${word[i + 1]}`);
        if (rank !== undefined && rank < best) {
          best = rank;
          first = word[i]!;
          second = word[i + 1]!;
        }
      }
      if (best === Number.POSITIVE_INFINITY) break;
      const merged: string[] = [];
      for (let i = 0; i < word.length; i++) {
        if (word[i] === first && i + 1 < word.length && word[i + 1] === second) {
          merged.push(first + second);
          i++;
        } else {
          merged.push(word[i]!);
        }
      }
      word = merged;
    }
    if (this.cache.size >= CACHE_LIMIT) this.cache.clear();
    this.cache.set(token, word);
    return word;
  }
}
