/**
 * CLIP's text transformer as graph modules: CLIPTextEmbeddings, CLIPAttention, CLIPMLP, CLIPEncoderLayer,
 * CLIPEncoder and CLIPTextTransformer, with transformers' module paths so that parameter keys are the checkpoint's
 * (`text_model.encoder.layers.N.self_attn.q_proj.weight`, ...).
 *
 * Ports transformers v4.35 src/transformers/models/clip/modeling_clip.py (eager attention):
 * https://github.com/huggingface/transformers/blob/v4.35.2/src/transformers/models/clip/modeling_clip.py
 */
import type { Value } from "../../onnx/graph_builder.js";
import type { ModelBuilder } from "../../onnx/model_builder.js";
import { Embedding, LayerNorm, Linear } from "../../onnx/nn.js";
import * as op from "../../onnx/ops.js";
import type { Scope } from "../../onnx/params.js";
import { activation } from "./activations.js";
import type { CLIPTextConfig } from "./config.js";

/** torch.finfo(torch.float32).min, the value transformers' masks use for "not attended". */
export const FLOAT32_MIN = -3.4028234663852886e38;

/** Token embedding plus learned absolute position embedding (position ids 0..seq-1). */
export class CLIPTextEmbeddings {
  readonly tokenEmbedding: Embedding;
  readonly positionEmbedding: Embedding;
  constructor(s: Scope, config: CLIPTextConfig) {
    this.tokenEmbedding = new Embedding(s.pp("token_embedding"), config.vocab_size, config.hidden_size);
    this.positionEmbedding = new Embedding(
      s.pp("position_embedding"),
      config.max_position_embeddings,
      config.hidden_size,
    );
  }
  /** input_ids int64 [B, S] → [B, S, hidden]. */
  forward(b: ModelBuilder, inputIds: Value): Value {
    const inputsEmbeds = this.tokenEmbedding.forward(b, inputIds);
    // position_embedding(position_ids[:, :seq]) is the first seq rows of its table.
    const seq = op.shape(inputIds, 1, 2);
    const positionEmbeddings = op.slice(b.param(this.positionEmbedding.weight), [0], seq, [0]);
    return op.add(inputsEmbeds, positionEmbeddings);
  }
}

/** Multi-headed self-attention; the additive mask [B|1, 1, S, S] holds 0 or finfo.min (or -inf). */
export class CLIPAttention {
  readonly headDim: number;
  readonly scale: number;
  readonly qProj: Linear;
  readonly kProj: Linear;
  readonly vProj: Linear;
  readonly outProj: Linear;
  constructor(
    s: Scope,
    readonly embedDim: number,
    readonly numHeads: number,
  ) {
    this.headDim = embedDim / numHeads;
    if (!Number.isInteger(this.headDim)) {
      throw new Error(`${s.prefix}: embed_dim ${embedDim} must be divisible by num_heads ${numHeads}`);
    }
    this.scale = this.headDim ** -0.5;
    this.kProj = new Linear(s.pp("k_proj"), embedDim, embedDim);
    this.vProj = new Linear(s.pp("v_proj"), embedDim, embedDim);
    this.qProj = new Linear(s.pp("q_proj"), embedDim, embedDim);
    this.outProj = new Linear(s.pp("out_proj"), embedDim, embedDim);
  }
  forward(b: ModelBuilder, x: Value, mask: Value): Value {
    const heads = (v: Value) => op.reshape(v, [0, 0, this.numHeads, this.headDim]);
    // 4.35 scales the query projection before q·kᵀ.
    const q = op.transpose(heads(op.mul(this.qProj.forward(b, x), this.scale)), [0, 2, 1, 3]); // [B, h, S, d]
    const kT = op.transpose(heads(this.kProj.forward(b, x)), [0, 2, 3, 1]); // [B, h, d, S]
    const v = op.transpose(heads(this.vProj.forward(b, x)), [0, 2, 1, 3]); // [B, h, S, d]
    const weights = op.softmax(op.add(op.matmul(q, kT), mask), -1);
    const out = op.transpose(op.matmul(weights, v), [0, 2, 1, 3]); // [B, S, h, d]
    return this.outProj.forward(b, op.reshape(out, [0, 0, this.embedDim]));
  }
}

export class CLIPMLP {
  readonly fc1: Linear;
  readonly fc2: Linear;
  constructor(
    s: Scope,
    readonly config: CLIPTextConfig,
  ) {
    this.fc1 = new Linear(s.pp("fc1"), config.hidden_size, config.intermediate_size);
    this.fc2 = new Linear(s.pp("fc2"), config.intermediate_size, config.hidden_size);
  }
  forward(b: ModelBuilder, x: Value): Value {
    return this.fc2.forward(b, activation(this.config.hidden_act, this.fc1.forward(b, x)));
  }
}

/** Pre-norm transformer layer: x + attn(ln1(x)), then + mlp(ln2(·)). */
export class CLIPEncoderLayer {
  readonly selfAttn: CLIPAttention;
  readonly layerNorm1: LayerNorm;
  readonly mlp: CLIPMLP;
  readonly layerNorm2: LayerNorm;
  constructor(s: Scope, config: CLIPTextConfig) {
    this.selfAttn = new CLIPAttention(s.pp("self_attn"), config.hidden_size, config.num_attention_heads);
    this.layerNorm1 = new LayerNorm(s.pp("layer_norm1"), config.hidden_size, config.layer_norm_eps);
    this.mlp = new CLIPMLP(s.pp("mlp"), config);
    this.layerNorm2 = new LayerNorm(s.pp("layer_norm2"), config.hidden_size, config.layer_norm_eps);
  }
  forward(b: ModelBuilder, x: Value, mask: Value): Value {
    const h = op.add(x, this.selfAttn.forward(b, this.layerNorm1.forward(b, x), mask));
    return op.add(h, this.mlp.forward(b, this.layerNorm2.forward(b, h)));
  }
}

export class CLIPEncoder {
  readonly layers: CLIPEncoderLayer[];
  constructor(s: Scope, config: CLIPTextConfig) {
    this.layers = Array.from(
      { length: config.num_hidden_layers },
      (_, i) => new CLIPEncoderLayer(s.pp("layers").pp(i), config),
    );
  }
  /** Every hidden state: [inputs_embeds, layer 1 output, ..., layer N output] (output_hidden_states=True). */
  forward(b: ModelBuilder, inputsEmbeds: Value, mask: Value): Value[] {
    const states = [inputsEmbeds];
    this.layers.forEach((layer, i) => {
      const prev = states[states.length - 1] as Value;
      states.push(b.withScope(`layers.${i}`, () => layer.forward(b, prev, mask)));
    });
    return states;
  }
}

export interface CLIPTextTransformerOutput {
  /** final_layer_norm(last encoder layer output) [B, S, hidden]. */
  lastHiddenState: Value;
  /** last_hidden_state at each row's pooling position [B, hidden]. */
  pooledOutput: Value;
  /** [embeddings, layer 1, ..., layer N] outputs [B, S, hidden] each (before the final layer norm). */
  hiddenStates: Value[];
}

/** The causal mask [S, S]: 0 on and below the diagonal, finfo.min above (`_create_4d_causal_attention_mask`). */
export function causalMask(inputIds: Value): Value {
  const seq = op.shape(inputIds, 1, 2);
  return op.trilu(op.constantOfShape(op.concat([seq, seq], 0), FLOAT32_MIN), 1, true);
}

/**
 * The padding mask [B, 1, 1, S] of `_prepare_4d_attention_mask`: `1 - mask`, then every non-zero entry set to
 * finfo.min, i.e. 0 where attention_mask == 1 and finfo.min anywhere else.
 */
export function paddingMask(attentionMask: Value): Value {
  const g = attentionMask.graph;
  const keep = op.equal(attentionMask, g.constInt64(1));
  return op.unsqueeze(op.where(keep, g.constFloat(0), g.constFloat(FLOAT32_MIN)), [1, 2]);
}

/** CLIPTextTransformer (`text_model.*`): embeddings, encoder, final layer norm and eos pooling. */
export class CLIPTextTransformer {
  readonly embeddings: CLIPTextEmbeddings;
  readonly encoder: CLIPEncoder;
  readonly finalLayerNorm: LayerNorm;
  readonly eosTokenId: number;
  constructor(s: Scope, config: CLIPTextConfig) {
    this.embeddings = new CLIPTextEmbeddings(s.pp("embeddings"), config);
    this.encoder = new CLIPEncoder(s.pp("encoder"), config);
    this.finalLayerNorm = new LayerNorm(s.pp("final_layer_norm"), config.hidden_size, config.layer_norm_eps);
    this.eosTokenId = config.eos_token_id;
  }

  /** input_ids int64 [B, S]; attention_mask int64 [B, S] (optional). */
  forward(b: ModelBuilder, inputIds: Value, attentionMask?: Value): CLIPTextTransformerOutput {
    const embeddings = b.withScope("embeddings", () => this.embeddings.forward(b, inputIds));
    // torch adds the causal mask, then the padding mask, to the scores. Summing the two masks first gives the same
    // scores: s + 0 + m = s + m, and (s + min) + min = -inf = s + (min + min) for any finite score.
    const causal = causalMask(inputIds);
    const mask = attentionMask ? op.add(causal, paddingMask(attentionMask)) : causal;
    const hiddenStates = this.encoder.forward(b, embeddings, mask);
    const lastHiddenState = this.finalLayerNorm.forward(b, hiddenStates[hiddenStates.length - 1] as Value);
    return { lastHiddenState, pooledOutput: this.pool(inputIds, lastHiddenState), hiddenStates };
  }

  /**
   * The row of each sequence's eos token. transformers 4.35: with the legacy eos_token_id 2 (configs written
   * before transformers PR #24773) the position of the largest id, argmax(input_ids); otherwise the first
   * position where input_ids == eos_token_id (0 if there is none). Both compare int32 casts of the ids.
   */
  pool(inputIds: Value, lastHiddenState: Value): Value {
    const g = inputIds.graph;
    const scores =
      this.eosTokenId === 2
        ? op.cast(inputIds, "int32")
        : op.cast(op.equal(inputIds, g.constInt64(this.eosTokenId)), "int32");
    const position = op.argMax(scores, -1, 1); // [B, 1], first maximum
    return op.gatherND(lastHiddenState, position, 1); // [B, hidden]
  }

  /** diffusers' encode_prompt clip_skip: final_layer_norm(hidden_states[-(clipSkip + 1)]). */
  clipSkip(b: ModelBuilder, hiddenStates: Value[], clipSkip: number): Value {
    const h = hiddenStates[hiddenStates.length - 1 - clipSkip];
    if (!h || !Number.isInteger(clipSkip) || clipSkip < 0) {
      throw new RangeError(
        `clip_skip must be an integer in [0, ${hiddenStates.length - 1}] (num_hidden_layers), got ${clipSkip}`,
      );
    }
    return this.finalLayerNorm.forward(b, h);
  }
}
