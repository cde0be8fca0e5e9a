"""Per-shard index files, and the dataset index that loads them lazily.

A version-2 dataset keeps one small Parquet file per shard, `index/<shard name>.parquet`,
with one row per sample in file order:

| column | type | meaning |
|---|---|---|
| `key` | string | the WebDataset key |
| `offset` | int64 | tar: first header byte of the sample's first member; arrow: row in the shard |
| `length` | int64 | tar: bytes to the end of the last member's padded data; arrow: the bytes |
| `members` | list<struct<name, offset, size>> | per member: field name as stored, absolute |
| | | data offset in the shard file, size |
| metadata… | | columns the source provides (`label`) |

No sample id and no shard number are stored: sample ids run in shard order, so shard `s`
holds ids `first[s] .. first[s+1]-1` (`first` is the cumulative sum of the manifest's
per-shard counts), and a part written alone keeps its files when parts are merged.
`dataset.json` records each file's sha256.

`LazyIndex` opens in O(shards): the manifest's counts are all it reads. A shard's index is
read (one file read, or one ranged GET from an object store), checked (checksum, ranges
inside the shard, no overlaps, file order) and cached the first time a reader needs it; the
cache keeps at most `cache_samples` samples' worth of shards. `gather(ids)` gives the index
rows of any ids as one small `SampleIndex`, which the read path slices as before.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from seta_stream.errors import ChecksumError, ManifestError
from seta_stream.shards.index import SampleIndex, concat_aranges, read_index_table
from seta_stream.shards.indexcheck import check_index

if TYPE_CHECKING:
    from seta_stream.shards.manifest import Manifest, ShardInfo
    from seta_stream.storage import Store

SHARD_INDEX_DIR = "index"
DEFAULT_CACHE_SAMPLES = 1 << 20


def shard_index_name(shard_name: str) -> str:
    """Where shard `shard_name`'s index lives, relative to the dataset root."""
    return f"{SHARD_INDEX_DIR}/{shard_name}.parquet"


def encode_shard_index(table: pa.Table) -> bytes:
    """One shard's index rows (columns as in `index.parquet`) as the bytes of its file."""
    table = table.drop_columns([c for c in ("sample_id", "shard") if c in table.column_names])
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd", row_group_size=1 << 20)
    return buf.getvalue()


def write_shard_index(store: Store, shard_name: str, table: pa.Table) -> str:
    """Write shard `shard_name`'s index file atomically; returns its sha256 for the manifest."""
    data = encode_shard_index(table)
    store.write_atomic(shard_index_name(shard_name), data)
    return hashlib.sha256(data).hexdigest()


def shard_tables(table: pa.Table, counts: list[int]) -> Iterator[pa.Table]:
    """A whole index table cut into its shards' rows (`counts` samples each, in order)."""
    start = 0
    for n in counts:
        yield table.slice(start, n)
        start += n


def write_index_files(
    store: Store, table: pa.Table, shards: Sequence[ShardInfo]
) -> tuple[ShardInfo, ...]:
    """Write every shard's index file from a whole index table (rows in shard order); the
    shards' manifest entries with their index checksums."""
    out = []
    for info, rows in zip(shards, shard_tables(table, [s.samples for s in shards]), strict=True):
        sha = write_shard_index(store, info.name, rows)
        out.append(dataclasses.replace(info, index_sha256=sha))
    return tuple(out)


class LazyIndex:
    """The index of a dataset: O(shards) to open, each shard's rows loaded on first use."""

    def __init__(
        self,
        store: Store,
        manifest: Manifest,
        *,
        cache_samples: int = DEFAULT_CACHE_SAMPLES,
        whole: SampleIndex | None = None,
    ) -> None:
        self.store = store
        self.manifest = manifest
        self.first = manifest.first_ids
        self.num_samples = int(self.first[-1])
        self.cache_samples = cache_samples
        self._whole = whole  # a version-1 dataset: its one index, loaded at open
        self._cache: OrderedDict[int, SampleIndex] = OrderedDict()
        self._cached = 0
        self._names: dict[str, int] = {}
        self.field_names: tuple[str, ...] = ()
        self._lock = threading.Lock()
        self.loads = 0  # shard indexes read by this process
        self.bytes_read = 0

    def __getstate__(self) -> dict[str, object]:
        state = dict(self.__dict__)
        state.update(_cache=OrderedDict(), _cached=0, _names={}, field_names=(), _lock=None)
        state.update(loads=0, bytes_read=0)
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def shard_of(self, ids: np.ndarray) -> np.ndarray:
        """The shard of each sample id (ids must be in range)."""
        return np.searchsorted(self.first, ids, side="right") - 1

    def where(self, i: int) -> str:
        """Sample `i` as messages name it: shard file, id and key."""
        s = int(self.shard_of(np.asarray([i]))[0])
        key = self.shard(s).keys[i - int(self.first[s])].as_py()
        return f"{self.store.path(self.manifest.shards[s].name)} sample {i} ({key!r})"

    def shard(self, s: int) -> SampleIndex:
        """Shard `s`'s rows (row j is sample `first[s] + j`), field codes dataset-wide."""
        with self._lock:
            got = self._cache.get(s)
            if got is not None:
                self._cache.move_to_end(s)
                return got
        got = self._load(s)
        with self._lock:
            if s not in self._cache:
                self._cache[s] = got
                self._cached += got.num_samples
                while self._cached > self.cache_samples and len(self._cache) > 1:
                    _, old = self._cache.popitem(last=False)
                    self._cached -= old.num_samples
        return got

    def _load(self, s: int) -> SampleIndex:
        info = self.manifest.shards[s]
        if self._whole is not None:
            a, b = int(self.first[s]), int(self.first[s + 1])
            return self._recode(self._whole.rows(a, b))
        name = shard_index_name(info.name)
        source = self.store.path(name)
        try:  # no exists() first: one request, and a server ignoring Range sends bodies twice
            data = self.store.read_bytes(name)
        except FileNotFoundError as e:
            raise ManifestError(
                f"{source}: the index of shard {s} ({info.name}) is missing "
                "(re-run tools/shard.py index, or copy the dataset's index/ folder too)"
            ) from e
        self.loads += 1
        self.bytes_read += len(data)
        if info.index_sha256 is not None:
            got = hashlib.sha256(data).hexdigest()
            if got != info.index_sha256:
                raise ChecksumError(
                    f"{source}: sha256 {got} but dataset.json records {info.index_sha256}; the "
                    "shard's index changed after the dataset was written (re-run "
                    "tools/shard.py index to rebuild both)"
                )
        table = read_index_table(data, source=source)
        if table.num_rows != info.samples:
            raise ManifestError(
                f"{source}: {table.num_rows} rows but dataset.json counts {info.samples} samples "
                f"in shard {s} ({info.name})"
            )
        index = SampleIndex.from_shard_table(table, source=source, shard=s)
        check_index(index, source=source, manifest=self.manifest, shard=s,
                    base=int(self.first[s]))  # fmt: skip
        return self._recode(index)

    def _recode(self, index: SampleIndex) -> SampleIndex:
        """The shard's field codes mapped onto this process's dataset-wide field table."""
        with self._lock:
            codes = []
            for name in index.field_names:
                if name not in self._names:
                    self._names[name] = len(self._names)
                codes.append(self._names[name])
            self.field_names = tuple(self._names)
        mapping = np.asarray(codes, np.int32)
        mfield = mapping[index.mfield] if len(mapping) else index.mfield
        return _replace(index, mfield=mfield, field_names=self.field_names)

    def gather(self, ids: np.ndarray) -> SampleIndex:
        """The index rows of `ids` (valid, any order) as one `SampleIndex`: row k is `ids[k]`."""
        ids = np.asarray(ids, np.int64)
        shards = self.shard_of(ids)
        if len(ids) and shards[0] == shards[-1] and (shards == shards[0]).all():
            s = int(shards[0])
            return _take(self.shard(s), ids - self.first[s], self.field_names)
        if not len(ids):
            return _take(_empty(), np.zeros(0, np.int64), self.field_names)
        # several shards (open shards interleave): each shard's rows scattered into place
        n = len(ids)
        offset, length, counts = (np.empty(n, np.int64) for _ in range(3))
        parts = []
        for s, grp in _by_shard(shards):
            idx, rows = self.shard(s), ids[grp] - self.first[s]
            offset[grp], length[grp] = idx.offset[rows], idx.length[rows]
            counts[grp] = idx.mstart[rows + 1] - idx.mstart[rows]
            parts.append((grp, idx, rows))
        mstart = np.zeros(n + 1, np.int64)
        np.cumsum(counts, out=mstart[1:])
        m = int(mstart[-1])
        mfield, moffset, msize = np.empty(m, np.int32), np.empty(m, np.int64), np.empty(m, np.int64)
        keys, order = [], []
        for grp, idx, rows in parts:
            c = counts[grp]
            within = concat_aranges(c)
            dst = np.repeat(mstart[grp], c) + within
            src = np.repeat(idx.mstart[rows], c) + within
            mfield[dst], moffset[dst] = idx.mfield[src], idx.moffset[src]
            msize[dst] = idx.msize[src]
            keys.append(idx.keys.take(pa.array(rows)))
            order.append(grp)
        inverse = np.empty(n, np.int64)
        inverse[np.concatenate(order)] = np.arange(n)
        return SampleIndex(
            keys=pa.concat_arrays(keys).take(pa.array(inverse)),
            shard=shards.astype(np.int32),
            offset=offset,
            length=length,
            mstart=mstart,
            mfield=mfield,
            moffset=moffset,
            msize=msize,
            field_names=self.field_names,
        )

    def lengths(self, ids: np.ndarray) -> np.ndarray:
        """The byte length of each sample of `ids` (no keys or members gathered)."""
        ids = np.asarray(ids, np.int64)
        shards = self.shard_of(ids)
        out = np.empty(len(ids), np.int64)
        for s, grp in _by_shard(shards):
            out[grp] = self.shard(s).length[ids[grp] - self.first[s]]
        return out

    def members_of(self, i: int) -> tuple[list[str], np.ndarray, np.ndarray]:
        """Sample `i`'s members: field names, data offsets and sizes."""
        s = int(self.shard_of(np.asarray([i]))[0])
        return self.shard(s).members_of(i - int(self.first[s]))


def _by_shard(shards: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    """(shard, positions of `shards` that name it), by shard, positions in their order."""
    order = np.argsort(shards, kind="stable")
    for grp in np.split(order, np.flatnonzero(np.diff(shards[order])) + 1) if len(order) else []:
        yield int(shards[grp[0]]), grp


def _take(index: SampleIndex, rows: np.ndarray, names: tuple[str, ...]) -> SampleIndex:
    counts = index.mstart[rows + 1] - index.mstart[rows]
    mrows = np.repeat(index.mstart[rows], counts) + concat_aranges(counts)
    mstart = np.zeros(len(rows) + 1, np.int64)
    np.cumsum(counts, out=mstart[1:])
    return SampleIndex(
        keys=index.keys.take(pa.array(rows, pa.int64())),
        shard=index.shard[rows],
        offset=index.offset[rows],
        length=index.length[rows],
        mstart=mstart,
        mfield=index.mfield[mrows],
        moffset=index.moffset[mrows],
        msize=index.msize[mrows],
        field_names=names,
    )


def _replace(index: SampleIndex, **changes: object) -> SampleIndex:
    return dataclasses.replace(index, **changes)  # type: ignore[arg-type]


def _empty() -> SampleIndex:
    z = np.zeros(0, np.int64)
    return SampleIndex(
        keys=pa.array([], pa.string()),
        shard=np.zeros(0, np.int32),
        offset=z,
        length=z,
        mstart=np.zeros(1, np.int64),
        mfield=np.zeros(0, np.int32),
        moffset=z,
        msize=z,
        field_names=(),
    )
