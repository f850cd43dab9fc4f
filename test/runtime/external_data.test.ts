/**
 * External data: initializers stored in a separate file (data_location = EXTERNAL, location/offset/length) are
 * found through the session's external-data folder even though the model is passed as bytes and the process
 * cwd is elsewhere (the folder is given through a symlink; the host realpaths it). Weight files that are
 * symlinks out of their folder (Hugging Face cache layout) are resolved with resolveExternalDataFile.
 */
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { RuntimeError } from "../../src/runtime/errors.js";
import { resolveExternalDataFile } from "../../src/runtime/external_data.js";
import { float32Tensor } from "../../src/runtime/host_tensor.js";
import { RuntimeHost } from "../../src/runtime/worker_host.js";
import { externalDataModel, matMulRef, randomFloats } from "./models.js";

const [m, k, n] = [3, 6, 5];
// Unaligned offsets, like tensors inside a safetensors file (8-byte header length + JSON header + data).
const offsets = { w: 8 + 77 * 4, b: 8 + 77 * 4 + k * n * 4 + 12 };

describe("external data", () => {
  let root: string;
  let weightsDir: string;
  let link: string;
  let elsewhere: string;
  const cwd = process.cwd();
  const W = randomFloats(k * n, 11);
  const B = randomFloats(n, 12);
  const x = randomFloats(m * k, 13);

  before(() => {
    root = mkdtempSync(path.join(tmpdir(), "sdx4-runtime-ext-"));
    weightsDir = path.join(root, "weights");
    elsewhere = path.join(root, "elsewhere");
    mkdirSync(weightsDir);
    mkdirSync(elsewhere);
    const file = new Uint8Array(offsets.b + n * 4 + 16).fill(0xab);
    file.set(new Uint8Array(W.buffer), offsets.w);
    file.set(new Uint8Array(B.buffer), offsets.b);
    writeFileSync(path.join(weightsDir, "weights.bin"), file);
    link = path.join(root, "link-to-weights");
    symlinkSync(weightsDir, link, "dir");
    process.chdir(elsewhere);
  });

  after(() => {
    process.chdir(cwd);
    rmSync(root, { recursive: true, force: true });
  });

  for (const inProcess of [false, true]) {
    test(`model bytes + externalDataFolder (${inProcess ? "in-process" : "worker"})`, async () => {
      const host = new RuntimeHost({ inProcess });
      try {
        const model = externalDataModel(k, n, "weights.bin", offsets);
        const s = await host.createSession(model, { name: "ext", externalDataFolder: link });
        const { y } = await s.run({ x: float32Tensor(x, [m, k]) });
        const ref = matMulRef(x, W, m, k, n).map((v, i) => v + B[i % n]!);
        assert.deepEqual(y?.dims, [m, n]);
        const got = y!.data as Float32Array;
        for (let i = 0; i < ref.length; i++) assert.ok(Math.abs(got[i]! - ref[i]!) < 1e-4, `y[${i}]`);

        // Without the folder, locations resolve against the cwd, where there is no weights.bin.
        await assert.rejects(
          host.createSession(model, { name: "ext-no-folder", logSeverityLevel: 4 }),
          (e: unknown) =>
            e instanceof RuntimeError &&
            e.code === "ORT_ERROR" &&
            /session "ext-no-folder": cannot create the session: .*weights\.bin/.test(e.message),
        );
      } finally {
        await host.close();
      }
    });
  }

  test("weights file symlinked out of its folder (Hugging Face cache layout)", async () => {
    const snapshot = path.join(root, "snapshots", "rev");
    mkdirSync(snapshot, { recursive: true });
    const linked = path.join(snapshot, "model.safetensors");
    symlinkSync(path.join("..", "..", "weights", "weights.bin"), linked);
    const host = new RuntimeHost();
    try {
      // As is, onnxruntime refuses a location whose real path leaves the folder.
      await assert.rejects(
        host.createSession(externalDataModel(k, n, "model.safetensors", offsets), {
          name: "hf-raw",
          externalDataFolder: snapshot,
          logSeverityLevel: 4,
        }),
        /session "hf-raw": cannot create the session: .*escapes/,
      );
      const { folder, location } = await resolveExternalDataFile(linked);
      assert.equal(location, "weights.bin");
      const s = await host.createSession(externalDataModel(k, n, location, offsets), {
        name: "hf",
        externalDataFolder: folder,
      });
      const { y } = await s.run({ x: float32Tensor(x, [m, k]) });
      const ref = matMulRef(x, W, m, k, n).map((v, i) => v + B[i % n]!);
      for (let i = 0; i < ref.length; i++)
        assert.ok(Math.abs((y!.data as Float32Array)[i]! - ref[i]!) < 1e-4);
    } finally {
      await host.close();
    }
  });

  test("externalDataFolder must be a directory", async () => {
    const host = new RuntimeHost({ inProcess: true });
    await assert.rejects(
      host.createSession(externalDataModel(k, n, "weights.bin", offsets), {
        name: "ext",
        externalDataFolder: path.join(weightsDir, "weights.bin"),
      }),
      /session "ext": externalDataFolder ".*weights\.bin" is not a directory/,
    );
    await host.close();
  });
});
