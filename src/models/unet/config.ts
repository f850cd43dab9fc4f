/**
 * UNet2DConditionModel's config.json: diffusers v0.23.0's keys and defaults (`UNet2DConditionModel.__init__`), the
 * checks its constructor makes, and a clear error for every value this port does not implement.
 * https://github.com/huggingface/diffusers/blob/v0.23.0/src/diffusers/models/unet_2d_condition.py
 */

/** diffusers' `get_activation` names (matched case-insensitively). */
const ACTIVATION_NAMES = ["silu", "swish", "mish", "gelu", "relu"];
const isActivationName = (v: unknown): v is string =>
  typeof v === "string" && ACTIVATION_NAMES.includes(v.toLowerCase());

export class UNetConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UNetConfigError";
  }
}

export type DownBlockType = "DownBlock2D" | "CrossAttnDownBlock2D";
export type UpBlockType = "UpBlock2D" | "CrossAttnUpBlock2D";
export type MidBlockType = "UNetMidBlock2DCrossAttn" | "UNetMidBlock2D";
export type ClassEmbedType = "timestep" | "identity" | "projection" | "simple_projection";

/** The config object, with diffusers' snake_case keys (every key filled with its diffusers default). */
export interface UNet2DConditionModelConfig {
  sample_size: number | [number, number] | null;
  in_channels: number;
  out_channels: number;
  center_input_sample: boolean;
  flip_sin_to_cos: boolean;
  freq_shift: number;
  down_block_types: DownBlockType[];
  mid_block_type: MidBlockType | null;
  up_block_types: UpBlockType[];
  only_cross_attention: boolean | boolean[];
  block_out_channels: number[];
  layers_per_block: number | number[];
  downsample_padding: number;
  mid_block_scale_factor: number;
  dropout: number;
  act_fn: string;
  norm_num_groups: number;
  norm_eps: number;
  cross_attention_dim: number | number[];
  transformer_layers_per_block: number | (number | number[])[];
  reverse_transformer_layers_per_block: (number | number[])[] | null;
  encoder_hid_dim: null;
  encoder_hid_dim_type: null;
  attention_head_dim: number | number[];
  num_attention_heads: null;
  dual_cross_attention: false;
  use_linear_projection: boolean;
  class_embed_type: ClassEmbedType | null;
  addition_embed_type: null;
  addition_time_embed_dim: number | null;
  num_class_embeds: number | null;
  upcast_attention: boolean;
  resnet_time_scale_shift: "default" | "scale_shift";
  resnet_skip_time_act: boolean;
  resnet_out_scale_factor: number;
  time_embedding_type: "positional";
  time_embedding_dim: number | null;
  time_embedding_act_fn: string | null;
  timestep_post_act: string | null;
  time_cond_proj_dim: null;
  conv_in_kernel: number;
  conv_out_kernel: number;
  projection_class_embeddings_input_dim: number | null;
  attention_type: "default";
  class_embeddings_concat: boolean;
  mid_block_only_cross_attention: boolean | null;
  cross_attention_norm: string | null;
  addition_embed_type_num_heads: number;
  /** Other keys of the file (`_class_name`, `_diffusers_version`, ...), kept as read. */
  [extra: string]: unknown;
}

export const UNET_2D_CONDITION_DEFAULTS: Readonly<UNet2DConditionModelConfig> =
  Object.freeze<UNet2DConditionModelConfig>({
    sample_size: null,
    in_channels: 4,
    out_channels: 4,
    center_input_sample: false,
    flip_sin_to_cos: true,
    freq_shift: 0,
    down_block_types: ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    mid_block_type: "UNetMidBlock2DCrossAttn",
    up_block_types: ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    only_cross_attention: false,
    block_out_channels: [320, 640, 1280, 1280],
    layers_per_block: 2,
    downsample_padding: 1,
    mid_block_scale_factor: 1,
    dropout: 0,
    act_fn: "silu",
    norm_num_groups: 32,
    norm_eps: 1e-5,
    cross_attention_dim: 1280,
    transformer_layers_per_block: 1,
    reverse_transformer_layers_per_block: null,
    encoder_hid_dim: null,
    encoder_hid_dim_type: null,
    attention_head_dim: 8,
    num_attention_heads: null,
    dual_cross_attention: false,
    use_linear_projection: false,
    class_embed_type: null,
    addition_embed_type: null,
    addition_time_embed_dim: null,
    num_class_embeds: null,
    upcast_attention: false,
    resnet_time_scale_shift: "default",
    resnet_skip_time_act: false,
    resnet_out_scale_factor: 1,
    time_embedding_type: "positional",
    time_embedding_dim: null,
    time_embedding_act_fn: null,
    timestep_post_act: null,
    time_cond_proj_dim: null,
    conv_in_kernel: 3,
    conv_out_kernel: 3,
    projection_class_embeddings_input_dim: null,
    attention_type: "default",
    class_embeddings_concat: false,
    mid_block_only_cross_attention: null,
    cross_attention_norm: null,
    addition_embed_type_num_heads: 64,
  });

type Json = Record<string, unknown>;

/** Validates config.json against diffusers 0.23's UNet2DConditionModel and fills its defaults. */
export function parseUNet2DConditionConfig(json: Json, label = "unet config"): UNet2DConditionModelConfig {
  const fail = (key: string, why: string): never => {
    throw new UNetConfigError(`${label}: ${key} ${why}`);
  };
  const show = (v: unknown) => JSON.stringify(v);
  const c: Json = { ...UNET_2D_CONDITION_DEFAULTS };
  for (const [k, v] of Object.entries(json)) if (v !== undefined) c[k] = v;

  const isInt = (v: unknown, min = 0): v is number =>
    typeof v === "number" && Number.isInteger(v) && v >= min;
  const int = (key: string, min = 0) => {
    if (!isInt(c[key], min)) fail(key, `must be an integer >= ${min}, got ${show(c[key])}`);
  };
  const intOrNull = (key: string, min = 1) => {
    if (c[key] !== null) int(key, min);
  };
  const num = (key: string) => {
    if (typeof c[key] !== "number" || !Number.isFinite(c[key]))
      fail(key, `must be a number, got ${show(c[key])}`);
  };
  const bool = (key: string) => {
    if (typeof c[key] !== "boolean") fail(key, `must be true or false, got ${show(c[key])}`);
  };
  const oneOf = (key: string, allowed: unknown[], what = "is not supported") => {
    if (!allowed.includes(c[key])) {
      fail(key, `${show(c[key])} ${what} (supported: ${allowed.map(show).join(", ")})`);
    }
  };
  const activationOrNull = (key: string, nullable: boolean) => {
    const v = c[key];
    if (v === null && nullable) return;
    if (!isActivationName(v))
      fail(key, `${show(v)} is not a supported activation (silu, swish, mish, gelu, relu)`);
  };
  const stringList = (key: string) => {
    const v = c[key];
    if (!Array.isArray(v) || v.length === 0 || v.some((x) => typeof x !== "string")) {
      fail(key, `must be a non-empty list of block type names, got ${show(v)}`);
    }
    return v as string[];
  };

  // Block types ("UNetRes" prefixes are stripped, as get_down_block / get_up_block do).
  const strip = (t: string) => (t.startsWith("UNetRes") ? t.slice(7) : t);
  const down = stringList("down_block_types").map(strip);
  const up = stringList("up_block_types").map(strip);
  down.forEach((t, i) => {
    if (t !== "DownBlock2D" && t !== "CrossAttnDownBlock2D") {
      fail(
        `down_block_types[${i}]`,
        `${show(t)} is not supported (supported: "DownBlock2D", "CrossAttnDownBlock2D")`,
      );
    }
  });
  up.forEach((t, i) => {
    if (t !== "UpBlock2D" && t !== "CrossAttnUpBlock2D") {
      fail(
        `up_block_types[${i}]`,
        `${show(t)} is not supported (supported: "UpBlock2D", "CrossAttnUpBlock2D")`,
      );
    }
  });
  c.down_block_types = down;
  c.up_block_types = up;
  const n = down.length;
  if (up.length !== n) {
    fail("up_block_types", `must have as many entries as down_block_types (${up.length} vs ${n})`);
  }
  oneOf("mid_block_type", ["UNetMidBlock2DCrossAttn", "UNetMidBlock2D", null]);

  const perBlock = (key: string, check: (v: unknown) => boolean, what: string, scalarOk = true) => {
    const v = c[key];
    if (scalarOk && check(v)) return;
    if (!Array.isArray(v) || v.some((x) => !check(x))) fail(key, `must be ${what}, got ${show(v)}`);
    if ((v as unknown[]).length !== n) {
      fail(key, `must have one entry per down block (${n}), got ${(v as unknown[]).length}`);
    }
  };
  const posInt = (v: unknown) => isInt(v, 1);
  perBlock("block_out_channels", posInt, "a list of positive integers", false);
  perBlock("only_cross_attention", (v) => typeof v === "boolean", "a boolean or a list of booleans");
  perBlock("layers_per_block", posInt, "a positive integer or a list of them");
  perBlock("attention_head_dim", posInt, "a positive integer or a list of them");
  perBlock("cross_attention_dim", posInt, "a positive integer or a list of them");
  const layerSpec = (v: unknown) => posInt(v) || (Array.isArray(v) && v.length > 0 && v.every(posInt));
  perBlock("transformer_layers_per_block", layerSpec, "an integer, or a list of integers / integer lists");
  if (c.reverse_transformer_layers_per_block !== null) {
    perBlock("reverse_transformer_layers_per_block", layerSpec, "a list of integers / integer lists", false);
  } else if (
    Array.isArray(c.transformer_layers_per_block) &&
    c.transformer_layers_per_block.some((x) => Array.isArray(x))
  ) {
    fail("transformer_layers_per_block", "with per-layer lists needs reverse_transformer_layers_per_block");
  }

  // Values this port does not implement (diffusers supports them with other modules or inputs).
  if (c.num_attention_heads !== null) {
    fail(
      "num_attention_heads",
      `${show(c.num_attention_heads)}: diffusers 0.23 refuses it for UNet2DConditionModel (use attention_head_dim)`,
    );
  }
  oneOf("time_embedding_type", ["positional"]);
  oneOf("addition_embed_type", [null]);
  oneOf("encoder_hid_dim", [null]);
  oneOf("encoder_hid_dim_type", [null]);
  oneOf("time_cond_proj_dim", [null]);
  oneOf("dual_cross_attention", [false]);
  oneOf("attention_type", ["default"]);
  oneOf("class_embed_type", [null, "timestep", "identity", "projection", "simple_projection"]);
  oneOf("resnet_time_scale_shift", ["default", "scale_shift"]);
  if (c.norm_num_groups === null)
    fail("norm_num_groups", "null is not supported (the blocks need a GroupNorm)");

  int("in_channels", 1);
  int("out_channels", 1);
  int("downsample_padding", 0);
  int("norm_num_groups", 1);
  int("conv_in_kernel", 1);
  int("conv_out_kernel", 1);
  int("addition_embed_type_num_heads", 1);
  num("freq_shift");
  num("mid_block_scale_factor");
  num("norm_eps");
  num("dropout");
  num("resnet_out_scale_factor");
  for (const k of [
    "center_input_sample",
    "flip_sin_to_cos",
    "use_linear_projection",
    "upcast_attention",
    "resnet_skip_time_act",
    "class_embeddings_concat",
  ]) {
    bool(k);
  }
  if (c.mid_block_only_cross_attention !== null) bool("mid_block_only_cross_attention");
  intOrNull("num_class_embeds");
  intOrNull("time_embedding_dim");
  intOrNull("projection_class_embeddings_input_dim");
  intOrNull("addition_time_embed_dim");
  activationOrNull("act_fn", false);
  activationOrNull("time_embedding_act_fn", true);
  activationOrNull("timestep_post_act", true);
  for (const k of ["conv_in_kernel", "conv_out_kernel"]) {
    if ((c[k] as number) % 2 !== 1) fail(k, `must be odd (a same-size convolution), got ${c[k]}`);
  }
  if (
    (c.class_embed_type === "projection" || c.class_embed_type === "simple_projection") &&
    c.projection_class_embeddings_input_dim === null
  ) {
    fail("class_embed_type", `${show(c.class_embed_type)} requires projection_class_embeddings_input_dim`);
  }
  return c as UNet2DConditionModelConfig;
}

/** The per-block values UNet2DConditionModel.__init__ derives from its config. */
export interface UNetLayout {
  timeEmbedDim: number;
  timestepInputDim: number;
  /** Channels of the embedding the blocks receive (doubled by class_embeddings_concat). */
  blocksTimeEmbedDim: number;
  onlyCrossAttention: boolean[];
  /** Heads per block (diffusers: num_attention_heads defaults to attention_head_dim). */
  numAttentionHeads: number[];
  crossAttentionDim: number[];
  layersPerBlock: number[];
  transformerLayersPerBlock: (number | number[])[];
  reverseTransformerLayersPerBlock: (number | number[])[];
  numUpsamplers: number;
}

export function unetLayout(c: UNet2DConditionModelConfig): UNetLayout {
  const n = c.down_block_types.length;
  const list = <T>(v: T | T[]): T[] => (Array.isArray(v) ? [...v] : Array.from({ length: n }, () => v));
  const c0 = c.block_out_channels[0] as number;
  const timeEmbedDim = c.time_embedding_dim ?? c0 * 4;
  const transformerLayersPerBlock = list(c.transformer_layers_per_block);
  return {
    timeEmbedDim,
    timestepInputDim: c0,
    blocksTimeEmbedDim: c.class_embeddings_concat ? timeEmbedDim * 2 : timeEmbedDim,
    onlyCrossAttention: list(c.only_cross_attention),
    numAttentionHeads: list(c.attention_head_dim),
    crossAttentionDim: list(c.cross_attention_dim),
    layersPerBlock: list(c.layers_per_block),
    transformerLayersPerBlock,
    reverseTransformerLayersPerBlock:
      c.reverse_transformer_layers_per_block ?? [...transformerLayersPerBlock].reverse(),
    numUpsamplers: n - 1,
  };
}
