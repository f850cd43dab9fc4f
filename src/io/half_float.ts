/**
 * F16 / BF16 → float32 conversions (exact: subnormals, ±0, ±inf and NaN payloads included), for safetensors
 * tensors stored in half precision (safetensors.ts, spill_file.ts).
 */

let f16Table: Uint32Array | undefined;

/** float32 bit patterns of all 65536 half-precision values (built once, 256 KiB). */
function halfTable(): Uint32Array {
  if (f16Table) return f16Table;
  const bits = new Uint32Array(65536);
  const f = new Float32Array(bits.buffer);
  for (let h = 0; h < 65536; h++) {
    const sign = (h & 0x8000) << 16;
    const e = (h >> 10) & 0x1f;
    const m = h & 0x3ff;
    if (e === 0) {
      f[h] = m * 2 ** -24; // exact (zero or subnormal half; normal in float32)
      bits[h] = (bits[h] as number) | sign;
    } else if (e === 31) bits[h] = sign | 0x7f800000 | (m << 13);
    else bits[h] = sign | ((e + 112) << 23) | (m << 13);
  }
  f16Table = bits;
  return bits;
}

/** Converts F16 bit patterns to float32 bit patterns (dst may view a Float32Array's buffer). */
export function f16BitsToF32Bits(src: Uint16Array, dst: Uint32Array): void {
  const table = halfTable();
  const n = src.length;
  for (let i = 0; i < n; i++) dst[i] = table[src[i] as number] as number;
}

/** Converts BF16 bit patterns to float32 bit patterns (dst may view a Float32Array's buffer). */
export function bf16BitsToF32Bits(src: Uint16Array, dst: Uint32Array): void {
  const n = src.length;
  for (let i = 0; i < n; i++) dst[i] = (src[i] as number) << 16;
}

/** F16 bit patterns → a new Float32Array. */
export function f16ToFloat32Array(src: Uint16Array): Float32Array {
  const out = new Float32Array(src.length);
  f16BitsToF32Bits(src, new Uint32Array(out.buffer));
  return out;
}

const f32buf = new Float32Array(1);
const u32buf = new Uint32Array(f32buf.buffer);

/** One BF16 bit pattern as a number. */
export function bfloat16ToFloat(h: number): number {
  u32buf[0] = (h & 0xffff) << 16;
  return f32buf[0] as number;
}

/** One F16 bit pattern as a number. */
export function halfToFloat(h: number): number {
  u32buf[0] = halfTable()[h & 0xffff] as number;
  return f32buf[0] as number;
}
