/**
 * The VAE decoder: conv_in → UNetMidBlock2D (attention) → UpDecoderBlock2D × n → GroupNorm → SiLU → conv_out.
 * Ports diffusers v0.23.0 src/diffusers/models/vae.py `Decoder` (norm_type "group") and unet_2d_blocks.py
 * `UpDecoderBlock2D`: https://github.com/huggingface/diffusers/blob/v0.23.0/src/diffusers/models/vae.py
 */
import type { Value } from "../../onnx/graph_builder.js";
import type { ModelBuilder } from "../../onnx/model_builder.js";
import { Conv2d, GroupNorm } from "../../onnx/nn.js";
import * as op from "../../onnx/ops.js";
import type { Scope } from "../../onnx/params.js";
import type { AttentionGraphOptions } from "../attention_processor.js";
import { type ActivationName, type ResnetBlock2D, Upsample2D } from "../resnet.js";
import { UNetMidBlock2D, vaeResnets } from "./mid_block.js";

export interface UpDecoderBlock2DOptions {
  inChannels: number;
  outChannels: number;
  numLayers?: number;
  resnetEps?: number;
  resnetActFn?: ActivationName;
  resnetGroups?: number;
  outputScaleFactor?: number;
  addUpsample?: boolean;
}

/** diffusers `UpDecoderBlock2D`: resnets without time embedding, then a nearest x2 + conv upsampler. */
export class UpDecoderBlock2D {
  readonly resnets: ResnetBlock2D[] = [];
  readonly upsamplers: Upsample2D[] = [];

  constructor(
    readonly scope: Scope,
    o: UpDecoderBlock2DOptions,
  ) {
    this.resnets.push(...vaeResnets(scope, o));
    if (o.addUpsample ?? true) {
      this.upsamplers.push(
        new Upsample2D(scope.pp("upsamplers").pp(0), o.outChannels, {
          useConv: true,
          outChannels: o.outChannels,
        }),
      );
    }
  }

  forward(b: ModelBuilder, x: Value): Value {
    let h = x;
    for (const r of this.resnets) h = r.forward(b, h);
    for (const u of this.upsamplers) h = u.forward(b, h);
    return h;
  }
}

export interface DecoderOptions {
  /** Latent channels. */
  inChannels?: number;
  outChannels?: number;
  blockOutChannels: number[];
  layersPerBlock?: number;
  normNumGroups?: number;
  actFn?: ActivationName;
  deprecatedAttentionNames?: boolean;
}

/** diffusers `Decoder` with norm_type "group" (UpDecoderBlock2D blocks only). */
export class Decoder {
  readonly convIn: Conv2d;
  readonly midBlock: UNetMidBlock2D;
  readonly upBlocks: UpDecoderBlock2D[] = [];
  readonly convNormOut: GroupNorm;
  readonly convOut: Conv2d;

  constructor(
    readonly scope: Scope,
    o: DecoderOptions,
  ) {
    const boc = o.blockOutChannels;
    const groups = o.normNumGroups ?? 32;
    const act = o.actFn ?? "silu";
    const last = boc[boc.length - 1]!;
    this.convIn = new Conv2d(scope.pp("conv_in"), o.inChannels ?? 3, last, 3, { padding: 1 });
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
    const reversed = [...boc].reverse();
    let outCh = reversed[0]!;
    reversed.forEach((ch, i) => {
      const prev = outCh;
      outCh = ch;
      this.upBlocks.push(
        new UpDecoderBlock2D(scope.pp("up_blocks").pp(i), {
          numLayers: (o.layersPerBlock ?? 2) + 1,
          inChannels: prev,
          outChannels: outCh,
          addUpsample: i !== boc.length - 1,
          resnetEps: 1e-6,
          resnetActFn: act,
          resnetGroups: groups,
        }),
      );
    });
    this.convNormOut = new GroupNorm(scope.pp("conv_norm_out"), groups, boc[0]!, 1e-6);
    this.convOut = new Conv2d(scope.pp("conv_out"), boc[0]!, o.outChannels ?? 3, 3, { padding: 1 });
  }

  /** z: [B, latent, h, w] → [B, out, h·f, w·f]. */
  forward(b: ModelBuilder, z: Value, attention: AttentionGraphOptions = {}): Value {
    let h = this.convIn.forward(b, z);
    h = this.midBlock.forward(b, h, attention);
    for (const blk of this.upBlocks) h = blk.forward(b, h);
    // conv_act is nn.SiLU() whatever act_fn is.
    h = op.silu(this.convNormOut.forward(b, h));
    return this.convOut.forward(b, h);
  }
}
