import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { CLIPTokenizer, TokenizerFileError } from "../../src/tokenizers/clip_tokenizer.js";
import { FIXTURES, type FixtureCase, loadGroup } from "../helpers/fixtures.js";

const TOKENIZER_DIR = join(FIXTURES, "tokenizer");
const g = loadGroup("tokenizer");
const tok = CLIPTokenizer.fromPretrained(TOKENIZER_DIR);

/** An I64 fixture tensor as rows of numbers. */
function rowsOf(c: FixtureCase, role: string): number[][] {
  const key = c.tensors[role];
  assert.ok(key, `case ${c.name} has no role ${role}`);
  const { shape, dtype } = g.tensors.info(key);
  assert.equal(dtype, "I64");
  assert.equal(shape.length, 2);
  const flat = Array.from(g.tensors.getTyped(key) as BigInt64Array, Number);
  const [rows, cols] = shape as [number, number];
  return Array.from({ length: rows }, (_, r) => flat.slice(r * cols, (r + 1) * cols));
}

function assertExactCase(c: FixtureCase): void {
  assert.deepEqual(c.tolerance, { atol: 0, rtol: 0 });
}

const handled = new Set<string>();

describe("CLIPTokenizer golden cases (tokenizer/cases.json)", () => {
  for (const c of g.cases.filter((c) => c.name.startsWith("encode_"))) {
    handled.add(c.name);
    test(c.name, () => {
      assertExactCase(c);
      const p = c.params;
      assert.equal(p.padding, "max_length");
      const fixed = tok.call(p.text, {
        padding: "max_length",
        maxLength: p.max_length,
        truncation: p.truncation,
      });
      assert.deepEqual(fixed.inputIds, rowsOf(c, "input_ids"));
      assert.deepEqual(fixed.attentionMask, rowsOf(c, "attention_mask"));
      const longest = tok.call(p.text, { padding: "longest" });
      assert.deepEqual(longest.inputIds, rowsOf(c, "longest_input_ids"));
      assert.deepEqual(longest.attentionMask, rowsOf(c, "longest_attention_mask"));

      const ids = tok.encode(p.text);
      assert.deepEqual(ids, longest.inputIds[0]);
      assert.equal(ids.length, p.untruncated_length);
      assert.equal(ids.length > p.max_length, p.truncated);
      assert.deepEqual(tok.convertIdsToTokens(ids), p.tokens);
      assert.deepEqual(tok.tokenize(p.text), p.tokens.slice(1, -1));
      // Cached BPE gives the same answer the second time.
      assert.deepEqual(tok.encode(p.text), ids);
    });
  }

  for (const name of ["batch_max_length", "batch_longest"]) {
    handled.add(name);
    test(name, () => {
      const c = g.get(name);
      assertExactCase(c);
      const p = c.params;
      const out = tok.call(p.texts, {
        padding: p.padding,
        ...(p.max_length !== undefined ? { maxLength: p.max_length } : {}),
        ...(p.truncation !== undefined ? { truncation: p.truncation } : {}),
      });
      assert.deepEqual(out.inputIds, rowsOf(c, "input_ids"));
      assert.deepEqual(out.attentionMask, rowsOf(c, "attention_mask"));
    });
  }

  for (const c of g.cases.filter((c) => c.name.startsWith("batch_decode_"))) {
    handled.add(c.name);
    test(c.name, () => {
      assertExactCase(c);
      const p = c.params;
      const opts = {
        ...(p.skip_special_tokens !== undefined ? { skipSpecialTokens: p.skip_special_tokens } : {}),
        ...(p.clean_up_tokenization_spaces !== undefined
          ? { cleanUpTokenizationSpaces: p.clean_up_tokenization_spaces }
          : {}),
      };
      const rows = rowsOf(c, "ids");
      assert.deepEqual(tok.batchDecode(rows, opts), p.expected);
      // BigInt64Array rows decode the same.
      const big = rows.map((r) => BigInt64Array.from(r, BigInt));
      assert.deepEqual(tok.batchDecode(big, opts), p.expected);
    });
  }

  test("every case in cases.json is covered", () => {
    assert.deepEqual(
      g.cases.map((c) => c.name).filter((n) => !handled.has(n)),
      [],
    );
    assert.equal(g.cases.filter((c) => c.name.startsWith("encode_")).length, 33);
  });
});

describe("CLIPTokenizer properties", () => {
  test("special tokens, ids and sizes (special_tokens_map.json overrides the pad token)", () => {
    assert.equal(tok.bosTokenId, 49406);
    assert.equal(tok.eosTokenId, 49407);
    assert.equal(tok.unkTokenId, 49407);
    assert.equal(tok.padToken, "!");
    assert.equal(tok.padTokenId, 0);
    assert.equal(tok.vocabSize, 49408);
    assert.equal(tok.modelMaxLength, 77);
    assert.deepEqual(tok.allSpecialTokens, ["<|startoftext|>", "<|endoftext|>", "!"]);
    assert.deepEqual(tok.allSpecialIds, [49406, 49407, 0]);
  });

  test("the model tokenizer folder is the same tokenizer", () => {
    const other = CLIPTokenizer.fromPretrained(join(FIXTURES, "models/tiny-upscaler/tokenizer"));
    const text = "a white cat, Hello World! <|endoftext|>";
    assert.deepEqual(other.encode(text), tok.encode(text));
    assert.equal(other.padTokenId, 0);
  });

  test("loads well under 200 ms (best of 3, CPU time so that a busy machine does not count)", () => {
    let best = Number.POSITIVE_INFINITY;
    for (let i = 0; i < 3; i++) {
      const c0 = process.cpuUsage();
      CLIPTokenizer.fromPretrained(TOKENIZER_DIR);
      const c = process.cpuUsage(c0);
      best = Math.min(best, (c.user + c.system) / 1000);
    }
    assert.ok(best < 200, `load took ${best.toFixed(1)} ms of CPU time`);
  });
});

/** [bos] + ids + [eos] for prompts outside the golden set, from a transformers 4.35 slow-tokenizer model. */
describe("CLIPTokenizer semantics beyond the golden set", () => {
  const cases: Array<[string, number[]]> = [
    // "!" is the pad token, an added token: never BPE "!</w>" (256) or "!!</w>".
    ["Hello, World!", [3306, 267, 1002, 0]],
    ["! !! !!!", [0, 0, 0, 0, 0, 0]],
    // A literal special token is split out by the Trie.
    ["before <|endoftext|> after", [1348, 49407, 953]],
    // Upper-case special token: not an added-token match, but lower-cased and matched by the CLIP regex.
    ["<|ENDOFTEXT|> it\u017fs", [49407, 529, 129, 123, 338]],
    // CJK ideographs become words of their own; kana do not.
    ["一只白色的猫", [19759, 478, 34517, 359, 163, 247, 377, 164, 231, 366, 163, 248, 482, 163, 234, 360]],
    ["日本語のテキスト", [37156, 19277, 361, 34002, 508, 21575, 2429, 228, 47121, 32421, 486]],
    // Category C removed (ZWJ, ZWSP, NUL, vertical tab), U+2028/2029 split words.
    ["family 👨\u200d👩\u200d👧 emoji", [1315, 18966, 18800, 964, 356, 16327]],
    ["zero\u200bwidth space", [14867, 23571, 2138]],
    ["a photo of a cat\u0000with null", [320, 1125, 539, 320, 1481, 593, 47376]],
    ["A\u2028B\u2029C\u000bD", [320, 321, 4480]],
    // NFC: a decomposed é is composed.
    ["cafe\u0301 noir", [15304, 12953]],
    ["salt &amp; pepper", [6611, 261, 6259, 282, 8253]],
    // Unassigned in Unicode 14.0 (the reference's Python): U+1FAE8 (Unicode 15 emoji) is dropped.
    ["shaking \u{1FAE8} face", [19101, 1710]],
    // Final sigma in lower-casing.
    ["ΣΑΣ ΟΔΟΣ", [139, 225, 138, 109, 139, 480, 138, 123, 138, 112, 138, 123, 139, 480]],
  ];
  for (const [text, ids] of cases) {
    test(JSON.stringify(text), () => {
      assert.deepEqual(tok.encode(text), [49406, ...ids, 49407]);
    });
  }
});

describe("CLIPTokenizer padding and truncation options", () => {
  const long = "a ".repeat(100).trim(); // 100 tokens

  test("maxLength alone switches truncation on; padding true is longest", () => {
    assert.equal(tok.encode(long, { maxLength: 10 }).length, 10);
    assert.equal(tok.encode(long).length, 102);
    assert.equal(tok.encode(long, { maxLength: 10, truncation: false }).length, 102);
    const out = tok.call(["a", "a b c"], { padding: true });
    assert.deepEqual(out.inputIds, [
      [49406, 320, 49407, 0, 0],
      [49406, 320, 321, 322, 49407],
    ]);
    assert.deepEqual(out.attentionMask, [
      [1, 1, 1, 0, 0],
      [1, 1, 1, 1, 1],
    ]);
  });

  test("truncation without maxLength uses modelMaxLength; the last id stays eos", () => {
    const ids = tok.encode(long, { truncation: true });
    assert.equal(ids.length, 77);
    assert.equal(ids[76], 49407);
    assert.equal(tok.call(long, { padding: "max_length" }).inputIds[0]!.length, 102); // padding never truncates
  });

  test("too short a maxLength keeps everything (HF logs an error instead of truncating)", () => {
    assert.deepEqual(tok.encode("a", { maxLength: 2, truncation: true }), [49406, 320, 49407]);
    assert.deepEqual(tok.encode("a b", { maxLength: 3, truncation: true }), [49406, 320, 49407]);
  });

  test("padToMultipleOf, addSpecialTokens", () => {
    assert.deepEqual(
      tok.call("a b", { padding: "longest", padToMultipleOf: 8 }).inputIds[0],
      [49406, 320, 321, 49407, 0, 0, 0, 0],
    );
    assert.deepEqual(tok.encode("a b", { addSpecialTokens: false }), [320, 321]);
    assert.throws(() =>
      tok.call("a", { padding: "max_length", maxLength: 10, truncation: true, padToMultipleOf: 8 }),
    );
  });

  test("an empty batch", () => {
    assert.deepEqual(tok.call([], { padding: "longest" }), { inputIds: [], attentionMask: [] });
  });
});

describe("CLIPTokenizer decode", () => {
  const byteId = (symbol: string) => tok.convertTokenToId(symbol);

  test("clean-up of tokenization spaces, skip special tokens", () => {
    const ids = tok.encode("don't stop , we're here .");
    assert.equal(tok.decode(ids), "<|startoftext|>don 't stop, we're here. <|endoftext|>");
    assert.equal(tok.decode(ids, { skipSpecialTokens: true }), "don 't stop, we're here.");
    const raw = tok.decode(ids, { skipSpecialTokens: true, cleanUpTokenizationSpaces: false });
    assert.equal(raw, "don 't stop , we 're here .");
    // The pad token "!" has no </w>, so nothing separates it from what follows; skipping drops it (id 0).
    const bang = tok.encode("here !");
    assert.deepEqual(bang, [49406, 763, 0, 49407]);
    assert.equal(tok.decode(bang), "<|startoftext|>here!<|endoftext|>");
    assert.equal(tok.decode(bang, { skipSpecialTokens: true }), "here");
    assert.equal(tok.decode(49407), "<|endoftext|>");
    assert.equal(tok.decode([]), "");
  });

  test("invalid UTF-8 becomes U+FFFD; a BOM is kept", () => {
    assert.equal(tok.decode([byteId("ð")]), "\uFFFD");
    assert.equal(tok.decode([byteId("a"), byteId("ï"), byteId("»"), byteId("¿")]), "a\uFEFF");
  });

  test("bad ids", () => {
    assert.throws(() => tok.decode([49408]), RangeError);
    assert.throws(() => tok.decode([-1]), RangeError);
    assert.throws(() => tok.decode([1.5]), TypeError);
    assert.throws(() => tok.decode("abc" as never), TypeError);
  });
});

describe("CLIPTokenizer bad inputs", () => {
  test("non-string text", () => {
    assert.throws(() => tok.tokenize(42 as never), TypeError);
    assert.throws(() => tok.encode(undefined as never), TypeError);
    assert.throws(() => tok.call(null as never), TypeError);
    assert.throws(() => tok.call(["ok", 7] as never), /text\[1\] must be a string/);
    assert.throws(() => tok.call({ length: 1 } as never), TypeError);
  });

  test("bad options", () => {
    assert.throws(() => tok.call("a", { padding: "sideways" as never }), TypeError);
    assert.throws(() => tok.call("a", { maxLength: -1 }), RangeError);
    assert.throws(() => tok.call("a", { padding: "longest", padToMultipleOf: 0 }), RangeError);
  });
});

describe("CLIPTokenizer.fromPretrained errors", () => {
  const root = mkdtempSync(join(tmpdir(), "sdx4-tok-"));
  after(() => rmSync(root, { recursive: true, force: true }));
  const vocab = readFileSync(join(TOKENIZER_DIR, "vocab.json"), "utf8");
  const merges = readFileSync(join(TOKENIZER_DIR, "merges.txt"), "utf8");
  let n = 0;
  /** A tokenizer folder with the given files (null = absent). */
  function folder(files: Record<string, string | null>): string {
    const dir = mkdtempSync(join(root, `t${n++}-`));
    const all: Record<string, string | null> = { "vocab.json": vocab, "merges.txt": merges, ...files };
    for (const [name, text] of Object.entries(all)) if (text !== null) writeFileSync(join(dir, name), text);
    return dir;
  }
  function fails(files: Record<string, string | null>, file: string, pattern: RegExp): void {
    assert.throws(
      () => CLIPTokenizer.fromPretrained(folder(files)),
      (e: unknown) => {
        assert.ok(e instanceof TokenizerFileError, String(e));
        assert.equal(e.file, file);
        assert.match(e.message, pattern);
        return true;
      },
    );
  }

  test("missing folder", () => {
    assert.throws(() => CLIPTokenizer.fromPretrained(join(root, "nope")), TokenizerFileError);
  });
  test("missing vocab.json / merges.txt", () => {
    fails({ "vocab.json": null }, "vocab.json", /^vocab\.json: missing/);
    fails({ "merges.txt": null }, "merges.txt", /^merges\.txt: missing/);
  });
  test("malformed vocab.json", () => {
    fails({ "vocab.json": '{"a": 1,' }, "vocab.json", /not valid JSON/);
    fails({ "vocab.json": "[1, 2]" }, "vocab.json", /JSON object/);
    fails({ "vocab.json": '{"a": "1"}' }, "vocab.json", /"a" has id "1"/);
    fails({ "vocab.json": '{"a": -3}' }, "vocab.json", /non-negative integer/);
    fails({ "vocab.json": '{"a": 1.5}' }, "vocab.json", /non-negative integer/);
    fails({ "vocab.json": "{}" }, "vocab.json", /empty/);
  });
  test("malformed merges.txt", () => {
    fails({ "merges.txt": "a b\nc d\n" }, "merges.txt", /line 1 should be the '#version/);
    fails({ "merges.txt": "#version: 0.2\n" }, "merges.txt", /no merges/);
    fails({ "merges.txt": "#version: 0.2\na b\nc d e\n" }, "merges.txt", /line 3 should hold two symbols/);
    fails({ "merges.txt": "#version: 0.2\na b\nc\n" }, "merges.txt", /line 3/);
  });
  test("malformed config files", () => {
    fails({ "special_tokens_map.json": "{oops" }, "special_tokens_map.json", /not valid JSON/);
    fails({ "special_tokens_map.json": '{"pad_token": 5}' }, "special_tokens_map.json", /pad_token/);
    fails({ "tokenizer_config.json": '"x"' }, "tokenizer_config.json", /JSON object/);
    fails(
      { "tokenizer_config.json": '{"model_max_length": "77"}' },
      "tokenizer_config.json",
      /model_max_length/,
    );
  });
  test("config files are optional: CLIP defaults (pad = <|endoftext|>, no length limit)", () => {
    const t = CLIPTokenizer.fromPretrained(folder({}));
    assert.equal(t.padTokenId, 49407);
    assert.equal(t.modelMaxLength, 1e30);
    assert.equal(t.encode("a ".repeat(100), { truncation: true }).length, 102);
    assert.deepEqual(t.encode("Hello!"), [49406, 3306, 256, 49407]);
  });
  test("a re-formatted vocab.json (indented, escaped) reads the same", () => {
    const obj = JSON.parse(vocab) as Record<string, number>;
    const ascii = JSON.stringify(obj, null, 2).replace(
      /[^\0-\x7f]/g,
      (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
    );
    const map = readFileSync(join(TOKENIZER_DIR, "special_tokens_map.json"), "utf8");
    const t = CLIPTokenizer.fromPretrained(folder({ "vocab.json": ascii, "special_tokens_map.json": map }));
    const text = 'naïve "quotes" \\ back\\slash 🐱 <|endoftext|> Hello!';
    assert.deepEqual(t.encode(text), tok.encode(text));
    assert.equal(t.decode(t.encode(text)), tok.decode(tok.encode(text)));
  });
  test("tokenizer_config.json alone sets the pad token; the map overrides it", () => {
    const config = readFileSync(join(TOKENIZER_DIR, "tokenizer_config.json"), "utf8");
    assert.equal(CLIPTokenizer.fromPretrained(folder({ "tokenizer_config.json": config })).padTokenId, 49407);
    const map = readFileSync(join(TOKENIZER_DIR, "special_tokens_map.json"), "utf8");
    const both = CLIPTokenizer.fromPretrained(
      folder({ "tokenizer_config.json": config, "special_tokens_map.json": map }),
    );
    assert.equal(both.padTokenId, 0);
  });
});
