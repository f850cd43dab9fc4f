/**
 * The basic layers every model uses, with torch.nn's parameter names and shapes (Linear.weight is
 * [out, in], Conv2d.weight [out, in/groups, k, k]). Each declares its parameters in a Scope at construction and
 * emits ops in `forward`.
 */

import { pointwiseConv } from "./conv_plan.js";
import type { Value } from "./graph_builder.js";
import { int8Conv2d, int8Conv2dHalves, int8Linear, int8LinearHalves } from "./int8_ops.js";
import type { ModelBuilder } from "./model_builder.js";
import * as op from "./ops.js";
import type { Param, Scope } from "./params.js";
import { quantizeConvWeight, quantizeLinearWeight } from "./quantize.js";
import { winogradConv3x3 } from "./winograd.js";

export class Linear {
  readonly weight: Param;
  readonly bias: Param | undefined;
  constructor(
    s: Scope,
    readonly inFeatures: number,
    readonly outFeatures: number,
    bias = true,
  ) {
    this.weight = s.param("weight", [outFeatures, inFeatures]);
    this.bias = bias ? s.param("bias", [outFeatures]) : undefined;
  }
  /**
   * x @ Wᵀ + b, as MatMul(x, Transpose(W)) (the transpose is folded at session creation); or int8 where the builder
   * quantizes this layer, unless `opts.float32` (e.g. a projection of the 77 text tokens: little work, and its
   * rounding error would differ between the halves of a guided batch).
   */
  forward(b: ModelBuilder, x: Value, opts: { float32?: boolean } = {}): Value {
    if (!opts.float32 && b.usesInt8(this.weight.key)) {
      const w = b.int8Weight(this.weight, (v, qmax) =>
        quantizeLinearWeight(v, this.outFeatures, this.inFeatures, qmax),
      );
      const bias = this.bias ? b.param(this.bias) : undefined;
      if (b.int8GuidanceHalves) return int8LinearHalves(x, w, bias);
      return int8Linear(x, w, bias, b.int8GuidanceIndex);
    }
    const y = op.matmul(x, op.transpose(b.param(this.weight), [1, 0]));
    return this.bias ? op.add(y, b.param(this.bias)) : y;
  }
}

export class Conv2d {
  readonly weight: Param;
  readonly bias: Param | undefined;
  constructor(
    s: Scope,
    readonly inChannels: number,
    readonly outChannels: number,
    readonly kernel: number,
    readonly opts: { stride?: number; padding?: number; groups?: number; bias?: boolean } = {},
  ) {
    this.weight = s.param("weight", [outChannels, inChannels / (opts.groups ?? 1), kernel, kernel]);
    this.bias = (opts.bias ?? true) ? s.param("bias", [outChannels]) : undefined;
  }
  forward(b: ModelBuilder, x: Value): Value {
    const groups = this.opts.groups ?? 1;
    const stride = this.opts.stride ?? 1;
    const padding = this.opts.padding ?? 0;
    // After the weight in every branch: initializers keep their graph order (graph bytes, cache keys, spill layout).
    const bias = () => (this.bias ? b.param(this.bias) : undefined);
    if (groups === 1 && b.usesInt8(this.weight.key, "conv")) {
      const w = b.int8Weight(this.weight, (v, qmax) =>
        quantizeConvWeight(v, this.outChannels, this.inChannels, this.kernel, qmax),
      );
      const conv = { kernel: this.kernel, stride, padding };
      if (b.int8GuidanceHalves) return int8Conv2dHalves(x, w, bias(), conv);
      return int8Conv2d(x, w, bias(), conv, b.int8GuidanceIndex);
    }
    const plain = groups === 1 && stride === 1;
    if (plain && this.kernel === 3 && padding === 1 && b.convPlan.winograd?.(this)) {
      const u = b.winogradWeight(this.weight, x);
      return winogradConv3x3(x, u, bias(), this.inChannels, this.outChannels);
    }
    if (plain && this.kernel === 1 && padding === 0 && b.convPlan.pointwiseMatMul) {
      const w = b.param(this.weight);
      return pointwiseConv(x, w, bias(), this.inChannels, this.outChannels);
    }
    return op.conv(x, b.param(this.weight), bias(), {
      kernel: this.kernel,
      stride: this.opts.stride,
      padding: this.opts.padding,
      group: this.opts.groups,
    });
  }
}

export class LayerNorm {
  readonly weight: Param;
  readonly bias: Param;
  constructor(
    s: Scope,
    readonly dim: number,
    readonly eps = 1e-5,
  ) {
    this.weight = s.param("weight", [dim]);
    this.bias = s.param("bias", [dim]);
  }
  forward(b: ModelBuilder, x: Value): Value {
    return op.layerNormalization(x, b.param(this.weight), b.param(this.bias), this.eps);
  }
}

/**
 * torch.nn.GroupNorm on NCHW (or N,C,L) as Reshape(0,G,-1) → LayerNormalization (unit scale) → Reshape → affine:
 * measured 2x faster on the CPU EP than opset-21 GroupNormalization, which has no CPU kernel of its own.
 */
export class GroupNorm {
  readonly weight: Param | undefined;
  readonly bias: Param | undefined;
  constructor(
    s: Scope,
    readonly numGroups: number,
    readonly numChannels: number,
    readonly eps = 1e-5,
    affine = true,
  ) {
    if (numChannels % numGroups !== 0) {
      throw new Error(`${s.prefix}: GroupNorm channels ${numChannels} not divisible by groups ${numGroups}`);
    }
    this.weight = affine ? s.param("weight", [numChannels]) : undefined;
    this.bias = affine ? s.param("bias", [numChannels]) : undefined;
  }
  forward(b: ModelBuilder, x: Value): Value {
    return groupNorm(b, x, this.numGroups, this.numChannels, this.eps, this.weight, this.bias);
  }
}

export function groupNorm(
  b: ModelBuilder,
  x: Value,
  groups: number,
  channels: number,
  eps: number,
  weight?: Param,
  bias?: Param,
): Value {
  const grouped = op.reshape(x, [0, groups, -1]);
  const ones = op.constantOfShape(op.shape(grouped, 2, 3), 1);
  let y = op.reshape(op.layerNormalization(grouped, ones, undefined, eps), op.shape(x));
  if (weight) y = op.mul(y, op.reshape(b.param(weight), [channels, 1, 1]));
  if (bias) y = op.add(y, op.reshape(b.param(bias), [channels, 1, 1]));
  return y;
}

export class Embedding {
  readonly weight: Param;
  constructor(
    s: Scope,
    readonly num: number,
    readonly dim: number,
  ) {
    this.weight = s.param("weight", [num, dim]);
  }
  forward(b: ModelBuilder, ids: Value): Value {
    return op.gather(b.param(this.weight), ids, 0);
  }
}
