/**
 * diffusers' `Attention` module with the computation of its default `AttnProcessor`, plus two graph variants that
 * give the same result with less memory: head-sliced attention and onnxruntime's fused MultiHeadAttention.
 *
 * Ports diffusers v0.23.0 src/diffusers/models/attention_processor.py (`Attention`, `AttnProcessor`,
 * `SlicedAttnProcessor`): https://github.com/huggingface/diffusers/blob/v0.23.0/src/diffusers/models/attention_processor.py
 * Parameter names: to_q, to_k, to_v, to_out.0 and group_norm (or, for old VAE checkpoints, query / key / value /
 * proj_attn: see `deprecatedNames`).
 */
import type { Value } from "../onnx/graph_builder.js";
import type { ModelBuilder } from "../onnx/model_builder.js";
import { GroupNorm, Linear } from "../onnx/nn.js";
import * as op from "../onnx/ops.js";
import type { Scope } from "../onnx/params.js";

export interface AttentionOptions {
  /** Channels of the query (hidden_states). */
  queryDim: number;
  /** Channels of encoder_hidden_states; defaults to queryDim (self-attention). */
  crossAttentionDim?: number;
  heads: number;
  dimHead: number;
  /** Bias of to_q / to_k / to_v (default false). */
  bias?: boolean;
  /** Bias of to_out.0 (default true). */
  outBias?: boolean;
  /** Computes q·kᵀ in float32 for half-precision models. These graphs compute in float32: no effect. */
  upcastAttention?: boolean;
  /** Adds `group_norm` (GroupNorm over queryDim channels) applied to hidden_states first. */
  normNumGroups?: number;
  /** Adds the (pre-norm) input to the output. */
  residualConnection?: boolean;
  /** The output is divided by this (default 1). */
  rescaleOutputFactor?: number;
  /** group_norm epsilon (default 1e-5). */
  eps?: number;
  /**
   * diffusers' flag for the added-KV processors: it requires `added_kv_proj_dim`, which is not supported here, so
   * true is an error (as diffusers raises without added_kv_proj_dim). BasicTransformerBlock's own
   * `only_cross_attention` is expressed by giving attn1 a crossAttentionDim and encoder_hidden_states instead.
   */
  onlyCrossAttention?: boolean;
  /** Scale q·kᵀ by dimHead^-0.5 (default true); false → scale 1. */
  scaleQk?: boolean;
  /**
   * Declare the pre-0.14 AttentionBlock names query / key / value / proj_attn instead of to_q / to_k / to_v /
   * to_out.0: checkpoints saved before the rename, which diffusers converts on load
   * (`ModelMixin._convert_deprecated_attention_blocks`).
   */
  deprecatedNames?: boolean;
}

/** Graph-shape options of the attention computation; every choice gives the default result within 1e-4. */
export interface AttentionGraphOptions {
  /**
   * Compute attention in chunks of `sliceSize` heads (static slices along the head axis, then Concat): a lower
   * peak memory (one chunk's [B, sliceSize, L, S] scores at a time). diffusers' SlicedAttnProcessor slices the
   * flattened batch·heads axis instead; as every (batch, head) pair is independent, the result is the same. A last
   * chunk smaller than sliceSize is computed too (diffusers would leave those rows zero). Ignored when
   * `memoryEfficient` is set.
   */
  sliceSize?: number;
  /**
   * Use onnxruntime's fused com.microsoft `MultiHeadAttention` (CPU: flash-attention style, no L×S score matrix in
   * memory), needed for the VAE mid-block, which attends over every latent position.
   */
  memoryEfficient?: boolean;
}

/** Per-call forward options. */
export interface AttentionForwardOptions extends AttentionGraphOptions {
  /**
   * Rank of hidden_states: 3 = [B, L, C] (transformer blocks, the default), 4 = [B, C, H, W] (the VAE mid-block;
   * viewed as [B, H·W, C] and restored after, like AttnProcessor).
   */
  inputNdim?: 3 | 4;
}

/** diffusers `Attention` with `AttnProcessor` semantics (no attention mask, spatial norm, norm_cross, added KV). */
export class Attention {
  readonly queryDim: number;
  readonly crossAttentionDim: number;
  readonly heads: number;
  readonly dimHead: number;
  readonly innerDim: number;
  /** dimHead^-0.5 (1 when scaleQk is false). */
  readonly scale: number;
  readonly residualConnection: boolean;
  readonly rescaleOutputFactor: number;
  readonly groupNorm: GroupNorm | undefined;
  readonly toQ: Linear;
  readonly toK: Linear;
  readonly toV: Linear;
  readonly toOut: Linear;

  constructor(
    readonly scope: Scope,
    o: AttentionOptions,
  ) {
    if (o.onlyCrossAttention) {
      throw new Error(
        `${scope.prefix}: only_cross_attention can only be set to True if added_kv_proj_dim is not None ` +
          "(added KV projections are not supported)",
      );
    }
    for (const [k, v] of [
      ["heads", o.heads],
      ["dim_head", o.dimHead],
      ["query_dim", o.queryDim],
    ] as const) {
      if (!Number.isInteger(v) || v <= 0)
        throw new Error(`${scope.prefix}: ${k} must be a positive integer, got ${v}`);
    }
    this.queryDim = o.queryDim;
    this.crossAttentionDim = o.crossAttentionDim ?? o.queryDim;
    this.heads = o.heads;
    this.dimHead = o.dimHead;
    this.innerDim = o.heads * o.dimHead;
    this.scale = (o.scaleQk ?? true) ? o.dimHead ** -0.5 : 1;
    this.residualConnection = o.residualConnection ?? false;
    this.rescaleOutputFactor = o.rescaleOutputFactor ?? 1;
    if (o.normNumGroups !== undefined) {
      this.groupNorm = new GroupNorm(scope.pp("group_norm"), o.normNumGroups, o.queryDim, o.eps ?? 1e-5);
    }
    const bias = o.bias ?? false;
    const n = o.deprecatedNames
      ? { q: "query", k: "key", v: "value", out: scope.pp("proj_attn") }
      : { q: "to_q", k: "to_k", v: "to_v", out: scope.pp("to_out").pp(0) };
    this.toQ = new Linear(scope.pp(n.q), o.queryDim, this.innerDim, bias);
    this.toK = new Linear(scope.pp(n.k), this.crossAttentionDim, this.innerDim, bias);
    this.toV = new Linear(scope.pp(n.v), this.crossAttentionDim, this.innerDim, bias);
    this.toOut = new Linear(n.out, this.innerDim, o.queryDim, o.outBias ?? true);
  }

  /**
   * hidden_states: [B, L, queryDim] (or [B, queryDim, H, W] with `inputNdim: 4`); encoderHiddenStates:
   * [B, S, crossAttentionDim] (default: self-attention on the (normed) hidden states). Returns the input's shape.
   */
  forward(
    b: ModelBuilder,
    hiddenStates: Value,
    encoderHiddenStates?: Value,
    opts: AttentionForwardOptions = {},
  ): Value {
    return b.withScope(this.scope.prefix, () => {
      const spatial = opts.inputNdim === 4;
      const residual = hiddenStates;
      let h = hiddenStates;
      if (spatial) {
        // group_norm on [B, C, H·W] equals group_norm on [B, C, H, W]: normalise before the view.
        if (this.groupNorm) h = this.groupNorm.forward(b, h);
        h = op.transpose(op.reshape(h, [0, 0, -1]), [0, 2, 1]);
        b.annotate(h, "float32", [undefined, `${this.scope.prefix}.tokens`, undefined]); // H·W named: see annotate
      } else if (this.groupNorm) {
        // [B, L, C] → [B, C, L, 1] so the per-channel affine broadcasts, then back.
        const t = op.unsqueeze(op.transpose(h, [0, 2, 1]), [3]);
        h = op.transpose(op.squeeze(this.groupNorm.forward(b, t), [3]), [0, 2, 1]);
      }
      const context = encoderHiddenStates ?? h;
      const q = this.toQ.forward(b, h);
      // Projections of the text (cross-attention) stay float32 in the int8 path: 77 tokens, little work.
      const cross = { float32: encoderHiddenStates !== undefined };
      const k = this.toK.forward(b, context, cross);
      const v = this.toV.forward(b, context, cross);

      let out: Value;
      if (opts.memoryEfficient) out = this.fusedAttention(q, k, v);
      else out = this.sdpa(q, k, v, opts.sliceSize);
      out = this.toOut.forward(b, out);

      if (spatial) out = op.reshape(op.transpose(out, [0, 2, 1]), op.shape(residual));
      if (this.residualConnection) out = op.add(out, residual);
      return this.rescaleOutputFactor === 1 ? out : op.div(out, this.rescaleOutputFactor);
    });
  }

  /** softmax(q·kᵀ·scale)·v with heads split: q [B, L, inner], k/v [B, S, inner] → [B, L, inner]. */
  private sdpa(q: Value, k: Value, v: Value, sliceSize?: number): Value {
    const H = this.heads;
    const D = this.dimHead;
    const qh = op.transpose(op.reshape(q, [0, 0, H, D]), [0, 2, 1, 3]); // [B, H, L, D]
    const kt = op.transpose(op.reshape(k, [0, 0, H, D]), [0, 2, 3, 1]); // [B, H, D, S]
    const vh = op.transpose(op.reshape(v, [0, 0, H, D]), [0, 2, 1, 3]); // [B, H, S, D]
    const attend = (qs: Value, ks: Value, vs: Value): Value =>
      op.matmul(op.softmax(op.mul(op.matmul(qs, ks), this.scale), -1), vs);

    let o: Value;
    if (sliceSize === undefined || sliceSize >= H) {
      o = attend(qh, kt, vh);
    } else {
      if (!Number.isInteger(sliceSize) || sliceSize < 1) {
        throw new Error(
          `${this.scope.prefix}: attention slice size must be a positive integer, got ${sliceSize}`,
        );
      }
      const parts: Value[] = [];
      for (let s = 0; s < H; s += sliceSize) {
        const e = Math.min(s + sliceSize, H);
        const sl = (x: Value) => op.slice(x, [s], [e], [1]);
        parts.push(attend(sl(qh), sl(kt), sl(vh)));
      }
      o = op.concat(parts, 1);
    }
    return op.reshape(op.transpose(o, [0, 2, 1, 3]), [0, 0, this.innerDim]);
  }

  /** com.microsoft MultiHeadAttention (q [B, L, inner], k/v [B, S, inner] → [B, L, inner]). */
  private fusedAttention(q: Value, k: Value, v: Value): Value {
    return q.graph.op(
      "MultiHeadAttention",
      [q, k, v],
      { num_heads: this.heads, scale: { float: this.scale } },
      { domain: "com.microsoft", domainVersion: 1 },
    );
  }
}
