#!/usr/bin/env python
"""Plot bench_accuracy.py's JSON: test accuracy (mean ± std over seeds) against saved %.

    python benchmarks/plot_accuracy.py [--json benchmarks/out/accuracy.json]
        [--out benchmarks/out/accuracy.png]

One point per policy with a vertical error bar (accuracy std over seeds) and a horizontal one
(the range of the saving over seeds); each seed's run drawn faintly behind; Full's mean ± std
as a band. Needs matplotlib.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

MARKERS = {
    "full": "s",
    "seta": "o",
    "seta_target": "D",
    "dynamic_random": "^",
    "static": "v",
    "infobatch": "P",
}


def plot(result: dict[str, Any], out: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 5))
    rows = result["rows"]
    full = next(r for r in rows if r["policy"] == "full")
    lo, hi = (100 * (full["acc_mean"] + s * full["acc_std"]) for s in (-1, 1))
    ax.axhspan(lo, hi, color="0.85", label="Full mean ± std")
    for i, row in enumerate(rows):
        colour = f"C{i}"
        runs = [r for r in result["runs"] if r["policy"] == row["policy"]]
        ax.scatter(
            [100 * r["saved"] for r in runs],
            [100 * r["accuracy"] for r in runs],
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
    grid = result["grid"]
    ax.set(
        xlabel="samples saved (% of N · epochs)",
        ylabel="test accuracy (%)",
        title=(
            f"MNIST-1D {grid['train']:,} train, {grid['epochs']} epochs, "
            f"{grid['seeds']} seed(s): mean ± std"
        ),
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--json", default="benchmarks/out/accuracy.json")
    p.add_argument("--out", default="benchmarks/out/accuracy.png")
    args = p.parse_args(argv)
    try:
        with open(args.json) as f:
            result = json.load(f)
    except (OSError, ValueError) as e:
        print(f"plot_accuracy: cannot read {args.json}: {e}", file=sys.stderr)
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
