/**
 * The added-token splitter of transformers 4.35 (`tokenization_utils.Trie`): one pass over the text's code points,
 * tracking every partial match, cutting at the first completed match after looking ahead for a longer one that
 * starts at or before it. Case-sensitive. Ported step by step so that overlapping tokens resolve exactly as in
 * the reference.
 */

interface TrieNode {
  children: Map<string, TrieNode>;
  /** A word ends here (the reference's `""` key). */
  end: boolean;
}

const newNode = (): TrieNode => ({ children: new Map(), end: false });

export class Trie {
  private readonly root: TrieNode = newNode();
  private readonly words = new Set<string>();

  constructor(words: Iterable<string> = []) {
    for (const w of words) this.add(w);
  }

  get size(): number {
    return this.words.size;
  }

  has(word: string): boolean {
    return this.words.has(word);
  }

  /** Adds a word (idempotent; the empty string is ignored). */
  add(word: string): void {
    if (!word) return;
    this.words.add(word);
    let node = this.root;
    for (const ch of word) {
      let next = node.children.get(ch);
      if (!next) {
        next = newNode();
        node.children.set(ch, next);
      }
      node = next;
    }
    node.end = true;
  }

  /** Splits `text` along the boundaries of the words found; the matches are pieces of their own. */
  split(text: string): string[] {
    const chars = Array.from(text);
    const n = chars.length;
    // Partial matches: start index -> trie position, in insertion (= start) order.
    let states = new Map<number, TrieNode>();
    const offsets = [0];
    let skip = 0;
    for (let current = 0; current < n; current++) {
      const currentChar = chars[current]!;
      if (skip && current < skip) continue;
      const toRemove: number[] = [];
      let reset = false;
      for (const [stateStart, pointer] of states) {
        if (pointer.end) {
          // A match is complete: look for the longest match starting at or before it.
          let start = stateStart;
          let end = current;
          for (const [lookstart, lookPointer0] of states) {
            let lookPointer = lookPointer0;
            let lookahead: number;
            if (lookstart > start) break;
            if (lookstart < start) {
              // Already advanced past `current` in this pass.
              lookahead = current + 1;
              end = current + 1;
            } else {
              lookahead = current;
              end = current;
            }
            let nextChar = lookahead < n ? chars[lookahead] : undefined;
            if (lookPointer.end) {
              start = lookstart;
              end = lookahead;
              skip = lookahead;
            }
            while (nextChar !== undefined && lookPointer.children.has(nextChar)) {
              lookPointer = lookPointer.children.get(nextChar)!;
              lookahead++;
              if (lookPointer.end) {
                start = lookstart;
                end = lookahead;
                skip = lookahead;
              }
              if (lookahead === n) break;
              nextChar = chars[lookahead];
            }
          }
          offsets.push(start, end);
          reset = true;
          break;
        }
        const next = pointer.children.get(currentChar);
        if (next) states.set(stateStart, next);
        else toRemove.push(stateStart);
      }
      if (reset) states = new Map();
      else for (const s of toRemove) states.delete(s);
      const first = this.root.children.get(currentChar);
      if (current >= skip && first) states.set(current, first);
    }
    // A match running to the end of the text.
    for (const [start, pointer] of states) {
      if (pointer.end) {
        offsets.push(start, n);
        break;
      }
    }
    return cutText(chars, offsets);
  }
}

function cutText(chars: string[], offsets: number[]): string[] {
  offsets.push(chars.length);
  const pieces: string[] = [];
  let start = 0;
  for (const end of offsets) {
    // start > end would be a bug in the algorithm (the reference prints a warning and skips); start == end is
    // a zero-width cut (a match at 0, or two matches in a row).
    if (start >= end) continue;
    pieces.push(chars.slice(start, end).join(""));
    start = end;
  }
  return pieces;
}
