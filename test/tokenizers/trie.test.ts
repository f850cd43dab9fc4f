import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { Trie } from "../../src/tokenizers/trie.js";

/** Expected splits from transformers 4.35 `Trie.split`. */
describe("Trie.split (added-token splitting)", () => {
  const cases: Array<[string[], string, string[]]> = [
    [
      ["[CLS]", "extra_id_1", "extra_id_100"],
      "[CLS] This is a extra_id_100",
      ["[CLS]", " This is a ", "extra_id_100"],
    ],
    [["blowing", "lower"], "blower", ["b", "lower"]],
    [["AB", "B", "C"], "ABC", ["AB", "C"]],
    [["ABC", "B", "CD"], "DABCD", ["D", "ABC", "D"]],
    [["A", "AB", "ABCD"], "XABCX", ["X", "AB", "CX"]],
    [
      ["TOKEN]", "[SPECIAL_TOKEN]"],
      "This is something [SPECIAL_TOKEN]",
      ["This is something ", "[SPECIAL_TOKEN]"],
    ],
    [["AB", "BCDE", "C"], "ABCD", ["AB", "C", "D"]],
    [["<|endoftext|>", "!"], "a!!<|endoftext|>b", ["a", "!", "!", "<|endoftext|>", "b"]],
    [["!"], "", []],
    [[], "no tokens", ["no tokens"]],
    [["é"], "caféé🐱é", ["caf", "é", "é", "🐱", "é"]],
  ];
  for (const [words, text, expected] of cases) {
    test(`${JSON.stringify(words)} ${JSON.stringify(text)}`, () => {
      assert.deepEqual(new Trie(words).split(text), expected);
    });
  }

  test("add is idempotent and ignores the empty string", () => {
    const t = new Trie(["ab", "ab", ""]);
    assert.equal(t.size, 1);
    assert.ok(t.has("ab"));
    assert.ok(!t.has(""));
  });
});
