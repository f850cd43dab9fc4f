/**
 * A small ONNX graph builder: values are named edges, ops append nodes, initializers are either inline constants
 * or external data pointing into safetensors files (see weights.ts). Serialised with onnx-proto (protobufjs).
 * In the spirit of onnxscript's nn.Module builder: model code reads like `op.MatMul(x, w)`.
 */
import {
  ELEM_TYPE_TO_ONNX,
  type ElemType,
  type IAttributeProto,
  type INodeProto,
  type ITensorProto,
  type IValueInfoProto,
  type ModelProto,
  onnx,
} from "./proto.js";

/** A dimension: a fixed size or a symbolic name ("batch", "height", ...). */
export type Dim = number | string;

export type AttrValue =
  | number
  | string
  | number[]
  | string[]
  | ITensorProto
  | { float: number }
  | { floats: number[] };

export class Value {
  constructor(
    readonly graph: GraphBuilder,
    readonly name: string,
  ) {}
}

export interface GraphBuilderOptions {
  /** Default ONNX opset (ai.onnx). 17 is the first with LayerNormalization. */
  opset?: number;
  name?: string;
}

export class GraphBuilder {
  readonly opset: number;
  readonly name: string;
  private readonly nodes: INodeProto[] = [];
  private readonly inputs: IValueInfoProto[] = [];
  private readonly outputs: IValueInfoProto[] = [];
  private readonly valueInfos: IValueInfoProto[] = [];
  private readonly initializers: ITensorProto[] = [];
  private readonly initializerNames = new Set<string>();
  private readonly constCache = new Map<string, Value>();
  private readonly sharedValues = new Map<string, Value>();
  private readonly domains = new Map<string, number>();
  private counter = 0;
  private scopeStack: string[] = [];

  constructor(options: GraphBuilderOptions = {}) {
    this.opset = options.opset ?? 17;
    this.name = options.name ?? "sdx4";
  }

  /** Prefix node names with a module path while building (purely for readable profiles). */
  withScope<T>(scope: string, fn: () => T): T {
    this.scopeStack.push(scope);
    try {
      return fn();
    } finally {
      this.scopeStack.pop();
    }
  }

  private fresh(hint: string): string {
    const prefix = this.scopeStack.length ? `${this.scopeStack.join("/")}/` : "";
    return `${prefix}${hint}_${this.counter++}`;
  }

  input(name: string, type: ElemType, dims: Dim[]): Value {
    this.inputs.push(valueInfo(name, type, dims));
    return new Value(this, name);
  }

  output(value: Value, name: string, type: ElemType = "float32", dims?: Dim[]): void {
    let v = value;
    if (v.name !== name) v = this.node("Identity", [value], {}, { outputNames: [name] })[0] as Value;
    this.outputs.push(valueInfo(name, type, dims));
  }

  /**
   * Declares an intermediate value's type and shape (graph value_info). onnxruntime keeps declared symbolic dims
   * where its shape inference would leave a dimension unnamed (e.g. after a Reshape with -1); its allocation
   * planner can then match buffers by shape, where each unnamed dimension costs it a search over all earlier ones.
   */
  annotate(value: Value, type: ElemType, dims: (Dim | undefined)[]): Value {
    this.valueInfos.push(valueInfo(value.name, type, dims));
    return value;
  }

  hasInitializer(name: string): boolean {
    return this.initializerNames.has(name);
  }

  /** The initializer `name`, added by `make` the first time (constants shared by several nodes). */
  sharedInitializer(name: string, make: () => Omit<ITensorProto, "name">): Value {
    return this.shared(`initializer:${name}`, () => this.addInitializer({ ...make(), name }));
  }

  /** A value computed once per graph by `make` (e.g. a constant subgraph several nodes share), keyed by `key`. */
  shared(key: string, make: () => Value): Value {
    const hit = this.sharedValues.get(key);
    if (hit) return hit;
    const v = make();
    this.sharedValues.set(key, v);
    return v;
  }

  /** Adds an initializer (inline or external) and returns its value. */
  addInitializer(tensor: ITensorProto): Value {
    const name = tensor.name as string;
    if (this.initializerNames.has(name)) throw new Error(`initializer "${name}" added twice`);
    this.initializerNames.add(name);
    this.initializers.push(tensor);
    return new Value(this, name);
  }

  /** A float32 constant (cached by value and shape). */
  constFloat(values: number | number[] | Float32Array, dims?: number[]): Value {
    const arr = typeof values === "number" ? new Float32Array([values]) : Float32Array.from(values);
    const shape = dims ?? (typeof values === "number" ? [] : [arr.length]);
    const key = `f:${shape.join(",")}:${Array.from(arr).join(",")}`;
    return this.cachedConst(key, () => ({
      dims: shape,
      dataType: ELEM_TYPE_TO_ONNX.float32,
      rawData: new Uint8Array(arr.buffer.slice(0)),
    }));
  }

  /** An int64 constant (cached). */
  constInt64(values: number | number[], dims?: number[]): Value {
    const list = typeof values === "number" ? [values] : values;
    const shape = dims ?? (typeof values === "number" ? [] : [list.length]);
    const key = `i:${shape.join(",")}:${list.join(",")}`;
    const arr = BigInt64Array.from(list.map((v) => BigInt(v)));
    return this.cachedConst(key, () => ({
      dims: shape,
      dataType: ELEM_TYPE_TO_ONNX.int64,
      rawData: new Uint8Array(arr.buffer),
    }));
  }

  private cachedConst(key: string, make: () => ITensorProto): Value {
    const hit = this.constCache.get(key);
    if (hit) return hit;
    const short = key.length > 40 ? `${key.slice(0, 2)}${this.counter}` : key.replace(/[^a-zA-Z0-9.-]/g, "_");
    const name = `const_${short}_${this.counter++}`;
    const v = this.addInitializer({ ...make(), name });
    this.constCache.set(key, v);
    return v;
  }

  /** Appends a node; returns its outputs. `undefined` inputs become "" (an omitted optional input). */
  node(
    opType: string,
    inputs: (Value | undefined)[],
    attrs: Record<string, AttrValue | undefined> = {},
    options: { numOutputs?: number; outputNames?: string[]; domain?: string; domainVersion?: number } = {},
  ): Value[] {
    for (const v of inputs) {
      if (v && v.graph !== this) throw new Error(`${opType}: input "${v.name}" belongs to another graph`);
    }
    const n = options.outputNames?.length ?? options.numOutputs ?? 1;
    const outNames = options.outputNames ?? Array.from({ length: n }, () => this.fresh(opType));
    if (options.domain) this.domains.set(options.domain, options.domainVersion ?? 1);
    const attribute: IAttributeProto[] = [];
    for (const [k, v] of Object.entries(attrs)) if (v !== undefined) attribute.push(attr(k, v));
    this.nodes.push({
      opType,
      domain: options.domain ?? "",
      name: this.fresh(`n_${opType}`),
      input: trimTrailingOmitted(inputs.map((v) => v?.name ?? "")),
      output: outNames,
      attribute,
    });
    return outNames.map((o) => new Value(this, o));
  }

  /** Single-output node. */
  op(
    opType: string,
    inputs: (Value | undefined)[],
    attrs: Record<string, AttrValue | undefined> = {},
    options: { domain?: string; domainVersion?: number } = {},
  ): Value {
    return this.node(opType, inputs, attrs, options)[0] as Value;
  }

  get nodeCount(): number {
    return this.nodes.length;
  }

  toModel(docString?: string): ModelProto {
    const opsetImport = [{ domain: "", version: this.opset }];
    for (const [domain, version] of this.domains) opsetImport.push({ domain, version });
    return onnx.ModelProto.create({
      irVersion: 8,
      producerName: "sdx4",
      producerVersion: "0.1.0",
      opsetImport,
      docString,
      graph: {
        name: this.name,
        node: this.nodes,
        input: this.inputs,
        output: this.outputs,
        initializer: this.initializers,
        valueInfo: this.valueInfos,
      },
    });
  }

  /** Serialised ModelProto bytes. */
  serialize(docString?: string): Uint8Array {
    return onnx.ModelProto.encode(this.toModel(docString)).finish();
  }
}

/** Trailing omitted optional inputs are dropped (some onnxruntime kernels mis-handle a trailing ""). */
function trimTrailingOmitted(names: string[]): string[] {
  let n = names.length;
  while (n > 0 && names[n - 1] === "") n--;
  return names.slice(0, n);
}

/** A value's type; an undefined dim is left unknown (shape inference fills it). */
function valueInfo(name: string, type: ElemType, dims?: (Dim | undefined)[]): IValueInfoProto {
  const dim = (d: Dim | undefined) =>
    d === undefined ? {} : typeof d === "number" ? { dimValue: d } : { dimParam: d };
  return {
    name,
    type: {
      tensorType: {
        elemType: ELEM_TYPE_TO_ONNX[type],
        shape: dims ? { dim: dims.map(dim) } : undefined,
      },
    },
  };
}

function attr(name: string, v: AttrValue): IAttributeProto {
  const T = onnx.AttributeProto.AttributeType;
  if (typeof v === "number") {
    return Number.isInteger(v) ? { name, type: T.INT, i: v } : { name, type: T.FLOAT, f: v };
  }
  if (typeof v === "string") return { name, type: T.STRING, s: new TextEncoder().encode(v) };
  if (Array.isArray(v)) {
    if (v.length > 0 && typeof v[0] === "string") {
      return { name, type: T.STRINGS, strings: (v as string[]).map((s) => new TextEncoder().encode(s)) };
    }
    return { name, type: T.INTS, ints: v as number[] };
  }
  if ("float" in v) return { name, type: T.FLOAT, f: v.float };
  if ("floats" in v) return { name, type: T.FLOATS, floats: v.floats };
  return { name, type: T.TENSOR, t: v };
}
