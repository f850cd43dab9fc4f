/**
 * diffusers `UNetMidBlock2D`: resnet, then (attention, resnet) × num_layers, without cross-attention. The VAE
 * encoder and decoder each end / start with one.
 * Ports diffusers v0.23.0 src/diffusers/models/unet_2d_blocks.py `UNetMidBlock2D`:
 * https://github.com/huggingface/diffusers/blob/v0.23.0/src/diffusers/models/unet_2d_blocks.py
 */
import type { Value } from "../../onnx/graph_builder.js";
import type { ModelBuilder } from "../../onnx/model_builder.js";
import type { Scope } from "../../onnx/params.js";
import { Attention, type AttentionGraphOptions } from "../attention_processor.js";
import { type ActivationName, ResnetBlock2D } from "../resnet.js";

export interface UNetMidBlock2DOptions {
  inChannels: number;
  /** null for the VAE (no time embedding). */
  tembChannels: number | null;
  numLayers?: number;
  resnetEps?: number;
  resnetActFn?: ActivationName;
  /** Default 32 (diffusers: null → min(in_channels / 4, 32)). */
  resnetGroups?: number | null;
  /** Default resnetGroups (the "default" time-scale-shift case). */
  attnGroups?: number;
  addAttention?: boolean;
  /** Channels per attention head (default 1); heads = inChannels / attentionHeadDim. */
  attentionHeadDim?: number;
  outputScaleFactor?: number;
  /** The attention's parameters use the pre-0.14 names (query/key/value/proj_attn), see Attention. */
  deprecatedAttentionNames?: boolean;
}

export class UNetMidBlock2D {
  readonly resnets: ResnetBlock2D[] = [];
  readonly attentions: (Attention | undefined)[] = [];

  constructor(
    readonly scope: Scope,
    o: UNetMidBlock2DOptions,
  ) {
    const C = o.inChannels;
    const groups = o.resnetGroups ?? Math.min(Math.floor(C / 4), 32);
    const eps = o.resnetEps ?? 1e-6;
    const osf = o.outputScaleFactor ?? 1;
    const headDim = o.attentionHeadDim ?? 1;
    const resnet = (i: number) =>
      new ResnetBlock2D(scope.pp("resnets").pp(i), {
        inChannels: C,
        outChannels: C,
        tembChannels: o.tembChannels,
        eps,
        groups,
        nonLinearity: o.resnetActFn ?? "silu",
        outputScaleFactor: osf,
      });
    this.resnets.push(resnet(0));
    for (let i = 0; i < (o.numLayers ?? 1); i++) {
      if (o.addAttention ?? true) {
        this.attentions.push(
          new Attention(scope.pp("attentions").pp(i), {
            queryDim: C,
            heads: Math.floor(C / headDim),
            dimHead: headDim,
            rescaleOutputFactor: osf,
            eps,
            normNumGroups: o.attnGroups ?? groups,
            residualConnection: true,
            bias: true,
            deprecatedNames: o.deprecatedAttentionNames,
          }),
        );
      } else {
        this.attentions.push(undefined);
      }
      this.resnets.push(resnet(i + 1));
    }
  }

  /** x: [B, C, H, W] → [B, C, H, W]. */
  forward(b: ModelBuilder, x: Value, attention: AttentionGraphOptions = {}, temb?: Value): Value {
    let h = this.resnets[0]!.forward(b, x, temb);
    this.attentions.forEach((attn, i) => {
      if (attn) h = attn.forward(b, h, undefined, { ...attention, inputNdim: 4 });
      h = this.resnets[i + 1]!.forward(b, h, temb);
    });
    return h;
  }
}

/** The `resnets` of a VAE block (DownEncoderBlock2D / UpDecoderBlock2D): ResnetBlock2D without time embedding. */
export function vaeResnets(
  scope: Scope,
  o: {
    inChannels: number;
    outChannels: number;
    numLayers?: number;
    resnetEps?: number;
    resnetActFn?: ActivationName;
    resnetGroups?: number;
    outputScaleFactor?: number;
  },
): ResnetBlock2D[] {
  return Array.from(
    { length: o.numLayers ?? 1 },
    (_, i) =>
      new ResnetBlock2D(scope.pp("resnets").pp(i), {
        inChannels: i === 0 ? o.inChannels : o.outChannels,
        outChannels: o.outChannels,
        tembChannels: null,
        eps: o.resnetEps ?? 1e-6,
        groups: o.resnetGroups ?? 32,
        nonLinearity: o.resnetActFn ?? "silu",
        outputScaleFactor: o.outputScaleFactor ?? 1,
      }),
  );
}
