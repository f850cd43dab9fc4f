/**
 * A GraphBuilder bound to a model's weights: `b.param(p)` yields the initializer for a declared parameter,
 * referenced as external data in its safetensors file (float32) or cast to float32 in the graph (fp16/bf16
 * checkpoints: onnxruntime folds the Cast once at session creation).
 */
import { GraphBuilder, type GraphBuilderOptions, type Value } from "./graph_builder.js";
import type { Param } from "./params.js";
import { DataType, ELEM_TYPE_TO_ONNX, onnx } from "./proto.js";
import { int8Initializers, int8WeightMax, type QuantizedMatrix } from "./quantize.js";
import type { BoundWeights } from "./weights.js";

export interface ModelBuilderOptions extends GraphBuilderOptions {
  /**
   * Builds eligible Linear / Conv2d layers as dynamically quantized int8 kernels (see quantize.ts); `keep` names
   * the parameter keys that stay float32 (e.g. the first and last convolution, the time embedding).
   */
  int8?: { keep?: (weightKey: string) => boolean; weightMax?: number };
}

export class ModelBuilder extends GraphBuilder {
  private readonly paramValues = new Map<string, Value>();
  private readonly int8Values = new Map<string, { w: Value; scale: Value }>();
  private readonly int8Options: ModelBuilderOptions["int8"];
  private weightMax: number | undefined;

  constructor(
    readonly weights: BoundWeights,
    options: ModelBuilderOptions = {},
  ) {
    super(options);
    this.int8Options = options.int8;
  }

  /** Whether the layer owning weight `key` is built as an int8 kernel. */
  usesInt8(key: string): boolean {
    return this.int8Options !== undefined && !(this.int8Options.keep?.(key) ?? false);
  }

  /**
   * The int8 matrix + per-output-channel scales of a weight, quantized once from its float values; `quantize`
   * gets the weight and the largest int8 magnitude to use (int8WeightMax() unless the options say otherwise).
   */
  int8Weight(
    p: Param,
    quantize: (w: Float32Array, qmax: number) => QuantizedMatrix,
  ): { w: Value; scale: Value } {
    const hit = this.int8Values.get(p.key);
    if (hit) return hit;
    this.weightMax ??= this.int8Options?.weightMax ?? int8WeightMax();
    const v = int8Initializers(this, p.key, quantize(this.weights.readFloat32(p.key), this.weightMax));
    this.int8Values.set(p.key, v);
    return v;
  }

  /** The external-data folder to give the runtime (undefined when every weight is inline). */
  get externalDataFolder(): string | undefined {
    return this.weights.folder;
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
      const stored = e.dtype === "float32" ? p.key : `${p.key}::${e.dtype}`;
      const init = this.addInitializer({
        name: stored,
        dims: e.shape,
        dataType: ELEM_TYPE_TO_ONNX[e.dtype],
        dataLocation: onnx.TensorProto.DataLocation.EXTERNAL,
        externalData: [
          { key: "location", value: e.location },
          { key: "offset", value: String(e.offset) },
          { key: "length", value: String(e.length) },
        ],
      });
      v =
        e.dtype === "float32"
          ? init
          : this.node("Cast", [init], { to: DataType.FLOAT }, { outputNames: [p.key] })[0]!;
    }
    this.paramValues.set(p.key, v);
    return v;
  }
}
