import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import {
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  realpathSync,
  writeFileSync,
} from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { after, before, describe, test } from "node:test";
import {
  findCachedSnapshot,
  ModelNotFoundError,
  resolvePretrained,
  selectPipelineFiles,
} from "../../src/io/hub.js";
import { FIXTURES } from "../helpers/fixtures.js";

const TINY = join(FIXTURES, "models/tiny-upscaler");
const SHA = "0123456789abcdef0123456789abcdef01234567";

function walk(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? walk(join(dir, e.name)) : [join(dir, e.name)],
  );
}

/** A repo as the hub would serve it: the tiny pipeline plus files a pipeline must not download. */
function fakeRepo(): Map<string, Buffer> {
  const files = new Map<string, Buffer>();
  for (const f of walk(TINY)) files.set(relative(TINY, f), readFileSync(f));
  files.set("x4-upscaler-ema.safetensors", Buffer.from("single-file checkpoint: never downloaded"));
  files.set("unet/diffusion_pytorch_model.bin", Buffer.from("pickle: never downloaded"));
  files.set("unet/diffusion_pytorch_model.fp16.safetensors", Buffer.from("fp16 variant: only with variant"));
  files.set("README.md", Buffer.from("# readme"));
  return files;
}

describe("hub and cache resolution", () => {
  let server: Server;
  let hubUrl: string;
  const requests: string[] = [];
  const repo = fakeRepo();

  before(async () => {
    server = createServer((req, res) => {
      const url = new URL(req.url ?? "/", "http://x");
      requests.push(`${req.method} ${url.pathname}`);
      if (url.pathname === "/api/models/acme/tiny-x4/revision/main") {
        res.setHeader("content-type", "application/json");
        res.end(
          JSON.stringify({
            id: "acme/tiny-x4",
            sha: SHA,
            siblings: [...repo.keys()].map((rfilename) => ({ rfilename })),
          }),
        );
        return;
      }
      if (url.pathname === `/api/models/acme/tiny-x4/paths-info/${SHA}`) {
        let body = "";
        req.on("data", (c) => (body += c));
        req.on("end", () => {
          const params = new URLSearchParams(body);
          const paths = params.getAll("paths");
          const parsed = paths.length ? paths : (JSON.parse(body || "{}").paths as string[]);
          res.setHeader("content-type", "application/json");
          res.end(
            JSON.stringify(
              parsed.map((p) => {
                const data = repo.get(p)!;
                return {
                  type: "file",
                  path: p,
                  size: data.length,
                  oid: createHash("sha1").update(data).digest("hex"),
                  lastCommit: { id: SHA, title: "x", date: "2024-01-01" },
                };
              }),
            ),
          );
        });
        return;
      }
      const m = url.pathname.match(/^\/acme\/tiny-x4\/resolve\/([^/]+)\/(.+)$/);
      const data = m ? repo.get(decodeURIComponent(m[2]!)) : undefined;
      if (!m || !data) {
        res.statusCode = 404;
        res.setHeader("X-Error-Code", "EntryNotFound");
        res.end();
        return;
      }
      res.setHeader("ETag", `"${createHash("sha1").update(data).digest("hex")}"`);
      res.setHeader("X-Repo-Commit", SHA);
      const range = req.headers.range?.match(/bytes=(\d+)-(\d*)/);
      if (range) {
        const start = Number(range[1]);
        const end = range[2] ? Math.min(Number(range[2]), data.length - 1) : data.length - 1;
        res.statusCode = 206;
        res.setHeader("Content-Range", `bytes ${start}-${end}/${data.length}`);
        res.setHeader("Content-Length", end - start + 1);
        res.end(data.subarray(start, end + 1));
        return;
      }
      res.setHeader("Content-Length", data.length);
      res.end(data);
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    hubUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => server.close());

  test("a local folder is used as is; a folder without model_index.json is a clear error", async () => {
    assert.equal(await resolvePretrained(TINY), TINY);
    await assert.rejects(resolvePretrained(join(TINY, "unet")), /no model_index\.json/);
    await assert.rejects(resolvePretrained("./no/such/dir/at/all"), /no such folder/);
  });

  test("a cached snapshot is found through refs without any network", async () => {
    const cache = mkdtempSync(join(tmpdir(), "sdx4-cache-"));
    const repoDir = join(cache, "models--acme--cached");
    mkdirSync(join(repoDir, "refs"), { recursive: true });
    mkdirSync(join(repoDir, "snapshots", SHA), { recursive: true });
    writeFileSync(join(repoDir, "refs", "main"), `${SHA}\n`);
    writeFileSync(join(repoDir, "snapshots", SHA, "model_index.json"), "{}");
    const dir = await resolvePretrained("acme/cached", { cacheDir: cache, localFilesOnly: true });
    assert.equal(dir, join(repoDir, "snapshots", SHA));
    assert.equal(findCachedSnapshot("acme/cached", SHA, cache), dir);
    const prev = process.env.HF_HUB_CACHE;
    process.env.HF_HUB_CACHE = cache;
    try {
      assert.equal(await resolvePretrained("acme/cached", { localFilesOnly: true }), dir);
    } finally {
      if (prev === undefined) delete process.env.HF_HUB_CACHE;
      else process.env.HF_HUB_CACHE = prev;
    }
  });

  test("offline and not cached: the error says what to download", async () => {
    const cache = mkdtempSync(join(tmpdir(), "sdx4-cache-"));
    await assert.rejects(
      resolvePretrained("stabilityai/stable-diffusion-x4-upscaler", {
        cacheDir: cache,
        localFilesOnly: true,
      }),
      (e: Error) =>
        e instanceof ModelNotFoundError &&
        /not in the Hugging Face cache/.test(e.message) &&
        /huggingface-cli download/.test(e.message),
    );
  });

  test("downloads a pipeline from a hub into the cache layout, only the files a pipeline needs, with progress", async () => {
    const cache = mkdtempSync(join(tmpdir(), "sdx4-cache-"));
    const seen = new Set<string>();
    const dir = await resolvePretrained("acme/tiny-x4", {
      cacheDir: cache,
      hubUrl,
      onProgress: (p) => seen.add(p.file),
    });
    const repoDir = join(cache, "models--acme--tiny-x4");
    assert.equal(realpathSync(dir), realpathSync(join(repoDir, "snapshots", SHA)));
    assert.equal(readFileSync(join(repoDir, "refs", "main"), "utf8"), SHA);
    assert.ok(lstatSync(join(dir, "unet/diffusion_pytorch_model.safetensors")).isSymbolicLink());
    assert.deepEqual(
      readFileSync(join(dir, "unet/diffusion_pytorch_model.safetensors")),
      repo.get("unet/diffusion_pytorch_model.safetensors"),
    );
    assert.ok(existsSync(join(dir, "tokenizer/vocab.json")));
    assert.ok(!existsSync(join(dir, "x4-upscaler-ema.safetensors")));
    assert.ok(!existsSync(join(dir, "unet/diffusion_pytorch_model.bin")));
    assert.ok(!existsSync(join(dir, "unet/diffusion_pytorch_model.fp16.safetensors")));
    assert.ok(seen.has("unet/diffusion_pytorch_model.safetensors"));
    // second call: served from the cache, no request
    const before = requests.length;
    assert.equal(await resolvePretrained("acme/tiny-x4", { cacheDir: cache, hubUrl }), dir);
    assert.equal(requests.length, before);
  });

  test("an unknown repo on the hub is a clear error", async () => {
    const cache = mkdtempSync(join(tmpdir(), "sdx4-cache-"));
    await assert.rejects(
      resolvePretrained("acme/missing", { cacheDir: cache, hubUrl }),
      /not found on the hub/,
    );
    await assert.rejects(
      resolvePretrained("acme/missing", { cacheDir: cache, hubUrl: "http://127.0.0.1:1" }),
      /could not reach the hub/,
    );
  });

  test("file selection follows the variant", () => {
    const files = [
      "model_index.json",
      "unet/config.json",
      "unet/diffusion_pytorch_model.safetensors",
      "unet/diffusion_pytorch_model.fp16.safetensors",
      "unet/diffusion_pytorch_model.bin",
      "vae/config.json",
      "vae/diffusion_pytorch_model.fp16.safetensors",
      "vae/diffusion_pytorch_model.safetensors",
      "x4-upscaler-ema.safetensors",
    ];
    const idx = {
      unet: ["diffusers", "UNet2DConditionModel"],
      vae: ["diffusers", "AutoencoderKL"],
      safety_checker: [null, null],
    };
    assert.deepEqual(selectPipelineFiles(files, idx).sort(), [
      "model_index.json",
      "unet/config.json",
      "unet/diffusion_pytorch_model.safetensors",
      "vae/config.json",
      "vae/diffusion_pytorch_model.safetensors",
    ]);
    assert.deepEqual(
      selectPipelineFiles(files, idx, "fp16")
        .filter((f) => f.endsWith(".safetensors"))
        .sort(),
      ["unet/diffusion_pytorch_model.fp16.safetensors", "vae/diffusion_pytorch_model.fp16.safetensors"],
    );
  });
});
