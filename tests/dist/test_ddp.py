"""SeTaStream under DDP: `torchrun --standalone --nproc_per_node=2`, gloo, 2 workers per rank."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from seta_stream.plan import selection_digest
from seta_stream.policies import SeTa
from seta_stream.shards import ConvertOptions, convert, open_source

WORKER = Path(__file__).with_name("_ddp_worker.py")
POLICY = SeTa(epochs=4, prune_ratio=0.3, num_groups=3, window=0.6)  # as in _ddp_worker.py
SEED, N, WORLD = 5, 605, 2


def loss_of(ids: np.ndarray, epoch: int) -> np.ndarray:
    return (((ids * (epoch + 2)) % 13) / 13 + 0.01).astype(np.float32)


@pytest.fixture(scope="module")
def run(
    tmp_path_factory: pytest.TempPathFactory, torchrun: Callable[..., None]
) -> tuple[Path, list[dict]]:
    root = tmp_path_factory.mktemp("ddp")
    x = np.random.default_rng(0).standard_normal((N, 8)).astype(np.float32)
    np.savez(root / "src.npz", x=x, y=np.arange(N) % 10)
    convert(
        open_source(str(root / "src.npz")),
        root / "ds",
        ConvertOptions(samples_per_shard=100, progress=False),
    )
    torchrun(WORKER, root / "ds", root, world=WORLD)
    reports = [json.loads((root / f"rank{r}.json").read_text()) for r in range(WORLD)]
    return root, reports


def _expected_selections() -> list[np.ndarray]:
    scores = np.full(N, np.nan, np.float32)
    sel0 = POLICY.select(scores, 0, seed=SEED).ids
    scores[sel0] = loss_of(sel0, 0)
    return [sel0, POLICY.select(scores, 1, seed=SEED).ids]


@pytest.mark.dist
def test_ranks_split_the_same_selection(run: tuple[Path, list[dict]]) -> None:
    _, reports = run
    padded = 0
    for epoch, sel in enumerate(_expected_selections()):
        ep = [r["epochs"][epoch] for r in reports]
        assert ep[0]["digest"] == ep[1]["digest"] == selection_digest(sel)  # same selection
        per_rank = -(-len(sel) // WORLD)
        for e in ep:  # equal counts (and batches) on every rank; nothing read but the yield
            assert len(e["ids"]) == e["len"] == per_rank
            assert len(e["sizes"]) == e["steps"]  # steps_per_epoch(BATCH, num_workers=2)
            assert e["stats"]["samples_read"] == e["stats"]["samples_yielded"] == per_rank
        assert len(ep[0]["sizes"]) == len(ep[1]["sizes"])
        counts = Counter(ep[0]["ids"] + ep[1]["ids"])
        assert set(counts) == set(sel.tolist())  # every selected sample, nothing else
        repeats = sum(c - 1 for c in counts.values())
        assert repeats == per_rank * WORLD - len(sel) <= WORLD - 1  # only the padding repeats
        padded += repeats
    assert padded > 0  # the test exercises padding


@pytest.mark.dist
def test_losses_of_both_ranks_reach_the_table(run: tuple[Path, list[dict]]) -> None:
    root, reports = run
    sel0, sel1 = _expected_selections()
    only1 = [
        sorted(set(r1["ids"]) - set(r0["ids"]))
        for r0, r1 in zip(reports[0]["epochs"], reports[1]["epochs"], strict=True)
    ]
    assert all(len(o) > 100 for o in only1)
    # epoch 0's history was written by set_epoch(1): rank 1's losses were merged before it
    hist = pl.read_parquet(root / "losses" / "history" / "epoch=000000.parquet")
    got = hist.filter(pl.col("sample_id").is_in(only1[0])).sort("sample_id")
    np.testing.assert_allclose(got["loss"].to_numpy(), loss_of(np.array(only1[0]), 0))
    assert got["selected"].all()
    snap = pl.read_parquet(root / "losses" / "losses.parquet")  # written by close() on rank 0
    got = snap.filter(pl.col("sample_id").is_in(only1[1])).sort("sample_id")
    np.testing.assert_allclose(got["loss"].to_numpy(), loss_of(np.array(only1[1]), 1))
    assert (got["last_epoch"] == 1).all() and (got["visits"] >= 1).all()
    seen = snap.filter(pl.col("loss").is_not_null())["sample_id"].to_numpy()
    np.testing.assert_array_equal(seen, np.union1d(sel0, sel1))  # nothing lost, nothing extra


@pytest.mark.dist
def test_resume_mid_epoch_under_ddp_with_fewer_workers(run: tuple[Path, list[dict]]) -> None:
    """Epoch 2: checkpoint after 2 batches with 2 workers per rank, resume with 1 worker."""
    _, reports = run
    res = [r["resume"] for r in reports]
    assert res[0]["digest"] == res[1]["digest"]
    for r in res:
        # after load_state_dict, len() and steps_per_epoch() count what remains
        assert len(r["before"]) == 64 and r["read"] == len(r["after"]) == r["len"]
        assert r["steps"] == r["batches"] == -(-r["len"] // 32)
        assert len(set(r["before"]) | set(r["after"])) == 64 + r["len"]  # no repeats on a rank
    every = Counter(i for r in res for i in r["before"] + r["after"])
    assert selection_digest(np.array(sorted(every))) == res[0]["digest"]  # the whole selection
    assert sum(c - 1 for c in every.values()) <= WORLD - 1  # only the padding repeats
