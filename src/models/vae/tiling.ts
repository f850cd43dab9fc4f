/**
 * Host-side tiled VAE decode / encode, exactly as diffusers v0.23.0 `AutoencoderKL.tiled_decode` /
 * `tiled_encode` / `blend_v` / `blend_h`: overlapping tiles each run through the graph, every tile blended in
 * place with the (already blended) tile above and the one to its left, then cropped to `row_limit` and
 * concatenated. https://github.com/huggingface/diffusers/blob/v0.23.0/src/diffusers/models/autoencoder_kl.py
 *
 * Written against a tile runner so that the same loop drives a runtime session or a test's in-process graph.
 */

/** A float32 NCHW tensor. */
export interface FloatTensor {
  dims: number[];
  data: Float32Array;
}

/** Runs one tile through the network (decoder: latents → image; encoder: image → moments). */
export type TileRunner = (tile: FloatTensor) => Promise<FloatTensor>;

/** diffusers' tiling attributes (`tile_sample_min_size`, `tile_latent_min_size`, `tile_overlap_factor`). */
export interface TileSettings {
  tileSampleMinSize: number;
  tileLatentMinSize: number;
  tileOverlapFactor: number;
}

function dims4(t: FloatTensor, what: string): [number, number, number, number] {
  if (t.dims.length !== 4) throw new Error(`${what}: expected an NCHW tensor, got dims [${t.dims}]`);
  return t.dims as [number, number, number, number];
}

/** `x[:, :, h0:h1, w0:w1]` with Python's clamping of out-of-range ends. */
export function cropHW(x: FloatTensor, h0: number, h1: number, w0: number, w1: number): FloatTensor {
  const [B, C, H, W] = dims4(x, "crop");
  const hs = Math.min(h0, H);
  const he = Math.max(hs, Math.min(h1, H));
  const ws = Math.min(w0, W);
  const we = Math.max(ws, Math.min(w1, W));
  const h = he - hs;
  const w = we - ws;
  const out = new Float32Array(B * C * h * w);
  for (let p = 0; p < B * C; p++) {
    for (let i = 0; i < h; i++) {
      const src = (p * H + hs + i) * W + ws;
      out.set(x.data.subarray(src, src + w), (p * h + i) * w);
    }
  }
  return { dims: [B, C, h, w], data: out };
}

/**
 * torch's `a * w1 + b * w2` on float32 tensors with Python-float weights: each weight is rounded to float32,
 * each product and the sum to float32.
 */
function mix(a: number, w1: number, b: number, w2: number): number {
  return Math.fround(Math.fround(a * w1) + Math.fround(b * w2));
}

/** diffusers `blend_v`: rows 0..e-1 of b fade in from the last e rows of a. Mutates and returns b. */
export function blendV(a: FloatTensor, b: FloatTensor, blendExtent: number): FloatTensor {
  const [B, C, Ha, Wa] = dims4(a, "blend_v");
  const [, , Hb, Wb] = dims4(b, "blend_v");
  if (Wa !== Wb) throw new Error(`blend_v: widths differ (${Wa} vs ${Wb})`);
  const e = Math.min(Ha, Hb, blendExtent);
  for (let y = 0; y < e; y++) {
    const w1 = Math.fround(1 - y / e);
    const w2 = Math.fround(y / e);
    for (let p = 0; p < B * C; p++) {
      const ra = (p * Ha + Ha - e + y) * Wa;
      const rb = (p * Hb + y) * Wb;
      for (let x = 0; x < Wb; x++) b.data[rb + x] = mix(a.data[ra + x]!, w1, b.data[rb + x]!, w2);
    }
  }
  return b;
}

/** diffusers `blend_h`: columns 0..e-1 of b fade in from the last e columns of a. Mutates and returns b. */
export function blendH(a: FloatTensor, b: FloatTensor, blendExtent: number): FloatTensor {
  const [B, C, Ha, Wa] = dims4(a, "blend_h");
  const [, , Hb, Wb] = dims4(b, "blend_h");
  if (Ha !== Hb) throw new Error(`blend_h: heights differ (${Ha} vs ${Hb})`);
  const e = Math.min(Wa, Wb, blendExtent);
  for (let x = 0; x < e; x++) {
    const w1 = Math.fround(1 - x / e);
    const w2 = Math.fround(x / e);
    for (let p = 0; p < B * C; p++) {
      for (let y = 0; y < Hb; y++) {
        const ia = (p * Ha + y) * Wa + Wa - e + x;
        const ib = (p * Hb + y) * Wb + x;
        b.data[ib] = mix(a.data[ia]!, w1, b.data[ib]!, w2);
      }
    }
  }
  return b;
}

/** torch.cat along dim 3 (same B, C, H). */
function catW(parts: FloatTensor[]): FloatTensor {
  const [B, C, H] = dims4(parts[0]!, "cat");
  const W = parts.reduce((s, t) => s + t.dims[3]!, 0);
  const out = new Float32Array(B * C * H * W);
  let off = 0;
  for (const t of parts) {
    const w = t.dims[3]!;
    for (let r = 0; r < B * C * H; r++) out.set(t.data.subarray(r * w, (r + 1) * w), r * W + off);
    off += w;
  }
  return { dims: [B, C, H, W], data: out };
}

/** torch.cat along dim 2 (same B, C, W). */
function catH(parts: FloatTensor[]): FloatTensor {
  const [B, C, , W] = dims4(parts[0]!, "cat");
  const H = parts.reduce((s, t) => s + t.dims[2]!, 0);
  const out = new Float32Array(B * C * H * W);
  let off = 0;
  for (const t of parts) {
    const h = t.dims[2]!;
    for (let p = 0; p < B * C; p++) out.set(t.data.subarray(p * h * W, (p + 1) * h * W), (p * H + off) * W);
    off += h;
  }
  return { dims: [B, C, H, W], data: out };
}

/**
 * The shared loop: tiles of `tileIn` (stride `overlap`) run through `run`, blended over `blendExtent` output
 * pixels, cropped to `rowLimit`.
 */
async function tiled(
  x: FloatTensor,
  tileIn: number,
  overlap: number,
  blendExtent: number,
  rowLimit: number,
  run: TileRunner,
): Promise<FloatTensor> {
  const [, , H, W] = dims4(x, "tiled");
  if (!(overlap > 0)) {
    throw new Error(
      `tiling: the tile stride int(tile_size * (1 - tile_overlap_factor)) is ${overlap}; it must be > 0`,
    );
  }
  const rows: FloatTensor[][] = [];
  for (let i = 0; i < H; i += overlap) {
    const row: FloatTensor[] = [];
    for (let j = 0; j < W; j += overlap) row.push(await run(cropHW(x, i, i + tileIn, j, j + tileIn)));
    rows.push(row);
  }
  const resultRows: FloatTensor[] = [];
  rows.forEach((row, i) => {
    const resultRow: FloatTensor[] = [];
    row.forEach((tile, j) => {
      // In place, as diffusers: later tiles blend with the already blended neighbours.
      if (i > 0) blendV(rows[i - 1]![j]!, tile, blendExtent);
      if (j > 0) blendH(row[j - 1]!, tile, blendExtent);
      resultRow.push(cropHW(tile, 0, rowLimit, 0, rowLimit));
    });
    resultRows.push(catW(resultRow));
  });
  return catH(resultRows);
}

/** diffusers `tiled_decode`: z [B, latent, h, w] → sample, with `run` = post_quant_conv + decoder. */
export function tiledDecode(z: FloatTensor, s: TileSettings, run: TileRunner): Promise<FloatTensor> {
  const overlap = Math.trunc(s.tileLatentMinSize * (1 - s.tileOverlapFactor));
  const blendExtent = Math.trunc(s.tileSampleMinSize * s.tileOverlapFactor);
  const rowLimit = s.tileSampleMinSize - blendExtent;
  return tiled(z, s.tileLatentMinSize, overlap, blendExtent, rowLimit, run);
}

/** diffusers `tiled_encode`: x [B, C, H, W] → moments, with `run` = encoder + quant_conv. */
export function tiledEncode(x: FloatTensor, s: TileSettings, run: TileRunner): Promise<FloatTensor> {
  const overlap = Math.trunc(s.tileSampleMinSize * (1 - s.tileOverlapFactor));
  const blendExtent = Math.trunc(s.tileLatentMinSize * s.tileOverlapFactor);
  const rowLimit = s.tileLatentMinSize - blendExtent;
  return tiled(x, s.tileSampleMinSize, overlap, blendExtent, rowLimit, run);
}

/** Splits the batch into single samples (`x.split(1)`). */
export function splitBatch(x: FloatTensor): FloatTensor[] {
  const [B] = x.dims as [number];
  const n = x.data.length / B;
  return Array.from({ length: B }, (_, i) => ({
    dims: [1, ...x.dims.slice(1)],
    data: x.data.slice(i * n, (i + 1) * n),
  }));
}

/** torch.cat along dim 0. */
export function catBatch(parts: FloatTensor[]): FloatTensor {
  const rest = parts[0]!.dims.slice(1);
  const B = parts.reduce((s, t) => s + t.dims[0]!, 0);
  const out = new Float32Array(parts.reduce((s, t) => s + t.data.length, 0));
  let off = 0;
  for (const t of parts) {
    out.set(t.data, off);
    off += t.data.length;
  }
  return { dims: [B, ...rest], data: out };
}
