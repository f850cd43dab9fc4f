/**
 * The UNet's int8 graph options: which layers stay float32, which integer kernel, whether convolutions are
 * quantized, and how activations are (src/onnx/int8_ops.ts). UNet2DConditionModel.buildGraph resolves them here.
 */
import { checkChoice } from "../../io/choice.js";
import type { ModelBuilderOptions } from "../../onnx/model_builder.js";
import { type Int8Kernel, int8Convolutions, int8Kernel } from "../../onnx/quantize.js";

/**
 * Layers the int8 path keeps in float32: the first and last convolution (they carry the image itself) and the
 * time / class embedding path (a handful of rows, and its error would reach every resnet).
 */
export const UNET_INT8_KEEP = /^(conv_in|conv_out|time_embedding|class_embedding)\.|\.time_emb_proj\./;

/**
 * How the int8 layers quantize activations: "row" (per token / per image, guidance pairs through the
 * `guidance_index` input, any batch) or "half" (the batch must be [unconditional; conditional] halves; each half
 * per tensor, fused into onnxruntime's DynamicQuantizeMatMul: fewer element-wise passes; int8LinearHalves).
 * `forward` builds "half" for guidancePairs, else "row".
 */
export type Int8Activations = "row" | "half";

export interface UNetInt8GraphOptions {
  /** The integer kernel (default: this CPU's exact one, int8Kernel(); "u8u8" for "half" where that is "u7s8"). */
  int8Kernel?: Int8Kernel;
  /** Whether convolutions are quantized (default int8Convolutions(kernel)). */
  int8Convolutions?: boolean;
  /** Default "row". */
  int8Activations?: Int8Activations;
}

/** The ModelBuilder int8 options of a UNet graph, and whether it quantizes guidance halves. */
export function unetInt8Options(
  label: string,
  options: UNetInt8GraphOptions,
): { int8: NonNullable<ModelBuilderOptions["int8"]>; halves: boolean } {
  const acts = checkChoice(["row", "half"] as const, options.int8Activations ?? "row", "int8Activations");
  const halves = acts === "half";
  // Halves take 8-bit activations: where the CPU's exact kernel is 7-bit ("u7s8", AVX2), the same integers run
  // as "u8u8".
  const cpuKernel = int8Kernel();
  const kernel = options.int8Kernel ?? (halves && cpuKernel === "u7s8" ? "u8u8" : cpuKernel);
  if (halves && kernel === "u7s8") {
    throw new RangeError(
      `${label}: int8Activations "half" quantizes activations to 8 bits, which the "u7s8" kernel ` +
        `cannot take: use "u8s8" (VNNI / AMX) or "u8u8"`,
    );
  }
  const convolutions = options.int8Convolutions ?? int8Convolutions(kernel);
  return { int8: { keep: (k: string) => UNET_INT8_KEEP.test(k), kernel, convolutions }, halves };
}
