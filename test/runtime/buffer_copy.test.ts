/** The caller's bytes survive a worker call even when they are a Node Buffer (whose slice() is a view). */
import assert from "node:assert/strict";
import { test } from "node:test";
import { uint8Tensor } from "../../src/runtime/host_tensor.js";
import { RuntimeHost } from "../../src/runtime/worker_host.js";
import { addModel } from "./models.js";

test("model bytes given as a Buffer view are copied, not detached", async () => {
  const host = new RuntimeHost();
  try {
    const bytes = addModel();
    const pool = Buffer.allocUnsafeSlow(bytes.byteLength + 16); // its own (transferable) ArrayBuffer
    pool.set(bytes, 16);
    const model = pool.subarray(16);
    const before = model.byteLength;
    const s = await host.createSession(model, { name: "add" });
    assert.equal(model.byteLength, before);
    assert.equal(pool.byteLength, before + 16);
    const again = await host.createSession(model, { name: "add-again" });
    await s.release();
    await again.release();
    // uint8 feeds backed by a Buffer are copied as well
    const data = Buffer.from([1, 2, 3]);
    const t = uint8Tensor(data, [3]);
    assert.equal(t.data.byteLength, 3);
  } finally {
    await host.close();
  }
});
