"""`steps_per_epoch` under DDP (`torchrun --standalone --nproc_per_node=2`, gloo): on every
rank it equals the batches that rank's DataLoader really yields, for 0 and 2 workers,
drop_last both ways and a batch size that divides the rank's count and one that does not, on
SeTa selections that prune (epoch 0 at random, epoch 1 from epoch 0's losses)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from seta_stream.shards import ConvertOptions, convert, open_source

WORKER = Path(__file__).with_name("_steps_worker.py")
N, WORLD = 425, 2  # selections of 297 and 183: odd, so a rank is padded


def _load_worker() -> object:
    import importlib.util

    spec = importlib.util.spec_from_file_location("_steps_worker", WORKER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _selections() -> list[int]:
    """The selection sizes of epochs 0 and 1, computed here from the worker's policy/losses."""
    w = _load_worker()
    scores = np.full(N, np.nan, np.float32)
    sel0 = w.POLICY.select(scores, 0, seed=w.SEED).ids  # type: ignore[attr-defined]
    scores[sel0] = (sel0 % 11) / 11 + 0.01
    sel1 = w.POLICY.select(scores, 1, seed=w.SEED).ids  # type: ignore[attr-defined]
    return [len(sel0), len(sel1)]


@pytest.mark.dist
def test_steps_per_epoch_is_the_real_batch_count_on_every_rank(
    tmp_path: Path, torchrun: Callable[..., None]
) -> None:
    x = np.random.default_rng(0).standard_normal((N, 4)).astype(np.float32)
    np.savez(tmp_path / "src.npz", x=x, y=np.arange(N) % 7)
    opts = ConvertOptions(samples_per_shard=50, progress=False)
    convert(open_source(str(tmp_path / "src.npz")), tmp_path / "ds", opts)
    torchrun(WORKER, tmp_path / "ds", tmp_path, world=WORLD)
    sizes = _selections()
    assert all(s < N and s % WORLD for s in sizes)  # pruned, and padded to equal rank counts
    for rank in range(WORLD):
        rows = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert len(rows) == 2 * 2 * 2 * 2  # epochs x batch sizes x workers x drop_last
        for row in rows:
            per_rank = -(-sizes[row["epoch"]] // WORLD)
            assert row["len"] == per_rank, row
            assert row["steps"] == row["batches"], row
            if row["drop_last"]:
                assert per_rank - row["samples"] < row["batch_size"] * max(row["num_workers"], 1)
            else:
                assert row["samples"] == per_rank, row
            divides = per_rank % row["batch_size"] == 0
            assert divides == (row["kind"] == "divides"), row
        # the case that was wrong before: workers' short batches counted
        odd = [r for r in rows if r["num_workers"] == 2 and r["kind"] == "does_not"]
        assert any(
            r["batches"] != -(-r["len"] // r["batch_size"]) for r in odd if not r["drop_last"]
        )
