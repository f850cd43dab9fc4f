/**
 * ResNet building blocks shared by the UNet and the VAE: ResnetBlock2D, Downsample2D, Upsample2D.
 *
 * Ports diffusers v0.23.0 src/diffusers/models/resnet.py
 * (https://github.com/huggingface/diffusers/blob/v0.23.0/src/diffusers/models/resnet.py) and the activation table
 * of models/activations.py. Parameter scopes reproduce diffusers' module names (norm1, conv1, time_emb_proj, norm2,
 * conv2, conv_shortcut; downsampler/upsampler `conv`), so checkpoint keys bind with no renaming.
 */
import type { Value } from "../onnx/graph_builder.js";
import type { ModelBuilder } from "../onnx/model_builder.js";
import { Conv2d, GroupNorm, Linear } from "../onnx/nn.js";
import * as op from "../onnx/ops.js";
import type { Param, Scope } from "../onnx/params.js";

/** diffusers' `get_activation` names (activations.py ACTIVATION_FUNCTIONS). */
export type ActivationName = "silu" | "swish" | "mish" | "gelu" | "relu";

const ACTIVATIONS: Record<ActivationName, (x: Value) => Value> = {
  silu: op.silu,
  swish: op.silu,
  // torch.nn.Mish: x * tanh(softplus(x)) (ai.onnx Mish needs opset 18).
  mish: (x) => op.mul(x, op.tanh(x.graph.op("Softplus", [x]))),
  gelu: op.gelu,
  relu: (x) => x.graph.op("Relu", [x]),
};

/** diffusers `get_activation(act_fn)`: case-insensitive lookup, a clear error for an unknown name. */
export function getActivation(name: string, what = "act_fn"): (x: Value) => Value {
  const fn = ACTIVATIONS[name.toLowerCase() as ActivationName];
  if (!fn) {
    throw new Error(
      `${what}: unsupported activation function "${name}" (supported: ${Object.keys(ACTIVATIONS).join(", ")})`,
    );
  }
  return fn;
}

export interface ResnetBlock2DOptions {
  inChannels: number;
  /** Defaults to inChannels. */
  outChannels?: number;
  /** Channels of the time embedding; null when the block takes none (the VAE). */
  tembChannels: number | null;
  /** Groups of norm1 (default 32). */
  groups?: number;
  /** Groups of norm2 (default `groups`). */
  groupsOut?: number;
  /** GroupNorm epsilon (default 1e-6). */
  eps?: number;
  /** The output is `(shortcut + h) / outputScaleFactor` (default 1). */
  outputScaleFactor?: number;
  /** Whether a 1x1 conv_shortcut exists; default `inChannels != conv2dOutChannels`. */
  useInShortcut?: boolean;
  /**
   * Accepted for API parity. In diffusers 0.23 it is stored but has no effect: the shortcut is always a 1x1 conv,
   * present when `useInShortcut`.
   */
  convShortcut?: boolean;
  /** Bias of conv_shortcut (default true). */
  convShortcutBias?: boolean;
  /** Default "silu" (diffusers' default "swish" is the same function). */
  nonLinearity?: ActivationName;
  /** "default" adds the projected embedding after conv1; "scale_shift" applies `norm2(h)*(1+scale)+shift`. */
  timeEmbeddingNorm?: "default" | "scale_shift";
  /** Skip the activation on temb before time_emb_proj (default false). */
  skipTimeAct?: boolean;
  /** Output channels of conv2 (default outChannels). */
  conv2dOutChannels?: number;
  /** Nearest x2 upsampling of both paths after norm1+act (diffusers `up=True`, kernel None). */
  up?: boolean;
  /** 2x2 average-pool downsampling of both paths after norm1+act (diffusers `down=True`, kernel None). */
  down?: boolean;
}

/** diffusers `ResnetBlock2D` (pre-norm; "ada_group" / "spatial" norms and FIR kernels are not supported). */
export class ResnetBlock2D {
  readonly inChannels: number;
  readonly outChannels: number;
  readonly norm1: GroupNorm;
  readonly conv1: Conv2d;
  readonly timeEmbProj: Linear | undefined;
  readonly norm2: GroupNorm;
  readonly conv2: Conv2d;
  readonly convShortcut: Conv2d | undefined;
  readonly outputScaleFactor: number;
  readonly timeEmbeddingNorm: "default" | "scale_shift";
  private readonly act: (x: Value) => Value;
  private readonly skipTimeAct: boolean;
  private readonly upsample: Upsample2D | undefined;
  private readonly downsample: Downsample2D | undefined;

  constructor(
    readonly scope: Scope,
    o: ResnetBlock2DOptions,
  ) {
    const groups = o.groups ?? 32;
    const groupsOut = o.groupsOut ?? groups;
    const eps = o.eps ?? 1e-6;
    this.inChannels = o.inChannels;
    this.outChannels = o.outChannels ?? o.inChannels;
    this.outputScaleFactor = o.outputScaleFactor ?? 1;
    this.timeEmbeddingNorm = o.timeEmbeddingNorm ?? "default";
    if (this.timeEmbeddingNorm !== "default" && this.timeEmbeddingNorm !== "scale_shift") {
      throw new Error(
        `${scope.prefix}: time_embedding_norm "${this.timeEmbeddingNorm}" is not supported (default, scale_shift)`,
      );
    }
    this.skipTimeAct = o.skipTimeAct ?? false;
    this.act = getActivation(o.nonLinearity ?? "silu", `${scope.prefix}: non_linearity`);
    if (o.up && o.down)
      throw new Error(`${scope.prefix}: a ResnetBlock2D cannot both upsample and downsample`);

    this.norm1 = new GroupNorm(scope.pp("norm1"), groups, this.inChannels, eps);
    this.conv1 = new Conv2d(scope.pp("conv1"), this.inChannels, this.outChannels, 3, { padding: 1 });
    if (o.tembChannels !== null) {
      const projOut = this.timeEmbeddingNorm === "scale_shift" ? 2 * this.outChannels : this.outChannels;
      this.timeEmbProj = new Linear(scope.pp("time_emb_proj"), o.tembChannels, projOut);
    }
    this.norm2 = new GroupNorm(scope.pp("norm2"), groupsOut, this.outChannels, eps);
    const conv2Out = o.conv2dOutChannels ?? this.outChannels;
    this.conv2 = new Conv2d(scope.pp("conv2"), this.outChannels, conv2Out, 3, { padding: 1 });
    // Parameter-free resamplers (diffusers builds them with use_conv=False).
    if (o.up) this.upsample = new Upsample2D(scope.pp("upsample"), this.inChannels, { useConv: false });
    if (o.down) {
      this.downsample = new Downsample2D(scope.pp("downsample"), this.inChannels, {
        useConv: false,
        padding: 1,
        name: "op",
      });
    }
    const useInShortcut = o.useInShortcut ?? this.inChannels !== conv2Out;
    if (useInShortcut) {
      this.convShortcut = new Conv2d(scope.pp("conv_shortcut"), this.inChannels, conv2Out, 1, {
        bias: o.convShortcutBias ?? true,
      });
    }
  }

  /** x: [B, C, H, W]; temb: [B, tembChannels] (required iff the block was built with tembChannels). */
  forward(b: ModelBuilder, x: Value, temb?: Value): Value {
    return b.withScope(this.scope.prefix, () => {
      let input = x;
      let h = this.act(this.norm1.forward(b, x));
      if (this.upsample) {
        input = this.upsample.forward(b, input);
        h = this.upsample.forward(b, h);
      } else if (this.downsample) {
        input = this.downsample.forward(b, input);
        h = this.downsample.forward(b, h);
      }
      h = this.conv1.forward(b, h);

      let t: Value | undefined;
      if (this.timeEmbProj) {
        if (!temb) throw new Error(`${this.scope.prefix}: this ResnetBlock2D needs a time embedding (temb)`);
        t = this.skipTimeAct ? temb : this.act(temb);
        t = op.unsqueeze(this.timeEmbProj.forward(b, t), [2, 3]);
      } else if (temb) {
        // diffusers adds a given temb even without time_emb_proj ("default" norm); mirror it.
        t = temb;
      }
      if (t && this.timeEmbeddingNorm === "default") h = op.add(h, t);
      h = this.norm2.forward(b, h);
      if (t && this.timeEmbeddingNorm === "scale_shift") {
        // torch.chunk(temb, 2, dim=1) (static slices: ai.onnx Split's num_outputs needs opset 18)
        const C = this.outChannels;
        const scale = op.slice(t, [0], [C], [1]);
        const shift = op.slice(t, [C], [2 * C], [1]);
        h = op.add(op.mul(h, op.add(scale, 1)), shift);
      }
      h = this.conv2.forward(b, this.act(h));
      if (this.convShortcut) input = this.convShortcut.forward(b, input);
      const out = op.add(input, h);
      return this.outputScaleFactor === 1 ? out : op.div(out, this.outputScaleFactor);
    });
  }
}

export interface Downsample2DOptions {
  /** A stride-2 3x3 conv (true) or a 2x2 average pool (false). */
  useConv: boolean;
  /** Defaults to channels (must equal it without a conv). */
  outChannels?: number;
  /** Conv padding (default 1). 0 pads (0,1,0,1) asymmetrically (right and bottom), as the VAE encoder does. */
  padding?: number;
  /**
   * diffusers' `name`. Every value stores the conv under `conv` ("conv" additionally aliases it as `Conv2d_0`,
   * a duplicate key a checkpoint may carry; bind those with `ignoreUnexpected`).
   */
  name?: string;
}

/** diffusers `Downsample2D`. */
export class Downsample2D {
  readonly outChannels: number;
  readonly padding: number;
  readonly weight: Param | undefined;
  readonly bias: Param | undefined;

  constructor(
    readonly scope: Scope,
    readonly channels: number,
    readonly opts: Downsample2DOptions,
  ) {
    this.outChannels = opts.outChannels ?? channels;
    this.padding = opts.padding ?? 1;
    if (opts.useConv) {
      const s = scope.pp("conv");
      this.weight = s.param("weight", [this.outChannels, channels, 3, 3]);
      this.bias = s.param("bias", [this.outChannels]);
    } else if (this.outChannels !== channels) {
      throw new Error(`${scope.prefix}: Downsample2D without a conv needs out_channels == channels`);
    }
  }

  forward(b: ModelBuilder, x: Value): Value {
    if (!this.weight) {
      return x.graph.op("AveragePool", [x], { kernel_shape: [2, 2], strides: [2, 2] });
    }
    // padding 0 → torch F.pad(x, (0, 1, 0, 1)) then an unpadded conv: the same as Conv pads [top 0, left 0,
    // bottom 1, right 1] (zero padding either way), without materialising the padded tensor.
    const p = this.padding;
    const pads = p === 0 ? [0, 0, 1, 1] : [p, p, p, p];
    return x.graph.op("Conv", [x, b.param(this.weight), this.bias ? b.param(this.bias) : undefined], {
      kernel_shape: [3, 3],
      strides: [2, 2],
      pads,
    });
  }
}

export interface Upsample2DOptions {
  /** A 3x3 conv after the nearest-neighbour upsampling. */
  useConv: boolean;
  /** Defaults to channels. */
  outChannels?: number;
  /** diffusers' `name`: "conv" (default) stores the conv as `conv`, anything else as `Conv2d_0`. */
  name?: string;
}

/** diffusers `Upsample2D` (nearest x2 or to an explicit size, then an optional 3x3 conv; no conv-transpose). */
export class Upsample2D {
  readonly outChannels: number;
  readonly conv: Conv2d | undefined;

  constructor(
    readonly scope: Scope,
    readonly channels: number,
    opts: Upsample2DOptions,
  ) {
    this.outChannels = opts.outChannels ?? channels;
    if (opts.useConv) {
      const name = (opts.name ?? "conv") === "conv" ? "conv" : "Conv2d_0";
      this.conv = new Conv2d(scope.pp(name), channels, this.outChannels, 3, { padding: 1 });
    }
  }

  /**
   * x: [B, C, H, W]. outputSize: an int64 [2] Value [H', W'] → `F.interpolate(x, size=outputSize,
   * mode="nearest")` (source index floor(dst * in/out)); without it, scale factor 2.
   */
  forward(b: ModelBuilder, x: Value, outputSize?: Value): Value {
    const h = outputSize
      ? op.resizeNearestToSize(x, op.concat([op.shape(x, 0, 2), outputSize], 0))
      : op.resizeNearestScale(x, 2);
    return this.conv ? this.conv.forward(b, h) : h;
  }
}
