"""Checks that an index's byte ranges can be right, before anything is read with them.

A stale, damaged or hostile `index.parquet` must not make the reader return another sample's
bytes, read past a shard, or allocate what an absurd length asks for. `check_index` refuses,
naming the index file, the sample (id and key), its shard and the offsets:

- always: negative offsets or sizes, ranges that end past 2**63, and two members of one shard
  whose bytes overlap (two samples that would read the same bytes);
- with the manifest: shard numbers it does not list, per-shard sample counts that differ from
  it, members past the end of their shard, for tar sample spans past the end of the shard,
  spans that do not hold their members (and their headers) and spans that overlap, and
  samples out of shard and file order (swapped rows).

All checks are vectorised (numpy): a few milliseconds per million samples.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from seta_stream.errors import ManifestError

if TYPE_CHECKING:
    from seta_stream.shards.index import SampleIndex
    from seta_stream.shards.manifest import Manifest

__all__ = ["check_index"]

_HEADER = 512  # a tar member's data starts at least one header block after its sample's span


def check_index(
    index: SampleIndex,
    *,
    source: str,
    manifest: Manifest | None = None,
    shard: int | None = None,
    base: int = 0,
) -> None:
    """Raise `ManifestError` if `index` (read from `source`) has impossible byte ranges.

    With `shard`, `index` is that one shard's rows, whose first row is sample `base`.
    """
    _Checker(index, source, manifest, shard, base).run()


class _Checker:
    def __init__(
        self,
        index: SampleIndex,
        source: str,
        manifest: Manifest | None,
        shard: int | None = None,
        base: int = 0,
    ) -> None:
        self.idx = index
        self.source = source
        self.manifest = manifest
        self.shard = shard
        self.base = base
        self.owner = np.repeat(np.arange(index.num_samples), np.diff(index.mstart))

    def where(self, i: int) -> str:
        """Sample `i` (a row) as messages name it: index file, id, key, shard (and its file)."""
        idx, s = self.idx, int(self.idx.shard[i])
        shards = self.manifest.shards if self.manifest is not None else ()
        name = f" ({shards[s].name})" if 0 <= s < len(shards) else ""
        sid = self.base + i
        return f"{self.source}: sample {sid} ({idx.keys[i].as_py()!r}) in shard {s}{name}"

    def run(self) -> None:
        idx, owner = self.idx, self.owner
        if self.manifest is not None:
            self._shards_listed(self.manifest)
        for what, values, rows in (
            ("offset", idx.offset, None),
            ("length", idx.length, None),
            ("member offset", idx.moffset, owner),
            ("member size", idx.msize, owner),
        ):
            if len(values) and int(values.min()) < 0:
                k = int(np.argmin(values))
                i = k if rows is None else int(rows[k])
                raise ManifestError(f"{self.where(i)}: negative {what} {int(values[k])}")
        mend = self._ends(idx.moffset, idx.msize, owner)
        full = idx.msize > 0  # empty values (Arrow) may share an offset with the next one
        self._no_overlap(idx.shard[owner][full], idx.moffset[full], mend[full], owner[full], "data")
        if self.manifest is not None:
            self._within_shards(self.manifest, mend)
            self._in_file_order()

    def _in_file_order(self) -> None:
        """Sample ids run in shard order, and within a shard in file order (tar: byte offset,
        Arrow: row), as every writer and `tools/shard.py index` numbers them: rows swapped or
        reordered would read one sample's bytes under another's id and key."""
        idx = self.idx
        if idx.num_samples < 2:
            return
        ds, do = np.diff(idx.shard.astype(np.int64)), np.diff(idx.offset)
        bad = np.flatnonzero((ds < 0) | ((ds == 0) & (do <= 0)))
        if len(bad):
            i = int(bad[0]) + 1
            raise ManifestError(
                f"{self.where(i)} at offset {int(idx.offset[i])} comes after sample "
                f"{self.base + i - 1} "
                f"(shard {int(idx.shard[i - 1])}, offset {int(idx.offset[i - 1])}); an index "
                "lists samples in shard and file order (rows swapped or reordered?)"
            )

    def _ends(self, start: np.ndarray, size: np.ndarray, rows: np.ndarray | None) -> np.ndarray:
        end = start + size  # both >= 0 here: an overflow wraps to a negative number
        if len(end) and int(end.min()) < 0:
            k = int(np.argmin(end))
            i = k if rows is None else int(rows[k])
            raise ManifestError(
                f"{self.where(i)}: absurd range of {int(size[k])} bytes at offset "
                f"{int(start[k])} (it ends past 2**63)"
            )
        return end

    def _no_overlap(
        self, shard: np.ndarray, start: np.ndarray, end: np.ndarray, owner: np.ndarray, what: str
    ) -> None:
        """Sorted by start, any overlap shows between neighbours: only those are compared."""
        if len(start) < 2:
            return
        same = shard[1:] == shard[:-1]
        if not bool(np.all((shard[1:] > shard[:-1]) | (same & (start[1:] >= start[:-1])))):
            order = np.lexsort((start, shard))
            shard, start, end, owner = shard[order], start[order], end[order], owner[order]
            same = shard[1:] == shard[:-1]
        bad = np.flatnonzero(same & (start[1:] < end[:-1]))
        if len(bad):
            k = int(bad[0])
            a, b = int(owner[k]), int(owner[k + 1])
            key_b = self.idx.keys[b].as_py()
            raise ManifestError(
                f"{self.where(a)}: its {what} at bytes {int(start[k])}..{int(end[k])} overlap "
                f"those of sample {self.base + b} ({key_b!r}) at bytes "
                f"{int(start[k + 1])}..{int(end[k + 1])}"
                "; an index must give each sample bytes of its own (re-run tools/shard.py index)"
            )

    def _shards_listed(self, manifest: Manifest) -> None:
        idx, shards = self.idx, manifest.shards
        n = len(shards)
        if idx.num_samples and not 0 <= int(idx.shard.min()) <= int(idx.shard.max()) < n:
            i = int(np.flatnonzero((idx.shard < 0) | (idx.shard >= n))[0])
            raise ManifestError(f"{self.where(i)}: dataset.json lists {n} shards")
        per_shard = np.bincount(idx.shard, minlength=n)
        for s, info in enumerate(shards):
            if self.shard is not None and s != self.shard:
                continue
            if per_shard[s] != info.samples:
                raise ManifestError(
                    f"{self.source}: {per_shard[s]} samples in shard {s} ({info.name}), "
                    f"dataset.json records {info.samples}"
                )

    def _within_shards(self, manifest: Manifest, mend: np.ndarray) -> None:
        idx, owner = self.idx, self.owner
        size = manifest.shard_bytes
        past = np.flatnonzero(mend > size[idx.shard[owner]])
        if len(past):
            k = int(past[0])
            i = int(owner[k])
            raise ManifestError(
                f"{self.where(i)}: member at offset {int(idx.moffset[k])} of {int(idx.msize[k])}"
                f" bytes runs past the end of the shard ({int(size[idx.shard[i]])} bytes)"
            )
        if manifest.format == "tar":
            self._tar_spans(mend, size)

    def _tar_spans(self, mend: np.ndarray, size: np.ndarray) -> None:
        """A tar sample's span holds its members' headers and data; spans do not overlap."""
        idx, owner = self.idx, self.owner
        end = self._ends(idx.offset, idx.length, None)
        past = np.flatnonzero(end > size[idx.shard])
        if len(past):
            i = int(past[0])
            raise ManifestError(
                f"{self.where(i)}: span of {int(idx.length[i])} bytes at offset "
                f"{int(idx.offset[i])} runs past the end of the shard "
                f"({int(size[idx.shard[i]])} bytes)"
            )
        outside = (idx.moffset < idx.offset[owner] + _HEADER) | (mend > end[owner])
        if bool(outside.any()):
            k = int(np.flatnonzero(outside)[0])
            i = int(owner[k])
            raise ManifestError(
                f"{self.where(i)}: member at offset {int(idx.moffset[k])} of {int(idx.msize[k])}"
                f" bytes lies outside the sample's span {int(idx.offset[i])}..{int(end[i])}"
                " (a member's data needs its 512-byte tar header inside the span)"
            )
        rows = np.arange(idx.num_samples)
        self._no_overlap(idx.shard, idx.offset, end, rows, "span")
