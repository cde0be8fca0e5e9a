"""Read samples by byte range: the raw read under SeTaStream.

`Dataset.open(url)` reads `dataset.json` only (O(shards)); a shard's index is read when a
reader first needs it (`seta_stream.shards.shardindex.LazyIndex`). `read_raw(i)` reads sample `i`'s
bytes and nothing else: for tar one read of `[offset, offset + length)`, sliced into members
without parsing; for Arrow one exact read per field value. Every read is checked against the
index (length returned, the tar header in front of each member), so a stale or wrong index is
an error that names shard, sample and offset, never a silently wrong sample.

`iter_raw(ids)` reads many samples in order: locally one `os.pread` per sample; from an object
store through `seta_stream.prefetch` (chunks of the order fetched ahead, neighbouring ranges
coalesced, transient failures retried, an optional local cache of fetched ranges).
"""

from __future__ import annotations

import hashlib
import itertools
import os
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np

from seta_stream.chunks import guard
from seta_stream.errors import ChecksumError, ManifestError, ShardFormatError
from seta_stream.remote import Fetched, RemoteOptions
from seta_stream.shards.colchunk import ColChunk
from seta_stream.shards.decode import MAX_DECOMPRESSED, decode_fields, unzst
from seta_stream.shards.index import SampleIndex, read_index_table
from seta_stream.shards.indexcheck import check_index
from seta_stream.shards.manifest import Manifest, read_manifest
from seta_stream.shards.shardindex import DEFAULT_CACHE_SAMPLES, LazyIndex
from seta_stream.shards.tarread import header_ok, iter_local_tar
from seta_stream.storage import Store

if TYPE_CHECKING:
    from seta_stream.cache import RangeCache


@dataclass
class ReadStats:
    """What one process read. `bytes_read` counts response bodies (coalescing gaps and, with
    `ignored_range="slice"`, whole files included); bytes served by the cache are not in it."""

    samples_read: int = 0
    bytes_read: int = 0
    samples_decoded: int = 0
    requests: int = 0
    retries: int = 0
    cache_hits: int = 0


# A version-1 dataset (one index.parquet) is loaded whole at open; above this size that costs
# gigabytes in every process, so it is refused with the command that upgrades it.
V1_MAX_SAMPLES = 20_000_000


@dataclass
class Dataset:
    """An opened dataset folder or URL: manifest, lazy index and a store to read shards from."""

    store: Store
    manifest: Manifest
    index: LazyIndex
    max_decompressed: int = MAX_DECOMPRESSED
    stats: ReadStats = field(default_factory=ReadStats)
    _checked: set[int] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _cache: RangeCache | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["stats"], state["_checked"] = ReadStats(), set()
        state["_lock"], state["_cache"] = None, None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    @classmethod
    def open(
        cls,
        url: str | os.PathLike[str] | Store,
        *,
        storage_options: Mapping[str, Any] | None = None,
        remote: RemoteOptions | None = None,
        index_cache_samples: int = DEFAULT_CACHE_SAMPLES,
    ) -> Dataset:
        """Open a dataset folder or URL; `remote` tunes object-store reads (see RemoteOptions).

        Reads the manifest only; each shard's index is read when first needed and kept in a
        cache of at most `index_cache_samples` samples' worth of shards.
        """
        store = url if isinstance(url, Store) else Store(url, storage_options, remote=remote)
        manifest = read_manifest(store)
        whole = None if manifest.per_shard_index else _open_v1_index(store, manifest)
        index = LazyIndex(store, manifest, cache_samples=index_cache_samples, whole=whole)
        return cls(store=store, manifest=manifest, index=index)

    @property
    def num_samples(self) -> int:
        return self.index.num_samples

    @property
    def fingerprint(self) -> str:
        return self.manifest.fingerprint

    def close(self) -> None:
        self.store.close()

    def shard_name(self, s: int) -> str:
        """Shard `s`'s file name, its size checked against the manifest once per process."""
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

    def _row(self, i: int) -> tuple[int, SampleIndex, int]:
        """Sample `i`'s shard, that shard's index and the sample's row in it."""
        n = self.index.num_samples
        if not 0 <= i < n:
            raise IndexError(f"sample id {i} out of range [0, {n})")
        s = int(self.index.shard_of(np.asarray([i]))[0])
        return s, self.index.shard(s), i - int(self.index.first[s])

    def spans_of(self, i: int) -> tuple[int, list[tuple[int, int]]]:
        """Sample `i`'s shard and the byte ranges `[start, end)` that hold it."""
        shard, idx, r = self._row(i)
        if self.manifest.format == "tar":
            start = int(idx.offset[r])
            return shard, [(start, start + int(idx.length[r]))]
        _, moff, msize = idx.members_of(r)
        return shard, [(o, o + n) for o, n in zip(moff.tolist(), msize.tolist(), strict=True)]

    def read_raw(self, i: int) -> dict[str, Any]:
        """Sample `i` as `{"__key__", "__index__", field: bytes}`, `.zst` fields decompressed."""
        shard, spans = self.spans_of(i)
        name = self.shard_name(shard)
        parts = [self._read(name, a, b - a, i) for a, b in spans]
        self.stats.samples_read += 1
        return self.assemble(i, parts)

    def assemble(self, i: int, parts: list[bytes]) -> dict[str, Any]:
        """Sample `i` from the bytes of its `spans_of(i)` ranges, checked against the index."""
        _, idx, r = self._row(i)
        fields, moff, msize = idx.members_of(r)
        key = idx.keys[r].as_py()
        if self.manifest.format == "tar":
            members = zip(fields, moff.tolist(), msize.tolist(), strict=True)
            return self._tar_sample(i, key, parts[0], int(idx.offset[r]), members)
        out: dict[str, Any] = {"__key__": key, "__index__": i}
        out.update(zip(fields, parts, strict=True))
        return self.unzst_fields(out)

    def _tar_sample(
        self, i: int, key: str, buf: bytes, start: int, members: Iterable[tuple[str, int, int]]
    ) -> dict[str, Any]:
        """Slice a tar sample's bytes (read from `start`) into its fields, each checked against
        the tar header in front of it; `.zst` fields decompressed."""
        view = memoryview(buf)
        out: dict[str, Any] = {"__key__": key, "__index__": i}
        zst = False
        for f, o, n in members:
            rel = o - start
            if not header_ok(view, rel, n):
                self._bad_header(i, f, n, o)
            out[f] = bytes(view[rel : rel + n])
            zst = zst or f[-4:] == ".zst"
        return self.unzst_fields(out) if zst else out

    def _where(self, i: int) -> str:
        """Sample `i` as error messages name it: shard path, id and key."""
        return self.index.where(i)

    def iter_raw(self, ids: np.ndarray, *, skip_errors: bool = False) -> Iterator[Any]:
        """Raw samples `ids` in that order (remote: fetched ahead). Close it when done early.

        With `skip_errors`, a sample that cannot be read (truncated, header mismatch, a bad
        `.zst`) is the error in its place instead of raised; storage failures still raise.
        """
        ids = np.asarray(ids, dtype=np.int64)
        if self.store.is_local and self.manifest.format == "tar":
            return itertools.chain.from_iterable(iter_local_tar(self, ids, skip_errors=skip_errors))
        if self.store.is_local:  # a block of ids at a time: no Python int per id of the pass
            return (
                guard(partial(self.read_raw, i), skip_errors)
                for a in range(0, len(ids), 4096)
                for i in ids[a : a + 4096].tolist()
            )
        from seta_stream.prefetch import Prefetcher

        return Prefetcher(self, ids, skip_errors=skip_errors)

    def iter_chunks(
        self, ids: np.ndarray, *, skip_errors: bool = False, size: int = 256
    ) -> Iterator[list[Any]]:
        """`iter_raw` in lists of about `size` samples (local tar: as read, a chunk at a time)."""
        ids = np.asarray(ids, dtype=np.int64)
        if self.store.is_local and self.manifest.format == "tar":
            return iter_local_tar(self, ids, skip_errors=skip_errors)
        return _in_lists(self.iter_raw(ids, skip_errors=skip_errors), size)

    def iter_column_chunks(
        self, ids: np.ndarray, *, skip_errors: bool = False
    ) -> Iterator[ColChunk]:
        """`iter_chunks` as `ColChunk`s (local tar: built from the bytes read, no dicts)."""
        ids = np.asarray(ids, dtype=np.int64)
        if self.store.is_local and self.manifest.format == "tar":
            return iter_local_tar(self, ids, skip_errors=skip_errors, columns=True)
        return _as_columns(ids, self.iter_chunks(ids, skip_errors=skip_errors))

    def pread_into(self, shard: int, start: int, view: memoryview) -> int:
        """Read shard `shard` from `start` into `view` (local files); the bytes read, counted."""
        n = self.store.read_into(self.shard_name(shard), start, view)
        self.stats.requests += 1
        self.stats.bytes_read += n
        return n

    def _bad_header(self, i: int, field: str, size: int, at: int) -> None:
        raise ShardFormatError(
            f"{self._where(i)}: no tar header for field {field!r} of {size} bytes in front "
            f"of offset {at}; the index does not match the shard (re-run tools/shard.py index)"
        )

    def unzst_fields(self, out: dict[str, Any]) -> dict[str, Any]:
        """Decompress a raw sample's `.zst` fields in place (size limit: max_decompressed)."""
        i = out["__index__"]
        for f in [f for f in out if f[-4:] == ".zst"]:
            g, data = unzst(f, out.pop(f), where=self._where(i), limit=self.max_decompressed)
            out[g] = data
        return out

    def cache(self) -> RangeCache | None:
        """This process's cache of fetched ranges (RemoteOptions.cache_dir), or None."""
        opts = self.store.remote
        if opts.cache_dir is None or self.store.is_local:
            return None
        with self._lock:
            if self._cache is None:
                from seta_stream.cache import RangeCache

                self._cache = RangeCache(
                    opts.cache_dir, max_bytes=opts.cache_bytes, fingerprint=self.fingerprint
                )
            return self._cache

    def count_fetch(self, got: Fetched, *, samples: int, cached: int) -> None:
        """Add one prefetched chunk's figures to `stats` (called from fetch threads)."""
        with self._lock:
            st = self.stats
            st.samples_read += samples
            st.bytes_read += got.bytes_received
            st.requests += got.requests
            st.retries += got.retried
            st.cache_hits += cached

    def _read(self, name: str, start: int, length: int, i: int) -> bytes:
        data = self.store.read_range(name, start, length)
        self.stats.requests += 1
        self.stats.bytes_read += len(data)
        if len(data) != length:
            raise ShardFormatError(
                f"{self._where(i)}: asked for {length} bytes at offset {start}, got {len(data)} "
                "(shard truncated or index stale)"
            )
        return data

    def read(self, i: int, *, decode: bool = False, allow_pickle: bool = False) -> dict[str, Any]:
        raw = self.read_raw(i)
        if not decode:
            return raw
        self.stats.samples_decoded += 1
        return decode_fields(raw, where=f"sample {i}", allow_pickle=allow_pickle)


def _open_v1_index(store: Store, manifest: Manifest) -> SampleIndex:
    """A version-1 dataset's one `index.parquet`, read whole and checked (small datasets)."""
    name = manifest.index_name
    if manifest.num_samples > V1_MAX_SAMPLES:
        raise ManifestError(
            f"{store.path('dataset.json')}: a version-1 dataset of {manifest.num_samples:,} "
            "samples keeps one index that every process would load whole; run "
            f"`python tools/shard.py upgrade {store.url}` once (it adds per-shard index files)"
        )
    if not store.exists(name):
        raise ManifestError(f"{store.path(name)}: index missing (the manifest names it)")
    data = store.read_bytes(name)
    if manifest.index_sha256 is not None:  # a stale or edited index never reads samples
        got = hashlib.sha256(data).hexdigest()
        if got != manifest.index_sha256:
            raise ChecksumError(
                f"{store.path(name)}: sha256 {got} but dataset.json records "
                f"{manifest.index_sha256}; the index changed after the dataset was written "
                "(re-run tools/shard.py index to rebuild both)"
            )
    table = read_index_table(data, source=store.path(name))
    index = SampleIndex.from_table(table, source=store.path(name))
    check_index(index, source=store.path(name), manifest=manifest)
    if index.num_samples != manifest.num_samples:
        raise ManifestError(
            f"{store.path(name)}: {index.num_samples} rows but dataset.json counts "
            f"{manifest.num_samples} samples"
        )
    if index.num_samples and int(index.shard.max()) >= len(manifest.shards):
        bad = int(np.flatnonzero(index.shard >= len(manifest.shards))[0])
        raise ManifestError(f"{store.path(name)}: sample {bad} names shard {index.shard[bad]}")
    return index


def _in_lists(items: Iterator[Any], size: int) -> Iterator[list[Any]]:
    try:
        while chunk := list(itertools.islice(items, size)):
            yield chunk
    finally:
        close = getattr(items, "close", None)
        if close is not None:
            close()  # stops fetching ahead and joins the fetch threads


def _as_columns(ids: np.ndarray, chunks: Iterator[list[Any]]) -> Iterator[ColChunk]:
    a = 0
    try:
        for raws in chunks:
            yield ColChunk.from_raws(ids[a : a + len(raws)], raws)
            a += len(raws)
    finally:
        chunks.close()  # type: ignore[attr-defined]  # stops fetching ahead


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
        raws = self.dataset.iter_raw(self.sample_ids)
        try:
            for raw in raws:
                if not self.decode:
                    yield raw
                    continue
                self.dataset.stats.samples_decoded += 1
                where = f"sample {raw['__index__']}"
                yield decode_fields(raw, where=where, allow_pickle=self.allow_pickle)
        finally:
            close = getattr(raws, "close", None)
            if close is not None:
                close()


def read_samples(
    path_or_url: str | os.PathLike[str] | Dataset,
    sample_ids: Iterable[int],
    *,
    decode: bool = False,
    allow_pickle: bool = False,
    storage_options: Mapping[str, Any] | None = None,
    remote: RemoteOptions | None = None,
) -> SampleReader:
    """Yield the given samples in the order given, reading only their byte ranges.

    Each item is `{"__key__": str, "__index__": int, "<field>": bytes | decoded}`; the
    returned reader's `bytes_read` / `stats` tell how many bytes were read from storage.
    """
    ds = (
        path_or_url
        if isinstance(path_or_url, Dataset)
        else Dataset.open(path_or_url, storage_options=storage_options, remote=remote)
    )
    return SampleReader(ds, sample_ids, decode=decode, allow_pickle=allow_pickle)
