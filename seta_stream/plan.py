"""Selection -> the order in which one rank and one DataLoader worker read and yield samples.

Pure functions of (selected ids, shard and offset of every sample, seed, epoch, world): no
I/O, no global RNG. A run resumes mid-epoch by recomputing the plan and skipping ahead.

1. **Shard order** is a seeded permutation of the shards that hold selected samples.
2. **Read order**: shards are taken `open_shards` at a time; within such a group the selected
   samples of each shard are read in ascending offset, and the shards of the group are
   interleaved (the j-th sample of every shard, then the (j+1)-th, …).
3. **Split**: the read order is cut into `world_size` contiguous, equal parts (padded with
   the first at most `world_size - 1` samples again, so every rank yields the same count and
   no rank waits on another), and each rank's part into `num_workers` contiguous parts whose
   sizes differ by at most one. Contiguous parts keep each reader on few shards.
4. **Yield order**: a bounded-displacement shuffle of the worker's read order: each sample
   gets the key `read position + U[0, shuffle_window)` and samples are yielded by key. A
   sample moves at most `shuffle_window` places, so a reader that reads in read order and
   yields in yield order buffers at most about `shuffle_window` samples.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from seta_stream.errors import SeTaStreamError

_SALT_SHARDS, _SALT_SHUFFLE = 0x5E7A, 0xB0FF


@dataclass(frozen=True, kw_only=True)
class World:
    """Where this reader sits: DDP rank and DataLoader worker. Built from four integers."""

    rank: int = 0
    world_size: int = 1
    worker: int = 0
    num_workers: int = 1

    def __post_init__(self) -> None:
        if not (0 <= self.rank < self.world_size and 0 <= self.worker < self.num_workers):
            raise SeTaStreamError(f"invalid world {self}")

    @classmethod
    def current(cls) -> World:
        """The world as torch sees it here (the one place that asks torch)."""
        import torch.distributed as dist
        from torch.utils.data import get_worker_info

        rank, size = 0, 1
        if dist.is_available() and dist.is_initialized():
            rank, size = dist.get_rank(), dist.get_world_size()
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        return cls(rank=rank, world_size=size, worker=worker, num_workers=workers)


def _rng(seed: int, epoch: int, salt: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, epoch, salt]))


def read_order(
    ids: np.ndarray,
    shard: np.ndarray,
    offset: np.ndarray,
    *,
    seed: int,
    epoch: int,
    open_shards: int = 4,
    shuffle: bool = True,
) -> np.ndarray:
    """All selected ids in the order they are read (before the rank split)."""
    ids = np.asarray(ids, dtype=np.int64)
    if not shuffle or len(ids) == 0:
        return ids[np.lexsort((offset[ids], shard[ids]))]
    s = shard[ids]
    uniq = np.unique(s)
    perm = _rng(seed, epoch, _SALT_SHARDS).permutation(len(uniq))
    pos_of_shard = np.empty(int(uniq.max()) + 1, np.int64)
    pos_of_shard[uniq[perm]] = np.arange(len(uniq))
    pos = pos_of_shard[s]  # the shard's place in the shuffled shard order
    by_shard = np.lexsort((offset[ids], pos))  # by shard position, then ascending offset
    sorted_pos = pos[by_shard]
    starts = np.searchsorted(sorted_pos, sorted_pos, side="left")
    within = np.arange(len(ids)) - starts  # rank of each sample inside its shard
    group = sorted_pos // max(open_shards, 1)
    order = np.lexsort((sorted_pos, within, group))  # group, then round robin over its shards
    return ids[by_shard][order]


def split(order: np.ndarray, world: World) -> np.ndarray:
    """This rank's and worker's contiguous part of the read order (ranks padded equal)."""
    n = len(order)
    size = world.world_size
    per_rank = -(-n // size)
    if n and per_rank * size != n:
        order = np.concatenate([order, order[: per_rank * size - n]])
    mine = order[world.rank * per_rank : (world.rank + 1) * per_rank]
    k = world.num_workers
    a = world.worker * len(mine) // k
    b = (world.worker + 1) * len(mine) // k
    return mine[a:b]


def yield_order(
    part: np.ndarray, *, seed: int, epoch: int, world: World, shuffle_window: int = 1024
) -> np.ndarray:
    """Positions into `part` in the order they are yielded (bounded-displacement shuffle)."""
    n = len(part)
    if shuffle_window <= 1 or n < 2:
        return np.arange(n)
    salt = [_SALT_SHUFFLE, world.rank, world.world_size, world.worker, world.num_workers]
    rng = np.random.default_rng(np.random.SeedSequence([seed, epoch, *salt]))
    keys = np.arange(n, dtype=np.float64) + rng.random(n) * shuffle_window
    return np.argsort(keys, kind="stable")


def per_rank_count(num_selected: int, world_size: int) -> int:
    """Samples every rank yields in an epoch of `num_selected` samples (padding included)."""
    return -(-num_selected // world_size)
