#!/usr/bin/env python3
"""fattn's backward pass against PyTorch's CPU SDPA backward, in one run.

fattn is timed by its own benchmark (build/bench/fattn_bench --backward);
PyTorch by this script: torch.nn.functional.scaled_dot_product_attention on
tensors that require grad (its CPU flash kernel), then
torch.autograd.grad(out, (q, k, v), dout) timed alone, the graph retained.
Rounds are interleaved (fattn then PyTorch, per shape and dtype), and each
figure is the median over the rounds. PyTorch is never a dependency of
fattn: install it in a scratch virtual environment outside the checkout,
    python3 -m venv /opt/peers && /opt/peers/bin/pip install torch numpy
    /opt/peers/bin/python bench/backward_peers.py --threads 1 --rounds 3
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

from peers import timeit  # the same repetition rule as the forward's peer timings

SHAPES = {  # B, H, Hkv, L, D, causal (as bench/bench_backward.c)
    "P2": (4, 12, 12, 512, 64, 0),
    "P3": (1, 32, 32, 2048, 128, 1),
    "L1": (1, 32, 8, 1024, 128, 1),
}


def fattn_times(bench, shape, dt, threads, min_time):
    flt = f"backward/.*/{shape}/dt:{dt}/threads:{threads}/"
    out = subprocess.run([bench, "--backward", "--threads", str(threads),
                          f"--benchmark_filter={flt}", "--benchmark_format=json",
                          f"--benchmark_min_time={min_time}"],
                         check=True, capture_output=True, text=True).stdout
    doc, _ = json.JSONDecoder().raw_decode(out)
    t = {}
    for b in doc["benchmarks"]:
        kind = b["name"].split("/")[1]
        unit = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}[b.get("time_unit", "ns")]
        t[kind] = b["real_time"] * unit
    return t["fwd"], t["bwd"]


def torch_times(shape, dt, threads, min_time):
    import torch
    import torch.nn.functional as F
    torch.set_num_threads(threads)
    B, H, Hkv, L, D, causal = SHAPES[shape]
    dty = torch.float32 if dt == "f32" else torch.bfloat16
    g = torch.Generator().manual_seed(0)
    q = (torch.rand(B, H, L, D, generator=g) * 2 - 1).to(dty).requires_grad_()
    k = (torch.rand(B, Hkv, L, D, generator=g) * 2 - 1).to(dty).requires_grad_()
    v = (torch.rand(B, Hkv, L, D, generator=g) * 2 - 1).to(dty).requires_grad_()
    kw = {"is_causal": bool(causal)}
    if H != Hkv:
        kw["enable_gqa"] = True

    def fwd():
        return F.scaled_dot_product_attention(q, k, v, **kw)

    out = fwd()
    dout = torch.rand_like(out)

    def bwd():
        torch.autograd.grad(out, (q, k, v), dout, retain_graph=True)

    with torch.no_grad():
        f = timeit(fwd, min_time)
    return f * 1e3, timeit(bwd, min_time) * 1e3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench", default=os.path.join(os.path.dirname(__file__), "..", "build",
                                                    "bench", "fattn_bench"))
    ap.add_argument("--threads", default="1")
    ap.add_argument("--shapes", default="P2,P3,L1")
    ap.add_argument("--dtypes", default="f32,bf16")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--min-time", type=float, default=0.5)
    a = ap.parse_args()
    import torch
    print(f"torch {torch.__version__}; fattn_bench {a.bench}", flush=True)
    res = {}
    for r in range(a.rounds):
        for th in [int(x) for x in a.threads.split(",")]:
            for s in a.shapes.split(","):
                for dt in a.dtypes.split(","):
                    ff, fb = fattn_times(a.bench, s, dt, th, a.min_time)
                    tf, tb = torch_times(s, dt, th, a.min_time)
                    res.setdefault((s, dt, th), []).append((ff, fb, tf, tb))
                    print(f"  round {r + 1} {s} {dt} {th} thr: fattn fwd {ff:.2f} bwd {fb:.2f} ms;"
                          f" torch fwd {tf:.2f} bwd {tb:.2f} ms", flush=True)
    print("\nmedians over rounds (ms); torch/fattn > 1: fattn faster (target >= 1.5);"
          " fattn bwd/fwd (target <= 2.5)")
    print(f"{'shape':5} {'dtype':5} {'thr':>3} {'fattn fwd':>9} {'fattn bwd':>9} {'torch fwd':>9}"
          f" {'torch bwd':>9} {'torch/fattn bwd':>15} {'fattn bwd/fwd':>13}")
    for (s, dt, th), v in res.items():
        ff, fb, tf, tb = (statistics.median(x[i] for x in v) for i in range(4))
        print(f"{s:5} {dt:5} {th:3d} {ff:9.2f} {fb:9.2f} {tf:9.2f} {tb:9.2f} {tb / fb:15.2f}"
              f" {fb / ff:13.2f}")


if __name__ == "__main__":
    sys.exit(main())
