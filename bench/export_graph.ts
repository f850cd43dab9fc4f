/**
 * Writes sdx4's UNet graph (float32 or int8) or VAE decode graph as a standalone ONNX model for another machine or
 * runtime (e.g. Python onnxruntime on a host without Node): `model.onnx` + one external-data file `weights.bin`.
 *
 *   npx tsx bench/export_graph.ts --model <unet dir> --precision int8 --out <dir> [--skeleton]
 *     [--conv-algorithm auto|direct|winograd] [--int8-kernel u8s8|u7s8|u8u8] [--int8-convolutions yes|no]
 *     [--int8-activations row|half]
 *   npx tsx bench/export_graph.ts --component vae --model <vae dir> --out <dir> [--skeleton] [--conv-algorithm ...]
 *
 * --int8-convolutions overrides the kernel's default (int8 convolutions with u8s8 only: `int8Convolutions()`);
 * "no" gives the Linear-only int8 graph that keeps >= 40 dB (README, "The int8 fast path").
 *
 * With --skeleton the weights are not written: every large or quantized initializer points into `weights.bin`
 * (offsets and sizes recorded) and bench/run_exported.py fills it with random values, so a real-size graph
 * travels as a few MB (used to time the int8 path on a CPU with AMX).
 */
import { closeSync, mkdirSync, openSync, readFileSync, writeFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { checkChoice } from "../src/io/choice.js";
import { UNet2DConditionModel } from "../src/models/unet/unet_2d_condition.js";
import { AutoencoderKL } from "../src/models/vae/autoencoder_kl.js";
import { checkConvAlgorithm } from "../src/onnx/conv_plan.js";
import { DataType, onnx } from "../src/onnx/proto.js";
import { checkInt8Kernel, checkPrecision } from "../src/onnx/quantize.js";

const { values: a } = parseArgs({
  options: {
    component: { type: "string", default: "unet" },
    model: { type: "string" },
    precision: { type: "string", default: "float32" },
    out: { type: "string" },
    skeleton: { type: "boolean", default: false },
    "int8-kernel": { type: "string" },
    "int8-convolutions": { type: "string" },
    "int8-activations": { type: "string" },
    "conv-algorithm": { type: "string", default: "auto" },
  },
});
if (!a.model || !a.out) throw new Error("--model <unet or vae dir> and --out <dir> are required");
const component = checkChoice(["unet", "vae"] as const, a.component, "--component");
const precision = checkPrecision(a.precision);
const convAlgorithm = checkConvAlgorithm(a["conv-algorithm"], "--conv-algorithm");
if (component === "vae" && precision !== "float32") throw new Error("--precision: the VAE is float32 only");
// Build for the integer kernel of the target machine (u8s8 = VNNI / AMX), not necessarily this one's.
const kernel =
  a["int8-kernel"] === undefined ? undefined : checkInt8Kernel(a["int8-kernel"], "--int8-kernel");
const convs =
  a["int8-convolutions"] === undefined
    ? undefined
    : checkChoice(["yes", "no"] as const, a["int8-convolutions"], "--int8-convolutions");
const acts =
  a["int8-activations"] === undefined
    ? undefined
    : checkChoice(["row", "half"] as const, a["int8-activations"], "--int8-activations");
// The VAE's decode graph as `decode` builds it on the CPU (fused mid-block attention, the small-maps variant).
const b =
  component === "vae"
    ? (await AutoencoderKL.fromPretrained(a.model, { runtimeOptions: { convAlgorithm } })).buildDecodeGraph()
    : (
        await UNet2DConditionModel.fromPretrained(a.model, { precision, runtimeOptions: { convAlgorithm } })
      ).buildGraph({
        ...(kernel ? { int8Kernel: kernel } : {}),
        ...(convs !== undefined ? { int8Convolutions: convs === "yes" } : {}),
        ...(acts !== undefined ? { int8Activations: acts } : {}),
      });
const model = b.toModel();
const folder = b.externalDataFolder;
const SIZES: Record<number, number> = {
  [DataType.FLOAT]: 4,
  [DataType.INT8]: 1,
  [DataType.INT64]: 8,
  [DataType.UINT8]: 1,
};

mkdirSync(a.out, { recursive: true });
const fd = a.skeleton ? undefined : openSync(join(a.out, "weights.bin"), "w");
let offset = 0;
let moved = 0;
for (const t of model.graph?.initializer ?? []) {
  const numel = (t.dims ?? []).reduce((x: number, d) => x * Number(d), 1);
  const bytes = numel * (SIZES[t.dataType as number] ?? 0);
  const external = t.dataLocation === onnx.TensorProto.DataLocation.EXTERNAL;
  const quantized = (t.name as string).includes("::int8");
  if (!external && !quantized) continue; // small graph constants stay inline
  if (fd !== undefined) {
    let data: Uint8Array;
    if (external) {
      const kv = Object.fromEntries((t.externalData ?? []).map((e) => [e.key, e.value]));
      const file = readFileSync(join(folder as string, kv.location as string));
      data = file.subarray(Number(kv.offset), Number(kv.offset) + Number(kv.length));
    } else data = t.rawData as Uint8Array;
    writeSync(fd as number, data, 0, data.byteLength, offset);
  }
  t.rawData = new Uint8Array(0);
  t.dataLocation = onnx.TensorProto.DataLocation.EXTERNAL;
  t.externalData = [
    { key: "location", value: "weights.bin" },
    { key: "offset", value: String(offset) },
    { key: "length", value: String(bytes) },
  ];
  offset += Math.ceil(bytes / 64) * 64;
  moved++;
}
if (fd !== undefined) closeSync(fd);
writeFileSync(join(a.out, "model.onnx"), onnx.ModelProto.encode(model).finish());
console.log(
  JSON.stringify({
    out: a.out,
    component,
    precision,
    initializers_external: moved,
    weights_bytes: offset,
    skeleton: a.skeleton,
  }),
);
