#!/usr/bin/env python
"""Plot bench_scaling.py's JSON: growth with the data (scaling.png), RSS over a long run
(memory.png).

    python benchmarks/plot_scaling.py [--json benchmarks/out/scaling.json] [--out docs/img]

scaling.png, log-log against N: epoch time (Full and SeTa at keep ~0.5) with an N^1 guide;
peak RSS and RSS after the SeTa epoch with the fitted `a + b·N`; SeTa's selection time and its
tracemalloc peak against the number of scores. memory.png: main-process RSS and main RSS +
DataLoader workers' USS after each epoch of the long run, per worker count, and the loss
table's size on disk. Needs matplotlib.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

MB = 2**20


def plot_scaling(result: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    data, sel, fit = result["data"], result["selection"], result["fits"]
    n = np.array([r["n"] for r in data], float)
    fig, (ax_t, ax_m, ax_s) = plt.subplots(1, 3, figsize=(15, 4.6))
    for key, label in (("full", "Full epoch"), ("seta", "SeTa epoch (keep ~0.5)")):
        exp = fit[f"{key}_epoch_exponent"]
        ax_t.plot(n, [r[key]["epoch_s"] for r in data], "o-", label=f"{label}: N^{exp:.2f}")
    ax_t.plot(n, [r["seta"]["set_epoch_s"] for r in data], "s--", label="SeTa set_epoch")
    ax_t.plot(n, [r["convert_s"] for r in data], "^:", label="convert")
    guide = data[-1]["full"]["epoch_s"] * n / n[-1]
    ax_t.plot(n, guide, color="0.6", lw=1, label="∝ N")
    ax_t.set(
        xscale="log", yscale="log", xlabel="samples N", ylabel="seconds", title="Time, 0 workers"
    )
    peak = np.array([r["peak_rss"] for r in data]) / MB
    ax_m.plot(n, peak, "o-", label="peak RSS (reading child)")
    ax_m.plot(
        n,
        [r["mem"]["after_open"]["hwm"] / MB for r in data],
        "v:",
        label="peak RSS until the stream is open",
    )
    ax_m.plot(
        n,
        [r["mem"]["after_seta_epoch"]["rss"] / MB for r in data],
        "s-",
        label="RSS after SeTa epoch",
    )
    ax_m.plot(
        n,
        [r["mem"]["after_seta_epoch"]["uss"] / MB for r in data],
        "d-",
        label="USS after SeTa epoch",
    )
    line = fit["peak_rss_base_mb"] + fit["peak_rss_bytes_per_sample"] * n / MB
    ax_m.plot(
        n,
        line,
        color="0.6",
        lw=1,
        label=(
            f"fit {fit['peak_rss_base_mb']:.0f} MB + "
            f"{fit['peak_rss_bytes_per_sample']:.0f} B/sample"
        ),
    )
    ax_m.set(xscale="log", xlabel="samples N", ylabel="MB", title="Memory of the reading process")
    s = np.array([r["n"] for r in sel], float)
    ax_s.plot(
        s, [r["seconds"] for r in sel], "o-", label=f"SeTa select s: N^{fit['select_exponent']:.2f}"
    )
    ax_s.set(
        xscale="log", yscale="log", xlabel="scores N", ylabel="seconds", title="Selection at scale"
    )
    ax_p = ax_s.twinx()
    ax_p.plot(
        s,
        [r["tracemalloc_peak"] / MB for r in sel],
        "s--",
        color="C1",
        label="tracemalloc peak MiB",
    )
    ax_p.set(yscale="log", ylabel="peak MiB")
    for ax in (ax_t, ax_m, ax_s):
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8, loc="upper left")
    ax_p.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(out / "scaling.png", dpi=110)
    plt.close(fig)


def plot_memory(result: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax_d) = plt.subplots(1, 2, figsize=(12, 4.6))
    for i, run in enumerate(result["longrun"]):
        ep = run["epochs"]
        e = [r["epoch"] + 1 for r in ep]
        w = run["workers"]
        late = run["rss_mb_per_epoch_from5"]
        slope = f"{run['rss_mb_per_epoch']:+.3f} MB/epoch"
        slope += "" if late is None else f"; {late:+.3f} from epoch 5"
        ax.plot(
            e,
            [r["rss"] / MB for r in ep],
            "-",
            color=f"C{i}",
            label=f"{w} workers: main RSS ({slope})",
        )
        if w:
            ax.plot(
                e,
                [(r["rss"] + r["workers_uss"]) / MB for r in ep],
                "--",
                color=f"C{i}",
                label=f"{w} workers: main RSS + workers' USS",
            )
        ax_d.plot(
            e, [r["loss_table_bytes"] / MB for r in ep], "-", color=f"C{i}", label=f"{w} workers"
        )
    samples = result["longrun"][0]["samples"] if result["longrun"] else 0
    ax.set(
        xlabel="epoch",
        ylabel="MB",
        ylim=(0, None),
        title=f"Memory after each epoch: SeTa + loss table, {samples:,} samples",
    )
    ax_d.set(xlabel="epoch", ylabel="MB on disk", title="Loss table folder (history per epoch)")
    for a in (ax, ax_d):
        a.grid(alpha=0.3)
        a.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(out / "memory.png", dpi=110)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--json", type=Path, default=Path("benchmarks/out/scaling.json"))
    p.add_argument("--out", type=Path, default=Path("docs/img"), help="folder for the PNGs")
    args = p.parse_args(argv)
    try:
        result = json.loads(args.json.read_text())
    except (OSError, ValueError) as e:
        print(f"plot_scaling: cannot read {args.json}: {e}", file=sys.stderr)
        return 1
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("plot_scaling: needs matplotlib: pip install matplotlib", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    plot_scaling(result, args.out)
    plot_memory(result, args.out)
    print(f"wrote {args.out / 'scaling.png'} and {args.out / 'memory.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
