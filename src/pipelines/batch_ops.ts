/** Host-side batch operations on float32 tensors (the small tensors that move between steps). */
import type { HostTensor } from "../runtime/host_tensor.js";

export function rowSize(t: HostTensor): number {
  return t.dims.slice(1).reduce((a, b) => a * b, 1);
}

/** torch.cat(ts, dim=0). */
export function catBatch(ts: readonly HostTensor[]): HostTensor {
  const first = ts[0];
  if (!first) throw new Error("catBatch: no tensors");
  const rest = first.dims.slice(1).join();
  let n = 0;
  for (const t of ts) {
    if (t.dims.slice(1).join() !== rest)
      throw new Error(`catBatch: [${t.dims}] does not match [${first.dims}]`);
    n += t.dims[0]!;
  }
  const out = new Float32Array(n * rowSize(first));
  let off = 0;
  for (const t of ts) {
    out.set(t.data as Float32Array, off);
    off += (t.data as Float32Array).length;
  }
  return { type: "float32", dims: [n, ...first.dims.slice(1)], data: out };
}

/** Each row repeated `times` times in place: [a, b] → [a, a, b, b] (torch repeat_interleave(dim=0)). */
export function repeatInterleaveBatch(t: HostTensor, times: number): HostTensor {
  if (times === 1) return t;
  const size = rowSize(t);
  const rows = t.dims[0]!;
  const src = t.data as Float32Array;
  const out = new Float32Array(rows * times * size);
  for (let r = 0; r < rows; r++) {
    const row = src.subarray(r * size, (r + 1) * size);
    for (let k = 0; k < times; k++) out.set(row, (r * times + k) * size);
  }
  return { type: "float32", dims: [rows * times, ...t.dims.slice(1)], data: out };
}

/** torch.cat([a, b], dim=1) for NCHW tensors with the same N, H, W. */
export function catChannels(a: HostTensor, b: HostTensor): HostTensor {
  const [n, ca, h, w] = a.dims as [number, number, number, number];
  const cb = b.dims[1]!;
  if (b.dims[0] !== n || b.dims[2] !== h || b.dims[3] !== w) {
    throw new Error(`catChannels: [${a.dims}] and [${b.dims}] differ outside the channel axis`);
  }
  const hw = h * w;
  const out = new Float32Array(n * (ca + cb) * hw);
  const da = a.data as Float32Array;
  const db = b.data as Float32Array;
  for (let i = 0; i < n; i++) {
    out.set(da.subarray(i * ca * hw, (i + 1) * ca * hw), i * (ca + cb) * hw);
    out.set(db.subarray(i * cb * hw, (i + 1) * cb * hw), (i * (ca + cb) + ca) * hw);
  }
  return { type: "float32", dims: [n, ca + cb, h, w], data: out };
}

/** Index of the first non-finite value, or -1. */
export function firstNonFinite(a: Float32Array): number {
  for (let i = 0; i < a.length; i++) if (!Number.isFinite(a[i] as number)) return i;
  return -1;
}
