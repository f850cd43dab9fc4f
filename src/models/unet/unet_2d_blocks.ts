/**
 * The UNet2DConditionModel blocks of the x4 upscaler family: DownBlock2D, CrossAttnDownBlock2D,
 * UNetMidBlock2DCrossAttn, UNetMidBlock2D (resnet only, as UNet2DConditionModel builds it), CrossAttnUpBlock2D and
 * UpBlock2D (with FreeU), plus `getDownBlock` / `getUpBlock`.
 *
 * Ports diffusers v0.23.0 src/diffusers/models/unet_2d_blocks.py
 * (https://github.com/huggingface/diffusers/blob/v0.23.0/src/diffusers/models/unet_2d_blocks.py). Scopes reproduce
 * its module names: resnets.N, attentions.N, downsamplers.0 (conv), upsamplers.0 (conv).
 */
import type { Value } from "../../onnx/graph_builder.js";
import type { ModelBuilder } from "../../onnx/model_builder.js";
import * as op from "../../onnx/ops.js";
import type { Scope } from "../../onnx/params.js";
import type { Attention } from "../attention_processor.js";
import { type ActivationName, Downsample2D, ResnetBlock2D, Upsample2D } from "../resnet.js";
import { type AttentionOptionsFor, Transformer2DModel } from "../transformer_2d.js";
import { applyFreeU, type FreeUConfig, isFreeUEnabled } from "./freeu.js";

/** What every block's forward receives besides its input. */
export interface BlockContext {
  /** The time embedding [B, blocksTimeEmbedDim]. */
  temb: Value;
  /** [B, S, cross_attention_dim]. */
  encoderHiddenStates: Value;
  /** Graph variant of each Attention (slicing / fused); default attention when undefined. */
  attnOptions?: AttentionOptionsFor;
}

/** The arguments get_down_block / get_up_block pass on (diffusers names in camelCase). */
export interface BlockOptions {
  numLayers: number;
  transformerLayersPerBlock: number | number[];
  inChannels: number;
  outChannels: number;
  tembChannels: number;
  resnetEps: number;
  resnetActFn: string;
  resnetGroups: number;
  resnetTimeScaleShift: "default" | "scale_shift";
  crossAttentionDim: number;
  numAttentionHeads: number;
  useLinearProjection: boolean;
  onlyCrossAttention: boolean;
  upcastAttention: boolean;
}

export interface DownBlockOptions extends BlockOptions {
  addDownsample: boolean;
  downsamplePadding: number;
}

export interface UpBlockOptions extends BlockOptions {
  prevOutputChannel: number;
  addUpsample: boolean;
  resolutionIdx: number;
}

export interface MidBlockOptions
  extends Omit<BlockOptions, "outChannels" | "onlyCrossAttention" | "numLayers"> {
  numLayers?: number;
  outputScaleFactor: number;
}

function resnet(s: Scope, o: BlockOptions, inChannels: number, outChannels: number, outputScaleFactor = 1) {
  return new ResnetBlock2D(s, {
    inChannels,
    outChannels,
    tembChannels: o.tembChannels,
    eps: o.resnetEps,
    groups: o.resnetGroups,
    timeEmbeddingNorm: o.resnetTimeScaleShift,
    nonLinearity: o.resnetActFn.toLowerCase() as ActivationName,
    outputScaleFactor,
  });
}

function transformer(
  s: Scope,
  o: BlockOptions,
  channels: number,
  numLayers: number,
  onlyCrossAttention: boolean,
) {
  if (channels % o.numAttentionHeads !== 0) {
    throw new Error(
      `${s.prefix}: ${channels} channels are not divisible by ${o.numAttentionHeads} attention heads`,
    );
  }
  return new Transformer2DModel(s, {
    num_attention_heads: o.numAttentionHeads,
    attention_head_dim: channels / o.numAttentionHeads,
    in_channels: channels,
    num_layers: numLayers,
    cross_attention_dim: o.crossAttentionDim,
    norm_num_groups: o.resnetGroups,
    use_linear_projection: o.useLinearProjection,
    only_cross_attention: onlyCrossAttention,
    upcast_attention: o.upcastAttention,
  });
}

/** transformer_layers_per_block of one block: an int for every layer, or one entry per layer. */
function layersOf(spec: number | number[], numLayers: number, where: string): number[] {
  if (!Array.isArray(spec)) return Array.from({ length: numLayers }, () => spec);
  if (spec.length < numLayers) {
    throw new Error(
      `${where}: transformer_layers_per_block ${JSON.stringify(spec)} has fewer than ${numLayers} entries`,
    );
  }
  return spec;
}

export interface DownBlockOutput {
  hidden: Value;
  /** The skip connections this block adds (one per layer, plus the downsampled output). */
  resSamples: Value[];
}

/** diffusers `DownBlock2D` and `CrossAttnDownBlock2D` (attentions present iff cross-attention). */
export class CrossAttnDownBlock2D {
  readonly resnets: ResnetBlock2D[] = [];
  readonly attentions: Transformer2DModel[] = [];
  readonly downsampler: Downsample2D | undefined;

  constructor(
    readonly scope: Scope,
    o: DownBlockOptions,
    readonly hasCrossAttention = true,
  ) {
    const layers = layersOf(o.transformerLayersPerBlock, o.numLayers, scope.prefix);
    for (let i = 0; i < o.numLayers; i++) {
      const inCh = i === 0 ? o.inChannels : o.outChannels;
      this.resnets.push(resnet(scope.pp("resnets").pp(i), o, inCh, o.outChannels));
      if (hasCrossAttention) {
        this.attentions.push(
          transformer(
            scope.pp("attentions").pp(i),
            o,
            o.outChannels,
            layers[i] as number,
            o.onlyCrossAttention,
          ),
        );
      }
    }
    if (o.addDownsample) {
      this.downsampler = new Downsample2D(scope.pp("downsamplers").pp(0), o.outChannels, {
        useConv: true,
        outChannels: o.outChannels,
        padding: o.downsamplePadding,
        name: "op",
      });
    }
  }

  attentionModules(): Attention[] {
    return this.attentions.flatMap((a) => a.attentionModules());
  }

  forward(b: ModelBuilder, x: Value, ctx: BlockContext): DownBlockOutput {
    return b.withScope(this.scope.prefix, () => {
      const resSamples: Value[] = [];
      let h = x;
      this.resnets.forEach((r, i) => {
        h = r.forward(b, h, ctx.temb);
        const attn = this.attentions[i];
        if (attn) h = attn.forward(b, h, ctx.encoderHiddenStates, ctx.attnOptions);
        resSamples.push(h);
      });
      if (this.downsampler) {
        h = this.downsampler.forward(b, h);
        resSamples.push(h);
      }
      return { hidden: h, resSamples };
    });
  }
}

/** diffusers `DownBlock2D`: resnets only. */
export class DownBlock2D extends CrossAttnDownBlock2D {
  constructor(scope: Scope, o: DownBlockOptions) {
    super(scope, o, false);
  }
}

/** diffusers `UNetMidBlock2DCrossAttn`: resnet, then (transformer, resnet) × num_layers. */
export class UNetMidBlock2DCrossAttn {
  readonly resnets: ResnetBlock2D[] = [];
  readonly attentions: Transformer2DModel[] = [];

  constructor(
    readonly scope: Scope,
    o: MidBlockOptions,
  ) {
    const numLayers = o.numLayers ?? 1;
    const ch = o.inChannels;
    const bo: BlockOptions = { ...o, outChannels: ch, onlyCrossAttention: false, numLayers };
    const layers = layersOf(o.transformerLayersPerBlock, numLayers, scope.prefix);
    this.resnets.push(resnet(scope.pp("resnets").pp(0), bo, ch, ch, o.outputScaleFactor));
    for (let i = 0; i < numLayers; i++) {
      this.attentions.push(transformer(scope.pp("attentions").pp(i), bo, ch, layers[i] as number, false));
      this.resnets.push(resnet(scope.pp("resnets").pp(i + 1), bo, ch, ch, o.outputScaleFactor));
    }
  }

  attentionModules(): Attention[] {
    return this.attentions.flatMap((a) => a.attentionModules());
  }

  forward(b: ModelBuilder, x: Value, ctx: BlockContext): Value {
    return b.withScope(this.scope.prefix, () => {
      let h = (this.resnets[0] as ResnetBlock2D).forward(b, x, ctx.temb);
      this.attentions.forEach((attn, i) => {
        h = attn.forward(b, h, ctx.encoderHiddenStates, ctx.attnOptions);
        h = (this.resnets[i + 1] as ResnetBlock2D).forward(b, h, ctx.temb);
      });
      return h;
    });
  }
}

/**
 * diffusers `UNetMidBlock2D` as UNet2DConditionModel builds it for mid_block_type "UNetMidBlock2D" (num_layers 0,
 * add_attention False): a single resnet.
 */
export class UNetMidBlock2D {
  readonly resnets: ResnetBlock2D[];

  constructor(
    readonly scope: Scope,
    o: MidBlockOptions,
  ) {
    const bo: BlockOptions = { ...o, outChannels: o.inChannels, onlyCrossAttention: false, numLayers: 0 };
    this.resnets = [resnet(scope.pp("resnets").pp(0), bo, o.inChannels, o.inChannels, o.outputScaleFactor)];
  }

  attentionModules(): Attention[] {
    return [];
  }

  forward(b: ModelBuilder, x: Value, ctx: BlockContext): Value {
    return b.withScope(this.scope.prefix, () => (this.resnets[0] as ResnetBlock2D).forward(b, x, ctx.temb));
  }
}

/** diffusers `CrossAttnUpBlock2D` and `UpBlock2D` (attentions present iff cross-attention), FreeU included. */
export class CrossAttnUpBlock2D {
  readonly resnets: ResnetBlock2D[] = [];
  readonly attentions: Transformer2DModel[] = [];
  readonly upsampler: Upsample2D | undefined;
  readonly resolutionIdx: number;
  /** Channels of the backbone input of each resnet (before the skip concat), for FreeU's channel split. */
  private readonly backboneChannels: number[] = [];

  constructor(
    readonly scope: Scope,
    o: UpBlockOptions,
    readonly hasCrossAttention = true,
  ) {
    this.resolutionIdx = o.resolutionIdx;
    const layers = layersOf(o.transformerLayersPerBlock, o.numLayers, scope.prefix);
    for (let i = 0; i < o.numLayers; i++) {
      const resSkipChannels = i === o.numLayers - 1 ? o.inChannels : o.outChannels;
      const resnetInChannels = i === 0 ? o.prevOutputChannel : o.outChannels;
      this.backboneChannels.push(resnetInChannels);
      this.resnets.push(
        resnet(scope.pp("resnets").pp(i), o, resnetInChannels + resSkipChannels, o.outChannels),
      );
      if (hasCrossAttention) {
        this.attentions.push(
          transformer(
            scope.pp("attentions").pp(i),
            o,
            o.outChannels,
            layers[i] as number,
            o.onlyCrossAttention,
          ),
        );
      }
    }
    if (o.addUpsample) {
      this.upsampler = new Upsample2D(scope.pp("upsamplers").pp(0), o.outChannels, {
        useConv: true,
        outChannels: o.outChannels,
      });
    }
  }

  attentionModules(): Attention[] {
    return this.attentions.flatMap((a) => a.attentionModules());
  }

  /**
   * resSamples: this block's skip connections, oldest first (the last one is consumed first). upsampleSize: int64
   * [2] output size of the upsampler (diffusers' forwarded `upsample_size`); freeu: enable_freeu's factors.
   */
  forward(
    b: ModelBuilder,
    x: Value,
    resSamples: Value[],
    ctx: BlockContext,
    upsampleSize?: Value,
    freeu?: FreeUConfig,
  ): Value {
    if (resSamples.length !== this.resnets.length) {
      throw new Error(
        `${this.scope.prefix}: ${resSamples.length} skip connections for ${this.resnets.length} resnets`,
      );
    }
    return b.withScope(this.scope.prefix, () => {
      const skips = [...resSamples];
      let h = x;
      this.resnets.forEach((r, i) => {
        let res = skips.pop() as Value;
        if (isFreeUEnabled(freeu)) {
          [h, res] = applyFreeU(this.resolutionIdx, h, this.backboneChannels[i] as number, res, freeu);
        }
        h = r.forward(b, op.concat([h, res], 1), ctx.temb);
        const attn = this.attentions[i];
        if (attn) h = attn.forward(b, h, ctx.encoderHiddenStates, ctx.attnOptions);
      });
      return this.upsampler ? this.upsampler.forward(b, h, upsampleSize) : h;
    });
  }
}

/** diffusers `UpBlock2D`: resnets only. */
export class UpBlock2D extends CrossAttnUpBlock2D {
  constructor(scope: Scope, o: UpBlockOptions) {
    super(scope, o, false);
  }
}

export type DownBlock = CrossAttnDownBlock2D;
export type UpBlock = CrossAttnUpBlock2D;
export type MidBlock = UNetMidBlock2DCrossAttn | UNetMidBlock2D;

/** diffusers `get_down_block` for the supported types ("UNetRes" prefixes already stripped by the config). */
export function getDownBlock(type: string, scope: Scope, o: DownBlockOptions): DownBlock {
  if (type === "DownBlock2D") return new DownBlock2D(scope, o);
  if (type === "CrossAttnDownBlock2D") return new CrossAttnDownBlock2D(scope, o);
  throw new Error(`${scope.prefix}: down block type "${type}" is not supported`);
}

/** diffusers `get_up_block` for the supported types. */
export function getUpBlock(type: string, scope: Scope, o: UpBlockOptions): UpBlock {
  if (type === "UpBlock2D") return new UpBlock2D(scope, o);
  if (type === "CrossAttnUpBlock2D") return new CrossAttnUpBlock2D(scope, o);
  throw new Error(`${scope.prefix}: up block type "${type}" is not supported`);
}
