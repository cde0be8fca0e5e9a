"""One iterator's reading: the selected byte ranges in read order, samples in yield order.

A worker reads its part in ascending read position (each shard forward, few shards open) and
yields in the plan's yield order, keeping read-but-not-yet-yielded samples in a buffer whose
size the shuffle window bounds. Samples it skips on a resume are never read. Decoding happens
at yield time, so decode calls equal yielded samples. From an object store the read order is
fetched ahead in chunks (`Dataset.iter_raw`, `seta_stream.prefetch`); closing this generator
stops that and joins its threads.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Literal

import numpy as np

from seta_stream.batching import ColWindow, RawBatch
from seta_stream.errors import SeTaStreamError
from seta_stream.shards.decode import decode_fields
from seta_stream.shards.reader import Dataset
from seta_stream.workdir import (
    BYTES,
    DECODED,
    INDEX_BYTES,
    INDEX_LOADS,
    ITERS,
    READ,
    SKIPPED,
    YIELDED,
)

Decode = Literal["default"] | Callable[[dict[str, Any]], Any] | None
OnError = Literal["raise", "skip"]
_FLUSH_EVERY = 256  # yielded samples between updates of the shared counters
_FLUSH_BATCHED = 1024  # batched mode: at least this many samples between updates
_ONE = np.float32(1.0)
log = logging.getLogger("seta_stream")


def read_part(
    dataset: Dataset,
    ids: np.ndarray,
    weights: np.ndarray | None,
    todo: np.ndarray | Iterable[np.ndarray],
    *,
    make_item: Callable[[dict[str, Any]], dict[str, Any]] | None,
    decodes: bool,
    counters: np.ndarray,
    slot: int,
    on_error: OnError = "raise",
) -> Iterator[dict[str, Any] | None]:
    """Yield `make_item(raw)` (None: the raw sample) for positions `todo` of `ids` (read
    order), in that order. With `on_error="skip"` a sample that cannot be read or decoded is
    logged, counted as skipped and yields None in its place (its position is consumed).

    `todo` is an array of positions, or an iterable of blocks of positions that together are
    a permutation of every position of `ids` (a whole pass: nothing is known to be skipped, so
    nothing here is computed over the whole part and blocks are taken as they are needed).
    Works a block of samples at a time: the reads a block needs are done (in read order,
    a chunk at a time), then its samples are taken out in yield order.
    """
    skip = on_error == "skip"
    pairs, chunks = _plan(dataset, ids, todo, skip=skip, columns=False)
    got = _Window()  # raw samples by read rank, until yielded
    tally = _Tally(dataset, counters, slot, decodes)
    try:
        for rank_all, pos_all in pairs:
            for t0 in range(0, len(rank_all), _FLUSH_EVERY):
                rank = rank_all[t0 : t0 + _FLUSH_EVERY]
                reach = int(rank.max()) + 1
                while got.end < reach:
                    got.extend(next(chunks))
                tally.read = got.end
                items = got.take(rank.tolist())
                pos = pos_all[t0 : t0 + _FLUSH_EVERY]
                ws = list(weights[pos]) if weights is not None else [_ONE] * len(items)
                if make_item is None and (not skip or all(type(x) is dict for x in items)):
                    for item, w in zip(items, ws, strict=True):
                        item["__weight__"] = w
                    tally.yielded += len(items)
                    yield from items
                else:
                    yield from _finish(items, ws, make_item, skip, tally)
                tally.flush()
    finally:
        chunks.close()  # type: ignore[attr-defined]  # stops fetching ahead, joins threads
        tally.flush()


def _plan(
    dataset: Dataset,
    ids: np.ndarray,
    todo: np.ndarray | Iterable[np.ndarray],
    *,
    skip: bool,
    columns: bool,
) -> tuple[Iterable[tuple[np.ndarray, np.ndarray]], Iterator[Any]]:
    """(read ranks, positions) blocks in yield order, and the chunks to read in read order."""
    read = dataset.iter_column_chunks if columns else dataset.iter_chunks
    if isinstance(todo, np.ndarray):  # a resumed pass: only the positions left are read
        need = np.zeros(len(ids), bool)
        need[todo] = True
        read_seq = np.flatnonzero(need)  # ascending = read order
        chunks = read(ids[read_seq], skip_errors=skip)  # remote: fetched ahead
        return [(np.searchsorted(read_seq, todo), todo)], chunks
    # a whole pass: a position's read rank is the position itself
    return ((b, b) for b in todo), read(ids, skip_errors=skip)


def read_batches(
    dataset: Dataset,
    ids: np.ndarray,
    weights: np.ndarray | None,
    todo: np.ndarray | Iterable[np.ndarray],
    *,
    batch_size: int,
    drop_last: bool,
    build: Callable[[RawBatch, np.ndarray], tuple[dict[str, Any], int]],
    decodes: bool,
    counters: np.ndarray,
    slot: int,
    on_error: OnError = "raise",
) -> Iterator[tuple[int, dict[str, Any]]]:
    """`read_part` a batch at a time: `(positions consumed, build(raw batch, weights))` for
    consecutive groups of `batch_size` positions of `todo` (the last one shorter, or left
    out with `drop_last`). Rows that fail with
    `on_error="skip"` are left out of their batch (logged, counted as skipped)."""
    pairs, chunks = _plan(dataset, ids, todo, skip=on_error == "skip", columns=True)
    got = ColWindow()
    tally = _Tally(dataset, counters, slot, decodes)
    try:
        for rank, pos in _groups(pairs, batch_size, drop_last):
            reach = int(rank.max()) + 1
            while got.end < reach:
                got.extend(next(chunks))
            tally.read = got.end
            w = np.asarray(weights[pos]) if weights is not None else np.ones(len(pos), np.float32)
            batch, skipped = build(got.take(rank), w)
            tally.yielded += len(rank) - skipped
            tally.skipped += skipped
            if tally.yielded + tally.skipped >= _FLUSH_BATCHED:
                tally.flush()
            yield len(rank), batch
    finally:
        chunks.close()  # type: ignore[attr-defined]  # stops fetching ahead, joins threads
        tally.flush()


def _groups(
    pairs: Iterable[tuple[np.ndarray, np.ndarray]], size: int, drop_last: bool
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Consecutive groups of `size` of the (read rank, position) blocks' rows."""
    held: tuple[np.ndarray, np.ndarray] | None = None
    for rank, pos in pairs:
        if held is not None:
            rank, pos = np.concatenate([held[0], rank]), np.concatenate([held[1], pos])
            held = None
        whole = len(rank) // size * size
        for a in range(0, whole, size):
            yield rank[a : a + size], pos[a : a + size]
        if whole < len(rank):
            held = rank[whole:], pos[whole:]
    if held is not None and not drop_last:
        yield held


class _Window:
    """Samples read but not yet yielded, by read rank; the yielded prefix is dropped, so it
    holds about a shuffle window of samples whatever the length of the pass."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self.base = 0  # read rank of items[0]
        self.end = 0  # samples read so far
        self._lo = 0  # items[:_lo] are all yielded

    def extend(self, chunk: list[Any]) -> None:
        self.items.extend(chunk)
        self.end += len(chunk)

    def take(self, ranks: list[int]) -> list[Any]:
        items, base = self.items, self.base
        out = [items[k - base] for k in ranks]
        for k in ranks:
            items[k - base] = None
        lo = self._lo
        while lo < len(items) and items[lo] is None:
            lo += 1
        if lo > 4096:
            del items[:lo]
            self.base += lo
            lo = 0
        self._lo = lo
        return out


def _finish(
    raws: list[Any],
    weights: list[Any],
    make_item: Callable[[dict[str, Any]], dict[str, Any]] | None,
    skip: bool,
    tally: _Tally,
) -> Iterator[dict[str, Any] | None]:
    """Items one by one: decoded, or skipped (None) when reading or decoding failed."""
    for raw, w in zip(raws, weights, strict=True):
        try:
            if not isinstance(raw, dict):
                raise raw
            item = make_item(raw) if make_item is not None else raw
        except Exception as e:  # a user's decode may raise anything
            if not skip:
                raise
            log.warning("seta_stream: skipped a sample (on_error='skip'): %r", e)
            tally.skipped += 1
            yield None
            continue
        item["__weight__"] = w
        tally.yielded += 1
        yield item


class _Tally:
    """One iterator's counts, added to the shared counters every `_FLUSH_EVERY` samples."""

    def __init__(self, dataset: Dataset, counters: np.ndarray, slot: int, decodes: bool):
        self.dataset, self.counters, self.slot, self.decodes = dataset, counters, slot, decodes
        self.read = self.yielded = self.skipped = self._read_before = 0
        self._before = self._io()

    def _io(self) -> np.ndarray:
        """Bytes read, index files read and their bytes: this process's running totals."""
        index = self.dataset.index
        return np.array([self.dataset.stats.bytes_read, index.loads, index.bytes_read], np.int64)

    def flush(self) -> None:
        row = np.zeros(ITERS + 1, np.int64)
        now = self._io()
        row[[READ, DECODED, YIELDED, SKIPPED]] = (
            self.read - self._read_before,
            self.yielded * self.decodes,
            self.yielded,
            self.skipped,
        )
        row[[BYTES, INDEX_LOADS, INDEX_BYTES]] = now - self._before
        self.counters[:, self.slot] += row
        self._read_before, self._before = self.read, now
        self.yielded = self.skipped = 0


def make_item(
    raw: dict[str, Any],
    *,
    decode: Decode,
    transform: Callable[[Any], Any] | None,
    allow_pickle: bool,
) -> dict[str, Any]:
    """Decode (default: by member extension) and transform one raw sample into a dict."""
    if decode is None:
        item: Any = raw
    elif decode == "default":
        item = decode_fields(raw, where=f"sample {raw['__index__']}", allow_pickle=allow_pickle)
    else:
        item = decode(raw)
    if transform is not None:
        item = transform(item)
    if not isinstance(item, dict):
        raise SeTaStreamError(f"decode/transform must return a dict, got {type(item).__name__}")
    item.setdefault("__key__", raw["__key__"])
    item.setdefault("__index__", raw["__index__"])
    return item
