"""Selection -> the order in which one rank and one DataLoader worker read and yield samples.

Pure functions of (selected ids, shard and offset of every sample, seed, epoch, world): no
I/O, no global RNG. A run resumes mid-epoch by recomputing the plan and skipping ahead.

Sample ids run in shard order (and within a shard in file order), so a shard's selected
samples are one block of the sorted selection: nothing here sorts or holds an array over all
N samples, only over the selection.

1. **Shard order** is a seeded permutation of the shards that hold selected samples.
2. **Read order**: shards are taken `open_shards` at a time; within such a group the selected
   samples of each shard are read in ascending offset, and the shards of the group are
   interleaved (the j-th sample of every shard, then the (j+1)-th, …).
3. **Split**: the read order is cut into `world_size` contiguous, equal parts (padded by
   repeating the order from its start, at most `world_size - 1` extra samples, so every rank
   yields the same count and no rank waits on another), and each rank's part into
   `num_workers` contiguous parts whose sizes differ by at most one. Contiguous parts keep
   each reader on few shards.
4. **Yield order**: a bounded-displacement shuffle of the worker's read order: each sample
   gets the key `read position + U[0, shuffle_window)` and samples are yielded by key. A
   sample moves fewer than `shuffle_window` places, so a reader that reads in read order and
   yields in yield order buffers at most about `shuffle_window` samples.
5. **Resume** (`worker_part`): a position is a list of `Stage`s — the number of workers that
   read the rank's part and how many samples each had yielded. Samples yielded in earlier
   stages are removed and the rest is split again over the current workers, so a run can
   resume with another worker count, any number of times.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from seta_stream.errors import SeTaStreamError
from seta_stream.shards.index import concat_aranges

_SALT_SHARDS, _SALT_SHUFFLE = 0x5E7A, 0xB0FF
_MASK64 = (1 << 64) - 1


@dataclass(frozen=True, kw_only=True)
class World:
    """Where this reader sits: DDP rank and DataLoader worker. Built from four integers."""

    rank: int = 0
    world_size: int = 1
    worker: int = 0
    num_workers: int = 1

    def __post_init__(self) -> None:
        if not (0 <= self.rank < self.world_size and 0 <= self.worker < self.num_workers):
            raise SeTaStreamError(
                f"invalid world {self}: need 0 <= rank < world_size and 0 <= worker < num_workers"
            )

    @classmethod
    def current(cls, *, rank: int | None = None, world_size: int | None = None) -> World:
        """The world as torch sees it here (the one place that asks torch).

        Pass `rank`/`world_size` inside DataLoader workers, where the process group of the
        training process is not available.
        """
        from torch.utils.data import get_worker_info

        from seta_stream.distributed import rank_and_size

        if rank is None or world_size is None:
            rank, world_size = rank_and_size()
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        return cls(rank=rank, world_size=world_size, worker=worker, num_workers=workers)


@dataclass(frozen=True, kw_only=True)
class Stage:
    """Part of an epoch read by `num_workers` workers; worker w had yielded `yielded[w]`."""

    num_workers: int
    yielded: tuple[int, ...]

    def __post_init__(self) -> None:
        if self.num_workers < 1 or len(self.yielded) != self.num_workers:
            raise SeTaStreamError(
                f"invalid resume stage: num_workers={self.num_workers} with "
                f"{len(self.yielded)} yielded counts (need num_workers >= 1, one count each)"
            )
        if any(c < 0 for c in self.yielded):
            raise SeTaStreamError(f"invalid resume stage: negative count in {self.yielded}")


def _rng(seed: int, epoch: int, salt: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, epoch, salt]))


def read_order(
    ids: np.ndarray,
    first: np.ndarray,
    *,
    seed: int,
    epoch: int,
    open_shards: int = 4,
    shuffle: bool = True,
) -> np.ndarray:
    """All selected ids (sorted, unique) in the order they are read (before the rank split).

    `first`: the per-shard first sample ids (`Manifest.first_ids`, shards + 1 entries).
    """
    ids = np.asarray(ids, dtype=np.int64)
    return ids[read_positions(ids, first, seed=seed, epoch=epoch, open_shards=open_shards,
                              shuffle=shuffle)]  # fmt: skip


def read_positions(
    ids: np.ndarray,
    first: np.ndarray,
    *,
    seed: int,
    epoch: int,
    open_shards: int = 4,
    shuffle: bool = True,
    start: int = 0,
    stop: int | None = None,
    batch_samples: int = 1 << 20,
) -> np.ndarray:
    """Positions into `ids` in read order (see `read_order`), read positions `start:stop` only.

    No sort over the selection: ids in shard order give each shard's block by a binary search
    per shard, and the round robin within a group of shards is counted, a batch of groups at a
    time; batches outside `start:stop` are skipped, so a rank computes only its own part.
    """
    n = len(ids)
    stop = n if stop is None else stop
    out = np.empty(stop - start, np.int64)
    for dest, rows in _batches(ids, first, seed=seed, epoch=epoch, open_shards=open_shards,
                               shuffle=shuffle, start=start, stop=stop,
                               batch_samples=batch_samples):  # fmt: skip
        out[dest] = rows
    return out


def _batches(
    ids: np.ndarray,
    first: np.ndarray,
    *,
    seed: int,
    epoch: int,
    open_shards: int,
    shuffle: bool,
    start: int,
    stop: int,
    batch_samples: int,
) -> Iterator[tuple[np.ndarray | slice, np.ndarray]]:
    """(places in `[start, stop)` relative to start, rows of `ids` read there), by batch."""
    ids = np.asarray(ids, dtype=np.int64)
    n = len(ids)
    if not 0 <= start <= stop <= n:
        raise SeTaStreamError(f"read_positions: {start}:{stop} is not a range of [0, {n}]")
    if n > 1 and not bool(np.all(ids[1:] > ids[:-1])):
        raise SeTaStreamError("read_order: the selected ids must be sorted and unique")
    if not shuffle or n == 0:
        for a in range(start, stop, batch_samples):
            b = min(a + batch_samples, stop)
            yield slice(a - start, b - start), np.arange(a, b, dtype=np.int64)
        return
    if int(ids[0]) < int(first[0]) or int(ids[-1]) >= int(first[-1]):
        raise SeTaStreamError(f"read_order: ids outside [0, {int(first[-1])})")
    lo = np.searchsorted(ids, first)  # shard s's selected ids are ids[lo[s]:lo[s + 1]]
    counts = np.diff(lo)
    uniq = np.flatnonzero(counts)
    perm = _rng(seed, epoch, _SALT_SHARDS).permutation(len(uniq))
    k = max(open_shards, 1)
    order = uniq[perm]  # shards in read order, padded to whole groups with empty shards
    cnt = np.zeros(-(-len(order) // k) * k, np.int64)
    cnt[: len(order)] = counts[order]
    begin = np.zeros(len(cnt), np.int64)
    begin[: len(order)] = lo[order]
    gsize = cnt.reshape(-1, k).sum(axis=1)
    gend = np.cumsum(gsize)
    g0 = int(np.searchsorted(gend, start, side="right"))  # the group holding position start
    while g0 < len(gsize) and (int(gend[g0 - 1]) if g0 else 0) < stop:
        base = int(gend[g0 - 1]) if g0 else 0
        g1 = max(g0 + 1, int(np.searchsorted(gend, base + batch_samples, side="right")))
        c, st = cnt[g0 * k : g1 * k], begin[g0 * k : g1 * k]
        within = concat_aranges(c)  # each sample's rank inside its shard
        slot = np.repeat(np.arange(len(c)), c)  # its shard's slot in the batch
        table = c.reshape(-1, k)  # per group: the counts of its k shards
        grp, p = slot // k, slot % k
        pos = (np.concatenate([[base], gend[g0 : g1 - 1]]) - base)[grp]
        for q in range(k):  # samples read before it: rank < within in any shard of the
            cq = table[grp, q]  # group, and rank == within in an earlier shard
            pos += np.minimum(cq, within) + ((q < p) & (cq > within))
        pos += base - start
        keep = (pos >= 0) & (pos < stop - start)
        yield pos[keep], (st[slot] + within)[keep]
        g0 = g1


def rank_take(
    ids: np.ndarray,
    weights: np.ndarray | None,
    first: np.ndarray,
    *,
    rank: int,
    world_size: int,
    seed: int,
    epoch: int,
    open_shards: int = 4,
    shuffle: bool = True,
) -> tuple[np.ndarray, np.ndarray | None]:
    """One rank's part of the read order, and its weights: what
    `rank_part(read_order(ids, ...), rank, world_size)` holds, computed for that part only,
    a batch at a time (memory: the part, plus a batch of temporaries). Padding wraps to the
    start of the order, as `rank_part` pads."""
    n = len(ids)
    per = per_rank_count(n, world_size)
    a = rank * per
    kw = {"seed": seed, "epoch": epoch, "open_shards": open_shards, "shuffle": shuffle}
    out = np.empty(per, np.int64)
    w = None if weights is None else np.empty(per, np.float32)
    done = 0
    while done < per:  # the part, wrapping around the order (more than once if n < ranks)
        s0 = (a + done) % n
        s1 = min(n, s0 + per - done)
        for dest, rows in _batches(ids, first, start=s0, stop=s1, batch_samples=1 << 20,
                                   **kw):  # type: ignore[arg-type]  # fmt: skip
            d = dest if isinstance(dest, slice) else dest + done
            if isinstance(d, slice):
                d = slice(d.start + done, d.stop + done)
            out[d] = ids[rows]
            if w is not None and weights is not None:
                w[d] = weights[rows]
        done += s1 - s0
    return out, w


def per_rank_count(num_selected: int, world_size: int) -> int:
    """Samples every rank yields in an epoch of `num_selected` samples (padding included)."""
    return -(-num_selected // world_size)


def worker_bounds(n: int, worker: int, num_workers: int) -> tuple[int, int]:
    return worker * n // num_workers, (worker + 1) * n // num_workers


def worker_counts(rank_len: int, num_workers: int, stages: Sequence[Stage] = ()) -> list[int]:
    """Samples each of `num_workers` workers (0: the main process) yields in a pass over a
    rank's part of `rank_len` samples that resumes after `stages` (as `worker_part` splits)."""
    workers = max(num_workers, 1)
    closed, skip = list(stages), [0] * workers
    if closed and closed[-1].num_workers == workers:
        skip = list(closed.pop().yielded)
    left = rank_len - sum(sum(s.yielded) for s in closed)
    bounds = [worker_bounds(left, w, workers) for w in range(workers)]
    return [b - a - skip[w] for w, (a, b) in enumerate(bounds)]


def steps(
    rank_len: int,
    batch_size: int,
    num_workers: int,
    drop_last: bool,
    *,
    stages: Sequence[Stage] = (),
) -> int:
    """Batches a DataLoader with `batch_size` and `num_workers` yields from a rank's part:
    every worker batches its own samples, so the last batch of each worker may be short."""
    for name, value, least in (("batch_size", batch_size, 1), ("num_workers", num_workers, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise SeTaStreamError(f"{name}={value!r}: must be an int >= {least}")
    counts = worker_counts(rank_len, num_workers, stages)
    return sum(c // batch_size if drop_last else -(-c // batch_size) for c in counts)


def rank_part(order: np.ndarray, rank: int, world_size: int) -> np.ndarray:
    """This rank's contiguous part of the order; the order is padded cyclically so that every
    rank gets `per_rank_count` samples (at most `world_size - 1` repeats in all)."""
    n = len(order)
    per_rank = per_rank_count(n, world_size)
    if n and per_rank * world_size != n:
        order = np.resize(order, per_rank * world_size)  # repeats from the start
    return order[rank * per_rank : (rank + 1) * per_rank]


def split(order: np.ndarray, world: World) -> np.ndarray:
    """This rank's and worker's contiguous part of the read order (ranks padded equal)."""
    mine = rank_part(order, world.rank, world.world_size)
    a, b = worker_bounds(len(mine), world.worker, world.num_workers)
    return mine[a:b]


def yield_order(
    part: np.ndarray,
    *,
    seed: int,
    epoch: int,
    world: World,
    shuffle_window: int = 1024,
    stage: int = 0,
) -> np.ndarray:
    """Positions into `part` in the order they are yielded (bounded-displacement shuffle)."""
    blocks = yield_blocks(len(part), seed=seed, epoch=epoch, world=world,
                          shuffle_window=shuffle_window, stage=stage)  # fmt: skip
    return np.concatenate([np.zeros(0, np.int64), *blocks])


def yield_blocks(
    n: int,
    *,
    seed: int,
    epoch: int,
    world: World,
    shuffle_window: int = 1024,
    stage: int = 0,
    block: int = 1 << 16,
) -> Iterator[np.ndarray]:
    """`yield_order` a block at a time, each computed when asked: the first batch of a huge
    part needs only its first block, not a sort over the part.

    Keys are `position + U * shuffle_window` (U drawn per position from one stream), yielded
    in ascending key. A key in `[a, b)` belongs to a position in `[a - window, b)`, so each
    block of keys sorts only those candidates; the draws of a range of positions are taken by
    jumping the PCG64 stream (`advance`), so blocks agree with one draw over the whole part.
    """
    if shuffle_window <= 1 or n < 2:
        for a in range(0, n, block):
            yield np.arange(a, min(a + block, n), dtype=np.int64)
        return
    salt = [_SALT_SHUFFLE, world.rank, world.world_size, world.worker, world.num_workers, stage]
    seq = np.random.SeedSequence([seed, epoch, *salt])
    w = shuffle_window
    for a in range(0, n + w, block):
        b = a + block
        c0, c1 = max(0, a - w), min(n, b)
        if c0 >= c1:
            break
        gen = np.random.PCG64(seq)
        gen.advance(c0)  # one 64-bit draw per double: position c0's draw comes next
        keys = np.arange(c0, c1, dtype=np.float64) + np.random.Generator(gen).random(c1 - c0) * w
        inside = np.flatnonzero((keys >= a) & (keys < b))
        yield c0 + inside[np.argsort(keys[inside], kind="stable")]


def worker_part(
    rank_len: int,
    world: World,
    *,
    seed: int,
    epoch: int,
    shuffle_window: int,
    stages: Sequence[Stage] = (),
) -> tuple[np.ndarray, np.ndarray, int]:
    """What one worker reads after the `stages` already done: `(part, order, skip)`.

    `part`: positions into the rank's part (of length `rank_len`), ascending = read order;
    `order`: positions into `part` in yield order; `skip`: how many of `order` were already
    yielded (the last stage continues when it had this worker count, else a new stage starts).
    Without stages this is the plain epoch plan: `part == split(arange(rank_len), world)`.
    """
    remaining = np.arange(rank_len, dtype=np.int64)
    closed, current = list(stages), None
    if closed and closed[-1].num_workers == world.num_workers:
        current = closed.pop()
    for j, st in enumerate(closed):
        done = np.zeros(len(remaining), bool)
        for w, count in enumerate(st.yielded):
            a, b = worker_bounds(len(remaining), w, st.num_workers)
            order = _stage_order(b - a, world, w, st.num_workers, seed, epoch, shuffle_window, j)
            if count > b - a:
                raise SeTaStreamError(
                    f"resume stage {j}: worker {w} of {st.num_workers} yielded {count} samples "
                    f"but its part holds {b - a}; the state does not belong to this epoch's plan"
                )
            done[a + order[:count]] = True
        remaining = remaining[~done]
    a, b = worker_bounds(len(remaining), world.worker, world.num_workers)
    j = len(closed)
    order = _stage_order(
        b - a, world, world.worker, world.num_workers, seed, epoch, shuffle_window, j
    )
    skip = current.yielded[world.worker] if current is not None else 0
    if skip > b - a:
        raise SeTaStreamError(
            f"resume: worker {world.worker} yielded {skip} samples but its part holds {b - a}; "
            "the state does not belong to this epoch's plan"
        )
    return remaining[a:b], order, skip


def _stage_order(
    n: int,
    world: World,
    worker: int,
    num_workers: int,
    seed: int,
    epoch: int,
    shuffle_window: int,
    stage: int,
) -> np.ndarray:
    w = World(rank=world.rank, world_size=world.world_size, worker=worker, num_workers=num_workers)
    return yield_order(
        np.empty(n), seed=seed, epoch=epoch, world=w, shuffle_window=shuffle_window, stage=stage
    )


def selection_digest(ids: np.ndarray) -> str:
    """An order-independent fingerprint of a set of sample ids: count and a 64-bit hash.

    Equal on every rank that computed the same selection; a resumed run checks it against
    the checkpoint's before it skips ahead.
    """
    ids = np.asarray(ids, dtype=np.int64)
    total = 0
    with np.errstate(over="ignore"):
        for a in range(0, len(ids), 1 << 20):  # a block at a time: temporaries stay small
            x = ids[a : a + (1 << 20)].astype(np.uint64)
            x = (x + np.uint64(0x9E3779B97F4A7C15)) * np.uint64(0xBF58476D1CE4E5B9)
            x ^= x >> np.uint64(31)
            x *= np.uint64(0x94D049BB133111EB)
            x ^= x >> np.uint64(29)
            total = (total + int(x.sum(dtype=np.uint64))) & _MASK64
    return f"{len(ids)}:{total:016x}"
