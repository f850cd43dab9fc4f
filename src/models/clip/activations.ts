/**
 * The `hidden_act` functions of transformers' ACT2FN that CLIP checkpoints use (and their simple relatives), as
 * ONNX subgraphs. Names and formulas follow transformers v4.35 src/transformers/activations.py:
 * https://github.com/huggingface/transformers/blob/v4.35.2/src/transformers/activations.py
 */
import type { Value } from "../../onnx/graph_builder.js";
import * as op from "../../onnx/ops.js";

export const ACTIVATION_NAMES = [
  "gelu",
  "gelu_python",
  "gelu_new",
  "gelu_pytorch_tanh",
  "gelu_accurate",
  "gelu_fast",
  "gelu_10",
  "quick_gelu",
  "relu",
  "relu6",
  "leaky_relu",
  "silu",
  "swish",
  "mish",
  "sigmoid",
  "tanh",
  "linear",
] as const;
export type ActivationName = (typeof ACTIVATION_NAMES)[number];

/** 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))): NewGELU, PytorchGELUTanh, AccurateGELU. */
function geluTanh(x: Value): Value {
  const inner = op.mul(op.add(x, op.mul(op.pow(x, 3), 0.044715)), Math.sqrt(2 / Math.PI));
  return op.mul(op.mul(x, 0.5), op.add(op.tanh(inner), 1));
}

function clip(x: Value, min: number, max: number): Value {
  const g = x.graph;
  return g.op("Clip", [x, g.constFloat(min), g.constFloat(max)]);
}

/** Applies ACT2FN[name] to x. */
export function activation(name: ActivationName, x: Value): Value {
  switch (name) {
    case "gelu":
    case "gelu_python":
      return op.gelu(x);
    case "gelu_new":
    case "gelu_pytorch_tanh":
    case "gelu_accurate":
      return geluTanh(x);
    case "gelu_fast": {
      // 0.5·x·(1 + tanh(x·0.7978845608·(1 + 0.044715·x²)))
      const inner = op.mul(op.mul(x, 0.7978845608), op.add(op.mul(op.mul(x, x), 0.044715), 1));
      return op.mul(op.mul(x, 0.5), op.add(op.tanh(inner), 1));
    }
    case "gelu_10":
      return clip(op.gelu(x), -10, 10);
    case "quick_gelu":
      return op.quickGelu(x);
    case "relu":
      return x.graph.op("Relu", [x]);
    case "relu6":
      return clip(x, 0, 6);
    case "leaky_relu":
      return x.graph.op("LeakyRelu", [x], { alpha: { float: 0.01 } });
    case "silu":
    case "swish":
      return op.silu(x);
    case "mish":
      return op.mul(x, op.tanh(x.graph.op("Softplus", [x])));
    case "sigmoid":
      return op.sigmoid(x);
    case "tanh":
      return op.tanh(x);
    case "linear":
      return x;
  }
}
