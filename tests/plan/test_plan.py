"""Invariants of the epoch plan (seta_stream.plan), by hypothesis: splits, orders, resumes."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seta_stream.errors import SeTaStreamError
from seta_stream.plan import (
    Stage,
    World,
    per_rank_count,
    rank_part,
    rank_take,
    read_order,
    read_positions,
    selection_digest,
    split,
    worker_part,
    yield_order,
)

sizes = st.integers(0, 300)
world_sizes = st.integers(1, 6)
worker_counts = st.integers(1, 5)


@settings(max_examples=200, deadline=None)
@given(n=sizes, size=world_sizes, workers=worker_counts, seed=st.integers(0, 2**32))
def test_split_equal_disjoint_covering(n: int, size: int, workers: int, seed: int) -> None:
    order = np.random.default_rng(seed).permutation(10 * n + 1)[:n]  # distinct ids
    per_rank = per_rank_count(n, size)
    ranks = []
    for rank in range(size):
        parts = [
            split(order, World(rank=rank, world_size=size, worker=w, num_workers=workers))
            for w in range(workers)
        ]
        lengths = [len(p) for p in parts]
        assert max(lengths) - min(lengths) <= 1  # worker parts differ by at most one
        mine = np.concatenate(parts)
        np.testing.assert_array_equal(mine, rank_part(order, rank, size))  # contiguous, in order
        assert len(mine) == per_rank  # every rank yields the same count
        ranks.append(mine)
    counts = Counter(np.concatenate(ranks).tolist())
    assert set(counts) == set(order.tolist())  # covers the selection, nothing else
    repeats = sum(c - 1 for c in counts.values())
    assert repeats == per_rank * size - n <= size - 1  # padding only, at most world_size - 1
    for rank in range(size):  # within one rank no sample repeats unless n < world_size
        if n >= size:
            assert len(np.unique(ranks[rank])) == len(ranks[rank])


@st.composite
def datasets(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    per_shard = draw(st.lists(st.integers(1, 20), min_size=1, max_size=12))
    shard = np.repeat(np.arange(len(per_shard)), per_shard)
    offset = np.concatenate([np.cumsum(np.full(k, 1536)) for k in per_shard]).astype(np.int64)
    keep = draw(st.lists(st.booleans(), min_size=len(shard), max_size=len(shard)))
    return np.flatnonzero(keep).astype(np.int64), shard, offset


@settings(max_examples=200, deadline=None)
@given(
    data=datasets(),
    open_shards=st.integers(1, 5),
    seed=st.integers(0, 1000),
    epoch=st.integers(0, 50),
)
def test_read_order(
    data: tuple[np.ndarray, np.ndarray, np.ndarray], open_shards: int, seed: int, epoch: int
) -> None:
    ids, shard, offset = data
    first = np.searchsorted(shard, np.arange(shard[-1] + 2))
    order = read_order(ids, first, seed=seed, epoch=epoch, open_shards=open_shards)
    np.testing.assert_array_equal(np.sort(order), ids)  # a permutation of the selection
    # the same order as the sort-based plan of earlier versions (one lexsort over the selection)
    want = _sorted_read_order(ids, shard, offset, seed, epoch, open_shards)
    np.testing.assert_array_equal(order, want)
    small = read_positions(ids, first, seed=seed, epoch=epoch, open_shards=open_shards,
                           batch_samples=3)  # fmt: skip
    np.testing.assert_array_equal(ids[small], order)  # batches of groups change nothing
    again = read_order(ids, first, seed=seed, epoch=epoch, open_shards=open_shards)
    np.testing.assert_array_equal(order, again)  # deterministic
    for s in np.unique(shard[ids]):  # each shard's samples in ascending offset
        assert np.all(np.diff(offset[order[shard[order] == s]]) > 0)
    first = {s: i for i, s in reversed(list(enumerate(shard[order].tolist())))}
    last = {s: i for i, s in enumerate(shard[order].tolist())}
    for i in range(len(order)):  # never more than open_shards shards open at once
        assert sum(first[s] <= i <= last[s] for s in first) <= open_shards
    plain = read_order(ids, first, seed=seed, epoch=epoch, shuffle=False)
    np.testing.assert_array_equal(plain, ids[np.lexsort((offset[ids], shard[ids]))])


def _sorted_read_order(
    ids: np.ndarray, shard: np.ndarray, offset: np.ndarray, seed: int, epoch: int, k: int
) -> np.ndarray:
    """The read order as version 0.1 computed it, with global sorts: the reference."""
    if len(ids) == 0:
        return ids
    s = shard[ids]
    uniq = np.unique(s)
    rng = np.random.default_rng(np.random.SeedSequence([seed, epoch, 0x5E7A]))
    perm = rng.permutation(len(uniq))
    pos_of_shard = np.empty(int(uniq.max()) + 1, np.int64)
    pos_of_shard[uniq[perm]] = np.arange(len(uniq))
    pos = pos_of_shard[s]
    by_shard = np.lexsort((offset[ids], pos))
    sorted_pos = pos[by_shard]
    starts = np.searchsorted(sorted_pos, sorted_pos, side="left")
    within = np.arange(len(ids)) - starts
    order = np.lexsort((sorted_pos, within, sorted_pos // max(k, 1)))
    return ids[by_shard][order]


@settings(max_examples=200, deadline=None)
@given(data=datasets(), size=world_sizes, open_shards=st.integers(1, 5), seed=st.integers(0, 99))
def test_rank_take_is_the_rank_part(
    data: tuple[np.ndarray, np.ndarray, np.ndarray], size: int, open_shards: int, seed: int
) -> None:
    ids, shard, _ = data
    first = np.searchsorted(shard, np.arange(shard[-1] + 2))
    order = read_order(ids, first, seed=seed, epoch=3, open_shards=open_shards)
    for rank in range(size):
        weights = (ids % 7).astype(np.float32)
        got, w = rank_take(ids, weights, first, rank=rank, world_size=size, seed=seed, epoch=3,
                           open_shards=open_shards)  # fmt: skip
        np.testing.assert_array_equal(got, rank_part(order, rank, size))
        assert w is not None
        np.testing.assert_array_equal(w, (got % 7).astype(np.float32))
        part = read_positions(ids, first, seed=seed, epoch=3, open_shards=open_shards,
                              start=len(ids) // 3, stop=len(ids) // 2, batch_samples=4)  # fmt: skip
        np.testing.assert_array_equal(ids[part], order[len(ids) // 3 : len(ids) // 2])


def test_read_order_refuses_unsorted_ids() -> None:
    with pytest.raises(SeTaStreamError, match="sorted and unique"):
        read_order(np.array([3, 1]), np.array([0, 5]), seed=0, epoch=0)


@settings(max_examples=200, deadline=None)
@given(n=st.integers(0, 500), window=st.integers(0, 64), seed=st.integers(0, 1000))
def test_yield_order_bounded_displacement(n: int, window: int, seed: int) -> None:
    world = World(rank=1, world_size=3, worker=0, num_workers=2)
    yo = yield_order(np.arange(n), seed=seed, epoch=2, world=world, shuffle_window=window)
    np.testing.assert_array_equal(np.sort(yo), np.arange(n))  # a permutation
    where = np.empty(n, np.int64)
    where[yo] = np.arange(n)  # the yield position of read position i
    assert np.all(np.abs(where - np.arange(n)) < max(window, 1))
    if window == 0:
        np.testing.assert_array_equal(yo, np.arange(n))


@settings(max_examples=150, deadline=None)
@given(rank_len=st.integers(0, 200), data=st.data())
def test_worker_part_resumes_cover_the_epoch_once(rank_len: int, data: st.DataObject) -> None:
    """Runs stopped and resumed any number of times, with any worker counts, yield every
    sample of the rank's part exactly once."""
    world_size, rank = 2, 1
    kw = {"seed": 7, "epoch": 3, "shuffle_window": data.draw(st.integers(0, 16))}
    stages: list[Stage] = []
    yielded: list[int] = []
    for _ in range(data.draw(st.integers(0, 4))):
        k = data.draw(worker_counts)
        counts = []
        for w in range(k):
            world = World(rank=rank, world_size=world_size, worker=w, num_workers=k)
            part, order, skip = worker_part(rank_len, world, stages=stages, **kw)
            c = data.draw(st.integers(0, len(order) - skip))
            yielded += part[order[skip : skip + c]].tolist()
            counts.append(skip + c)
        if stages and stages[-1].num_workers == k:
            stages[-1] = Stage(num_workers=k, yielded=tuple(counts))
        else:
            stages.append(Stage(num_workers=k, yielded=tuple(counts)))
    k = data.draw(worker_counts)
    for w in range(k):
        world = World(rank=rank, world_size=world_size, worker=w, num_workers=k)
        part, order, skip = worker_part(rank_len, world, stages=stages, **kw)
        yielded += part[order[skip:]].tolist()
    assert sorted(yielded) == list(range(rank_len))


@given(n=st.integers(1, 100), k=worker_counts, window=st.integers(0, 8))
def test_worker_part_without_stages_is_the_plain_plan(n: int, k: int, window: int) -> None:
    for w in range(k):
        world = World(rank=0, world_size=1, worker=w, num_workers=k)
        part, order, skip = worker_part(n, world, seed=1, epoch=0, shuffle_window=window)
        np.testing.assert_array_equal(part, split(np.arange(n), world))
        yo = yield_order(part, seed=1, epoch=0, world=world, shuffle_window=window)
        np.testing.assert_array_equal(order, yo)
        assert skip == 0


def test_bad_worlds_and_stages() -> None:
    with pytest.raises(SeTaStreamError, match="rank < world_size"):
        World(rank=2, world_size=2)
    with pytest.raises(SeTaStreamError, match="one count each"):
        Stage(num_workers=2, yielded=(1,))
    with pytest.raises(SeTaStreamError, match="holds 5"):
        worker_part(
            10,
            World(worker=0, num_workers=2),
            seed=0,
            epoch=0,
            shuffle_window=0,
            stages=[Stage(num_workers=2, yielded=(6, 0))],
        )


def test_selection_digest() -> None:
    ids = np.array([3, 9, 27, 81], np.int64)
    assert selection_digest(ids) == selection_digest(ids[::-1])  # order-independent
    assert selection_digest(ids) != selection_digest(np.array([3, 9, 27, 82]))
    assert selection_digest(ids).startswith("4:")
    assert selection_digest(np.zeros(0, np.int64)) == "0:0000000000000000"
