/**
 * diffusers `DiagonalGaussianDistribution`: the encoder's moments split into mean and logvar (clamped to
 * [-30, 20]), std = exp(0.5·logvar), var = exp(logvar); `sample(generator)` = mean + std·randn like diffusers.
 * Ports diffusers v0.23.0 src/diffusers/models/vae.py:
 * https://github.com/huggingface/diffusers/blob/v0.23.0/src/diffusers/models/vae.py
 */
import type { Generator } from "../../random/generator.js";
import { randnTensor } from "../../random/randn_tensor.js";
import type { HostTensor } from "../../runtime/host_tensor.js";
import type { FloatTensor } from "./tiling.js";

const f32 = (dims: number[], data: Float32Array): HostTensor => ({ type: "float32", dims: [...dims], data });

export class DiagonalGaussianDistribution {
  /** [B, C, h, w] */
  readonly mean: HostTensor;
  /** Clamped to [-30, 20]. */
  readonly logvar: HostTensor;
  readonly std: HostTensor;
  readonly var: HostTensor;

  /** moments: [B, 2C, h, w] (quant_conv output); `torch.chunk(moments, 2, dim=1)`. */
  constructor(
    moments: FloatTensor,
    readonly deterministic = false,
  ) {
    const [B, C2, h, w] = moments.dims as [number, number, number, number];
    if (moments.dims.length !== 4 || C2 % 2 !== 0) {
      throw new Error(`DiagonalGaussianDistribution: moments must be [B, 2C, h, w], got [${moments.dims}]`);
    }
    const C = C2 / 2;
    const n = C * h * w;
    const mean = new Float32Array(B * n);
    const logvar = new Float32Array(B * n);
    const std = new Float32Array(B * n);
    const vr = new Float32Array(B * n);
    for (let b = 0; b < B; b++) {
      mean.set(moments.data.subarray(2 * b * n, (2 * b + 1) * n), b * n);
      const lv = moments.data.subarray((2 * b + 1) * n, (2 * b + 2) * n);
      for (let i = 0; i < n; i++) {
        const v = Math.min(Math.max(lv[i]!, -30), 20);
        logvar[b * n + i] = v;
        std[b * n + i] = deterministic ? 0 : Math.exp(0.5 * v);
        vr[b * n + i] = deterministic ? 0 : Math.exp(v);
      }
    }
    const dims = [B, C, h, w];
    this.mean = f32(dims, mean);
    this.logvar = f32(dims, logvar);
    this.std = f32(dims, std);
    this.var = f32(dims, vr);
  }

  /** mean + std · randn(mean.shape, generator) (diffusers' randn_tensor: a list gives one generator per row). */
  sample(generator?: Generator | readonly Generator[]): HostTensor {
    const noise = randnTensor(this.mean.dims, generator);
    const m = this.mean.data as Float32Array;
    const s = this.std.data as Float32Array;
    const out = new Float32Array(m.length);
    for (let i = 0; i < m.length; i++) out[i] = Math.fround(m[i]! + Math.fround(s[i]! * noise[i]!));
    return f32(this.mean.dims, out);
  }

  /** The mean. */
  mode(): HostTensor {
    return this.mean;
  }
}
