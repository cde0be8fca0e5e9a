"""Batched mode under DDP: `torchrun --standalone --nproc_per_node=2`, gloo, 2 workers per
rank: every rank yields the same number of batches, the ranks together every selected sample
(only the padding repeats), losses reach the table, and a resume mid-epoch is exact."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from seta_stream.plan import selection_digest
from seta_stream.policies import SeTa
from seta_stream.shards import ConvertOptions, convert, open_source

WORKER = Path(__file__).with_name("_ddp_worker.py")  # run with mode "batched"
POLICY = SeTa(epochs=4, prune_ratio=0.3, num_groups=3, window=0.6)  # as in the worker
SEED, N, WORLD, BATCH = 5, 605, 2, 32


def loss_of(ids: np.ndarray, epoch: int) -> np.ndarray:
    return (((ids * (epoch + 2)) % 13) / 13 + 0.01).astype(np.float32)


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory, torchrun: Callable[..., None]) -> list[dict]:
    root = tmp_path_factory.mktemp("ddp-batched")
    x = np.random.default_rng(0).standard_normal((N, 8)).astype(np.float32)
    np.savez(root / "src.npz", x=x, y=np.arange(N) % 10)
    convert(open_source(str(root / "src.npz")), root / "ds",
            ConvertOptions(samples_per_shard=100, progress=False))  # fmt: skip
    torchrun(WORKER, root / "ds", root, "batched", world=WORLD)
    return [json.loads((root / f"rank{r}.json").read_text()) for r in range(WORLD)]


@pytest.mark.dist
def test_equal_batches_on_every_rank_and_the_whole_selection(reports: list[dict]) -> None:
    scores = np.full(N, np.nan, np.float32)
    sel0 = POLICY.select(scores, 0, seed=SEED).ids
    scores[sel0] = loss_of(sel0, 0)
    padded = 0
    for epoch, sel in enumerate([sel0, POLICY.select(scores, 1, seed=SEED).ids]):
        ep = [r["epochs"][epoch] for r in reports]
        assert ep[0]["digest"] == ep[1]["digest"] == selection_digest(sel)
        per_rank = -(-len(sel) // WORLD)
        for e in ep:
            assert len(e["sizes"]) == e["steps"]  # steps_per_epoch = the batches yielded
            assert sum(e["sizes"]) == len(e["ids"]) == per_rank
            assert max(e["sizes"]) == BATCH and sum(s < BATCH for s in e["sizes"]) <= 2
            assert e["stats"]["samples_read"] == e["stats"]["samples_yielded"] == per_rank
        assert ep[0]["sizes"] == ep[1]["sizes"]  # the same batches on both ranks: no waiting
        counts = Counter(ep[0]["ids"] + ep[1]["ids"])
        assert set(counts) == set(sel.tolist())
        repeats = sum(c - 1 for c in counts.values())
        assert repeats == per_rank * WORLD - len(sel) <= WORLD - 1
        padded += repeats
    assert padded > 0


@pytest.mark.dist
def test_resume_mid_epoch_with_fewer_workers(reports: list[dict]) -> None:
    res = [r["resume"] for r in reports]
    assert res[0]["digest"] == res[1]["digest"]
    assert res[0]["batches"] == res[1]["batches"]
    for r in res:
        assert len(r["before"]) == 2 * BATCH and r["read"] == len(r["after"])
        assert r["batches"] == r["steps"]
        assert len(r["before"]) + len(r["after"]) == len(set(r["before"]) | set(r["after"]))
    every = Counter(i for r in res for i in r["before"] + r["after"])
    assert selection_digest(np.array(sorted(every))) == res[0]["digest"]
    assert sum(c - 1 for c in every.values()) <= WORLD - 1
