#!/usr/bin/env python3
"""Plots fattn_bench JSON (--benchmark_out=FILE --benchmark_out_format=json).

Usage: plot.py RESULTS.json [OUT.png]
Draws, per thread count, the GFLOP/s of every backend on every shape as bars,
with the machine's measured FMA peak (peak/<isa>/threads:n, best ISA) as a
dashed line; and, when the JSON holds several thread counts, a thread-scaling
panel (GFLOP/s against threads, with ideal linear scaling from 1 thread).
Medians are used when the run had repetitions."""
import json
import re
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def load(path):
    with open(path) as f:
        doc = json.load(f)
    rows = defaultdict(list)  # (kind, a, b, threads) -> values
    for bm in doc.get("benchmarks", []):
        if bm.get("run_type") == "aggregate" and bm.get("aggregate_name") != "median":
            continue
        name = re.sub(r"/real_time(_median)?$", "", bm.get("run_name", bm["name"]))
        m = re.match(r"sdpa/([^/]+)/([^/]+)/threads:(\d+)", name)
        if m and "GFLOPS" in bm:
            rows[("sdpa", m.group(1), m.group(2), int(m.group(3)))].append(bm["GFLOPS"])
        m = re.match(r"peak/([^/]+)/threads:(\d+)", name)
        if m and "GFLOPS" in bm:
            rows[("peak", m.group(1), "", int(m.group(2)))].append(bm["GFLOPS"])
    # one value per key: the median aggregate if present, else the middle value
    return {k: sorted(v)[len(v) // 2] for k, v in rows.items()}, doc.get("context", {})


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    src = sys.argv[1]
    out = sys.argv[2] if len(sys.argv) > 2 else re.sub(r"\.json$", "", src) + ".png"
    data, ctx = load(src)
    sdpa = {k: v for k, v in data.items() if k[0] == "sdpa"}
    if not sdpa:
        sys.exit("no sdpa/<backend>/<shape>/threads:<n> results with GFLOPS in " + src)
    threads = sorted({k[3] for k in sdpa})
    shapes = sorted({k[2] for k in sdpa}, key=lambda s: (s[0] != "P", s))
    backends = [b for b in ("avx512", "avx2", "neon", "onednn", "scalar", "reference")
                if any(k[1] == b for k in sdpa)]
    scaling = len(threads) > 1
    fig, axes = plt.subplots(len(threads) + scaling, 1, squeeze=False,
                             figsize=(max(8, 1.6 * len(shapes)), 3.6 * (len(threads) + scaling)))
    width = 0.8 / len(backends)
    for row, t in enumerate(threads):
        ax = axes[row][0]
        for i, b in enumerate(backends):
            ys = [sdpa.get(("sdpa", b, s, t), 0) for s in shapes]
            xs = [x + (i - (len(backends) - 1) / 2) * width for x in range(len(shapes))]
            bars = ax.bar(xs, ys, width, label=b)
            for x, y in zip(xs, ys):
                if y:
                    ax.text(x, y, f"{y:.0f}", ha="center", va="bottom", fontsize=7)
        peaks = [v for k, v in data.items() if k[0] == "peak" and k[3] == t]
        if peaks:
            ax.axhline(max(peaks), ls="--", color="k", lw=1)
            ax.text(-0.45, max(peaks), f"measured FMA peak {max(peaks):.0f} GFLOP/s",
                    va="bottom", ha="left", fontsize=8)
            ax.set_ylim(0, max(peaks) * 1.15)
        ax.set_xticks(range(len(shapes)), shapes)
        ax.set_ylabel("GFLOP/s")
        ax.set_title(f"{t} thread{'s' if t > 1 else ''} — {ctx.get('cpu_model', '')}")
        ax.legend(fontsize=8, ncol=len(backends), loc="upper right")
    if scaling:
        # speed-up over the first thread count: the best fused table (solid)
        # and the oneDNN baseline (dashed), one colour per shape
        ax = axes[-1][0]
        fused = next((b for b in backends if b not in ("onednn", "scalar", "reference")), None)
        colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        for i, sh in enumerate(shapes):
            for b, style in ((fused, "-"), ("onednn", "--")):
                ys = [sdpa.get(("sdpa", b, sh, t)) for t in threads]
                if b is None or None in ys:
                    continue
                ax.plot(threads, [y / ys[0] for y in ys], style, marker="o",
                        color=colours[i % len(colours)], label=f"{b} {sh}")
        ax.plot(threads, [t / threads[0] for t in threads], ":", color="k", lw=1, label="linear")
        ax.set_xlabel("threads")
        ax.set_ylabel(f"speed-up over {threads[0]} thread{'s' if threads[0] > 1 else ''}")
        ax.set_xticks(threads)
        ax.set_title(f"thread scaling: {fused} (solid) and onednn (dashed)")
        ax.legend(fontsize=7, ncol=4)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(out)


if __name__ == "__main__":
    main()
