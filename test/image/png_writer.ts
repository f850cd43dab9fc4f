/**
 * Minimal PNG encoder for tests: writes exactly the colour type / bit depth asked for (sharp cannot write grey
 * 16-bit or palette+tRNS PNGs on demand), so decode tests control their inputs byte for byte.
 */
import { deflateSync } from "node:zlib";

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

function crc32(buf: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of buf) c = (CRC_TABLE[(c ^ b) & 0xff] as number) ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(type: string, data: Uint8Array): Buffer {
  const out = Buffer.alloc(12 + data.length);
  out.writeUInt32BE(data.length, 0);
  out.write(type, 4, "latin1");
  out.set(data, 8);
  out.writeUInt32BE(crc32(out.subarray(4, 8 + data.length)), 8 + data.length);
  return out;
}

export interface PngSpec {
  width: number;
  height: number;
  /** 0 grey, 2 RGB, 3 palette, 4 grey+alpha, 6 RGBA */
  colorType: 0 | 2 | 3 | 4 | 6;
  bitDepth: 8 | 16;
  /** Samples in row-major order, interleaved; for 16-bit one number per sample (0..65535). */
  samples: ArrayLike<number>;
  /** colorType 3: RGB triples. */
  palette?: ArrayLike<number>;
  /** colorType 3: alpha per palette entry. */
  trns?: ArrayLike<number>;
}

const CHANNELS = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 } as const;

export function encodePng(s: PngSpec): Buffer {
  const ch = CHANNELS[s.colorType];
  const bps = s.bitDepth / 8;
  const rowLen = s.width * ch * bps;
  const raw = Buffer.alloc((rowLen + 1) * s.height);
  for (let y = 0; y < s.height; y++) {
    raw[y * (rowLen + 1)] = 0; // filter: none
    for (let i = 0; i < s.width * ch; i++) {
      const v = s.samples[y * s.width * ch + i] as number;
      const o = y * (rowLen + 1) + 1 + i * bps;
      if (bps === 2) raw.writeUInt16BE(v, o);
      else raw[o] = v;
    }
  }
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(s.width, 0);
  ihdr.writeUInt32BE(s.height, 4);
  ihdr[8] = s.bitDepth;
  ihdr[9] = s.colorType;
  const parts = [Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk("IHDR", ihdr)];
  if (s.palette) parts.push(chunk("PLTE", Uint8Array.from(s.palette)));
  if (s.trns) parts.push(chunk("tRNS", Uint8Array.from(s.trns)));
  parts.push(chunk("IDAT", deflateSync(raw)), chunk("IEND", new Uint8Array(0)));
  return Buffer.concat(parts);
}
