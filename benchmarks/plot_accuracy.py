#!/usr/bin/env python
"""Plot bench_accuracy.py's JSON: test accuracy (mean ± std over seeds) against saved %.

    python benchmarks/plot_accuracy.py [--json benchmarks/results/accuracy.json]
        [--out benchmarks/out/accuracy.png]

One panel per recipe (a row per train size); in each, one point per policy with a vertical
error bar (accuracy std over seeds) and a horizontal one (the range of the saving over seeds);
each seed's run drawn faintly behind; Full's mean ± std as a band. Needs matplotlib.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import accuracy_report as report  # benchmarks/accuracy_report.py

MARKERS = {
    "full": "s",
    "seta": "o",
    "seta_target": "D",
    "infobatch": "P",
    "repb": "*",
    "random_seta": "^",
    "random_seta_target": "^",
    "random_infobatch": "^",
    "random_repb": "^",
    "static_seta": "v",
}


def _panel(ax: Any, group: dict[str, Any], runs: list[dict[str, Any]], title: str) -> None:
    rows = group["rows"]
    full = next((r for r in rows if r["policy"] == "full"), None)
    if full is not None:
        lo, hi = (100 * (full["acc_mean"] + s * full["acc_std"]) for s in (-1, 1))
        ax.axhspan(lo, hi, color="0.85", label="Full mean ± std")
    for row in rows:
        key = row["policy"]
        colour = f"C{list(MARKERS).index(key) % 10}" if key in MARKERS else "k"
        mine = [r for r in runs if r["policy"] == row["policy"] and r["status"] == "ok"]
        ax.scatter(
            [100 * r["saved"] for r in mine],
            [100 * r["accuracy"] for r in mine],
            color=colour,
            alpha=0.3,
            s=14,
        )
        x = 100 * row["saved_mean"]
        xerr = [[x - 100 * row["saved_min"]], [100 * row["saved_max"] - x]]
        ax.errorbar(
            x,
            100 * row["acc_mean"],
            yerr=100 * row["acc_std"],
            xerr=xerr,
            fmt=MARKERS.get(row["policy"], "o"),
            color=colour,
            capsize=4,
            label=row["label"],
        )
    ax.set(xlabel="samples saved (% of N · epochs)", ylabel="test accuracy (%)", title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")


def plot(result: dict[str, Any], out: str) -> None:
    """One panel per recipe (columns) and train size (rows)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = result["groups"]
    recipes = list(dict.fromkeys(g["recipe"] for g in groups))
    sizes = list(dict.fromkeys(g["train"] for g in groups))
    fig, axes = plt.subplots(
        len(sizes), len(recipes), figsize=(6.5 * len(recipes), 4.8 * len(sizes)), squeeze=False
    )
    grid = result["grid"]
    for g in groups:
        ax = axes[sizes.index(g["train"])][recipes.index(g["recipe"])]
        runs = [r for r in result["runs"] if (r["recipe"], r["train"]) == (g["recipe"], g["train"])]
        seeds = max((r["seeds"] for r in g["rows"]), default=0)
        title = (
            f"{g['recipe']} (lr {grid['lr'][g['recipe']]}): MNIST-1D {g['train']:,}, "
            f"{grid['epochs']} epochs, {seeds} seed(s)"
        )
        _panel(ax, g, runs, title)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--json", default="benchmarks/results/accuracy.json")
    p.add_argument("--out", default="benchmarks/out/accuracy.png")
    args = p.parse_args(argv)
    result = report.load(args.json, "plot_accuracy")
    if result is None:
        return 1
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("plot_accuracy: needs matplotlib: pip install matplotlib", file=sys.stderr)
        return 1
    plot(result, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
