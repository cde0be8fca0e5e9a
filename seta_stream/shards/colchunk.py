"""A chunk of raw samples as columns: the batched read path's unit (no dict per sample).

A `ColChunk` holds, for the samples of one chunk in read order, their ids and keys, one
uint8 buffer with the bytes read, and per field an (offset, size) pair of int64 arrays into
that buffer (size -1: the sample has no such field). A sample that could not be read stands
as its error in `errors` (when the caller asked to skip errors). The local tar loop builds
chunks straight from the bytes it read (`seta_stream.shards.tarread.read_chunk_columns`);
every other path converts its raw sample dicts (`from_raws`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from seta_stream.errors import SeTaStreamError

Column = tuple[np.ndarray, np.ndarray]  # (offset, size) per sample; size -1: no such field


@dataclass(eq=False, kw_only=True)
class ColChunk:
    """Samples `ids` (read order): keys, bytes and per-field (offset, size) into them."""

    ids: np.ndarray  # int64 (n,)
    keys: np.ndarray  # object (n,): str
    data: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint8))
    fields: dict[str, Column] = field(default_factory=dict)
    errors: dict[int, SeTaStreamError] = field(default_factory=dict)  # row -> its error

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def from_raws(cls, ids: np.ndarray, raws: Sequence[Any]) -> ColChunk:
        """Raw sample dicts (or errors in their place) of `ids`, as columns."""
        keys = np.array([r["__key__"] if isinstance(r, dict) else "" for r in raws] or [""], object)
        chunk = cls(ids=np.asarray(ids, np.int64), keys=keys[: len(raws)])
        chunk.put_raws(dict(enumerate(raws)))
        return chunk

    def put_raws(self, raws: Mapping[int, Any]) -> None:
        """Set rows from raw sample dicts (their values appended to `data`) or errors."""
        if not raws:
            return
        n, pos = len(self.ids), len(self.data)
        extra: list[bytes] = []
        for j, raw in raws.items():
            for off, size in self.fields.values():
                off[j] = size[j] = -1
            if not isinstance(raw, dict):
                self.errors[j] = raw
                continue
            for name, value in raw.items():
                if name[:2] == "__":
                    continue
                b = bytes(value)
                if name not in self.fields:
                    self.fields[name] = (np.full(n, -1, np.int64), np.full(n, -1, np.int64))
                off, size = self.fields[name]
                off[j], size[j] = pos, len(b)
                extra.append(b)
                pos += len(b)
        if extra:
            self.data = np.concatenate([self.data, np.frombuffer(b"".join(extra), np.uint8)])
