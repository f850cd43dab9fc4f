"""Reference-side generator of bicubic_pillow94.json (not run by the tests).

Run with Debian bookworm's python3-pil 9.4.0 (the Pillow of the fixtures): /usr/bin/python3 gen_bicubic_pillow94.py
For each case it rebuilds the input image from integers alone (the same formulas as resize_pillow.test.ts),
resizes it with Image.resize((ow, oh), Image.BICUBIC) and records the SHA-256 of the output bytes.
Then `npx biome check --write test/image/bicubic_pillow94.json` (formatting only).
"""
import hashlib
import json
import random

import PIL
from PIL import Image


def xorshift_bytes(n, seed):
    s = seed & 0xFFFFFFFF or 1
    out = bytearray(n)
    for i in range(n):
        s ^= (s << 13) & 0xFFFFFFFF
        s ^= s >> 17
        s ^= (s << 5) & 0xFFFFFFFF
        out[i] = s & 0xFF
    return bytes(out)


def pattern_bytes(w, h):
    out = bytearray(w * h * 3)
    for y in range(h):
        for x in range(w):
            i = (y * w + x) * 3
            out[i] = x * 255 // max(w - 1, 1)
            out[i + 1] = ((x + 2 * y) * 13) & 0xFF
            out[i + 2] = ((x * x + y * y) * 5) & 0xFF
    return bytes(out)


def make(kind, w, h, seed):
    if kind == "noise":
        return Image.frombytes("RGB", (w, h), xorshift_bytes(w * h * 3, seed))
    if kind == "pattern":
        return Image.frombytes("RGB", (w, h), pattern_bytes(w, h))
    if kind == "noiseL":
        return Image.frombytes("L", (w, h), xorshift_bytes(w * h, seed))
    raise ValueError(kind)


SIZES = [
    (30, 22, 28, 20), (32, 32, 128, 128), (17, 9, 5, 3), (64, 48, 7, 31), (10, 10, 33, 4), (7, 5, 7, 12),
    (12, 5, 3, 5), (1, 1, 3, 2), (5, 1, 9, 1), (100, 3, 1, 1), (301, 207, 300, 204), (513, 257, 128, 64),
    (40, 40, 160, 160), (33, 21, 99, 7), (8, 8, 6, 6), (2, 2, 1, 1), (4, 4, 1024, 3), (255, 1, 17, 1),
    (96, 160, 92, 156), (3, 7, 3, 2),
]
rnd = random.Random(94)
for _ in range(25):
    SIZES.append((rnd.randint(1, 90), rnd.randint(1, 90), rnd.randint(1, 180), rnd.randint(1, 180)))

cases = []
for idx, (w, h, ow, oh) in enumerate(SIZES):
    for kind in ("noise", "pattern") + (("noiseL",) if idx % 3 == 0 else ()):
        seed = 1000 + idx
        out = make(kind, w, h, seed).resize((ow, oh), Image.BICUBIC)
        cases.append(dict(kind=kind, w=w, h=h, ow=ow, oh=oh, seed=seed, sha256=hashlib.sha256(out.tobytes()).hexdigest()))

doc = {
    "generator": "test/image/gen_bicubic_pillow94.py",
    "reference": f"Pillow {PIL.__version__} Image.resize(size, Image.BICUBIC) (Debian bookworm python3-pil)",
    "cases": cases,
}
with open("bicubic_pillow94.json", "w") as f:
    json.dump(doc, f, indent=1)
print(len(cases), "cases")
