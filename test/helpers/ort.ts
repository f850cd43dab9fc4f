/** Runs a built graph in-process on onnxruntime-node's CPU EP (component tests). */
import * as ort from "onnxruntime-node";
import type { GraphBuilder } from "../../src/onnx/graph_builder.js";

export async function runGraph(
  b: GraphBuilder & { externalDataFolder?: string },
  feeds: Record<string, ort.Tensor>,
): Promise<Record<string, ort.Tensor>> {
  const extra: Record<string, Record<string, string>> = {};
  if (b.externalDataFolder)
    extra.session = { model_external_initializers_file_folder_path: b.externalDataFolder };
  const s = await ort.InferenceSession.create(b.serialize(), {
    extra,
  } as ort.InferenceSession.SessionOptions);
  try {
    return await s.run(feeds);
  } finally {
    await s.release();
  }
}
