"""Print the curriculum of a run from its loss table: what was kept, epoch by epoch.

    python tools/inspect_losses.py runs/exp1/losses [--index data/index.parquet] [--plot c.png]

Per epoch: phase, SeTa window, each group's size and mean loss (easy → hard), the kept
fraction and the cumulative saving `1 - Σ selected / (N · epochs so far)`. With `--index` (a
Parquet file with `sample_id` and `label`), also the kept fraction per class. `--plot` draws
the kept fraction and window over epochs and the latest loss distribution with its group
boundaries (needs matplotlib).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import polars as pl

from seta_stream.errors import SeTaStreamError
from seta_stream.losses.schema import file_metadata

MAX_CLASS_COLUMNS = 12


def _scan(root: Path, folder: str, kind: str) -> pl.LazyFrame:
    files = sorted((root / folder).glob("*.parquet"))
    if not files:
        raise SeTaStreamError(
            f"no {folder} files in {root / folder}: is {root} a loss table with ended epochs?"
        )
    for path in files:
        file_metadata(path, kind)  # refuses unknown versions, naming the file
    return pl.scan_parquet([str(p) for p in files])


def curriculum(root: Path) -> pl.DataFrame:
    """One row per ended epoch: phase, window, groups, selected, kept, cumulative saving."""
    summary = _scan(root, "summary", "summary").collect().sort("epoch", "group")
    groups = (
        summary.filter(pl.col("group") >= 0)
        .group_by("epoch")
        .agg(
            pl.format("{}:{}", "count", pl.col("loss_mean").round(3).cast(pl.String).fill_null("-"))
            .str.join(" ")
            .alias("groups (size:mean loss)")
        )
    )
    per_epoch = (
        summary.group_by("epoch")
        .agg(
            pl.col("phase").first(),
            pl.col("window_start").first(),
            pl.col("window_stop").first(),
            pl.col("selected").sum(),
            pl.col("num_samples").first(),
        )
        .sort("epoch")
        .join(groups, on="epoch", how="left")
    )
    n = pl.col("num_samples")
    return per_epoch.with_columns(
        window=pl.when(pl.col("window_start").is_not_null()).then(
            pl.format("[{}:{})", pl.col("window_start"), pl.col("window_stop"))
        ),
        kept=pl.col("selected") / n,
        saved=1 - pl.col("selected").cum_sum() / (n * pl.int_range(1, pl.len() + 1)),
    ).select("epoch", "phase", "window", "groups (size:mean loss)", "selected", "kept", "saved")


def kept_per_class(root: Path, index: Path) -> pl.DataFrame:
    """Kept fraction per (epoch, label): selected samples of a class over the class size."""
    labels = pl.read_parquet(index, columns=["sample_id", "label"])
    sizes = labels.group_by("label").agg(pl.len().alias("size"))
    history = _scan(root, "history", "history").filter(pl.col("selected"))
    kept = (
        history.select("epoch", "sample_id")
        .join(labels.lazy(), on="sample_id", how="inner")
        .group_by("epoch", "label")
        .agg(pl.len().alias("kept"))
        .collect()
        .join(sizes, on="label")
        .with_columns(kept=pl.col("kept") / pl.col("size"))
    )
    if kept["label"].n_unique() <= MAX_CLASS_COLUMNS:
        wide = kept.sort("label").pivot(on="label", index="epoch", values="kept")
        return wide.sort("epoch")
    return (
        kept.group_by("epoch")
        .agg(
            pl.col("kept").min().alias("class kept min"),
            pl.col("kept").median().alias("median"),
            pl.col("kept").max().alias("max"),
        )
        .sort("epoch")
    )


def _group_edges(root: Path, summary: pl.DataFrame, epoch: int) -> list[float]:
    """Upper loss bounds of all groups but the hardest: the policy's own when it recorded them."""
    info = file_metadata(root / "summary" / f"epoch={epoch:06d}.parquet", "summary").get("info")
    groups = (info or {}).get("groups") or []
    if groups and all("max" in g for g in groups):
        return [float(g["max"]) for g in sorted(groups, key=lambda g: g["rank"])][:-1]
    rows = summary.filter((pl.col("epoch") == epoch) & (pl.col("group") >= 0)).sort("group")
    return [float(x) for x in rows["loss_max"].drop_nulls().to_list()[:-1]]


def plot(root: Path, table: pl.DataFrame, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = _scan(root, "summary", "summary").collect()
    last = int(summary["epoch"].max())  # type: ignore[arg-type]
    history = pl.read_parquet(root / "history" / f"epoch={last:06d}.parquet", columns=["loss"])
    edges = _group_edges(root, summary, last)
    fig, (ax_kept, ax_window, ax_loss) = plt.subplots(1, 3, figsize=(15, 4))
    ax_kept.plot(table["epoch"], table["kept"], marker=".")
    ax_kept.set(xlabel="epoch", ylabel="kept fraction", ylim=(0, 1.05))
    windows = summary.group_by("epoch").agg(pl.col("window_start", "window_stop").first())
    windows = windows.sort("epoch").drop_nulls()
    ax_window.fill_between(
        windows["epoch"], windows["window_start"], windows["window_stop"], step="mid", alpha=0.5
    )
    ax_window.set(xlabel="epoch", ylabel="window over group ranks (easy → hard)")
    ax_loss.hist(history["loss"].drop_nulls().to_numpy(), bins=100)
    for edge in edges:
        ax_loss.axvline(edge, color="k", linestyle="--", linewidth=0.8)
    ax_loss.set(xlabel=f"loss at the end of epoch {last}", ylabel="samples")
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="inspect_losses", description=__doc__.splitlines()[0])
    p.add_argument("losses", type=Path, metavar="RUN_LOSSES", help="the loss table directory")
    p.add_argument("--index", type=Path, help="index.parquet with sample_id and label columns")
    p.add_argument("--plot", type=Path, metavar="OUT_PNG", help="draw the curriculum (matplotlib)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    config: dict[str, Any] = {"tbl_rows": -1, "tbl_cols": -1, "fmt_str_lengths": 80}
    try:
        table = curriculum(args.losses)
        with pl.Config(**config, tbl_hide_dataframe_shape=True, float_precision=3):
            print(table)
            if args.index is not None:
                print("kept fraction per class:")
                print(kept_per_class(args.losses, args.index))
        if args.plot is not None:
            try:
                import matplotlib  # noqa: F401
            except ImportError:
                print(
                    "inspect_losses: --plot needs matplotlib: pip install matplotlib",
                    file=sys.stderr,
                )
                return 1
            plot(args.losses, table, args.plot)
            print(f"wrote {args.plot}")
    except (SeTaStreamError, OSError, pl.exceptions.PolarsError) as e:
        print(f"inspect_losses: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
