/**
 * A GraphBuilder bound to a model's weights: `b.param(p)` yields the initializer for a declared parameter,
 * referenced as float32 external data in its safetensors file. A graph that reads float16 / bfloat16 weights
 * references a float32 spill file instead (spill_file.ts: every external weight expanded into one temporary file,
 * written and removed around session creation by `createSession`), so that onnxruntime never holds the fp16 data
 * and its float32 expansion at once.
 */
import path from "node:path";
import type { ConvPlan } from "./conv_plan.js";
import { GraphBuilder, type GraphBuilderOptions, type Value } from "./graph_builder.js";
import type { Param } from "./params.js";
import { DataType, type ITensorProto, type ModelProto, onnx } from "./proto.js";
import {
  INT8_WEIGHT_MAX,
  type Int8Kernel,
  type Int8Weight,
  int8Initializers,
  int8Kernel,
  type QuantizedMatrix,
} from "./quantize.js";
import { planSpill, SpillFolder, type SpillLayout, type SpillSource } from "./spill_file.js";
import type { BoundWeights, WeightEntry } from "./weights.js";
import { winogradFilterGraph } from "./winograd.js";

type ExternalEntry = Extract<WeightEntry, { kind: "external" }>;

/** Where a session finds the graph's external data (the same fields as RuntimeHost.createSession's options). */
export interface ExternalDataOptions {
  /** The folder external-data locations resolve against (undefined when every weight is inline). */
  externalDataFolder: string | undefined;
  /** Must be awaited before onnxruntime reads the graph's external data (writes the spill file). */
  prepareExternalData?: () => Promise<void>;
}

export interface ModelBuilderOptions extends GraphBuilderOptions {
  /**
   * Builds eligible Linear / Conv2d layers as dynamically quantized int8 kernels (int8_ops.ts); `keep` names the
   * parameter keys that stay float32 (e.g. the first and last convolution, the time embedding).
   */
  int8?: {
    keep?: (weightKey: string) => boolean;
    /** The integer kernel (default int8Kernel(): this CPU's exact one). */
    kernel?: Int8Kernel;
    /** Whether Conv2d layers are quantized too (default true); false: Linear layers only. */
    convolutions?: boolean;
  };
  /** How float32 convolutions are built (conv_plan.ts: `convPlan`); default: onnxruntime's Conv for all. */
  conv?: ConvPlan;
}

export class ModelBuilder extends GraphBuilder {
  private readonly paramValues = new Map<string, Value>();
  private readonly int8Values = new Map<string, Int8Weight>();
  /**
   * The int8 layers' guidance pairs (int8_ops.ts: withGuidancePairs): int64 [batch], each row's partner row (itself
   * if none), usually a graph input; undefined: no pairs.
   */
  int8GuidanceIndex: Value | undefined;
  /**
   * The int8 layers' guidance halves instead (int8_ops.ts: int8LinearHalves): the batch is [unconditional;
   * conditional] halves, each quantized per tensor.
   */
  int8GuidanceHalves = false;
  private readonly int8Options: ModelBuilderOptions["int8"];
  /** How float32 convolutions are built. */
  readonly convPlan: ConvPlan;
  private kernel: Int8Kernel | undefined;
  /** External initializers in graph order, with the weight each one reads. */
  private readonly external: { tensor: ITensorProto; entry: ExternalEntry }[] = [];
  /** The spill layout the initializers point into, and how many of them it covers. */
  private spill: { layout: SpillLayout; count: number } | undefined;

  constructor(
    readonly weights: BoundWeights,
    options: ModelBuilderOptions = {},
  ) {
    super(options);
    this.int8Options = options.int8;
    this.convPlan = options.conv ?? {};
  }

  /**
   * The Winograd-transformed filters U [36, K, C] of a 3×3 conv weight, for the layer whose input is `x`: folded at
   * session creation, or computed in every run under `convPlan.winogradFilters: "run"` (conv_plan.ts).
   */
  winogradWeight(p: Param, x: Value): Value {
    const [out, inp] = p.shape as [number, number];
    const atRun = this.convPlan.winogradFilters === "run";
    return this.shared(`winograd:${p.key}`, () =>
      winogradFilterGraph(this.param(p), atRun ? { x, outChannels: out, inChannels: inp } : undefined),
    );
  }

  /** Whether the layer (a Linear or a Conv2d) owning weight `key` is built as an int8 kernel. */
  usesInt8(key: string, layer: "linear" | "conv" = "linear"): boolean {
    const o = this.int8Options;
    if (o === undefined || (layer === "conv" && o.convolutions === false)) return false;
    return !(o.keep?.(key) ?? false);
  }

  /**
   * The int8 matrix + per-output-channel scales of a weight, quantized once from its float values (`quantize`
   * gets the weight and the largest int8 magnitude) and stored for the options' integer kernel.
   */
  int8Weight(p: Param, quantize: (w: Float32Array, qmax: number) => QuantizedMatrix): Int8Weight {
    const hit = this.int8Values.get(p.key);
    if (hit) return hit;
    this.kernel ??= this.int8Options?.kernel ?? int8Kernel();
    const m = quantize(this.weights.readFloat32(p.key), INT8_WEIGHT_MAX);
    const v = int8Initializers(this, p.key, m, this.kernel);
    this.int8Values.set(p.key, v);
    return v;
  }

  /** Whether the graph reads float16 / bfloat16 weights (its session then needs a spill file: createSession). */
  get needsSpill(): boolean {
    return this.external.some((x) => x.entry.dtype !== "float32");
  }

  /**
   * The external-data folder to give the runtime (undefined when every weight is inline). A graph that needs a
   * spill file has none until its session is created: use createSession.
   */
  get externalDataFolder(): string | undefined {
    if (this.needsSpill) {
      throw new Error(
        `graph "${this.name}" reads float16/bfloat16 weights, which are expanded to float32 in a temporary ` +
          "file while its session is created: create it with ModelBuilder.createSession",
      );
    }
    return this.weights.folder;
  }

  /**
   * Creates the graph's session: `create(model, external)`, where `external` are the external-data fields of
   * RuntimeHost.createSession's options. A graph that reads float16 / bfloat16 weights gets a fresh spill folder
   * and `prepareExternalData`, which writes the float32 spill file into it (spill_file.ts); the runtime awaits it
   * before onnxruntime reads the graph's weights (not at all when its graph cache serves the session). The folder
   * is removed as soon as `create` settles, resolved or rejected.
   */
  async createSession<T>(
    create: (model: Uint8Array, external: ExternalDataOptions) => Promise<T>,
  ): Promise<T> {
    const model = this.serialize();
    const layout = this.spill?.layout;
    if (!layout) return create(model, { externalDataFolder: this.weights.folder });
    const spill = await SpillFolder.create();
    try {
      return await create(model, {
        externalDataFolder: spill.folder,
        prepareExternalData: async () => {
          await spill.write(layout);
        },
      });
    } finally {
      await spill.remove();
    }
  }

  /** The model; the external initializers point into the spill file when the graph needs one. */
  override toModel(docString?: string): ModelProto {
    this.placeExternalData();
    return super.toModel(docString);
  }

  /** (Re)points every external initializer into the spill layout if the graph needs one (idempotent). */
  private placeExternalData(): void {
    if (!this.needsSpill || this.spill?.count === this.external.length) return;
    const folder = this.weights.folder as string;
    const sources: SpillSource[] = this.external.map(({ entry: e }) => ({
      file: path.join(folder, e.location),
      offset: e.offset,
      length: e.length,
      dtype: e.dtype as SpillSource["dtype"],
    }));
    const layout = planSpill(this.name, sources);
    layout.items.forEach((item, i) => {
      this.external[i]!.tensor.externalData = externalRef(layout.location, item.offset, item.length);
    });
    this.spill = { layout, count: this.external.length };
  }

  param(p: Param): Value {
    const hit = this.paramValues.get(p.key);
    if (hit) return hit;
    const e = this.weights.get(p.key);
    let v: Value;
    if (e.kind === "inline") {
      v = this.addInitializer({
        name: p.key,
        dims: e.shape,
        dataType: DataType.FLOAT,
        rawData: new Uint8Array(e.data.buffer, e.data.byteOffset, e.data.byteLength),
      });
    } else {
      if (e.dtype !== "float32" && e.dtype !== "float16" && e.dtype !== "bfloat16") {
        throw new Error(`${p.key}: weights of dtype ${e.dtype} cannot be used as float32 parameters`);
      }
      // float16 / bfloat16 ones are re-pointed into the spill file by placeExternalData.
      const tensor: ITensorProto = {
        name: p.key,
        dims: e.shape,
        dataType: DataType.FLOAT,
        dataLocation: onnx.TensorProto.DataLocation.EXTERNAL,
        externalData: externalRef(e.location, e.offset, e.length),
      };
      this.external.push({ tensor, entry: e });
      v = this.addInitializer(tensor);
    }
    this.paramValues.set(p.key, v);
    return v;
  }
}

function externalRef(location: string, offset: number, length: number): ITensorProto["externalData"] {
  return [
    { key: "location", value: location },
    { key: "offset", value: String(offset) },
    { key: "length", value: String(length) },
  ];
}
