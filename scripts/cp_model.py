#!/usr/bin/env python3
"""The scaling model of fattn_mpi's ring attention (docs/context-parallel.md).

    python3 scripts/cp_model.py [MEASURED.jsonl] [--png OUT.png]

Prints the model's efficiency for 8..1024 ranks (1M-token causal prefill,
1x32x8 heads, D = 128, bf16 K/V) over shared memory, 100 Gb/s and 10 Gb/s
links, with and without overlap, and draws it with the measured points of
MEASURED.jsonl (lines of `fattn_bench_mpi --json`) when given. Everything the
model assumes is a named constant below."""
import json
import statistics
import sys

# ---- the problem ----
N = 1 << 20          # tokens
B, H, HKV, D = 1, 32, 8, 128
E = 2                # bytes per K/V element (bf16)
CAUSAL = 0.5         # fraction of the score matrix attended (zigzag: every step alike)

# ---- a rank: (attention FLOP/s on big pieces, bytes/s the merge streams) ----
# The first is measured per core on the development machine (AMD EPYC Zen 5,
# all-bf16 causal prefill, fattn_bench_mpi -np 1 --threads 2: 282 GFLOP/s per
# core; the merge streamed 54 GB/s on one core) and scaled to 8 cores; the
# second is an AMX Xeon node as the tile family should make it (assumed, not
# measured: the tile kernels are not wired into the driver yet).
RATES = {
    "8 Zen 5 cores (2.2 TFLOP/s)": (8 * 282e9, 100e9),
    "AMX node (10 TFLOP/s, assumed)": (10.0e12, 150e9),
}
STEP_OVERHEAD = 50e-6  # s per ring step: up to 4 fattn_sdpa calls, MPI calls

# ---- links: (name, bytes/s, latency s) ----
LINKS = [
    ("shared memory", 10e9, 1e-6),
    ("100 Gb/s", 0.9 * 100e9 / 8, 5e-6),
    ("10 Gb/s", 0.9 * 10e9 / 8, 30e-6),
]


def step_times(P, rank, link):
    """Compute, merge and transfer time of one ring step on one rank."""
    rate, merge_bw = rank
    n = N / P                                     # positions per rank
    flops = 4 * B * H * D * n * n * CAUSAL        # its queries x one shard's keys
    t_c = flops / rate
    # merge: per step the rank's rows (n x H x D, f32) read twice and written once
    t_merge = 3 * 4 * B * H * n * D / merge_bw
    kv_bytes = 2 * B * HKV * n * D * E            # K and V of one shard
    _, bw, lat = link
    t_m = lat + kv_bytes / bw
    return t_c, t_merge, t_m, kv_bytes


def efficiency(P, rate, link, overlap):
    t_c, t_merge, t_m, _ = step_times(P, rate, link)
    step = (max(t_c, t_m) if overlap else t_c + t_m) + t_merge + STEP_OVERHEAD
    # P steps; the last one has no transfer
    total = (P - 1) * step + t_c + t_merge + STEP_OVERHEAD
    return P * t_c / total


def main():
    args = sys.argv[1:]
    png = None
    if "--png" in args:
        i = args.index("--png")
        png = args[i + 1]
        del args[i:i + 2]
    measured = []
    if args:
        with open(args[0]) as f:
            measured = [json.loads(l) for l in f if l.strip().startswith("{")]
    ranks = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024]
    print(f"model: {N} tokens, {B}x{H}x{HKV} heads, D {D}, bf16 K/V, causal zigzag")
    for rname, rate in RATES.items():
        print(f"\n  rank = {rname}")
        t_c, t_merge, _, kvb = step_times(64, rate, LINKS[1])
        print(f"    at 64 ranks: {N // 64} positions per rank, compute {t_c * 1e3:.1f} ms, merge "
              f"{t_merge * 1e3:.2f} ms and {kvb / 2**20:.0f} MiB of K/V per step")
        print("    ranks  " + "  ".join(f"{l[0]:>24}" for l in LINKS))
        for P in ranks:
            cells = []
            for link in LINKS:
                t_c, _, t_m, _ = step_times(P, rate, link)
                cells.append(f"{efficiency(P, rate, link, True):5.3f} / {efficiency(P, rate, link, False):5.3f}"
                             f" (m/c {t_m / t_c:5.2f})")
            print(f"    {P:5d}  " + "  ".join(f"{c:>24}" for c in cells))
        print("    (efficiency overlapped / not overlapped; m/c: transfer / compute per step)")
    if measured:
        print("\nmeasured (fattn_bench_mpi --json):")
        for m in measured:
            print(f"  {m['ranks']} ranks x {m['threads']} threads, {m['shape']} {m['layout']}: "
                  f"median {m['median_s']:.3f} s, {m['gflops']:.1f} GFLOP/s")
    if png:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, axes = plt.subplots(1, len(RATES), figsize=(11, 4.2), sharey=True)
        for ax, (rname, rate) in zip(axes, RATES.items()):
            for link, color in zip(LINKS, ["tab:green", "tab:blue", "tab:red"]):
                ax.plot(ranks, [efficiency(P, rate, link, True) for P in ranks], color=color,
                        label=f"{link[0]}, overlapped")
                ax.plot(ranks, [efficiency(P, rate, link, False) for P in ranks], color=color,
                        linestyle="--", label=f"{link[0]}, not overlapped")
            ax.set_xscale("log", base=2)
            ax.set_xlabel("ranks")
            ax.set_title(f"1M tokens; rank = {rname}", fontsize=9)
            ax.set_ylim(0, 1.05)
            ax.grid(alpha=0.3)
        # measured: one process on all the machine's cores against P ranks on
        # the same cores (the 2-core machine: P = 3, 4 share them); each P-rank
        # run against the one-process run before it (they were interleaved)
        last, pts = {}, {}
        for m in measured:
            key = (m["shape"], "kv" if m["layout"] == "kv" else "prefill")
            if m["ranks"] == 1:
                last[key] = m["median_s"]
            elif key in last and m["layout"] != "contiguous":
                pts.setdefault((m["shape"], m["layout"], m["ranks"]), []).append(
                    last[key] / m["median_s"])
        labelled = set()
        for (shape, layout, P), effs in sorted(pts.items()):
            eff = statistics.median(effs)
            kind = "decode (kv)" if layout == "kv" else "prefill L=" + shape.split(":")[3]
            axes[0].scatter([P], [eff], marker="x" if layout == "kv" else "o", zorder=5,
                            color={"kv": "purple"}.get(layout, "black" if "32768" in shape else "gray"),
                            label=f"measured: {kind}" if kind not in labelled else None)
            labelled.add(kind)
        axes[0].axvspan(0.8, 4.5, color="0.92", zorder=0)
        axes[0].text(0.9, 0.62, "measured here:\nshared memory,\n2 cores (P = 3, 4\noversubscribed)",
                     fontsize=7)
        axes[0].set_xlim(0.8, 1300)
        axes[0].set_ylabel("efficiency (1-process time / P-rank time, same cores)")
        axes[0].legend(fontsize=6.5, loc="lower center")
        fig.tight_layout()
        fig.savefig(png, dpi=110)
        print(f"wrote {png}")


if __name__ == "__main__":
    main()
