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
from collections.abc import Callable, Iterator
from typing import Any, Literal

import numpy as np

from seta_stream.errors import SeTaStreamError
from seta_stream.shards.decode import decode_fields
from seta_stream.shards.reader import Dataset
from seta_stream.workdir import BYTES, DECODED, ITERS, READ, SKIPPED, YIELDED

Decode = Literal["default"] | Callable[[dict[str, Any]], Any] | None
OnError = Literal["raise", "skip"]
_FLUSH_EVERY = 256  # yielded samples between updates of the shared counters
_ONE = np.float32(1.0)
log = logging.getLogger("seta_stream")


def read_part(
    dataset: Dataset,
    ids: np.ndarray,
    weights: np.ndarray | None,
    todo: np.ndarray,
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

    Works a block of samples at a time: the reads a block needs are done (in read order,
    a chunk at a time), then its samples are taken out in yield order.
    """
    need = np.zeros(len(ids), bool)
    need[todo] = True
    read_seq = np.flatnonzero(need)  # ascending = read order
    skip = on_error == "skip"
    chunks = dataset.iter_chunks(ids[read_seq], skip_errors=skip)  # remote: fetched ahead
    rank = np.searchsorted(read_seq, todo)  # each yield's place in the read order
    upto = np.maximum.accumulate(rank) + 1 if len(rank) else rank  # reads done before it
    got: list[Any] = []  # raw samples by read rank; None once yielded
    tally = _Tally(dataset, counters, slot, decodes)
    try:
        for t0 in range(0, len(todo), _FLUSH_EVERY):
            t1 = min(t0 + _FLUSH_EVERY, len(todo))
            while len(got) < upto[t1 - 1]:
                got.extend(next(chunks))
            tally.read = len(got)
            ranks = rank[t0:t1].tolist()
            items = [got[k] for k in ranks]
            for k in ranks:
                got[k] = None
            ws = list(weights[todo[t0:t1]]) if weights is not None else [_ONE] * len(items)
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
        self._bytes_before = dataset.stats.bytes_read

    def flush(self) -> None:
        row = np.zeros(ITERS + 1, np.int64)
        now = self.dataset.stats.bytes_read
        row[[READ, DECODED, YIELDED, SKIPPED, BYTES]] = (
            self.read - self._read_before,
            self.yielded * self.decodes,
            self.yielded,
            self.skipped,
            now - self._bytes_before,
        )
        self.counters[:, self.slot] += row
        self._read_before, self._bytes_before = self.read, now
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
