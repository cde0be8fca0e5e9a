"""Run by test_steps_ddp.py under torchrun (gloo): epoch 0 of SeTa is trained (losses fed
back), then for epochs 0 and 1 every DataLoader setting (workers 0 and 2, drop_last both, a
batch size that divides this rank's count and one that does not) is iterated and its batches
counted beside `steps_per_epoch` and `len(stream)`. Writes OUT/rank<r>.json.
Usage: _steps_worker.py SHARDS OUT."""

from __future__ import annotations

import json
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

from seta_stream.policies import SeTa
from seta_stream.stream import SeTaStream

POLICY = SeTa(epochs=6, prune_ratio=0.3, num_groups=3, window=0.6)
SEED = 3


def batch_sizes(n: int) -> dict[str, int]:
    """One batch size that divides `n` (but not a worker's half, where it can) and one that
    does not divide it."""
    divisors = [d for d in range(3, n + 1) if n % d == 0]
    divides = next((d for d in divisors if (n // 2) % d), divisors[0])
    return {"divides": divides, "does_not": next(d for d in range(30, n) if n % d)}


def count(stream: SeTaStream, epoch: int) -> list[dict[str, Any]]:
    n = len(stream)
    rows = []
    for kind, b in batch_sizes(n).items():
        for workers in (0, 2):
            for drop_last in (False, True):
                loader = DataLoader(stream, batch_size=b, num_workers=workers, drop_last=drop_last)
                sizes = [len(batch["__index__"]) for batch in loader]
                rows.append(
                    {
                        "epoch": epoch,
                        "len": n,
                        "kind": kind,
                        "batch_size": b,
                        "num_workers": workers,
                        "drop_last": drop_last,
                        "batches": len(sizes),
                        "samples": sum(sizes),
                        "steps": stream.steps_per_epoch(
                            b, drop_last=drop_last, num_workers=workers
                        ),
                    }
                )
    return rows


def main(shards: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", timeout=timedelta(seconds=60))
    rank = dist.get_rank()
    rows: list[dict[str, Any]] = []
    with SeTaStream(shards, policy=POLICY, losses=Path(out) / "losses", seed=SEED) as stream:
        stream.set_epoch(0)
        for batch in DataLoader(stream, batch_size=32, num_workers=2):
            ids = batch["__index__"]
            stream.update(ids, (ids % 11).float() / 11 + 0.01)
        rows += count(stream, 0)
        stream.set_epoch(1)  # SeTa on epoch 0's losses: a pruned selection
        rows += count(stream, 1)
    (Path(out) / f"rank{rank}.json").write_text(json.dumps(rows))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
