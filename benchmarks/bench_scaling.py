#!/usr/bin/env python
"""How do epoch time and memory grow with the data, and does memory stay flat over a long run?

    python benchmarks/bench_scaling.py [--sizes 1e4 3e4 1e5 3e5 1e6] [--max-scores 1e8]
        [--longrun-samples 50000] [--longrun-epochs 50] [--out benchmarks/out/scaling.json]
        [--workdir DIR] [--keep] [--smoke]
    python benchmarks/plot_scaling.py   # docs/img/scaling.png and docs/img/memory.png

1. Data: per size N, MNIST-1D-like samples (`x` float32[40], `y` int; bench_convert's
   `make_npz`) converted by `seta_stream.shards.convert` to tar shards of 10k. A fresh child
   process converts (time, peak RSS), another reads: `SeTaStream` open time, `set_epoch` time,
   one full epoch (`Full`, losses=None) and one SeTa epoch (`SeTa(epochs=100)`: k=10 groups,
   window 0.5, after uniform random losses for every sample: keep ~0.5), each through
   `DataLoader(batch_size=256, num_workers=0)`, default decode; RSS/USS after opening and after
   each epoch; the child's peak RSS (`getrusage`). Each size's folder is deleted after it is
   measured (`--keep` keeps them), so the disk holds one size at a time (~2.1 GB at 1M).
2. Selection: SeTa's `select` on N lognormal float32 scores (bench_select's policy, epoch and
   `_measure`: best time and tracemalloc peak), each N in a fresh child that also reports its
   peak RSS above the RSS before the scores were made.
   `peak RSS` is reached while `Dataset.open` turns the index Parquet into arrays; that
   transient (`open peak`, VmHWM after opening less the RSS before) is reported on its own.
3. Long run: a child trains nothing but feeds random per-sample losses (`stream.update`) to a
   SeTaStream with `SeTa(epochs=E)` and its loss table (history written each epoch) over
   `--longrun-samples` samples for E epochs, with 0 workers and with 2 persistent workers;
   after each epoch it records RSS/USS of the main process and of the DataLoader workers, open
   file descriptors and the loss table's size on disk.

Fits: log-log slope of epoch time against N; memory = a + b·N (least squares on peak RSS);
RSS against epoch (MB per epoch). Prints Markdown tables and writes JSON; the smoke run in
tests/benchmarks/ keeps it from rotting. `torch.set_num_threads(1)` in every child; the
children are in benchmarks/scaling_children.py.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

from scaling_children import in_child  # noqa: E402

DEFAULT_OUT = HERE / "out" / "scaling.json"
MB = 2**20


@dataclass(frozen=True, kw_only=True)
class ScalingConfig:
    sizes: tuple[int, ...] = (10_000, 30_000, 100_000, 300_000, 1_000_000)
    samples_per_shard: int = 10_000
    scores: tuple[int, ...] = (1_000_000, 10_000_000, 100_000_000)
    select_repeat: int = 2
    longrun_samples: int = 50_000
    longrun_epochs: int = 50
    longrun_workers: tuple[int, ...] = (0, 2)
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("sizes", "scores"):
            v = getattr(self, name)
            if len(v) < 2 or list(v) != sorted(set(v)) or v[0] < 100:
                raise ValueError(f"{name}={v}: need >= 2 increasing sizes, each >= 100")
        for name in ("samples_per_shard", "select_repeat", "longrun_samples"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)}: must be >= 1")
        if self.longrun_epochs < 3:
            raise ValueError(f"longrun_epochs={self.longrun_epochs}: must be >= 3 (a slope)")
        if not self.longrun_workers or not all(0 <= w <= 2 for w in self.longrun_workers):
            raise ValueError(f"longrun_workers={self.longrun_workers}: each in 0..2 (2 cores)")


# ---------------------------------------------------------------- the runs


def run_sizes(cfg: ScalingConfig, tmp: Path, keep: bool) -> list[dict[str, Any]]:
    rows = []
    for n in cfg.sizes:
        folder = tmp / f"n{n}"
        params = {"n": n, "seed": cfg.seed, "dataset": str(folder / "ds")}
        conv = in_child("convert", {**params, "per_shard": cfg.samples_per_shard})
        read = in_child("read", {**params, "work": str(folder)})
        row = {
            "n": n,
            **conv,
            **read,
            "convert_samples_per_s": n / conv["convert_s"],
            "index_bytes_per_sample": conv["index_bytes"] / n,
            # the transient of Dataset.open (index Parquet -> Arrow -> numpy): VmHWM after it
            "open_peak_above_baseline": read["mem"]["after_open"]["hwm"]
            - read["mem"]["baseline"]["rss"],
        }
        rows.append(row)
        print(
            f"N={n:,}: convert {conv['convert_s']:.1f} s, full epoch "
            f"{read['full']['epoch_s']:.2f} s, peak RSS {read['peak_rss'] / MB:.0f} MB",
            file=sys.stderr,
        )
        if not keep:
            shutil.rmtree(folder)
    return rows


def run_longrun(cfg: ScalingConfig, tmp: Path) -> list[dict[str, Any]]:
    ds = tmp / "longrun" / "ds"
    n = cfg.longrun_samples
    conv = in_child(
        "convert",
        {"n": n, "seed": cfg.seed, "dataset": str(ds), "per_shard": cfg.samples_per_shard},
    )
    runs = []
    for w in cfg.longrun_workers:
        params = {
            "n": n,
            "seed": cfg.seed,
            "dataset": str(ds),
            "work": str(ds.parent),
            "workers": w,
            "epochs": cfg.longrun_epochs,
        }
        run = in_child("longrun", params)
        runs.append({"samples": n, "shard_bytes": conv["shard_bytes"], **run, **trend(run)})
    return runs


def trend(run: dict[str, Any]) -> dict[str, Any]:
    """MB per epoch (least squares) and first-to-last change, of the main RSS and of the total
    (main RSS + workers' USS), over all epochs and from epoch 5 on (past warm-up)."""
    ep = run["epochs"]
    e = np.array([r["epoch"] for r in ep], float)
    out: dict[str, Any] = {}
    series = {
        "rss": [r["rss"] for r in ep],
        "uss": [r["uss"] for r in ep],
        "workers_uss": [r["workers_uss"] for r in ep],
        "total": [r["rss"] + r["workers_uss"] for r in ep],
        "fds": [r["fds"] + r["workers_fds"] for r in ep],
        "loss_table": [r["loss_table_bytes"] for r in ep],
    }
    for name, values in series.items():
        v = np.array(values, float) / (1 if name == "fds" else MB)
        unit = "" if name == "fds" else "_mb"
        out[f"{name}{unit}_per_epoch"] = _slope(e, v)
        out[f"{name}{unit}_per_epoch_from5"] = _slope(e[5:], v[5:])
        out[f"{name}{unit}_first_to_last"] = float(v[-1] - v[0])
    return out


def _slope(x: np.ndarray, y: np.ndarray) -> float | None:
    return float(np.polyfit(x, y, 1)[0]) if len(x) >= 3 else None


def fits(rows: list[dict[str, Any]], sel: list[dict[str, Any]]) -> dict[str, Any]:
    n = np.array([r["n"] for r in rows], float)
    s = np.array([r["n"] for r in sel], float)

    def loglog(x: np.ndarray, y: list[float]) -> float:
        return float(np.polyfit(np.log(x), np.log(y), 1)[0])

    b, a = np.polyfit(n, [r["peak_rss"] for r in rows], 1)
    ob, oa = np.polyfit(n, [r["open_peak_above_baseline"] for r in rows], 1)
    b2, a2 = np.polyfit(n, [r["mem"]["after_seta_epoch"]["rss"] for r in rows], 1)
    sb, sa = np.polyfit(s, [r["tracemalloc_peak"] for r in sel], 1)
    return {
        "full_epoch_exponent": loglog(n, [r["full"]["epoch_s"] for r in rows]),
        "seta_epoch_exponent": loglog(n, [r["seta"]["epoch_s"] for r in rows]),
        "full_epoch_cpu_exponent": loglog(n, [r["full"]["epoch_cpu_s"] for r in rows]),
        "seta_epoch_cpu_exponent": loglog(n, [r["seta"]["epoch_cpu_s"] for r in rows]),
        "seta_set_epoch_exponent": loglog(n, [r["seta"]["set_epoch_s"] for r in rows]),
        "open_exponent": loglog(n, [r["open_s"] for r in rows]),
        "convert_exponent": loglog(n, [r["convert_s"] for r in rows]),
        "peak_rss_exponent": loglog(n, [r["peak_rss"] for r in rows]),
        "peak_rss_base_mb": float(a) / MB,
        "peak_rss_bytes_per_sample": float(b),
        "open_peak_bytes_per_sample": float(ob),
        "open_peak_base_mb": float(oa) / MB,
        "rss_after_seta_base_mb": float(a2) / MB,
        "rss_after_seta_bytes_per_sample": float(b2),
        "select_exponent": loglog(s, [r["seconds"] for r in sel]),
        "select_peak_bytes_per_score": float(sb),
        "select_peak_base_mb": float(sa) / MB,
    }


def verdict(f: dict[str, Any], longrun: list[dict[str, Any]]) -> str:
    text = (
        f"Epoch time grows as N^{f['full_epoch_exponent']:.2f} (Full; CPU time "
        f"N^{f['full_epoch_cpu_exponent']:.2f}) and N^{f['seta_epoch_exponent']:.2f} (SeTa at "
        f"keep ~0.5; CPU N^{f['seta_epoch_cpu_exponent']:.2f}); memory = "
        f"{f['peak_rss_base_mb']:.0f} MB + {f['peak_rss_bytes_per_sample']:.0f} bytes/sample "
        f"(peak RSS, set by the transient of opening the index: "
        f"{f['open_peak_bytes_per_sample']:.0f} bytes/sample); selection time grows as "
        f"N^{f['select_exponent']:.2f} at {f['select_peak_bytes_per_score']:.1f} bytes/score "
        "at peak."
    )
    for run in longrun:
        late = run["total_mb_per_epoch_from5"]
        late_s = "" if late is None else f"; {late:+.3f} MB/epoch from epoch 5"
        text += (
            f" Over {len(run['epochs'])} epochs with {run['workers']} workers, main RSS "
            f"changes {run['rss_mb_per_epoch']:+.3f} MB/epoch "
            f"({run['rss_mb_first_to_last']:+.1f} MB first to last); main RSS + workers' "
            f"USS {run['total_mb_per_epoch']:+.3f} MB/epoch{late_s}."
        )
    return text


# ---------------------------------------------------------------- report


def tables(result: dict[str, Any]) -> str:
    lines = [
        "| N | shard MB | index B/sample | convert s | open s | open peak MB | Full set_epoch s "
        "| Full epoch s | Full samples/s | Full CPU µs/sample | SeTa set_epoch s | SeTa kept "
        "| SeTa epoch s | SeTa samples/s | RSS after open MB | RSS after SeTa MB "
        "| USS after SeTa MB | peak RSS MB |",
        "|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in result["data"]:
        full, seta, mem = r["full"], r["seta"], r["mem"]
        lines.append(
            f"| {r['n']:,} | {r['shard_bytes'] / MB:,.0f} | {r['index_bytes_per_sample']:.1f} "
            f"| {r['convert_s']:.1f} | {r['open_s']:.3f} "
            f"| {r['open_peak_above_baseline'] / MB:.0f} | {full['set_epoch_s']:.3f} "
            f"| {full['epoch_s']:.2f} | {full['samples_per_s']:,.0f} "
            f"| {full['epoch_cpu_s'] / r['n'] * 1e6:.1f} | {seta['set_epoch_s']:.3f} "
            f"| {seta['kept_fraction']:.3f} | {seta['epoch_s']:.2f} | {seta['samples_per_s']:,.0f} "
            f"| {mem['after_open']['rss'] / MB:.0f} | {mem['after_seta_epoch']['rss'] / MB:.0f} "
            f"| {mem['after_seta_epoch']['uss'] / MB:.0f} | {r['peak_rss'] / MB:.0f} |"
        )
    lines += [
        "",
        "| scores | SeTa select s | tracemalloc peak MiB | × scores "
        "| RSS peak above start (incl. the scores) MiB | kept |",
        "|--:|--:|--:|--:|--:|--:|",
    ]
    for r in result["selection"]:
        lines.append(
            f"| {r['n']:,} | {r['seconds']:.3f} | {r['tracemalloc_peak'] / MB:,.1f} "
            f"| {r['peak_x_scores']:.2f} | {r['rss_peak_above_start'] / MB:,.1f} "
            f"| {r['kept_fraction']:.3f} |"
        )
    lines += [
        "",
        "| workers | epochs | main RSS first → last MB | MB/epoch | main RSS + workers' USS "
        "first → last MB | MB/epoch (from epoch 5) | fds first → last | loss table MB first → "
        "last |",
        "|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in result["longrun"]:
        a, b = r["epochs"][0], r["epochs"][-1]
        total = [(e["rss"] + e["workers_uss"]) / MB for e in (a, b)]
        slopes = f"{r['total_mb_per_epoch']:+.3f} ({_f(r['total_mb_per_epoch_from5'], '+.3f')})"
        lines.append(
            f"| {r['workers']} | {len(r['epochs'])} | {a['rss'] / MB:.1f} → {b['rss'] / MB:.1f} "
            f"| {r['rss_mb_per_epoch']:+.3f} | {total[0]:.1f} → {total[1]:.1f} | {slopes} "
            f"| {a['fds'] + a['workers_fds']} → {b['fds'] + b['workers_fds']} "
            f"| {a['loss_table_bytes'] / MB:.1f} → {b['loss_table_bytes'] / MB:.1f} |"
        )
    return "\n".join(lines)


def _f(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def machine_info() -> dict[str, Any]:
    return {
        "cpu_count": os.cpu_count(),
        "loadavg": os.getloadavg(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "numpy": np.__version__,
    }


# ---------------------------------------------------------------- main


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench_scaling.py", description=__doc__.split("\n")[1])
    p.add_argument("--sizes", type=float, nargs="+", default=None, help="samples per dataset")
    p.add_argument(
        "--max-scores",
        type=float,
        default=None,
        help="largest selection size of 1e6, 1e7, 1e8 (default 1e8)",
    )
    p.add_argument("--longrun-samples", type=int, default=None, help="default 50000")
    p.add_argument("--longrun-epochs", type=int, default=None, help="default 50")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON file, or a folder")
    p.add_argument("--workdir", type=Path, default=None, help="where the data sets are made")
    p.add_argument("--keep", action="store_true", help="keep the data sets (printed path)")
    p.add_argument("--smoke", action="store_true", help="tiny sizes, a few seconds")
    return p


def _config(args: argparse.Namespace) -> ScalingConfig:
    d = ScalingConfig()
    if args.smoke:
        d = ScalingConfig(
            sizes=(1000, 3000),
            samples_per_shard=1000,
            scores=(10_000, 100_000),
            select_repeat=1,
            longrun_samples=1000,
            longrun_epochs=3,
            longrun_workers=(2,),
        )
    max_scores = d.scores[-1] if args.max_scores is None else int(args.max_scores)
    return ScalingConfig(
        sizes=tuple(int(s) for s in args.sizes) if args.sizes else d.sizes,
        samples_per_shard=d.samples_per_shard,
        scores=tuple(s for s in d.scores if s <= max_scores),
        select_repeat=d.select_repeat,
        longrun_samples=args.longrun_samples or d.longrun_samples,
        longrun_epochs=args.longrun_epochs or d.longrun_epochs,
        longrun_workers=d.longrun_workers,
        seed=args.seed,
    )


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    try:
        cfg = _config(args)
    except ValueError as e:
        print(f"bench_scaling.py: error: {e}", file=sys.stderr)
        return 2
    out = args.out / "scaling.json" if args.out.is_dir() else args.out
    t0, machine = time.perf_counter(), machine_info()
    tmp = Path(tempfile.mkdtemp(prefix="bench_scaling-", dir=args.workdir))
    try:
        data = run_sizes(cfg, tmp, args.keep)
        sel = [
            in_child("select", {"n": n, "seed": cfg.seed, "repeat": cfg.select_repeat})
            for n in cfg.scores
        ]
        longrun = run_longrun(cfg, tmp)
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    f = fits(data, sel)
    result = {
        "benchmark": "scaling",
        "version": 1,
        "config": asdict(cfg),
        "machine": machine,
        "data": data,
        "selection": sel,
        "longrun": longrun,
        "fits": f,
        "verdict": verdict(f, longrun),
        "wall_s": time.perf_counter() - t0,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out.with_suffix(out.suffix + ".tmp")
    tmp_out.write_text(json.dumps(result, indent=2) + "\n")
    tmp_out.replace(out)
    print(tables(result))
    print(f"\n{result['verdict']}\n")
    if args.keep:
        print(f"data sets kept in {tmp}")
    print(f"wrote {out} ({result['wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
