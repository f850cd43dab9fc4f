/**
 * The text clean-up CLIP's slow tokenizer runs when ftfy is not installed: transformers 4.35
 * `BasicTokenizer(do_lower_case=True, strip_accents=False, do_split_on_punc=False)` (a copy of BERT's), followed by
 * `" ".join(...)` of its words. Also the Python `str.strip()` / `str.split()` whitespace rules it relies on.
 */
import { dropUnassignedInUnicode14 } from "./unicode14.js";

/** Characters Python's `str.isspace()` accepts: what `str.strip()` and `str.split()` (no argument) use. */
const PY_WHITESPACE =
  "\\t\\n\\v\\f\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000";
const PY_SPLIT = new RegExp(`[${PY_WHITESPACE}]+`, "u");
const PY_LEADING = new RegExp(`^[${PY_WHITESPACE}]+`, "u");
const PY_TRAILING = new RegExp(`[${PY_WHITESPACE}]+$`, "u");

/** Python `s.split()`: split on runs of whitespace, no empty strings. */
export function pySplit(s: string): string[] {
  return s.split(PY_SPLIT).filter((w) => w.length > 0);
}

/** Python `s.strip()`. */
export function pyStrip(s: string): string {
  return pyRstrip(pyLstrip(s));
}

/** Python `s.lstrip()`. */
export function pyLstrip(s: string): string {
  return s.replace(PY_LEADING, "");
}

/** Python `s.rstrip()`. */
export function pyRstrip(s: string): string {
  return s.replace(PY_TRAILING, "");
}

/**
 * `_clean_text`, part 1: drop U+0000, U+FFFD and every character of a `C*` category (Cc, Cf, Cs, Co, Cn) except
 * tab, newline and carriage return (BERT's `_is_control`). Cn is judged by Unicode 14.0 (see unicode14.ts).
 */
const DROPPED = /[\0\uFFFD]|(?![\t\n\r])\p{C}/gu;
/** `_clean_text`, part 2: tab, newline, carriage return and category Zs become a plain space (`_is_whitespace`). */
const TO_SPACE = /[\t\n\r\p{Zs}]/gu;
/** BERT's `_is_chinese_char` ranges (CJK Unified Ideographs, extensions A-E, compatibility ideographs). */
const CJK =
  /[\u4E00-\u9FFF\u3400-\u4DBF\u{20000}-\u{2A6DF}\u{2A700}-\u{2B73F}\u{2B740}-\u{2B81F}\u{2B820}-\u{2CEAF}\uF900-\uFAFF\u{2F800}-\u{2FA1F}]/gu;

/** `BasicTokenizer._clean_text`. */
export function cleanText(text: string): string {
  return dropUnassignedInUnicode14(text.replace(DROPPED, "")).replace(TO_SPACE, " ");
}

/** `BasicTokenizer._tokenize_chinese_chars`: a space on either side of every CJK ideograph. */
export function spaceCjkChars(text: string): string {
  return text.replace(CJK, " $& ");
}

/**
 * `BasicTokenizer.tokenize` with CLIP's settings: clean, space CJK ideographs, NFC-normalise, split on
 * whitespace and lower-case each word (no accent stripping, no punctuation split).
 */
export function basicTokenize(text: string): string[] {
  const normalized = spaceCjkChars(cleanText(text)).normalize("NFC");
  // The second whitespace_tokenize(" ".join(...)) of the reference cannot split further: lower() never
  // produces whitespace, so one pass is enough.
  return pySplit(normalized).map((w) => w.toLowerCase());
}

/** What CLIPTokenizer._tokenize feeds to its regex when ftfy is absent: `" ".join(self.nlp.tokenize(text))`. */
export function clipNormalize(text: string): string {
  return basicTokenize(text).join(" ");
}
