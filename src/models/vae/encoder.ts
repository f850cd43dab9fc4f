/**
 * The VAE encoder: conv_in → DownEncoderBlock2D × n → UNetMidBlock2D (attention) → GroupNorm → SiLU → conv_out
 * (2 × latent channels: mean and logvar).
 * Ports diffusers v0.23.0 src/diffusers/models/vae.py `Encoder` and unet_2d_blocks.py `DownEncoderBlock2D`:
 * https://github.com/huggingface/diffusers/blob/v0.23.0/src/diffusers/models/vae.py
 */
import type { Value } from "../../onnx/graph_builder.js";
import type { ModelBuilder } from "../../onnx/model_builder.js";
import { Conv2d, GroupNorm } from "../../onnx/nn.js";
import * as op from "../../onnx/ops.js";
import type { Scope } from "../../onnx/params.js";
import type { AttentionGraphOptions } from "../attention_processor.js";
import { type ActivationName, Downsample2D, type ResnetBlock2D } from "../resnet.js";
import { UNetMidBlock2D, vaeResnets } from "./mid_block.js";

export interface DownEncoderBlock2DOptions {
  inChannels: number;
  outChannels: number;
  numLayers?: number;
  resnetEps?: number;
  resnetActFn?: ActivationName;
  resnetGroups?: number;
  outputScaleFactor?: number;
  addDownsample?: boolean;
  downsamplePadding?: number;
}

/** diffusers `DownEncoderBlock2D`: resnets without time embedding, then a stride-2 conv downsampler. */
export class DownEncoderBlock2D {
  readonly resnets: ResnetBlock2D[] = [];
  readonly downsamplers: Downsample2D[] = [];

  constructor(
    readonly scope: Scope,
    o: DownEncoderBlock2DOptions,
  ) {
    this.resnets.push(...vaeResnets(scope, o));
    if (o.addDownsample ?? true) {
      this.downsamplers.push(
        new Downsample2D(scope.pp("downsamplers").pp(0), o.outChannels, {
          useConv: true,
          outChannels: o.outChannels,
          padding: o.downsamplePadding ?? 1,
          name: "op",
        }),
      );
    }
  }

  forward(b: ModelBuilder, x: Value): Value {
    let h = x;
    for (const r of this.resnets) h = r.forward(b, h);
    for (const d of this.downsamplers) h = d.forward(b, h);
    return h;
  }
}

export interface EncoderOptions {
  inChannels?: number;
  /** Latent channels (conv_out gives twice as many with doubleZ). */
  outChannels?: number;
  blockOutChannels: number[];
  layersPerBlock?: number;
  normNumGroups?: number;
  actFn?: ActivationName;
  doubleZ?: boolean;
  deprecatedAttentionNames?: boolean;
}

/** diffusers `Encoder` (DownEncoderBlock2D blocks only, as AutoencoderKL's SD configs use). */
export class Encoder {
  readonly convIn: Conv2d;
  readonly downBlocks: DownEncoderBlock2D[] = [];
  readonly midBlock: UNetMidBlock2D;
  readonly convNormOut: GroupNorm;
  readonly convOut: Conv2d;

  constructor(
    readonly scope: Scope,
    o: EncoderOptions,
  ) {
    const boc = o.blockOutChannels;
    const groups = o.normNumGroups ?? 32;
    const act = o.actFn ?? "silu";
    const last = boc[boc.length - 1]!;
    this.convIn = new Conv2d(scope.pp("conv_in"), o.inChannels ?? 3, boc[0]!, 3, { padding: 1 });
    let outCh = boc[0]!;
    boc.forEach((ch, i) => {
      const inCh = outCh;
      outCh = ch;
      this.downBlocks.push(
        new DownEncoderBlock2D(scope.pp("down_blocks").pp(i), {
          numLayers: o.layersPerBlock ?? 2,
          inChannels: inCh,
          outChannels: outCh,
          addDownsample: i !== boc.length - 1,
          resnetEps: 1e-6,
          downsamplePadding: 0,
          resnetActFn: act,
          resnetGroups: groups,
        }),
      );
    });
    this.midBlock = new UNetMidBlock2D(scope.pp("mid_block"), {
      inChannels: last,
      resnetEps: 1e-6,
      resnetActFn: act,
      outputScaleFactor: 1,
      attentionHeadDim: last,
      resnetGroups: groups,
      tembChannels: null,
      deprecatedAttentionNames: o.deprecatedAttentionNames,
    });
    this.convNormOut = new GroupNorm(scope.pp("conv_norm_out"), groups, last, 1e-6);
    const outCh2 = (o.doubleZ ?? true) ? 2 * (o.outChannels ?? 3) : (o.outChannels ?? 3);
    this.convOut = new Conv2d(scope.pp("conv_out"), last, outCh2, 3, { padding: 1 });
  }

  /** sample: [B, in, H, W] → [B, 2·latent, ~H/f, ~W/f]. */
  forward(b: ModelBuilder, sample: Value, attention: AttentionGraphOptions = {}): Value {
    let h = this.convIn.forward(b, sample);
    for (const blk of this.downBlocks) h = blk.forward(b, h);
    h = this.midBlock.forward(b, h, attention);
    // conv_act is nn.SiLU() whatever act_fn is.
    h = op.silu(this.convNormOut.forward(b, h));
    return this.convOut.forward(b, h);
  }
}
