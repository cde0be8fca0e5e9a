"""Does the loss table hold at 100M-1B samples? Time and peak memory of each epoch step, and disk.

Two epochs as a training loop drives them, on a table of `--n` samples (SeTa, 10 groups):

- **select**: `set_epoch` + `scores()` + `SeTa.select` + `record_selection` (epoch 1 is the
  one that matters: every sample has a loss by then);
- **update**: a loss for every sample through `update()` in batches of `--batch`, then
  `flush()` (ids in a scattered order: an affine permutation of 0..N-1);
- **end**: `end_epoch()` (history, summary, snapshot); in epoch 1 also `close()`.

Peak memory is the process's peak resident set during the step (reset at each step's start
through `/proc/self/clear_refs`; where that is refused, the peak so far) minus the resident set
right after the imports. Memory-mapped pages of the live columns count: they are resident in
this process. Then the table's size on disk, per kind of file, in bytes per sample.

Targets (issue 11): at 100M, select <= 60 s and <= 2.5 GB, update <= 60 s, end <= 60 s;
at 1B, select <= 10 min and <= 16 GB; on disk <= 40 B/sample after 2 epochs.

    python benchmarks/bench_losstable.py               # 1M samples
    python benchmarks/bench_losstable.py --n 100000000 --dir /big/tmp

Prints a table and writes JSON (`--out`, default benchmarks/out/losstable.json).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from seta_stream.losses import LossTable
from seta_stream.policies import SeTa

GB = 1e9
POOL = 64  # pre-built loss batches, cycled through
TARGETS = {
    "select_seconds": 60.0,
    "select_peak_gb": 2.5,
    "update_seconds": 60.0,
    "end_seconds": 60.0,
    "disk_bytes_per_sample": 40.0,
}


def _status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def rss_bytes() -> int:
    kb = _status_kb("VmRSS")
    return 1024 * kb if kb is not None else peak_bytes()


def peak_bytes() -> int:
    kb = _status_kb("VmHWM")
    if kb is None:  # not Linux: the lifetime peak (KiB on Linux, bytes on macOS)
        ru = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return ru if sys.platform == "darwin" else ru * 1024
    return 1024 * kb


def reset_peak() -> bool:
    """Reset the peak resident set to the current one (Linux >= 4.0); False if refused."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


class Steps:
    """Runs and records named steps: seconds, resident set at the start and peak, over baseline."""

    def __init__(self) -> None:
        self.baseline = rss_bytes()
        self.rows: list[dict[str, Any]] = []

    def run(self, epoch: int, name: str, fn: Callable[[], Any]) -> Any:
        start_rss = rss_bytes()
        reset = reset_peak()
        t0 = time.perf_counter()
        result = fn()
        seconds = time.perf_counter() - t0
        self.rows.append(
            {
                "epoch": epoch,
                "step": name,
                "seconds": seconds,
                "start_gb": (start_rss - self.baseline) / GB,
                "peak_gb": (peak_bytes() - self.baseline) / GB,
                "peak_reset": reset,
            }
        )
        return result


def _scatter(n: int) -> int:
    """A multiplier coprime with n: `(a * j) % n` visits every id once, far apart."""
    a = int(n * (math.sqrt(5) - 1) / 2) | 1
    while math.gcd(a, n) != 1:
        a += 2
    return a


def update_all(table: LossTable, batch: int, epoch: int) -> int:
    """A loss for every sample (scattered order), then flush; returns the update() calls."""
    n = table.num_samples
    a = _scatter(n)
    rng = np.random.default_rng(epoch)
    pool = [rng.gamma(2.0, size=batch).astype(np.float32) for _ in range(POOL)]
    j = np.arange(batch, dtype=np.int64)
    calls = 0
    for start in range(0, n, batch):
        stop = min(n, start + batch)
        ids = ((j[: stop - start] + start) * a) % n
        table.update(ids, pool[calls % POOL][: stop - start])
        calls += 1
    table.flush()
    return calls


def select_step(table: LossTable, policy: SeTa, epoch: int, baseline: int) -> dict[str, Any]:
    """The step, with the seconds and peak so far (GB over `baseline`) after each part."""
    parts: dict[str, Any] = {}
    t0 = time.perf_counter()

    def mark(name: str) -> None:
        parts[name] = {"seconds": time.perf_counter() - t0,
                       "peak_gb": (peak_bytes() - baseline) / GB}  # fmt: skip

    table.set_epoch(epoch)
    scores = table.scores()
    mark("scores")
    selection = policy.select(scores, epoch, seed=0)
    mark("select")
    del scores
    table.record_selection(epoch, selection)
    mark("record_selection")
    return {"kept": len(selection), "phase": selection.info["phase"], "parts": parts}


def disk_usage(root: Path) -> dict[str, int]:
    """Bytes on disk by kind: live, snapshot, history, summary, histogram, keys, other."""
    kinds = {"live": 0, "snapshot": 0, "history": 0, "summary": 0, "histogram": 0, "keys": 0}
    other = 0
    for path in root.rglob("*"):
        if not path.is_file():
            continue
        size = path.stat().st_blocks * 512  # what the files occupy (sparse columns count less)
        top = path.relative_to(root).parts[0]
        kind = {"losses.parquet": "snapshot", "keys.parquet": "keys"}.get(top, top)
        if kind in kinds:
            kinds[kind] += size
        else:
            other += size
    return {**kinds, "other": other}


def run(n: int, batch: int, root: Path, history_full_max: int | None) -> dict[str, Any]:
    steps = Steps()
    policy = SeTa(epochs=10, prune_ratio=0.3, num_groups=10, window=0.5)
    info: dict[str, Any] = {}
    options = {} if history_full_max is None else {"history_full_max": history_full_max}
    table = steps.run(0, "open", lambda: LossTable(root, num_samples=n, max_pending=256, **options))
    for epoch in (0, 1):
        info[f"select_{epoch}"] = steps.run(
            epoch, "select", lambda e=epoch: select_step(table, policy, e, steps.baseline)
        )
        steps.run(epoch, "update", lambda e=epoch: update_all(table, batch, e))
        if epoch == 0:
            steps.run(epoch, "end", table.end_epoch)
        else:
            steps.run(epoch, "end+close", lambda: (table.end_epoch(), table.close()))
    disk = disk_usage(root)
    return {
        "steps": steps.rows,
        "import_baseline_gb": steps.baseline / GB,
        "selections": info,
        "disk": disk,
        "history_full_max": table.options.history_full_max,
        "history_form": "full" if n <= table.options.history_full_max else "compact",
    }


def _print(data: dict[str, Any]) -> None:
    n = data["num_samples"]
    print(f"loss table, {n:,} samples, batches of {data['batch']}, SeTa k=10 r=0.3, "
          f"{data['history_form']} history; {data['machine']['cpus']} CPUs")  # fmt: skip
    print(f"resident set after the imports (the baseline of the GB columns): "
          f"{data['import_baseline_gb']:.2f} GB")  # fmt: skip
    head = f"{'epoch':>5} {'step':<10} {'seconds':>9} {'RSS start GB':>13} {'peak GB':>8}"
    print(head)
    print("-" * len(head))
    for r in data["steps"]:
        print(f"{r['epoch']:>5} {r['step']:<10} {r['seconds']:>9.2f} {r['start_gb']:>13.2f} "
              f"{r['peak_gb']:>8.2f}")  # fmt: skip
        if r["step"] == "select":
            parts = data["selections"][f"select_{r['epoch']}"]["parts"]
            print("      " + ", ".join(f"{k} by {v['seconds']:.2f} s, peak {v['peak_gb']:.2f}"
                                      for k, v in parts.items()))  # fmt: skip
    disk = data["disk"]
    total = sum(disk.values())
    parts = ", ".join(f"{k} {v / n:.1f}" for k, v in disk.items() if v)
    print(f"on disk after 2 epochs: {total / n:.1f} B/sample ({parts})")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=float, default=1e6, help="samples in the table")
    p.add_argument("--batch", type=int, default=4096, help="ids per update()")
    p.add_argument("--out", type=Path, default=Path("benchmarks/out/losstable.json"))
    p.add_argument("--dir", type=Path, help="where to put the table (default: a temp dir)")
    p.add_argument("--history-full-max", type=float, help="the table's option (default: its own)")
    args = p.parse_args(argv)
    n = int(args.n)
    full_max = None if args.history_full_max is None else int(args.history_full_max)
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="bench_losstable-") as tmp:
        data = run(n, args.batch, Path(tmp) / "losses", full_max)
    data.update(
        benchmark="losstable",
        num_samples=n,
        batch=args.batch,
        targets=TARGETS,
        machine={"python": sys.version.split()[0], "numpy": np.__version__,
                 "platform": platform.platform(), "cpus": os.cpu_count(),
                 "load_average": os.getloadavg()},
    )  # fmt: skip
    _print(data)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = args.out.with_suffix(args.out.suffix + ".tmp")
    tmp_out.write_text(json.dumps(data, indent=1))
    tmp_out.replace(args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
