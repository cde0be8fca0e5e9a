"""`tools/shard.py upgrade DIR`: a version-1 dataset (one `index.parquet`) to version 2.

The old index is hashed as it streams and checked against the version-1 manifest, then read
a row group at a time (`ParquetFile.read_row_group`: at most a row group is in memory) and cut
at the shard boundaries the manifest's per-shard counts give; each shard's rows become its
index file (written atomically), and the version-2 manifest is written last (atomically).
Until that moment the dataset is version 1 and opens as before; `index.parquet` is left in
place. Running it on a version-2 dataset changes nothing.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from seta_stream.errors import ChecksumError, ManifestError
from seta_stream.shards.index import MEMBER_TYPE
from seta_stream.shards.manifest import (
    INDEX_NAME,
    KEPT_FINGERPRINT,
    MANIFEST_VERSION,
    Manifest,
    ShardInfo,
    read_manifest,
    write_manifest,
)
from seta_stream.shards.shardindex import write_shard_index
from seta_stream.storage import Store

BATCH_ROWS = 1 << 16
_MEMBERS = pa.list_(MEMBER_TYPE)
_READ = 1 << 22  # bytes per read while hashing


def upgrade(
    root: str,
    *,
    storage_options: Mapping[str, Any] | None = None,
    progress: bool = True,
) -> tuple[Manifest, bool]:
    """Give the version-1 dataset at `root` per-shard index files and a version-2 manifest.

    Returns the dataset's manifest and whether anything changed (False: already version 2).
    """
    store = Store(root, storage_options)
    manifest = read_manifest(store)
    if manifest.per_shard_index:
        return manifest, False
    shards = split_v1_index(store, manifest, progress=progress)
    new = dataclasses.replace(
        manifest,
        shards=shards,
        version=MANIFEST_VERSION,
        index_sha256=None,
        index_name=INDEX_NAME,
        extra={**manifest.extra, KEPT_FINGERPRINT: manifest.fingerprint},
    )
    write_manifest(store, new)  # last: from here on the dataset is version 2
    return new, True


def split_v1_index(
    store: Store, manifest: Manifest, *, progress: bool = False
) -> tuple[ShardInfo, ...]:
    """Write one index file per shard of version-1 `manifest` from its one index, streamed;
    the shards' entries with their index checksums."""
    name = manifest.index_name
    source = store.path(name)
    if not store.exists(name):
        raise ManifestError(f"{source}: index missing (the manifest names it)")
    if manifest.index_sha256 is not None:
        got = file_sha256(store, name)
        if got != manifest.index_sha256:
            raise ChecksumError(
                f"{source}: sha256 {got} but dataset.json records {manifest.index_sha256}; the "
                "index changed after the dataset was written (re-run tools/shard.py index)"
            )
    out = []
    with store.open(name) as f:
        pf = pq.ParquetFile(f, pre_buffer=False)  # pre-buffering kept ~14 B a sample alive
        missing = {"sample_id", "shard"} - set(pf.schema_arrow.names)
        if missing:
            raise ManifestError(f"{source}: index lacks columns {sorted(missing)}")
        with tqdm(total=len(manifest.shards), unit="shard", desc="index files",
                  disable=not progress) as bar:  # fmt: skip
            for s, table in enumerate(_shard_tables(pf, manifest, source)):
                info = manifest.shards[s]
                _check_place(table, s, int(manifest.first_ids[s]), info, source)
                sha = write_shard_index(store, info.name, table)
                out.append(dataclasses.replace(info, index_sha256=sha))
                bar.update(1)
    return tuple(out)


def file_sha256(store: Store, name: str) -> str:
    """The sha256 of file `name`, read in pieces."""
    h = hashlib.sha256()
    with store.open(name) as f:
        while chunk := f.read(_READ):
            h.update(chunk)
    return h.hexdigest()


def _shard_tables(pf: pq.ParquetFile, manifest: Manifest, source: str) -> Iterator[pa.Table]:
    """The index's rows cut into its shards' tables (the manifest's counts, in order)."""
    batches = _row_groups(pf)
    batch: pa.RecordBatch | None = None
    pos = done = 0
    for info in manifest.shards:
        pieces = []
        need = info.samples
        while need:
            if batch is None or pos == batch.num_rows:
                batch, pos = next(batches, None), 0
                if batch is None:
                    raise ManifestError(
                        f"{source}: {done} rows but dataset.json counts {manifest.num_samples} "
                        "samples"
                    )
                continue
            take = min(need, batch.num_rows - pos)
            pieces.append(batch.slice(pos, take))
            pos, need, done = pos + take, need - take, done + take
        yield _as_written(pa.Table.from_batches(pieces, pf.schema_arrow).combine_chunks(), source)
    extra = (batch.num_rows - pos if batch is not None else 0) + sum(b.num_rows for b in batches)
    if extra:
        raise ManifestError(
            f"{source}: {done + extra} rows but dataset.json counts {manifest.num_samples} samples"
        )


def _row_groups(pf: pq.ParquetFile) -> Iterator[pa.RecordBatch]:
    """The file's batches, one row group read at a time (`iter_batches` held on to memory
    that grew with the file: ~14 B a sample, measured)."""
    for i in range(pf.num_row_groups):
        yield from pf.read_row_group(i).to_batches(max_chunksize=BATCH_ROWS)


def _as_written(table: pa.Table, source: str) -> pa.Table:
    """Rows read back from Parquet as the writer had them: Parquet names a list's values
    `element`, Arrow `item`; with the writer's name the file's bytes are the writer's too."""
    if "members" not in table.column_names:
        return table  # (type equality ignores the name: cast always)
    try:
        members = table["members"].cast(_MEMBERS)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as e:
        raise ManifestError(f"{source}: column 'members' is not a list of members ({e})") from e
    return table.set_column(table.column_names.index("members"), "members", members)


def _check_place(table: pa.Table, s: int, first: int, info: ShardInfo, source: str) -> None:
    """Shard `s`'s rows carry its number and the ids from `first` on, as a v1 index does."""
    ids = table["sample_id"].to_numpy()
    shard = table["shard"].to_numpy()
    want = np.arange(first, first + len(ids))
    bad = np.flatnonzero((ids != want) | (shard != s))
    if len(bad):
        r = int(bad[0])
        raise ManifestError(
            f"{source}: row {first + r} is sample {int(ids[r])} of shard {int(shard[r])}, but "
            f"dataset.json's counts make it sample {first + r} of shard {s} ({info.name})"
        )
