/**
 * A GraphBuilder bound to a model's weights: `b.param(p)` yields the initializer for a declared parameter,
 * referenced as external data in its safetensors file (float32) or cast to float32 in the graph (fp16/bf16
 * checkpoints: onnxruntime folds the Cast once at session creation).
 */
import { GraphBuilder, type GraphBuilderOptions, type Value } from "./graph_builder.js";
import type { Param } from "./params.js";
import { DataType, ELEM_TYPE_TO_ONNX, onnx } from "./proto.js";
import type { BoundWeights } from "./weights.js";

export class ModelBuilder extends GraphBuilder {
  private readonly paramValues = new Map<string, Value>();

  constructor(
    readonly weights: BoundWeights,
    options: GraphBuilderOptions = {},
  ) {
    super(options);
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
