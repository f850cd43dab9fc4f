"""PyTorch CPU fp32 timing of the same real-size x4-upscaler components as `npm run bench`, on THIS machine.

    DIFFUSERS_SRC=/tmp/diffusers-0.23/src /usr/bin/python3 bench/torch_side_by_side.py unet 64
    (components: unet <size> | vae <size> | text;  env: RUNS=3, THREADS=2)

Needs Debian's python3-torch (1.13) + python3-numpy/-pil/-regex/-filelock/-requests/-packaging/-tqdm/
-importlib-metadata, libopenblas0 (without it torch's BLAS is netlib's reference BLAS), and diffusers 0.23.0's `src`
(e.g. `git --git-dir=<mirror> archive v0.23.0 src | tar -x -C /tmp/diffusers-0.23`; never committed here).
huggingface_hub and safetensors, which Debian does not package, are replaced by in-memory stubs: nothing here
touches the hub. Weights are torch's default random init (timing does not depend on values). The text encoder is
a plain torch module with transformers' CLIPTextModel layout (pre-LN, causal attention, gelu), since transformers
is not packaged either. Prints one JSON line. With OpenBLAS's pthread build next to torch's OpenMP pool, set
OPENBLAS_NUM_THREADS=1 to avoid oversubscription (text encoder 2.8 s → 1.5 s on a 2-core VM).
"""

import importlib.machinery
import importlib.util
import json
import os
import re
import resource
import statistics
import sys
import time
import types

src = os.environ.get("DIFFUSERS_SRC", "/tmp/diffusers-0.23/src")
sys.path.insert(0, src)


def _stub(name, **attrs):
    m = types.ModuleType(name)
    m.__spec__ = importlib.machinery.ModuleSpec(name, None)  # importlib.util.find_spec() needs one
    m.__dict__.update(attrs)
    sys.modules[name] = m
    return m


def _unavailable(*a, **k):
    raise RuntimeError("stub: hub access is not available")


class _Err(Exception):
    pass


_cache = os.path.expanduser("~/.cache/huggingface")
hub = _stub(
    "huggingface_hub",
    __version__="0.19.4",
    create_repo=_unavailable,
    hf_hub_download=_unavailable,
    cached_download=_unavailable,
    model_info=_unavailable,
    upload_folder=_unavailable,
    whoami=_unavailable,
    HfFolder=type("HfFolder", (), {"get_token": staticmethod(lambda: None)}),
    ModelCard=type("ModelCard", (), {}),
    ModelCardData=type("ModelCardData", (), {}),
)
hub.utils = _stub(
    "huggingface_hub.utils",
    EntryNotFoundError=_Err,
    RepositoryNotFoundError=_Err,
    RevisionNotFoundError=_Err,
    HfHubHTTPError=_Err,
    is_jinja_available=lambda: False,
    validate_hf_hub_args=lambda f: f,
)
hub.constants = _stub(
    "huggingface_hub.constants", hf_cache_home=_cache, HUGGINGFACE_HUB_CACHE=os.path.join(_cache, "hub")
)
hub.file_download = _stub("huggingface_hub.file_download", REGEX_COMMIT_HASH=re.compile(r"^[0-9a-f]{40}$"))
# diffusers' optional integrations (accelerate, transformers, peft, ...) would import the real packages where they
# are installed (a GPU host has them) and meet the stubs here: diffusers decides by importlib.util.find_spec when
# its modules are imported, so hide them from it. Nothing here needs them.
_hidden = {"accelerate", "transformers", "peft", "xformers"}
_find_spec = importlib.util.find_spec
importlib.util.find_spec = lambda name, *a, **k: None if name in _hidden else _find_spec(name, *a, **k)
st = _stub("safetensors", __version__="0.0.0")
st.torch = _stub("safetensors.torch", load_file=_unavailable, save_file=_unavailable, safe_open=_unavailable)

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

torch.set_grad_enabled(False)
comp = sys.argv[1]
size = int(sys.argv[2]) if len(sys.argv) > 2 else 0
runs = int(os.environ.get("RUNS", "3"))
threads = int(os.environ.get("THREADS", "2"))
torch.set_num_threads(threads)
cfgdir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts", "configs", "x4-upscaler")


def cfg(c):
    with open(os.path.join(cfgdir, c, "config.json")) as f:
        return {k: v for k, v in json.load(f).items() if not k.startswith("_")}


class Layer(nn.Module):
    def __init__(s, d=1024, h=16, i=4096):
        super().__init__()
        s.h = h
        s.ln1, s.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        s.q, s.k, s.v, s.o = (nn.Linear(d, d) for _ in range(4))
        s.fc1, s.fc2 = nn.Linear(d, i), nn.Linear(i, d)

    def forward(s, x, mask):
        B, L, D = x.shape
        hd = D // s.h
        y = s.ln1(x)
        q = s.q(y).view(B, L, s.h, hd).transpose(1, 2) * hd**-0.5
        k = s.k(y).view(B, L, s.h, hd).transpose(1, 2)
        v = s.v(y).view(B, L, s.h, hd).transpose(1, 2)
        a = torch.softmax(q @ k.transpose(-1, -2) + mask, -1) @ v
        x = x + s.o(a.transpose(1, 2).reshape(B, L, D))
        return x + s.fc2(F.gelu(s.fc1(s.ln2(x))))


class Text(nn.Module):
    def __init__(s):
        super().__init__()
        s.tok, s.pos = nn.Embedding(49408, 1024), nn.Embedding(77, 1024)
        s.layers = nn.ModuleList(Layer() for _ in range(23))
        s.ln = nn.LayerNorm(1024)

    def forward(s, ids):
        L = ids.shape[1]
        mask = torch.full((L, L), torch.finfo(torch.float32).min).triu(1)
        x = s.tok(ids) + s.pos(torch.arange(L))
        for layer in s.layers:
            x = layer(x, mask)
        return s.ln(x)


torch.manual_seed(0)
rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
if comp == "unet":
    from diffusers.models.unet_2d_condition import UNet2DConditionModel

    m = UNet2DConditionModel(**cfg("unet")).eval()
    x, e = torch.randn(2, 7, size, size), torch.randn(2, 77, 1024)
    t, cl = torch.tensor(500), torch.tensor([20, 20])
    f = lambda: m(x, t, encoder_hidden_states=e, class_labels=cl).sample  # noqa: E731
    label = f"unet forward batch 2, sample 2x7x{size}x{size}"
elif comp == "vae":
    from diffusers.models.autoencoder_kl import AutoencoderKL

    m = AutoencoderKL(**cfg("vae")).eval()
    z = torch.randn(1, 4, size, size)
    f = lambda: m.decode(z).sample  # noqa: E731
    label = f"vae decode 1x4x{size}x{size}"
else:
    m = Text().eval()
    ids = torch.randint(0, 49408, (2, 77))
    f = lambda: m(ids)  # noqa: E731
    label = "text encoder 2x77"

t0 = time.perf_counter()
out = f()
warm = time.perf_counter() - t0
times = []
for _ in range(runs):
    t0 = time.perf_counter()
    out = f()
    times.append(time.perf_counter() - t0)
print(
    json.dumps(
        {
            "label": label,
            "params": sum(p.numel() for p in m.parameters()),
            "torch": torch.__version__,
            "threads": threads,
            "openblas_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
            "warmup_s": round(warm, 3),
            "times_s": [round(x, 3) for x in times],
            "median_s": round(statistics.median(times), 3),
            "finite": bool(torch.isfinite(out).all()),
            "shape": list(out.shape),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "rss_at_start_mb": round(rss0, 1),
            "loadavg": [round(x, 2) for x in os.getloadavg()],
        }
    )
)
