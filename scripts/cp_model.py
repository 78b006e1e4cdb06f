#!/usr/bin/env python3
"""The scaling model of fattn_mpi's ring attention (docs/context-parallel.md).

    python3 scripts/cp_model.py [MEASURED.jsonl] [--png OUT.png]

Prints the model's efficiency for 8..1024 ranks (1M-token causal prefill,
1x32x8 heads, D = 128, bf16 K/V) over shared memory, 100 Gb/s and 10 Gb/s
links, with and without overlap, and draws it with the measured points of
MEASURED.jsonl (lines of `fattn_bench_mpi --json`) when given. Everything the
model assumes is a named constant below."""
import json
import sys

# ---- the problem ----
N = 1 << 20          # tokens
B, H, HKV, D = 1, 32, 8, 128
E = 2                # bytes per K/V element (bf16)
CAUSAL = 0.5         # fraction of the score matrix attended (zigzag: every step alike)

# ---- a rank ----
# attention throughput of one rank (FLOP/s) on big pieces; two cases:
RATES = {
    "8-core node, FMA/dpbf16 (1 TFLOP/s)": 1.0e12,
    "AMX node (10 TFLOP/s)": 10.0e12,
}
MERGE_BW = 20e9      # bytes/s the merge streams per rank (f32 partial + accumulator, threaded)
STEP_OVERHEAD = 20e-6  # s per ring step: fattn_sdpa call, MPI calls

# ---- links: (name, bytes/s, latency s) ----
LINKS = [
    ("shared memory", 10e9, 1e-6),
    ("100 Gb/s", 0.9 * 100e9 / 8, 5e-6),
    ("10 Gb/s", 0.9 * 10e9 / 8, 30e-6),
]


def step_times(P, rate, link):
    """Compute, merge and transfer time of one ring step on one rank."""
    n = N / P                                     # positions per rank
    flops = 4 * B * H * D * n * n * CAUSAL        # its queries x one shard's keys
    t_c = flops / rate
    # merge: per step the rank's rows (n x H x D, f32) read twice and written once
    t_merge = 3 * 4 * B * H * n * D / MERGE_BW
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
    ranks = [8, 16, 32, 64, 128, 256, 512, 1024]
    print(f"model: {N} tokens, {B}x{H}x{HKV} heads, D {D}, bf16 K/V, causal zigzag")
    for rname, rate in RATES.items():
        print(f"\n  rank = {rname}")
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
        base = {}
        for m in measured:
            if m["ranks"] == 1:
                base[(m["shape"], m["threads"])] = m["median_s"]
        pts = []
        for m in measured:
            b = base.get((m["shape"], m["ranks"] * m["threads"]))
            if m["ranks"] > 1 and b:
                pts.append((m["ranks"], b / m["median_s"], m["shape"]))
        for P, eff, shape in pts:
            axes[0].scatter([P], [eff], color="black", zorder=5)
            axes[0].annotate(f"measured {shape}", (P, eff), fontsize=7, xytext=(4, -10),
                             textcoords="offset points")
        axes[0].set_ylabel("efficiency (1-process time / P-rank time, same cores)")
        axes[0].legend(fontsize=7, loc="lower left")
        fig.tight_layout()
        fig.savefig(png, dpi=110)
        print(f"wrote {png}")


if __name__ == "__main__":
    main()
