"""The batched read path: batches of samples as columns, built in the reader.

`SeTaStream(..., batch_size=B)` yields one dict per batch instead of one per sample. The
read is the same as the per-sample path's (`seta_stream.reading`): chunks in read order,
samples taken in yield order, so selection, resume positions and counters are the same;
only the unit differs. Chunks arrive as columns (`ColChunk`: one buffer of bytes and per
field an (offset, size) per sample), a window holds those read but not yet yielded, and a
batch's yield-order rows are gathered from it per field:

- a field with the same size in every row: one uint8 array `(B, size)` (no Python object per
  sample: one copy of the rows out of the chunks' buffers);
- else a list of bytes (None where a sample lacks the field).

`decode="default"` then decodes a column at a time (`seta_stream.shards.decodecols`); a
callable `decode` or a `transform` gets one raw dict per sample (what it is written for) and
its results are collated (`stack_or_list`). Every batch holds `__key__` (list of str),
`__index__` (int64) and `__weight__` (float32) columns.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from seta_stream.shards.colchunk import ColChunk, as_objects
from seta_stream.shards.decodecols import RawColumn, decode_column, stack_or_list

log = logging.getLogger("seta_stream")


@dataclass(eq=False, kw_only=True)
class RawBatch:
    """A batch's raw rows in yield order: ids, keys, fields as raw columns, read errors."""

    ids: np.ndarray
    keys: list[str]
    fields: dict[str, RawColumn] = field(default_factory=dict)
    errors: dict[int, Exception] = field(default_factory=dict)

    def row(self, k: int) -> dict[str, Any]:
        """Row `k` as a raw sample dict (for a user's decode or transform)."""
        out: dict[str, Any] = {"__key__": self.keys[k], "__index__": int(self.ids[k])}
        for name, col in self.fields.items():
            v = col[k]
            if isinstance(v, np.ndarray):
                out[name] = v.tobytes()
            elif v is not None:
                out[name] = v
        return out


class ColWindow:
    """Column chunks read but not yet yielded, by read rank; a chunk is dropped once all of
    its rows are taken, so it holds about a shuffle window of samples."""

    def __init__(self) -> None:
        self.chunks: list[ColChunk] = []
        self.starts: list[int] = []  # read rank of each chunk's first row
        self.left: list[int] = []  # rows of each chunk not yet taken
        self.end = 0  # samples read so far

    def extend(self, chunk: ColChunk) -> None:
        self.chunks.append(chunk)
        self.starts.append(self.end)
        self.left.append(len(chunk))
        self.end += len(chunk)

    def take(self, ranks: np.ndarray) -> RawBatch:
        """The rows at read ranks `ranks` (each taken once), in that order."""
        starts = np.asarray(self.starts, np.int64)
        which = np.searchsorted(starts, ranks, side="right") - 1
        local = ranks - starts[which]
        lo, hi = int(which.min()), int(which.max())
        if lo == hi:
            groups = [(lo, np.arange(len(ranks)))]
        else:  # the chunks between may hold no row of this batch
            found = ((c, np.flatnonzero(which == c)) for c in range(lo, hi + 1))
            groups = [(c, sel) for c, sel in found if len(sel)]
        b = len(ranks)
        ids, keys = np.empty(b, np.int64), np.empty(b, object)
        batch = RawBatch(ids=ids, keys=[])
        names: dict[str, None] = {}
        for c, sel in groups:
            chunk, rows = self.chunks[c], local[sel]
            ids[sel], keys[sel] = chunk.ids[rows], chunk.keys[rows]
            names.update(dict.fromkeys(chunk.fields))
            if chunk.errors:
                for k, r in zip(sel.tolist(), rows.tolist(), strict=True):
                    if r in chunk.errors:
                        batch.errors[k] = chunk.errors[r]
            self.left[c] -= len(sel)
        batch.keys = keys.tolist()
        for name in names:
            batch.fields[name] = self._column(name, groups, local, b)
        while self.left and self.left[0] == 0:
            del self.chunks[0], self.starts[0], self.left[0]
        return batch

    def _column(
        self, name: str, groups: list[tuple[int, np.ndarray]], local: np.ndarray, b: int
    ) -> RawColumn:
        cols = [self.chunks[c].fields.get(name) for c, _ in groups]
        width = {c.shape[1] if c is not None and c.ndim == 2 else -1 for c in cols}
        if len(width) == 1 and (n := width.pop()) > 0:  # one size everywhere: one array
            out = np.empty((b, n), np.uint8)
            for (_, sel), col in zip(groups, cols, strict=True):
                out[sel] = col[local[sel]]  # type: ignore[index]
            return out
        values = np.full(b, None, object)
        for (_, sel), col in zip(groups, cols, strict=True):
            if col is not None:
                values[sel] = as_objects(col[local[sel]])
        return values.tolist()


def build_batch(
    raw: RawBatch,
    weights: np.ndarray,
    *,
    decode: bool,
    allow_pickle: bool,
    skip: bool,
    item: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> tuple[dict[str, Any], int]:
    """The batch's columns and how many of its rows were skipped (read or decode failed,
    `skip`); without `skip` the first failure in yield order is raised. `item`: a user's
    decode/transform, run on one raw dict per row; else `decode` (by member extension) runs
    a column at a time."""
    failed: dict[int, Exception] = dict(raw.errors)
    if item is not None:
        return _per_row(raw, weights, failed, skip, item)
    cols: dict[str, Any] = {}
    where = _where(raw)
    for name, col in raw.fields.items():
        if not decode:
            cols[name] = col
            continue
        cols[name], bad = decode_column(name, col, where=where, allow_pickle=allow_pickle)
        failed.update(bad)
    out = {"__key__": raw.keys, "__index__": raw.ids, "__weight__": weights, **cols}
    return _drop(out, failed, skip), len(failed)


def _per_row(
    raw: RawBatch,
    weights: np.ndarray,
    failed: dict[int, Exception],
    skip: bool,
    item: Callable[[dict[str, Any]], dict[str, Any]],
) -> tuple[dict[str, Any], int]:
    """A user's decode/transform: one raw dict per row, the results collated."""
    items: list[dict[str, Any]] = []
    kept: list[int] = []
    for k in range(len(raw.ids)):
        if k in failed:
            _fail(failed[k], skip)
            continue
        try:
            items.append(item(raw.row(k)))
        except Exception as e:  # a user's decode may raise anything
            _fail(e, skip)
            failed[k] = e
            continue
        kept.append(k)
    names: dict[str, None] = {}
    for d in items:
        names.update(dict.fromkeys(d))
    out: dict[str, Any] = {n: stack_or_list([d.get(n) for d in items]) for n in names}
    out["__key__"] = [raw.keys[k] for k in kept]
    out["__index__"] = raw.ids[kept]
    out["__weight__"] = weights[kept]
    return out, len(failed)


def _drop(out: dict[str, Any], failed: dict[int, Exception], skip: bool) -> dict[str, Any]:
    if not failed:
        return out
    for k in sorted(failed):
        _fail(failed[k], skip)
    keep = np.ones(len(out["__index__"]), bool)
    keep[list(failed)] = False
    rows = np.flatnonzero(keep)
    return {
        n: c[rows] if hasattr(c, "shape") else [c[k] for k in rows.tolist()] for n, c in out.items()
    }


def _fail(e: Exception, skip: bool) -> None:
    if not skip:
        raise e
    log.warning("seta_stream: skipped a sample (on_error='skip'): %r", e)


def _where(raw: RawBatch) -> Callable[[int], str]:
    return lambda k: f"sample {int(raw.ids[k])}"
