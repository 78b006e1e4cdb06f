#!/usr/bin/env python3
"""fattn against its peers, in one run, on the same shapes and threads.

fattn is timed by its own benchmark (build/bench/fattn_bench, `scripts/run
bench` builds it); the peers (PyTorch's scaled_dot_product_attention,
OpenVINO's ScaledDotProductAttention, ONNX Runtime's Attention) by this script,
each on random f32 inputs of the same shape. Rounds are interleaved (every
implementation once per shape per round), and each figure is the median over
the rounds of the median of its repetitions. The peers are never dependencies
of fattn: install them in a scratch virtual environment outside the checkout,

    python3 -m venv /opt/peers
    /opt/peers/bin/pip install numpy onnx onnxruntime openvino torch
    /opt/peers/bin/python bench/peers.py --threads 1 --shapes X1,X2 --backend avx2

and whichever is missing is left out. OpenVINO is asked for f32 inference
(its CPU plugin otherwise runs bf16 where the CPU has it).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

# name: B, H, Hkv, Lq, Lk, D, causal (top-left; Lq = Lk wherever it is set)
SHAPES = {
    "P1": (1, 8, 8, 64, 64, 64, 0),
    "P2": (4, 12, 12, 512, 512, 64, 0),
    "P3": (1, 32, 32, 2048, 2048, 128, 1),
    "P4": (1, 32, 8, 4096, 4096, 128, 1),
    "P5": (8, 32, 8, 1, 4096, 128, 0),
    "P6": (1, 8, 8, 8192, 8192, 64, 0),
    "X1": (1, 16, 16, 1000, 1000, 80, 0),
    "X2": (1, 12, 12, 77, 1024, 64, 0),
    "X4": (1, 8, 8, 1024, 1024, 256, 1),
    "L1": (1, 32, 8, 1024, 1024, 128, 1),
}


def flops(s):
    B, H, Hkv, Lq, Lk, D, causal = s
    pairs = Lq * Lk if not causal else sum(min(i + 1, Lk) for i in range(Lq))
    return 4.0 * B * H * pairs * D


def timeit(fn, min_time):
    fn()
    fn()
    ts = []
    t_end = time.perf_counter() + min_time
    while len(ts) < 3 or (time.perf_counter() < t_end and len(ts) < 50):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def peer_torch(s, threads):
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(threads)
    B, H, Hkv, Lq, Lk, D, causal = s
    g = torch.Generator().manual_seed(1)
    q = torch.rand(B, H, Lq, D, generator=g) * 2 - 1
    k = torch.rand(B, Hkv, Lk, D, generator=g) * 2 - 1
    v = torch.rand(B, Hkv, Lk, D, generator=g) * 2 - 1

    def run():
        with torch.inference_mode():
            F.scaled_dot_product_attention(q, k, v, is_causal=bool(causal), enable_gqa=H != Hkv)

    return run


def peer_openvino(s, threads):
    import openvino as ov
    import openvino.opset13 as ops

    B, H, Hkv, Lq, Lk, D, causal = s
    pq = ops.parameter([B, H, Lq, D], np.float32)
    pk = ops.parameter([B, Hkv, Lk, D], np.float32)
    pv = ops.parameter([B, Hkv, Lk, D], np.float32)
    k, v = pk, pv
    if H != Hkv:  # GQA: repeat each kv head G times (the SDPA op wants equal heads)
        G = H // Hkv
        def rep(t):
            t = ops.unsqueeze(t, ops.constant(np.array([2], np.int64)))
            t = ops.broadcast(t, ops.constant(np.array([B, Hkv, G, Lk, D], np.int64)))
            return ops.reshape(t, ops.constant(np.array([B, H, Lk, D], np.int64)), False)
        k, v = rep(pk), rep(pv)
    out = ops.scaled_dot_product_attention(pq, k, v, causal=bool(causal))
    model = ov.Model([out], [pq, pk, pv])
    core = ov.Core()
    cm = core.compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": threads,
                                           "INFERENCE_PRECISION_HINT": "f32",
                                           "PERFORMANCE_HINT": "LATENCY"})
    req = cm.create_infer_request()
    rng = np.random.default_rng(1)
    feeds = [rng.uniform(-1, 1, p.shape).astype(np.float32) for p in (pq, pk, pv)]

    def run():
        req.infer(feeds)

    return run


def peer_onnxruntime(s, threads):
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    B, H, Hkv, Lq, Lk, D, causal = s
    node = helper.make_node("Attention", ["q", "k", "v"], ["o"], is_causal=int(causal),
                            q_num_heads=H, kv_num_heads=Hkv)
    graph = helper.make_graph(
        [node], "sdpa",
        [helper.make_tensor_value_info("q", TensorProto.FLOAT, [B, H, Lq, D]),
         helper.make_tensor_value_info("k", TensorProto.FLOAT, [B, Hkv, Lk, D]),
         helper.make_tensor_value_info("v", TensorProto.FLOAT, [B, Hkv, Lk, D])],
        [helper.make_tensor_value_info("o", TensorProto.FLOAT, [B, H, Lq, D])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 23)])
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(1)
    feeds = {"q": rng.uniform(-1, 1, (B, H, Lq, D)).astype(np.float32),
             "k": rng.uniform(-1, 1, (B, Hkv, Lk, D)).astype(np.float32),
             "v": rng.uniform(-1, 1, (B, Hkv, Lk, D)).astype(np.float32)}

    def run():
        sess.run(None, feeds)

    return run


PEERS = {"pytorch": peer_torch, "openvino": peer_openvino, "onnxruntime": peer_onnxruntime}


def fattn_time(bench, s, name, threads, backend, min_time):
    B, H, Hkv, Lq, Lk, D, causal = s
    shape = f"{B}:{H}:{Hkv}:{Lq}:{Lk}:{D}" + (":1" if causal else "")
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        cmd = [bench, "--shape", shape, "--threads", str(threads), "--backend", backend,
               "--benchmark_filter=custom0", f"--benchmark_min_time={min_time}",
               "--benchmark_repetitions=3", f"--benchmark_out={f.name}",
               "--benchmark_out_format=json"]
        subprocess.run(cmd, capture_output=True, text=True, check=True)
        js = json.load(open(f.name))
    reps = [b["real_time"] for b in js["benchmarks"] if b.get("run_type") == "iteration"]
    unit = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}[js["benchmarks"][0]["time_unit"]]
    return statistics.median(reps) * unit


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shapes", default="P1,P2,P3,X1,X2,X4,L1")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--backend", default="avx2", help="fattn's backend (avx2, avx512, ...)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--min-time", type=float, default=0.5)
    ap.add_argument("--peers", default="pytorch,openvino,onnxruntime")
    ap.add_argument("--bench", default=os.path.join(os.path.dirname(__file__), "..", "build",
                                                    "bench", "fattn_bench"))
    a = ap.parse_args()
    names = a.shapes.split(",")
    peers = {}
    for p in a.peers.split(","):
        try:
            __import__({"pytorch": "torch"}.get(p, p))
            peers[p] = PEERS[p]
        except ImportError as e:
            print(f"# {p} left out: {e}", file=sys.stderr)
    times = {(n, impl): [] for n in names for impl in ["fattn"] + list(peers)}
    for r in range(a.rounds):
        for n in names:
            s = SHAPES[n]
            times[(n, "fattn")].append(fattn_time(a.bench, s, n, a.threads, a.backend, a.min_time))
            for p, make in peers.items():
                try:
                    times[(n, p)].append(timeit(make(s, a.threads), a.min_time))
                except Exception as e:  # a peer that cannot run the shape
                    print(f"# {p} {n}: {type(e).__name__}: {str(e)[:120]}", file=sys.stderr)
    cols = ["fattn"] + list(peers)
    print(f"# threads {a.threads}, fattn backend {a.backend}, {a.rounds} rounds; "
          "GFLOP/s (median), then fattn's speed over the fastest peer")
    print("shape  " + "  ".join(f"{c:>11}" for c in cols) + "  fattn/best")
    for n in names:
        g = {}
        for c in cols:
            t = times[(n, c)]
            g[c] = flops(SHAPES[n]) / statistics.median(t) / 1e9 if t else None
        best = max((g[c] for c in cols[1:] if g[c]), default=None)
        row = "  ".join(f"{g[c]:11.1f}" if g[c] else f"{'-':>11}" for c in cols)
        ratio = f"{g['fattn'] / best:10.2f}" if best and g["fattn"] else f"{'-':>10}"
        print(f"{n:5}  {row}  {ratio}")


if __name__ == "__main__":
    main()
