/**
 * Strict JSON (RFC 8259) for the safetensors header: keeps duplicate keys visible (DuplicateKeyError with the key's
 * depth) and numbers as their exact text (JsonNumber), so offsets above 2^53 and repeated tensor names are caught
 * where JSON.parse would silently round or overwrite.
 */

export class JsonNumber {
  constructor(readonly raw: string) {}
}
export type JsonValue = null | boolean | string | JsonNumber | JsonValue[] | JsonObject;
export class JsonObject {
  readonly entries = new Map<string, JsonValue>();
}
export class JsonSyntaxError extends Error {}
export class DuplicateKeyError extends Error {
  constructor(
    readonly key: string,
    readonly depth: number,
  ) {
    super(key);
  }
}

const MAX_JSON_DEPTH = 128; // serde_json's recursion limit
const NUMBER_RE = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;
const ESCAPES: Record<string, string> = {
  '"': '"',
  "\\": "\\",
  "/": "/",
  b: "\b",
  f: "\f",
  n: "\n",
  r: "\r",
  t: "\t",
};

export class JsonParser {
  private pos = 0;
  constructor(private readonly s: string) {}

  parseDocument(): JsonValue {
    const v = this.value(0);
    this.ws();
    if (this.pos !== this.s.length) this.fail("trailing characters after the JSON value");
    return v;
  }

  private fail(msg: string): never {
    throw new JsonSyntaxError(`${msg} at character ${this.pos}`);
  }

  private ws(): void {
    const s = this.s;
    while (this.pos < s.length) {
      const c = s.charCodeAt(this.pos);
      if (c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09) break;
      this.pos++;
    }
  }

  private value(depth: number): JsonValue {
    this.ws();
    const c = this.s[this.pos];
    if (c === undefined) this.fail("unexpected end of input");
    if (c === "{" || c === "[") {
      if (depth >= MAX_JSON_DEPTH) this.fail("nesting too deep");
      return c === "{" ? this.object(depth + 1) : this.array(depth + 1);
    }
    if (c === '"') return this.string();
    for (const [word, v] of [
      ["true", true],
      ["false", false],
      ["null", null],
    ] as const) {
      if (this.s.startsWith(word, this.pos)) {
        this.pos += word.length;
        return v;
      }
    }
    NUMBER_RE.lastIndex = this.pos;
    const m = NUMBER_RE.exec(this.s);
    if (!m) this.fail(`unexpected character ${JSON.stringify(c)}`);
    this.pos += m[0].length;
    return new JsonNumber(m[0]);
  }

  private object(depth: number): JsonObject {
    const obj = new JsonObject();
    this.pos++; // {
    this.ws();
    if (this.s[this.pos] === "}") {
      this.pos++;
      return obj;
    }
    for (;;) {
      this.ws();
      if (this.s[this.pos] !== '"') this.fail("expected a string key");
      const key = this.string();
      this.ws();
      if (this.s[this.pos] !== ":") this.fail("expected ':'");
      this.pos++;
      const v = this.value(depth);
      if (obj.entries.has(key)) throw new DuplicateKeyError(key, depth);
      obj.entries.set(key, v);
      this.ws();
      const c = this.s[this.pos++];
      if (c === "}") return obj;
      if (c !== ",") this.fail("expected ',' or '}'");
    }
  }

  private array(depth: number): JsonValue[] {
    const arr: JsonValue[] = [];
    this.pos++; // [
    this.ws();
    if (this.s[this.pos] === "]") {
      this.pos++;
      return arr;
    }
    for (;;) {
      arr.push(this.value(depth));
      this.ws();
      const c = this.s[this.pos++];
      if (c === "]") return arr;
      if (c !== ",") this.fail("expected ',' or ']'");
    }
  }

  private hex4(at: number): number {
    const hex = this.s.slice(at, at + 4);
    if (!/^[0-9a-fA-F]{4}$/.test(hex)) this.fail("invalid \\u escape");
    return Number.parseInt(hex, 16);
  }

  private string(): string {
    const s = this.s;
    this.pos++; // opening quote
    let out = "";
    let run = this.pos;
    for (;;) {
      if (this.pos >= s.length) this.fail("unterminated string");
      const c = s.charCodeAt(this.pos);
      if (c === 0x22) {
        out += s.slice(run, this.pos++);
        return out;
      }
      if (c < 0x20) this.fail("control character in string");
      if (c !== 0x5c) {
        this.pos++;
        continue;
      }
      out += s.slice(run, this.pos);
      const e = s[this.pos + 1];
      if (e === "u") {
        const u = this.hex4(this.pos + 2);
        this.pos += 6;
        if (u >= 0xdc00 && u <= 0xdfff) this.fail("lone trailing surrogate in \\u escape");
        if (u >= 0xd800 && u <= 0xdbff) {
          const lo = s.startsWith("\\u", this.pos) ? this.hex4(this.pos + 2) : -1;
          if (lo < 0xdc00 || lo > 0xdfff) this.fail("lone leading surrogate in \\u escape");
          this.pos += 6;
          out += String.fromCharCode(u, lo);
        } else out += String.fromCharCode(u);
      } else {
        const r = e === undefined ? undefined : ESCAPES[e];
        if (r === undefined) this.fail("invalid escape");
        out += r;
        this.pos += 2;
      }
      run = this.pos;
    }
  }
}

/** A short description of a value for error messages. */
export function describe(v: JsonValue): string {
  if (v instanceof JsonNumber) return v.raw;
  if (v instanceof JsonObject) return "an object";
  if (Array.isArray(v)) return "an array";
  return JSON.stringify(v);
}
