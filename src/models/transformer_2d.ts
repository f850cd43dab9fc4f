/**
 * The spatial transformer of the UNet's cross-attention blocks: Transformer2DModel (continuous input),
 * BasicTransformerBlock and its FeedForward (GEGLU / GELU / approximate GELU).
 *
 * Ports diffusers v0.23.0:
 * - src/diffusers/models/transformer_2d.py (`Transformer2DModel`, continuous-input path)
 *   https://github.com/huggingface/diffusers/blob/v0.23.0/src/diffusers/models/transformer_2d.py
 * - src/diffusers/models/attention.py (`BasicTransformerBlock`, `FeedForward`, layer_norm path)
 *   https://github.com/huggingface/diffusers/blob/v0.23.0/src/diffusers/models/attention.py
 * - src/diffusers/models/activations.py (`GEGLU`, `GELU`, `ApproximateGELU`)
 *   https://github.com/huggingface/diffusers/blob/v0.23.0/src/diffusers/models/activations.py
 * Scopes reproduce diffusers' module names (norm, proj_in, transformer_blocks.N.{norm1,attn1,norm2,attn2,norm3,
 * ff.net.0.proj,ff.net.2}, proj_out), so checkpoint keys bind with no renaming.
 */
import type { Value } from "../onnx/graph_builder.js";
import type { ModelBuilder } from "../onnx/model_builder.js";
import { Conv2d, GroupNorm, Linear } from "../onnx/nn.js";
import * as op from "../onnx/ops.js";
import type { Param, Scope } from "../onnx/params.js";
import { Attention, type AttentionGraphOptions } from "./attention_processor.js";

/** Chooses the graph variant (slicing / fused attention) of each Attention module; undefined = default. */
export type AttentionOptionsFor = (attn: Attention) => AttentionGraphOptions | undefined;

/** torch.nn.LayerNorm over the last axis, with or without the elementwise affine parameters. */
class LayerNormMaybeAffine {
  readonly weight: Param | undefined;
  readonly bias: Param | undefined;
  constructor(
    s: Scope,
    readonly dim: number,
    readonly eps: number,
    affine: boolean,
  ) {
    this.weight = affine ? s.param("weight", [dim]) : undefined;
    this.bias = affine ? s.param("bias", [dim]) : undefined;
  }
  forward(b: ModelBuilder, x: Value): Value {
    const scale = this.weight
      ? b.param(this.weight)
      : b.constFloat(new Float32Array(this.dim).fill(1), [this.dim]);
    return op.layerNormalization(x, scale, this.bias ? b.param(this.bias) : undefined, this.eps);
  }
}

export type FeedForwardActivation = "geglu" | "gelu" | "gelu-approximate" | "geglu-approximate";
const FF_ACTIVATIONS: readonly string[] = ["geglu", "gelu", "gelu-approximate", "geglu-approximate"];

/** diffusers `GEGLU`: proj → chunk(2, -1) → hidden · gelu(gate). */
export class GEGLU {
  readonly proj: Linear;
  constructor(s: Scope, dimIn: number, dimOut: number) {
    this.proj = new Linear(s.pp("proj"), dimIn, dimOut * 2);
  }
  forward(b: ModelBuilder, x: Value): Value {
    const [hidden, gate] = op.split(this.proj.forward(b, x), 2, -1) as [Value, Value];
    return op.mul(hidden, op.gelu(gate));
  }
}

/** diffusers `GELU`: proj → gelu (exact, or the tanh approximation). */
export class GELU {
  readonly proj: Linear;
  constructor(
    s: Scope,
    dimIn: number,
    dimOut: number,
    readonly approximate: "none" | "tanh" = "none",
  ) {
    this.proj = new Linear(s.pp("proj"), dimIn, dimOut);
  }
  forward(b: ModelBuilder, x: Value): Value {
    const h = this.proj.forward(b, x);
    if (this.approximate === "none") return op.gelu(h);
    // 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))
    const inner = op.mul(op.add(h, op.mul(op.pow(h, 3), 0.044715)), Math.sqrt(2 / Math.PI));
    return op.mul(op.mul(h, 0.5), op.add(op.tanh(inner), 1));
  }
}

/** diffusers `ApproximateGELU`: proj → x·sigmoid(1.702·x). */
export class ApproximateGELU {
  readonly proj: Linear;
  constructor(s: Scope, dimIn: number, dimOut: number) {
    this.proj = new Linear(s.pp("proj"), dimIn, dimOut);
  }
  forward(b: ModelBuilder, x: Value): Value {
    return op.quickGelu(this.proj.forward(b, x));
  }
}

/** diffusers `FeedForward`: net.0 = activation projection, net.1 = dropout (no-op), net.2 = Linear. */
export class FeedForward {
  readonly act: GEGLU | GELU | ApproximateGELU;
  readonly out: Linear;
  constructor(
    s: Scope,
    dim: number,
    opts: { dimOut?: number; mult?: number; activationFn?: FeedForwardActivation } = {},
  ) {
    const innerDim = Math.trunc(dim * (opts.mult ?? 4));
    const dimOut = opts.dimOut ?? dim;
    const act = opts.activationFn ?? "geglu";
    const net0 = s.pp("net").pp(0);
    if (act === "gelu") this.act = new GELU(net0, dim, innerDim);
    else if (act === "gelu-approximate") this.act = new GELU(net0, dim, innerDim, "tanh");
    else if (act === "geglu") this.act = new GEGLU(net0, dim, innerDim);
    else if (act === "geglu-approximate") this.act = new ApproximateGELU(net0, dim, innerDim);
    else {
      throw new Error(`${s.prefix}: activation_fn "${act}" is not supported (${FF_ACTIVATIONS.join(", ")})`);
    }
    this.out = new Linear(s.pp("net").pp(2), innerDim, dimOut);
  }
  forward(b: ModelBuilder, x: Value): Value {
    return this.out.forward(b, this.act.forward(b, x));
  }
}

export interface BasicTransformerBlockOptions {
  dim: number;
  numAttentionHeads: number;
  attentionHeadDim: number;
  crossAttentionDim?: number | null;
  activationFn?: FeedForwardActivation;
  attentionBias?: boolean;
  onlyCrossAttention?: boolean;
  doubleSelfAttention?: boolean;
  upcastAttention?: boolean;
  normElementwiseAffine?: boolean;
  /** Only "layer_norm" is supported. */
  normType?: string;
  normEps?: number;
  /** Only "default" is supported (no GLIGEN fuser). */
  attentionType?: string;
}

/**
 * diffusers `BasicTransformerBlock` with norm_type "layer_norm": self-attention (attn1; attends to the encoder
 * states instead when `only_cross_attention`), cross-attention (attn2), GEGLU feed-forward, each pre-normed and
 * residual.
 */
export class BasicTransformerBlock {
  readonly onlyCrossAttention: boolean;
  readonly norm1: LayerNormMaybeAffine;
  readonly attn1: Attention;
  readonly norm2: LayerNormMaybeAffine | undefined;
  readonly attn2: Attention | undefined;
  readonly norm3: LayerNormMaybeAffine;
  readonly ff: FeedForward;

  constructor(
    readonly scope: Scope,
    o: BasicTransformerBlockOptions,
  ) {
    const normType = o.normType ?? "layer_norm";
    if (normType !== "layer_norm") {
      throw new Error(`${scope.prefix}: norm_type "${normType}" is not supported (only "layer_norm")`);
    }
    const attentionType = o.attentionType ?? "default";
    if (attentionType !== "default") {
      throw new Error(`${scope.prefix}: attention_type "${attentionType}" is not supported (only "default")`);
    }
    this.onlyCrossAttention = o.onlyCrossAttention ?? false;
    const affine = o.normElementwiseAffine ?? true;
    const eps = o.normEps ?? 1e-5;
    const cross = o.crossAttentionDim ?? undefined;
    const common = {
      queryDim: o.dim,
      heads: o.numAttentionHeads,
      dimHead: o.attentionHeadDim,
      bias: o.attentionBias ?? false,
      upcastAttention: o.upcastAttention ?? false,
    };
    this.norm1 = new LayerNormMaybeAffine(scope.pp("norm1"), o.dim, eps, affine);
    this.attn1 = new Attention(scope.pp("attn1"), {
      ...common,
      crossAttentionDim: this.onlyCrossAttention ? cross : undefined,
    });
    if (cross !== undefined || o.doubleSelfAttention) {
      this.norm2 = new LayerNormMaybeAffine(scope.pp("norm2"), o.dim, eps, affine);
      this.attn2 = new Attention(scope.pp("attn2"), {
        ...common,
        crossAttentionDim: o.doubleSelfAttention ? undefined : cross,
      });
    }
    this.norm3 = new LayerNormMaybeAffine(scope.pp("norm3"), o.dim, eps, affine);
    this.ff = new FeedForward(scope.pp("ff"), o.dim, { activationFn: o.activationFn ?? "geglu" });
  }

  /** Every Attention module, in diffusers' module order (attn1, attn2). */
  attentionModules(): Attention[] {
    return this.attn2 ? [this.attn1, this.attn2] : [this.attn1];
  }

  /** hidden: [B, L, dim]; encoderHiddenStates: [B, S, crossAttentionDim]. */
  forward(
    b: ModelBuilder,
    hidden: Value,
    encoderHiddenStates?: Value,
    attnOptions?: AttentionOptionsFor,
  ): Value {
    return b.withScope(this.scope.prefix, () => {
      const a1 = this.attn1.forward(
        b,
        this.norm1.forward(b, hidden),
        this.onlyCrossAttention ? encoderHiddenStates : undefined,
        attnOptions?.(this.attn1),
      );
      let h = op.add(a1, hidden);
      if (this.attn2 && this.norm2) {
        const a2 = this.attn2.forward(
          b,
          this.norm2.forward(b, h),
          encoderHiddenStates,
          attnOptions?.(this.attn2),
        );
        h = op.add(a2, h);
      }
      return op.add(this.ff.forward(b, this.norm3.forward(b, h)), h);
    });
  }
}

export interface Transformer2DModelConfig {
  num_attention_heads?: number;
  attention_head_dim?: number;
  in_channels: number;
  out_channels?: number | null;
  num_layers?: number;
  norm_num_groups?: number;
  cross_attention_dim?: number | null;
  attention_bias?: boolean;
  activation_fn?: FeedForwardActivation;
  use_linear_projection?: boolean;
  only_cross_attention?: boolean;
  double_self_attention?: boolean;
  upcast_attention?: boolean;
  norm_type?: string;
  norm_elementwise_affine?: boolean;
  norm_eps?: number;
  attention_type?: string;
}

/**
 * diffusers `Transformer2DModel` for continuous input [B, C, H, W]: GroupNorm (eps 1e-6) → proj_in (Linear after
 * the NHWC flattening when `use_linear_projection`, else a 1x1 conv before it) → transformer_blocks → proj_out →
 * back to NCHW → + residual.
 */
export class Transformer2DModel {
  readonly config: Required<Omit<Transformer2DModelConfig, "out_channels" | "cross_attention_dim">> & {
    out_channels: number | null;
    cross_attention_dim: number | null;
  };
  readonly innerDim: number;
  readonly norm: GroupNorm;
  readonly projIn: Linear | Conv2d;
  readonly transformerBlocks: BasicTransformerBlock[];
  readonly projOut: Linear | Conv2d;

  constructor(
    readonly scope: Scope,
    config: Transformer2DModelConfig,
  ) {
    const c = {
      num_attention_heads: 16,
      attention_head_dim: 88,
      out_channels: null,
      num_layers: 1,
      norm_num_groups: 32,
      cross_attention_dim: null,
      attention_bias: false,
      activation_fn: "geglu" as FeedForwardActivation,
      use_linear_projection: false,
      only_cross_attention: false,
      double_self_attention: false,
      upcast_attention: false,
      norm_type: "layer_norm",
      norm_elementwise_affine: true,
      norm_eps: 1e-5,
      attention_type: "default",
      ...config,
    };
    this.config = c;
    this.innerDim = c.num_attention_heads * c.attention_head_dim;
    if (c.use_linear_projection && this.innerDim !== c.in_channels) {
      // diffusers views the linear proj_out output (in_channels wide) with inner_dim channels.
      throw new Error(
        `${scope.prefix}: num_attention_heads*attention_head_dim (${this.innerDim}) must equal in_channels (${c.in_channels})`,
      );
    }
    this.norm = new GroupNorm(scope.pp("norm"), c.norm_num_groups, c.in_channels, 1e-6);
    this.projIn = c.use_linear_projection
      ? new Linear(scope.pp("proj_in"), c.in_channels, this.innerDim)
      : new Conv2d(scope.pp("proj_in"), c.in_channels, this.innerDim, 1);
    this.transformerBlocks = [];
    for (let d = 0; d < c.num_layers; d++) {
      this.transformerBlocks.push(
        new BasicTransformerBlock(scope.pp("transformer_blocks").pp(d), {
          dim: this.innerDim,
          numAttentionHeads: c.num_attention_heads,
          attentionHeadDim: c.attention_head_dim,
          crossAttentionDim: c.cross_attention_dim,
          activationFn: c.activation_fn,
          attentionBias: c.attention_bias,
          onlyCrossAttention: c.only_cross_attention,
          doubleSelfAttention: c.double_self_attention,
          upcastAttention: c.upcast_attention,
          normType: c.norm_type,
          normElementwiseAffine: c.norm_elementwise_affine,
          normEps: c.norm_eps,
          attentionType: c.attention_type,
        }),
      );
    }
    this.projOut = c.use_linear_projection
      ? new Linear(scope.pp("proj_out"), this.innerDim, c.in_channels)
      : new Conv2d(scope.pp("proj_out"), this.innerDim, c.in_channels, 1);
  }

  /** Every Attention module, in diffusers' module order. */
  attentionModules(): Attention[] {
    return this.transformerBlocks.flatMap((t) => t.attentionModules());
  }

  /** hidden: [B, C, H, W]; encoderHiddenStates: [B, S, cross_attention_dim]. Returns [B, C, H, W]. */
  forward(
    b: ModelBuilder,
    hidden: Value,
    encoderHiddenStates?: Value,
    attnOptions?: AttentionOptionsFor,
  ): Value {
    return b.withScope(this.scope.prefix, () => {
      const residual = hidden;
      // [B, C, H, W] → [B, H·W, C], with H·W named for onnxruntime's planner (GraphBuilder.annotate).
      const toTokens = (x: Value, channels: number) =>
        b.annotate(op.reshape(op.transpose(x, [0, 2, 3, 1]), [0, -1, channels]), "float32", [
          undefined,
          `${this.scope.prefix}.tokens`,
          channels,
        ]);
      let h = this.norm.forward(b, hidden);
      h = this.config.use_linear_projection
        ? this.projIn.forward(b, toTokens(h, this.config.in_channels))
        : toTokens(this.projIn.forward(b, h), this.innerDim);
      for (const block of this.transformerBlocks) h = block.forward(b, h, encoderHiddenStates, attnOptions);
      // [B, H·W, C] → [B, C, H·W] → [B, C, H, W] (H, W from the residual).
      const spatialShape = op.concat([b.constInt64([0, 0]), op.shape(residual, 2, 4)], 0);
      const toSpatial = (x: Value) => op.reshape(op.transpose(x, [0, 2, 1]), spatialShape);
      h = this.config.use_linear_projection
        ? toSpatial(this.projOut.forward(b, h))
        : this.projOut.forward(b, toSpatial(h));
      return op.add(h, residual);
    });
  }
}
