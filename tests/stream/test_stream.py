"""SeTaStream: only the selected samples, each exactly once per epoch, in any DataLoader setup."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from seta_stream.errors import SeTaStreamError
from seta_stream.policies import DynamicRandom, Full, InfoBatch, SeTa
from seta_stream.stream import SeTaStream

N = 1000


def _epoch(stream: SeTaStream, loader: DataLoader, epoch: int, *, feed: bool = True) -> np.ndarray:
    stream.set_epoch(epoch)
    seen = []
    for batch in loader:
        ids = batch["__index__"]
        seen.append(ids.numpy())
        if feed:
            stream.update(ids, (ids % 7).float())
    return np.concatenate(seen) if seen else np.zeros(0, np.int64)


@pytest.mark.parametrize("workers", [0, 2])
def test_each_selected_sample_once(tmp_path: Path, shards: Path, workers: int) -> None:
    policy = SeTa(epochs=6, prune_ratio=0.3, num_groups=5, window=0.6)
    with SeTaStream(shards, policy=policy, losses=tmp_path / "l", seed=1) as stream:
        loader = DataLoader(
            stream, batch_size=64, num_workers=workers, persistent_workers=workers > 0
        )
        for e in range(4):
            seen = _epoch(stream, loader, e)
            sel = policy.select(stream.table.scores(), e, seed=1) if e == 0 else None
            assert len(seen) == len(stream) == len(np.unique(seen))
            if sel is not None:
                np.testing.assert_array_equal(np.sort(seen), sel.ids)
            st = stream.stats()
            assert st["samples_read"] == st["samples_decoded"] == st["samples_yielded"] == len(seen)
            assert st["bytes_read"] == st["bytes_selected"]
        assert len(stream) < N  # pruning happened after epoch 0


def test_persistent_spawn_workers_follow_new_plans(tmp_path: Path, shards: Path) -> None:
    with SeTaStream(
        shards, policy=DynamicRandom(epochs=10, prune_ratio=0.5), losses=tmp_path / "l"
    ) as s:
        loader = DataLoader(
            s,
            batch_size=50,
            num_workers=2,
            persistent_workers=True,
            multiprocessing_context="spawn",
        )
        first = _epoch(s, loader, 0)
        second = _epoch(s, loader, 1)
        assert len(first) == len(second) == 500
        assert set(first.tolist()) != set(second.tolist())  # workers picked up the new plan


def test_counting_decode_and_transform(tmp_path: Path, shards: Path) -> None:
    calls = []

    def decode(raw: dict[str, Any]) -> dict[str, Any]:
        calls.append(raw["__index__"])
        return {"x": np.frombuffer(raw["x.npy"][-160:], np.float32).copy()}

    with SeTaStream(
        shards,
        policy=DynamicRandom(epochs=4, prune_ratio=0.7),
        losses=tmp_path / "l",
        decode=decode,
        transform=lambda d: {**d, "x2": d["x"] * 2},
    ) as s:
        s.set_epoch(0)
        items = list(s)
    assert len(calls) == len(items) == 300
    assert sorted(calls) == sorted(i["__index__"] for i in items)
    assert all(np.array_equal(i["x2"], i["x"] * 2) for i in items)


def test_infobatch_weights_reach_the_batch(tmp_path: Path, shards: Path) -> None:
    with SeTaStream(
        shards, policy=InfoBatch(epochs=4, prune_ratio=0.5), losses=tmp_path / "l"
    ) as s:
        loader = DataLoader(s, batch_size=100)
        _epoch(s, loader, 0)  # losses = id % 7: below-mean samples get pruned/up-weighted
        s.set_epoch(1)
        weights = torch.cat([b["__weight__"] for b in loader])
    assert weights.dtype == torch.float32
    assert set(np.unique(weights.numpy()).tolist()) == {1.0, 2.0}


def test_full_without_loss_table(shards: Path) -> None:
    with SeTaStream(shards, policy=Full(), losses=None) as s:
        s.set_epoch(0)
        assert (
            len(s) == N
            and s.steps_per_epoch(64) == 16
            and s.steps_per_epoch(64, drop_last=True) == 15
        )
        assert sorted(i["__index__"] for i in s) == list(range(N))
        with pytest.raises(SeTaStreamError, match="no loss table"):
            s.update(torch.tensor([1]), torch.tensor([0.5]))


def test_order_is_deterministic_and_shuffled(shards: Path) -> None:
    def order(seed: int) -> list[int]:
        with SeTaStream(shards, policy=Full(), losses=None, seed=seed) as s:
            s.set_epoch(3)
            return [i["__index__"] for i in s]

    a, b, c = order(0), order(0), order(1)
    assert a == b and a != c and sorted(a) == list(range(N))
    # neighbours rarely come from the same shard (150 samples per shard, 4 open at a time)
    same_shard = np.mean(np.diff(np.array(a) // 150) == 0)
    assert same_shard < 0.5


def test_errors(tmp_path: Path, shards: Path) -> None:
    with SeTaStream(shards, policy=SeTa(epochs=3), losses=tmp_path / "l") as s:
        with pytest.raises(SeTaStreamError, match=r"set_epoch\(epoch\) before iterating"):
            next(iter(s))
        s.set_epoch(0)
        with pytest.raises(SeTaStreamError, match=str(N)):
            s.update(torch.tensor([0, N]), torch.tensor([1.0, 2.0]))
    with pytest.raises(SeTaStreamError, match="needs a loss table"):
        SeTaStream(shards, policy=SeTa(epochs=3), losses=None)


def _rchar() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


def test_keep_03_reads_03_of_the_bytes_through_the_os(tmp_path: Path, shards: Path) -> None:
    with SeTaStream(
        shards, policy=DynamicRandom(epochs=4, prune_ratio=0.7), losses=tmp_path / "l"
    ) as s:
        s.set_epoch(1)
        selected = s.stats()["bytes_selected"]
        total = s.dataset.manifest.total_bytes
        before = _rchar()
        n = sum(1 for _ in s)
        os_bytes = _rchar() - before
    assert n == 300
    assert selected <= os_bytes <= 1.05 * selected  # the kernel saw only the selected ranges
    assert os_bytes < 0.35 * total


def test_workers_get_no_copy_of_the_index(tmp_path: Path, shards: Path) -> None:
    import pickle

    with SeTaStream(shards, policy=Full(), losses=None) as s:
        s.set_epoch(0)
        for _ in s:  # the training process has read (and cached) every shard's index
            pass
        assert s.dataset.index.loads == len(s.dataset.manifest.shards)
        blob = pickle.dumps(s)  # what a spawned DataLoader worker receives
        assert len(blob) < 16 * N  # the manifest and the plan's file names: no index, no plan
        clone = pickle.loads(blob)
        assert clone.dataset.index.loads == 0  # the worker reads each shard's index itself
        assert sorted(i["__index__"] for i in clone) == list(range(N))
        assert clone.dataset.index.loads == len(s.dataset.manifest.shards)
