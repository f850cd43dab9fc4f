"""Times (and compares) UNet or VAE-decode graphs written by bench/export_graph.ts --skeleton in Python onnxruntime.

    python3 bench/run_exported.py --f32 <dir> --i8 <dir> [--sizes 64,128] [--runs 3] [--threads 2]
    python3 bench/run_exported.py --f32 <dir> --variant int8=<dir> --variant float32-direct=<dir> ...

Fills each folder's weights.bin with deterministic random weights (seeded by tensor name, so the float32 graph and
the int8 graph share every float weight; int8 weights are the float32 ones quantized per output channel exactly as
src/onnx/quantize.ts does, stored + 128 in uint8 for the "u8u8" kernel), then per size: session creation, warm-up,
median of --runs timed runs (batch 2, as with classifier-free guidance, fed as guidance pairs to int8 graphs), and
the int8 output's error against float32 on the same inputs. Session options match sdx4's (graph level all,
sequential, spinning off). Prints one JSON line per measurement.
Used to time the int8 path on a CPU with AMX, where no Node is installed; pin cores with taskset.
"""
import argparse, json, os, re, statistics, time, zlib
import numpy as np
import onnx
import onnxruntime as ort

p = argparse.ArgumentParser()
p.add_argument("--f32", required=True)
p.add_argument("--i8")
p.add_argument("--sizes", default="64,128")
p.add_argument("--runs", type=int, default=3)
p.add_argument("--threads", type=int, default=2)
p.add_argument("--b-label", default="int8", help="label of the second graph (e.g. another float32 variant)")
p.add_argument("--variant", action="append", default=[], metavar="LABEL=DIR",
               help="further graphs to time and compare against --f32 (repeatable)")
p.add_argument("--profile", type=int, default=0, help="also profile one run at this size: time by op type")
p.add_argument("--profile-only", default="", help="comma-separated labels to profile (default: every graph)")
a = p.parse_args()


def load(d):
    return onnx.load(os.path.join(d, "model.onnx"), load_external_data=False)


def ext(t):
    kv = {e.key: e.value for e in t.external_data}
    return int(kv["offset"]), int(kv["length"])


def float_values(name, dims):
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    if len(dims) == 1 and re.search(r"norm[^.]*\.weight$", name):
        return np.ones(dims, np.float32)
    if len(dims) == 1:
        return rng.standard_normal(dims, dtype=np.float32) * np.float32(0.02)
    return rng.standard_normal(dims, dtype=np.float32) / np.float32(np.sqrt(np.prod(dims[1:])))


def quantize(w, qmax):
    out = w.shape[0]
    m = np.abs(w.reshape(out, -1)).max(1)
    s = np.where(m > 0, m / qmax, 1).astype(np.float32)
    q = np.clip(np.round(w / s.reshape((out,) + (1,) * (w.ndim - 1))), -qmax, qmax).astype(np.int8)
    q = q.T if w.ndim == 2 else q.transpose(2, 3, 1, 0).reshape(-1, out)  # [in, out] / [(ky, kx, in), out]
    return np.ascontiguousarray(q), s


def fill(d, f32_dims):
    m = load(d)
    tensors = [t for t in m.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    total = max(sum(ext(t)) for t in tensors)
    mm = np.memmap(os.path.join(d, "weights.bin"), dtype=np.uint8, mode="w+", shape=(total,))
    cache = {}
    for t in tensors:
        off, ln = ext(t)
        name, dims = t.name, list(t.dims)
        if "::int8" in name:
            base = name.split("::")[0]
            if base not in cache:
                cache.clear()
                cache[base] = quantize(float_values(base, f32_dims[base]), 127)
            arr = cache[base][0] if name.endswith("::int8") else cache[base][1]
            if t.data_type == onnx.TensorProto.UINT8:  # the "u8u8" kernel: q + 128
                arr = (arr.astype(np.int16) + 128).astype(np.uint8)
        else:
            arr = float_values(name, dims)
        assert list(arr.shape) == dims and arr.nbytes == ln, (name, arr.shape, dims, arr.nbytes, ln)
        mm[off : off + ln] = arr.reshape(-1).view(np.uint8)
    mm.flush()
    return len(tensors), total


def session(d):
    so = ort.SessionOptions()
    so.intra_op_num_threads = a.threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.add_session_config_entry("session.inter_op.allow_spinning", "0")
    t = time.perf_counter()
    s = ort.InferenceSession(os.path.join(d, "model.onnx"), so, providers=["CPUExecutionProvider"])
    return s, time.perf_counter() - t


def feeds(s, size):
    rng = np.random.default_rng(1)
    ins = {i.name: i for i in s.get_inputs()}
    if "z" in ins:  # the VAE decode graph: one latent image, as the pipeline decodes it
        return {"z": rng.standard_normal((1, ins["z"].shape[1], size, size), dtype=np.float32)}
    f = {
        "sample": rng.standard_normal((2, ins["sample"].shape[1], size, size), dtype=np.float32),
        "timestep": np.array([500.0, 500.0], np.float32),
        "encoder_hidden_states": rng.standard_normal((2, 77, ins["encoder_hidden_states"].shape[2]), dtype=np.float32),
    }
    if "class_labels" in ins:
        f["class_labels"] = np.array([20, 20], np.int64)
    if "guidance_index" in ins:
        f["guidance_index"] = np.array([0, 0], np.int64)
    return f


f32_model = load(a.f32)
f32_dims = {t.name: list(t.dims) for t in f32_model.graph.initializer}
variants = ([(a.b_label, a.i8)] if a.i8 else []) + [tuple(v.split("=", 1)) for v in a.variant]
fills = {"fill_f32": fill(a.f32, f32_dims)}
for label, d in variants:
    fills["fill_" + label] = fill(d, f32_dims)
print(json.dumps({"ort": ort.__version__, **fills}), flush=True)
dirs = [("float32", a.f32)] + variants
outs = {}
for precision, d in dirs:
    s, create_s = session(d)
    for size in [int(x) for x in a.sizes.split(",")]:
        f = feeds(s, size)
        t = time.perf_counter()
        y = s.run(None, f)[0]
        warm = time.perf_counter() - t
        times = []
        for _ in range(a.runs):
            t = time.perf_counter()
            s.run(None, f)
            times.append(time.perf_counter() - t)
        outs[(precision, size)] = y
        r = {"precision": precision, "size": size, "create_s": round(create_s, 2), "warmup_s": round(warm, 3),
             "times_s": [round(x, 3) for x in times], "median_s": round(statistics.median(times), 3),
             "finite": bool(np.isfinite(y).all()), "out_std": float(y.std())}
        if precision != "float32" and ("float32", size) in outs:
            ref = outs[("float32", size)]
            err = y - ref
            rms = float(np.sqrt((err**2).mean()))
            r["rel_rms_vs_f32"] = rms / float(np.sqrt((ref**2).mean()))
            r["psnr_db_vs_f32_range"] = float(20 * np.log10((ref.max() - ref.min()) / rms))
        print(json.dumps(r), flush=True)
    del s
    if a.profile and (not a.profile_only or precision in a.profile_only.split(",")):
        so_p = ort.SessionOptions()
        so_p.intra_op_num_threads = a.threads
        so_p.inter_op_num_threads = 1
        so_p.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so_p.add_session_config_entry("session.intra_op.allow_spinning", "0")
        so_p.enable_profiling = True
        so_p.profile_file_prefix = f"/tmp/prof_{precision}"
        s = ort.InferenceSession(os.path.join(d, "model.onnx"), so_p, providers=["CPUExecutionProvider"])
        f = feeds(s, a.profile)
        s.run(None, f)
        s.run(None, f)
        events = json.load(open(s.end_profiling()))
        runs = [e for e in events if e.get("name") == "model_run"]
        last = runs[-1]
        by = {}
        for e in events:
            if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and e["ts"] >= last["ts"]:
                op = e.get("args", {}).get("op_name", "?")
                by[op] = by.get(op, 0) + e["dur"]
        total = sum(by.values())
        top = sorted(by.items(), key=lambda kv: -kv[1])[:14]
        print(json.dumps({"profile": precision, "size": a.profile, "run_ms": last["dur"] / 1000,
                          "by_op_pct": {k: round(100 * v / total, 1) for k, v in top}}), flush=True)
        del s
