/**
 * Worker entry of RuntimeHost: hosts onnxruntime sessions off the main thread. onnxruntime-node's session
 * creation and run() are synchronous native calls, so in here they block only this worker's event loop.
 *
 * Requests are handled strictly one after another; a run's cancel flag is checked when its turn comes.
 * Run outputs are posted back with their ArrayBuffers in the transfer list (zero-copy).
 *
 * The worker must never be terminated (Worker.terminate) while a native onnxruntime call is in progress: when
 * that call returns into a terminating JS environment, onnxruntime-node throws a C++ Napi::Error nobody
 * catches and the whole process aborts (SIGABRT, measured with 1.30). The host therefore ends the worker with a
 * "shutdown" request, which this worker handles between native calls by exiting its own thread.
 */
import { parentPort, workerData } from "node:worker_threads";
import { type Request, type Response, serializeError, type WorkerData } from "./protocol.js";
import { CancelledError, SessionTable, transferableBuffers } from "./session_core.js";

const port = parentPort;
if (!port) throw new Error("session_worker.ts must be started as a worker thread (see RuntimeHost)");

const { control } = workerData as WorkerData;
const table = new SessionTable();

async function handle(req: Request): Promise<{ value: unknown; transfer: ArrayBuffer[] }> {
  switch (req.op) {
    case "create":
      return { value: await table.create(req.name, req.model, req.options), transfer: [] };
    case "run": {
      const cancel = req.cancel;
      const isCancelled = cancel ? () => Atomics.load(cancel, 0) !== 0 : undefined;
      const out = await table.run(req.sessionId, req.feeds, req.outputs, isCancelled);
      return { value: out, transfer: transferableBuffers(Object.values(out)) };
    }
    case "release":
      await table.release(req.sessionId);
      return { value: undefined, transfer: [] };
    case "shutdown":
      await table.releaseAll();
      // In a worker thread, process.exit() ends this thread only.
      return process.exit(0);
    case "crash":
      setImmediate(() => {
        throw new Error("simulated session worker crash");
      });
      return new Promise(() => {});
  }
}

function reply(msg: Response, transfer: ArrayBuffer[]): void {
  try {
    port!.postMessage(msg, transfer);
  } catch (e) {
    // A buffer that cannot be transferred (e.g. marked untransferable): fall back to copying.
    if (transfer.length > 0) port!.postMessage(msg);
    else throw e;
  }
}

let queue: Promise<void> = Promise.resolve();

port.on("message", (req: Request) => {
  queue = queue.then(async () => {
    try {
      if (req.op !== "shutdown" && Atomics.load(control, 0) !== 0)
        throw new Error("the runtime host is closing");
      const { value, transfer } = await handle(req);
      reply({ id: req.id, ok: true, value }, transfer);
    } catch (e) {
      const error = serializeError(e);
      if (e instanceof CancelledError) error.cancelled = true;
      reply({ id: req.id, ok: false, error }, []);
    }
  });
});
