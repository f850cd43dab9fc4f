/**
 * AutoencoderKL's config.json: diffusers v0.23.0's keys and defaults (`AutoencoderKL.__init__`), with a clear error
 * for every value this port does not implement.
 * https://github.com/huggingface/diffusers/blob/v0.23.0/src/diffusers/models/autoencoder_kl.py
 */

export class VaeConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "VaeConfigError";
  }
}

/** The config object, with diffusers' snake_case keys (every key filled with its diffusers default). */
export interface AutoencoderKLConfig {
  in_channels: number;
  out_channels: number;
  down_block_types: "DownEncoderBlock2D"[];
  up_block_types: "UpDecoderBlock2D"[];
  block_out_channels: number[];
  layers_per_block: number;
  act_fn: string;
  latent_channels: number;
  norm_num_groups: number;
  /** An int, or [h, w] (diffusers then tiles with sample_size[0]). */
  sample_size: number | number[];
  /** 0.18215 by default; the x4 upscaler's is 0.08333. */
  scaling_factor: number;
  force_upcast: boolean;
  /** Other keys of the file (`_class_name`, `_diffusers_version`, ...), kept as read. */
  [extra: string]: unknown;
}

export const AUTOENCODER_KL_DEFAULTS: Readonly<AutoencoderKLConfig> = Object.freeze<AutoencoderKLConfig>({
  in_channels: 3,
  out_channels: 3,
  down_block_types: ["DownEncoderBlock2D"],
  up_block_types: ["UpDecoderBlock2D"],
  block_out_channels: [64],
  layers_per_block: 1,
  act_fn: "silu",
  latent_channels: 4,
  norm_num_groups: 32,
  sample_size: 32,
  scaling_factor: 0.18215,
  force_upcast: true,
});

const ACTIVATION_NAMES = ["silu", "swish", "mish", "gelu", "relu"];

/**
 * Keys of later diffusers versions that 0.23 does not know. Their default values describe the 0.23 model and are
 * accepted; any other value would change the network and is an error.
 */
const LATER_KEYS: Record<string, unknown> = {
  use_quant_conv: true,
  use_post_quant_conv: true,
  mid_block_add_attention: true,
};

/** Validates config.json against diffusers 0.23's AutoencoderKL and fills its defaults. */
export function parseAutoencoderKLConfig(
  json: Record<string, unknown>,
  label = "vae config",
): AutoencoderKLConfig {
  const fail = (key: string, why: string): never => {
    throw new VaeConfigError(`${label}: ${key} ${why}`);
  };
  const show = (v: unknown) => JSON.stringify(v);
  const c: Record<string, unknown> = structuredClone({ ...AUTOENCODER_KL_DEFAULTS });
  for (const [k, v] of Object.entries(json)) if (v !== undefined) c[k] = v;

  const isInt = (v: unknown, min = 1): v is number =>
    typeof v === "number" && Number.isInteger(v) && v >= min;
  for (const k of ["in_channels", "out_channels", "layers_per_block", "latent_channels", "norm_num_groups"]) {
    if (!isInt(c[k])) fail(k, `must be a positive integer, got ${show(c[k])}`);
  }
  const boc = c.block_out_channels;
  if (!Array.isArray(boc) || boc.length === 0 || !boc.every((v) => isInt(v))) {
    fail("block_out_channels", `must be a non-empty list of positive integers, got ${show(boc)}`);
  }
  const n = (boc as number[]).length;
  for (const [k, want] of [
    ["down_block_types", "DownEncoderBlock2D"],
    ["up_block_types", "UpDecoderBlock2D"],
  ] as const) {
    const v = c[k];
    if (!Array.isArray(v)) fail(k, `must be a list of block types, got ${show(v)}`);
    const list = v as unknown[];
    const bad = list.find((t) => t !== want);
    if (bad !== undefined) {
      fail(k, `contains ${show(bad)}: only ${want} is supported (the blocks of AutoencoderKL SD configs)`);
    }
    if (list.length !== n) {
      fail(k, `has ${list.length} entries but block_out_channels has ${n}`);
    }
  }
  const groups = c.norm_num_groups as number;
  for (const ch of boc as number[]) {
    if (ch % groups !== 0) {
      fail(
        "norm_num_groups",
        `${groups} does not divide block_out_channels entry ${ch} (GroupNorm needs it)`,
      );
    }
  }
  if (typeof c.act_fn !== "string" || !ACTIVATION_NAMES.includes(c.act_fn.toLowerCase())) {
    fail("act_fn", `${show(c.act_fn)} is not supported (${ACTIVATION_NAMES.join(", ")})`);
  }
  const ss = c.sample_size;
  if (!(isInt(ss) || (Array.isArray(ss) && ss.length > 0 && ss.every((v) => isInt(v))))) {
    fail("sample_size", `must be a positive integer or a list of them, got ${show(ss)}`);
  }
  if (typeof c.scaling_factor !== "number" || !Number.isFinite(c.scaling_factor) || c.scaling_factor === 0) {
    fail("scaling_factor", `must be a finite non-zero number, got ${show(c.scaling_factor)}`);
  }
  if (typeof c.force_upcast !== "boolean")
    fail("force_upcast", `must be a boolean, got ${show(c.force_upcast)}`);
  for (const [k, ok] of Object.entries(LATER_KEYS)) {
    if (k in json && json[k] !== ok) {
      fail(k, `= ${show(json[k])} is not supported (diffusers 0.23's AutoencoderKL always has ${show(ok)})`);
    }
  }
  return c as AutoencoderKLConfig;
}

/** The latent-to-image size factor: 2^(len(block_out_channels) - 1). */
export function vaeScaleFactor(config: AutoencoderKLConfig): number {
  return 2 ** (config.block_out_channels.length - 1);
}
