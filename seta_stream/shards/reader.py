"""Read single samples by byte range: the raw read under SeTaStream.

`Dataset.open(url)` loads `dataset.json` and `index.parquet`; `read_raw(i)` reads sample `i`'s
bytes and nothing else: for tar one read of `[offset, offset + length)`, sliced into members
without parsing; for Arrow one exact read per field value. Every read is checked against the
index (length returned, the tar header in front of each member), so a stale or wrong index is
an error that names shard, sample and offset, never a silently wrong sample.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from seta_stream.errors import ManifestError, ShardFormatError
from seta_stream.shards.decode import MAX_DECOMPRESSED, decode_fields, unzst
from seta_stream.shards.index import SampleIndex, read_index_table
from seta_stream.shards.manifest import Manifest, read_manifest
from seta_stream.storage import Store


@dataclass
class ReadStats:
    samples_read: int = 0
    bytes_read: int = 0
    samples_decoded: int = 0
    requests: int = 0


@dataclass
class Dataset:
    """An opened dataset folder or URL: manifest, index and a store to read shards from."""

    store: Store
    manifest: Manifest
    index: SampleIndex
    max_decompressed: int = MAX_DECOMPRESSED
    stats: ReadStats = field(default_factory=ReadStats)
    _checked: set[int] = field(default_factory=set)
    _index_dir: str | None = None

    def share_index(self, folder: str) -> None:
        """Keep the index as memory-mapped files in `folder`: pickled copies of this dataset
        (DataLoader workers, spawn) map the same pages instead of copying N-sized arrays."""
        self.index.save(folder)
        self.index = SampleIndex.load(folder)
        self._index_dir = folder

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["stats"], state["_checked"] = ReadStats(), set()
        if self._index_dir is not None:
            state["index"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if self.index is None and self._index_dir is not None:
            self.index = SampleIndex.load(self._index_dir)

    @classmethod
    def open(
        cls, url: str | os.PathLike[str], *, storage_options: Mapping[str, Any] | None = None
    ) -> Dataset:
        store = url if isinstance(url, Store) else Store(url, storage_options)
        manifest = read_manifest(store)
        name = manifest.index_name
        if not store.exists(name):
            raise ManifestError(f"{store.path(name)}: index missing (the manifest names it)")
        table = read_index_table(store.read_bytes(name), source=store.path(name))
        index = SampleIndex.from_table(table, source=store.path(name))
        if index.num_samples != manifest.num_samples:
            raise ManifestError(
                f"{store.path(name)}: {index.num_samples} rows but dataset.json counts "
                f"{manifest.num_samples} samples"
            )
        if index.num_samples and int(index.shard.max()) >= len(manifest.shards):
            bad = int(np.flatnonzero(index.shard >= len(manifest.shards))[0])
            raise ManifestError(f"{store.path(name)}: sample {bad} names shard {index.shard[bad]}")
        return cls(store=store, manifest=manifest, index=index)

    @property
    def num_samples(self) -> int:
        return self.index.num_samples

    @property
    def fingerprint(self) -> str:
        return self.manifest.fingerprint

    def keys(self) -> pa.Array:
        return self.index.keys

    def close(self) -> None:
        self.store.close()

    def _shard(self, s: int) -> str:
        info = self.manifest.shards[s]
        if s not in self._checked:  # one stat per shard: a replaced shard is caught at once
            size = self.store.size(info.name)
            if size != info.bytes:
                raise ShardFormatError(
                    f"{self.store.path(info.name)}: {size} bytes but dataset.json records "
                    f"{info.bytes}; the shard changed after indexing (re-run tools/shard.py index)"
                )
            self._checked.add(s)
        return info.name

    def read_raw(self, i: int) -> dict[str, Any]:
        """Sample `i` as `{"__key__", "__index__", field: bytes}`, `.zst` fields decompressed."""
        idx = self.index
        if not 0 <= i < idx.num_samples:
            raise IndexError(f"sample id {i} out of range [0, {idx.num_samples})")
        name = self._shard(int(idx.shard[i]))
        fields, moff, msize = idx.members_of(i)
        where = f"{self.store.path(name)} sample {i} ({idx.keys[i].as_py()!r})"
        out: dict[str, Any] = {"__key__": idx.keys[i].as_py(), "__index__": i}
        if self.manifest.format == "tar":
            start, length = int(idx.offset[i]), int(idx.length[i])
            buf = self._read(name, start, length, where)
            view = memoryview(buf)
            for f, o, n in zip(fields, moff.tolist(), msize.tolist(), strict=True):
                rel = o - start
                _check_header(view, rel, n, f, where=where, at=o)
                out[f] = bytes(view[rel : rel + n])
        else:
            for f, o, n in zip(fields, moff.tolist(), msize.tolist(), strict=True):
                out[f] = self._read(name, o, n, where)
        for f in fields:
            if f.endswith(".zst"):
                g, data = unzst(f, out.pop(f), where=where, limit=self.max_decompressed)
                out[g] = data
        self.stats.samples_read += 1
        return out

    def _read(self, name: str, start: int, length: int, where: str) -> bytes:
        data = self.store.read_range(name, start, length)
        self.stats.requests += 1
        self.stats.bytes_read += len(data)
        if len(data) != length:
            raise ShardFormatError(
                f"{where}: asked for {length} bytes at offset {start}, got {len(data)} "
                "(shard truncated or index stale)"
            )
        return data

    def read(self, i: int, *, decode: bool = False, allow_pickle: bool = False) -> dict[str, Any]:
        raw = self.read_raw(i)
        if not decode:
            return raw
        self.stats.samples_decoded += 1
        return decode_fields(raw, where=f"sample {i}", allow_pickle=allow_pickle)


def _check_header(
    view: memoryview, rel: int, size: int, field: str, *, where: str, at: int
) -> None:
    """The 512 bytes before a member's data must be its ustar header (magic and size)."""
    hdr = view[rel - 512 : rel] if rel >= 512 else None
    ok = hdr is not None and bytes(hdr[257:262]) == b"ustar"
    if ok and hdr is not None and not hdr[124] & 0x80:  # base-256 sizes (> 8 GiB): skip
        raw = bytes(hdr[124:136]).rstrip(b"\x00 ")
        ok = raw != b"" and int(raw, 8) == size
    if not ok:
        raise ShardFormatError(
            f"{where}: no tar header for field {field!r} of {size} bytes in front of offset {at}; "
            "the index does not match the shard (re-run tools/shard.py index)"
        )


class SampleReader:
    """Iterates samples in the order given; `stats` counts what was read (bytes, requests)."""

    def __init__(
        self, dataset: Dataset, sample_ids: Iterable[int], *, decode: bool, allow_pickle: bool
    ):
        self.dataset = dataset
        self.sample_ids = np.asarray(
            list(sample_ids) if not isinstance(sample_ids, np.ndarray) else sample_ids,
            dtype=np.int64,
        )
        self.decode = decode
        self.allow_pickle = allow_pickle

    @property
    def stats(self) -> ReadStats:
        return self.dataset.stats

    @property
    def bytes_read(self) -> int:
        return self.dataset.stats.bytes_read

    def __len__(self) -> int:
        return len(self.sample_ids)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for i in self.sample_ids.tolist():
            yield self.dataset.read(i, decode=self.decode, allow_pickle=self.allow_pickle)


def read_samples(
    path_or_url: str | os.PathLike[str] | Dataset,
    sample_ids: Iterable[int],
    *,
    decode: bool = False,
    allow_pickle: bool = False,
    storage_options: Mapping[str, Any] | None = None,
) -> SampleReader:
    """Yield the given samples in the order given, reading only their byte ranges.

    Each item is `{"__key__": str, "__index__": int, "<field>": bytes | decoded}`; the
    returned reader's `bytes_read` / `stats` tell how many bytes were read from storage.
    """
    ds = (
        path_or_url
        if isinstance(path_or_url, Dataset)
        else Dataset.open(path_or_url, storage_options=storage_options)
    )
    return SampleReader(ds, sample_ids, decode=decode, allow_pickle=allow_pickle)
