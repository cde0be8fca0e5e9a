"""One iterator's reading: the selected byte ranges in read order, samples in yield order.

A worker reads its part in ascending read position (each shard forward, few shards open) and
yields in the plan's yield order, keeping read-but-not-yet-yielded samples in a buffer whose
size the shuffle window bounds. Samples it skips on a resume are never read. Decoding happens
at yield time, so decode calls equal yielded samples. From an object store the read order is
fetched ahead in chunks (`Dataset.iter_raw`, `seta_stream.prefetch`); closing this generator
stops that and joins its threads.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Literal

import numpy as np

from seta_stream.errors import SeTaStreamError
from seta_stream.shards.decode import decode_fields
from seta_stream.shards.reader import Dataset
from seta_stream.workdir import BYTES, DECODED, ITERS, READ, YIELDED

Decode = Literal["default"] | Callable[[dict[str, Any]], Any] | None
_FLUSH_EVERY = 256  # yielded samples between updates of the shared counters


def read_part(
    dataset: Dataset,
    ids: np.ndarray,
    weights: np.ndarray | None,
    todo: np.ndarray,
    *,
    make_item: Callable[[dict[str, Any]], dict[str, Any]],
    decodes: bool,
    counters: np.ndarray,
    slot: int,
) -> Iterator[dict[str, Any]]:
    """Yield `make_item(raw)` for positions `todo` of `ids` (read order), in that order."""
    need = np.zeros(len(ids), bool)
    need[todo] = True
    read_seq = np.flatnonzero(need)  # ascending = read order
    raws = dataset.iter_raw(ids[read_seq])  # remote: fetched ahead, in chunks
    read_l = read_seq.tolist()
    w_l = weights.tolist() if weights is not None else None
    buf: dict[int, dict[str, Any]] = {}
    r = 0
    local = np.zeros(ITERS + 1, np.int64)
    bytes_before = dataset.stats.bytes_read
    try:
        for pos in todo.tolist():
            while pos not in buf:
                buf[read_l[r]] = next(raws)
                r += 1
                local[READ] += 1
            item = make_item(buf.pop(pos))
            local[DECODED] += decodes
            item["__weight__"] = np.float32(w_l[pos] if w_l is not None else 1.0)
            local[YIELDED] += 1
            if local[YIELDED] % _FLUSH_EVERY == 0:
                bytes_before = _flush(dataset, counters, slot, local, bytes_before)
            yield item
    finally:
        close = getattr(raws, "close", None)
        if close is not None:
            close()  # stops fetching ahead and joins the fetch threads
        _flush(dataset, counters, slot, local, bytes_before)


def _flush(
    dataset: Dataset, counters: np.ndarray, slot: int, local: np.ndarray, bytes_before: int
) -> int:
    now = dataset.stats.bytes_read
    local[BYTES] = now - bytes_before
    counters[:, slot] += local
    local[:] = 0
    return now


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
