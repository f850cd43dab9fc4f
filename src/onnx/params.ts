/**
 * Parameter declaration. Modules declare their parameters through a Scope whose path reproduces the diffusers /
 * transformers module path, so each parameter's key is the state-dict key (`down_blocks.0.resnets.1.conv1.weight`)
 * and weights bind by name with no rename table (like candle's VarBuilder and onnxscript's nn.Module).
 */
export interface Param {
  /** The state-dict key. */
  readonly key: string;
  readonly shape: readonly number[];
}

/** Collects every parameter a model declares, for strict binding. */
export class ParamStore {
  readonly params = new Map<string, Param>();

  /** Root scope of this store. */
  root(): Scope {
    return new Scope(this, "");
  }
}

export class Scope {
  constructor(
    readonly store: ParamStore,
    readonly prefix: string,
  ) {}

  /** A child scope: `scope.pp("down_blocks").pp(0)` → "down_blocks.0". */
  pp(name: string | number): Scope {
    return new Scope(this.store, this.prefix ? `${this.prefix}.${name}` : String(name));
  }

  /** Declares a parameter `<prefix>.<name>` with a shape. */
  param(name: string, shape: readonly number[]): Param {
    const key = this.prefix ? `${this.prefix}.${name}` : name;
    if (this.store.params.has(key)) throw new Error(`parameter "${key}" declared twice`);
    for (const d of shape) {
      if (!Number.isInteger(d) || d < 0)
        throw new Error(`parameter "${key}" has an invalid shape [${shape}]`);
    }
    const p: Param = { key, shape: [...shape] };
    this.store.params.set(key, p);
    return p;
  }
}
