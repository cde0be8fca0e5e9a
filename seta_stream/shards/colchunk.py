"""A chunk of raw samples as columns: the batched read path's unit (no dict per sample).

A `ColChunk` holds, for the samples of one chunk in read order, their ids and keys and one
column per field: a uint8 array `(n, size)` when every sample has the field with the same
size (one copy out of the read buffer, no Python object per sample), else an object array
of bytes (None: the sample has no such field). A sample that could not be read stands as its
error in `errors` (when the caller asked to skip errors). The local tar loop builds chunks
from the bytes it read (`seta_stream.shards.tarread.read_chunk_columns`); every other path
converts its raw sample dicts (`from_raws`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from seta_stream.errors import SeTaStreamError


@dataclass(eq=False, kw_only=True)
class ColChunk:
    """Samples `ids` (read order): keys and per-field columns."""

    ids: np.ndarray  # int64 (n,)
    keys: np.ndarray  # object (n,): str
    fields: dict[str, np.ndarray] = field(default_factory=dict)  # uint8 (n, size) or object (n,)
    errors: dict[int, SeTaStreamError] = field(default_factory=dict)  # row -> its error

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def from_raws(cls, ids: np.ndarray, raws: Sequence[Any]) -> ColChunk:
        """Raw sample dicts (or errors in their place) of `ids`, as columns."""
        keys = np.empty(len(raws), object)
        keys[:] = [r["__key__"] if isinstance(r, dict) else "" for r in raws]
        chunk = cls(ids=np.asarray(ids, np.int64), keys=keys)
        chunk.put_raws(dict(enumerate(raws)))
        for name, col in chunk.fields.items():
            chunk.fields[name] = fixed(col)
        return chunk

    def put_raws(self, raws: Mapping[int, Any]) -> None:
        """Set rows from raw sample dicts or errors (their columns become object arrays)."""
        if not raws:
            return
        n = len(self.ids)
        for name, col in self.fields.items():
            self.fields[name] = as_objects(col)
        for j, raw in raws.items():
            for col in self.fields.values():
                col[j] = None
            if not isinstance(raw, dict):
                self.errors[j] = raw
                continue
            for name, value in raw.items():
                if name[:2] == "__":
                    continue
                if name not in self.fields:
                    self.fields[name] = np.full(n, None, object)
                self.fields[name][j] = bytes(value)


def as_objects(col: np.ndarray) -> np.ndarray:
    """A column as an object array of bytes (None: missing)."""
    if col.dtype == object:
        return col
    out = np.empty(len(col), object)
    out[:] = [row.tobytes() for row in col]
    return out


def fixed(col: np.ndarray) -> np.ndarray:
    """An object column as uint8 `(n, size)` when every value is there with one size."""
    if col.dtype != object:
        return col
    vals = col.tolist()
    if not vals or any(v is None for v in vals):
        return col
    size = len(vals[0])
    if size == 0 or any(len(v) != size for v in vals):
        return col
    return np.frombuffer(b"".join(vals), np.uint8).reshape(len(vals), size).copy()
