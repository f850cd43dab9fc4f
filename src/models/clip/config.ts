/**
 * CLIPTextConfig: the text encoder's config.json, with transformers v4.35's keys and defaults, the checks
 * CLIPAttention makes, and a clear error for every value this port does not implement.
 * https://github.com/huggingface/transformers/blob/v4.35.2/src/transformers/models/clip/configuration_clip.py
 */
import { ACTIVATION_NAMES, type ActivationName } from "./activations.js";

export class CLIPConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "CLIPConfigError";
  }
}

export type CLIPTextArchitecture = "CLIPTextModel" | "CLIPTextModelWithProjection";
export const CLIP_TEXT_ARCHITECTURES: readonly CLIPTextArchitecture[] = [
  "CLIPTextModel",
  "CLIPTextModelWithProjection",
];

/** The config object with transformers' snake_case keys (every key filled with its CLIPTextConfig default). */
export interface CLIPTextConfig {
  /** null when the file has none (transformers' default); then the model is a plain CLIPTextModel. */
  architectures: CLIPTextArchitecture[] | null;
  model_type: "clip_text_model";
  vocab_size: number;
  hidden_size: number;
  intermediate_size: number;
  projection_dim: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  max_position_embeddings: number;
  hidden_act: ActivationName;
  layer_norm_eps: number;
  attention_dropout: number;
  initializer_range: number;
  initializer_factor: number;
  pad_token_id: number | null;
  bos_token_id: number | null;
  /** 2 selects the legacy pooling rule (argmax of input_ids), as in transformers 4.35. */
  eos_token_id: number;
  /** Other keys of the file (`torch_dtype`, `transformers_version`, `dropout`, ...), kept as read. */
  [extra: string]: unknown;
}

export const CLIP_TEXT_CONFIG_DEFAULTS: Readonly<CLIPTextConfig> = Object.freeze({
  architectures: null,
  model_type: "clip_text_model",
  vocab_size: 49408,
  hidden_size: 512,
  intermediate_size: 2048,
  projection_dim: 512,
  num_hidden_layers: 12,
  num_attention_heads: 8,
  max_position_embeddings: 77,
  hidden_act: "quick_gelu",
  layer_norm_eps: 1e-5,
  attention_dropout: 0.0,
  initializer_range: 0.02,
  initializer_factor: 1.0,
  pad_token_id: 1,
  bos_token_id: 49406,
  eos_token_id: 49407,
});

/** The architecture a config describes (CLIPTextModel when `architectures` is absent). */
export function clipTextArchitecture(config: CLIPTextConfig): CLIPTextArchitecture {
  return config.architectures?.[0] ?? "CLIPTextModel";
}

/** Validates a CLIPTextConfig config.json and fills transformers' defaults. */
export function parseCLIPTextConfig(
  json: Record<string, unknown>,
  label = "text_encoder config",
): CLIPTextConfig {
  const show = (v: unknown) => JSON.stringify(v);
  const fail = (key: string, why: string): never => {
    throw new CLIPConfigError(`${label}: ${key} ${why}`);
  };
  const c: Record<string, unknown> = { ...CLIP_TEXT_CONFIG_DEFAULTS };
  for (const [k, v] of Object.entries(json)) if (v !== undefined) c[k] = v;

  if (c.model_type !== "clip_text_model") {
    const hint =
      c.model_type === "clip"
        ? " (a full CLIPModel config: use its text_config as the text encoder's config)"
        : "";
    fail("model_type", `${show(c.model_type)} is not supported (supported: "clip_text_model")${hint}`);
  }
  if (c.architectures !== null) {
    const a = c.architectures;
    if (!Array.isArray(a) || a.length !== 1 || !CLIP_TEXT_ARCHITECTURES.includes(a[0])) {
      fail(
        "architectures",
        `${show(a)} is not supported (supported: ${CLIP_TEXT_ARCHITECTURES.map((x) => show([x])).join(", ")})`,
      );
    }
  }

  const int = (key: string, min: number) => {
    const v = c[key];
    if (typeof v !== "number" || !Number.isInteger(v) || v < min) {
      fail(key, `must be an integer >= ${min}, got ${show(v)}`);
    }
  };
  const tokenId = (key: string) => {
    if (c[key] !== null) int(key, 0);
  };
  const num = (key: string, min: number, exclusiveMin = false) => {
    const v = c[key];
    if (typeof v !== "number" || !Number.isFinite(v) || v < min || (exclusiveMin && v === min)) {
      fail(key, `must be a number ${exclusiveMin ? ">" : ">="} ${min}, got ${show(v)}`);
    }
  };

  int("vocab_size", 1);
  int("hidden_size", 1);
  int("intermediate_size", 1);
  int("projection_dim", 1);
  int("num_hidden_layers", 0);
  int("num_attention_heads", 1);
  int("max_position_embeddings", 1);
  num("layer_norm_eps", 0, true);
  num("attention_dropout", 0);
  num("initializer_range", 0);
  num("initializer_factor", 0);
  tokenId("pad_token_id");
  tokenId("bos_token_id");
  // The pooled output reads the first eos token (or argmax(input_ids) for the legacy eos 2): it needs an id.
  int("eos_token_id", 0);
  if (typeof c.hidden_act !== "string" || !(ACTIVATION_NAMES as readonly string[]).includes(c.hidden_act)) {
    fail("hidden_act", `${show(c.hidden_act)} is not supported (supported: ${ACTIVATION_NAMES.join(", ")})`);
  }
  const hidden = c.hidden_size as number;
  const heads = c.num_attention_heads as number;
  if (hidden % heads !== 0) {
    // CLIPAttention raises the same ValueError.
    fail(
      "num_attention_heads",
      `${heads} must divide hidden_size ${hidden} (embed_dim must be divisible by num_heads)`,
    );
  }
  return c as CLIPTextConfig;
}
