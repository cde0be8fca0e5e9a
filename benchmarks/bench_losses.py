"""How fast does the loss table take updates, and how long does one update() call take?

Two questions, each for batches of 256 and 4096 ids (torch tensors, as a training loop has them):

- **throughput**: update() as fast as it returns for `--seconds`, then flush(); sample-updates
  per second counted to the end of the flush (what the writer thread sustains).
- **latency**: update() call times (p50/p99). `train`: every step first runs a training-like
  CPU load in the same process (a torch MLP forward and backward on one thread), while the
  writer applies the previous steps. `floor`: the same, timing only two array copies instead
  of update() (what the machine allows at all right after the load step). `backlog`: the
  writer is kept busy with a queue of earlier batches while update() is called back to back.

Targets (issue): ≥ 5M sample-updates/s sustained; median update() for 256 ids < 50 µs.

    python benchmarks/bench_losses.py                # 10M-sample table
    python benchmarks/bench_losses.py --smoke        # 100k samples, a few seconds

Prints a table and writes JSON (`--out`, default benchmarks/out/losses.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from seta_stream.losses import LossTable

BATCHES = (256, 4096)
POOL = 64  # pre-built batches cycled through, so making them is not measured


def _pool(num_samples: int, batch: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    rng = np.random.default_rng(seed)
    return [
        (torch.from_numpy(rng.integers(0, num_samples, batch)), torch.rand(batch))
        for _ in range(POOL)
    ]


def throughput(table: LossTable, batch: int, seconds: float) -> dict[str, Any]:
    pool = _pool(table.num_samples, batch, seed=batch)
    table.flush()
    before = table.stats()["samples_applied"]
    calls = 0
    start, cpu_start = time.perf_counter(), time.process_time()
    while time.perf_counter() - start < seconds:
        ids, losses = pool[calls % POOL]
        table.update(ids, losses)
        calls += 1
    table.flush()
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    applied = table.stats()["samples_applied"] - before
    return {"batch": batch, "calls": calls, "seconds": elapsed, "cpu_seconds": cpu,
            "samples_per_s": applied / elapsed, "samples_per_cpu_s": applied / cpu}  # fmt: skip


class TrainingLoad:
    """A small MLP step on one CPU thread: ~1 ms of compute that releases the GIL, like a model."""

    def __init__(self) -> None:
        gen = torch.Generator().manual_seed(0)
        self.x = torch.randn(128, 512, generator=gen)
        self.w1 = torch.randn(512, 512, generator=gen, requires_grad=True)
        self.w2 = torch.randn(512, 10, generator=gen, requires_grad=True)

    def step(self) -> None:
        loss = (torch.relu(self.x @ self.w1) @ self.w2).square().mean()
        loss.backward()
        self.w1.grad = self.w2.grad = None


def _copy_only(ids: torch.Tensor, losses: torch.Tensor) -> None:
    """The least any update() must do: copy both arrays out of the tensors."""
    np.array(ids.detach().numpy())
    np.array(losses.detach().numpy())


def latency(table: LossTable, batch: int, calls: int, scenario: str) -> dict[str, Any]:
    """update() call times; scenario `train`, `backlog`, or `floor` (train with `_copy_only`)."""
    pool = _pool(table.num_samples, batch, seed=batch + 1)
    load = TrainingLoad() if scenario in ("train", "floor") else None
    call = _copy_only if scenario == "floor" else table.update
    table.flush()
    if scenario == "backlog":  # the writer works through these while update() is timed
        for i in range(min(calls, 1000)):
            table.update(*pool[i % POOL])
    times = np.empty(calls)
    for i in range(calls):
        if load is not None:
            load.step()
        ids, losses = pool[i % POOL]
        start = time.perf_counter_ns()
        call(ids, losses)
        times[i] = time.perf_counter_ns() - start
    busy = table.stats()["pending"]
    table.flush()
    p50, p99 = np.percentile(times / 1e3, [50, 99])
    return {"scenario": scenario, "batch": batch, "calls": calls, "p50_us": p50, "p99_us": p99,
            "pending_at_end": busy}  # fmt: skip


def run(num_samples: int, seconds: float, calls: int, root: Path) -> dict[str, Any]:
    start = time.perf_counter()
    table = LossTable(root / "losses", num_samples=num_samples, max_pending=4096)
    created = time.perf_counter() - start
    with table:
        results: dict[str, Any] = {
            "throughput": [throughput(table, b, seconds) for b in BATCHES],
            "latency": [
                latency(table, b, calls, scenario)
                for scenario in ("train", "floor", "backlog")
                for b in BATCHES
            ],
        }
        start = time.perf_counter()
        table.snapshot()
        results["snapshot_seconds"] = time.perf_counter() - start
    results["create_seconds"] = created
    return results


def _print(data: dict[str, Any]) -> None:
    n = data["num_samples"]
    load = ", ".join(f"{x:.1f}" for x in data["machine"]["load_average"])
    print(f"loss table, {n:,} samples (create {data['create_seconds']:.2f} s, "
          f"snapshot {data['snapshot_seconds']:.2f} s); {data['machine']['cpus']} CPUs, "
          f"load average {load}")  # fmt: skip
    print(f"{'throughput':<22}{'batch':>7}{'calls':>9}{'M samples/s':>14}{'per CPU-s':>10}")
    for r in data["throughput"]:
        print(f"{'':<22}{r['batch']:>7}{r['calls']:>9}{r['samples_per_s'] / 1e6:>14.2f}"
              f"{r['samples_per_cpu_s'] / 1e6:>10.2f}")  # fmt: skip
    print(f"{'update() latency':<22}{'batch':>7}{'calls':>9}{'p50 µs':>14}{'p99 µs':>10}")
    for r in data["latency"]:
        print(f"{'  ' + r['scenario']:<22}{r['batch']:>7}{r['calls']:>9}"
              f"{r['p50_us']:>14.1f}{r['p99_us']:>10.1f}")  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--num-samples", type=float, default=1e7)
    p.add_argument("--seconds", type=float, default=5.0, help="per throughput measurement")
    p.add_argument("--calls", type=int, default=3000, help="update() calls per latency setting")
    p.add_argument("--smoke", action="store_true", help="100k samples, a few seconds in all")
    p.add_argument("--out", type=Path, default=Path("benchmarks/out/losses.json"))
    p.add_argument("--dir", type=Path, help="where to put the table (default: a temp dir)")
    args = p.parse_args(argv)
    if args.smoke:
        args.num_samples, args.seconds, args.calls = 1e5, 0.3, 100
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        data = run(int(args.num_samples), args.seconds, args.calls, Path(tmp))
    data.update(
        num_samples=int(args.num_samples),
        smoke=args.smoke,
        targets={"samples_per_s": 5e6, "p50_us_batch_256": 50.0},
        machine={"python": sys.version.split()[0], "torch": torch.__version__,
                 "platform": platform.platform(), "cpus": os.cpu_count(),
                 "load_average": os.getloadavg()},
    )  # fmt: skip
    _print(data)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(data, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
