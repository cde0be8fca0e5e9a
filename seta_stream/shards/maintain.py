"""Datasets that exist already: index tar shards in place, merge parts, verify.

`index_tars` reads tar headers only (member data too with `checksum=True`): from an object
store each header is one exact ranged request (`remote.RangeFile`), and several shards are
scanned at once. `verify` reads everything and names every mismatch between manifest, index
and shards.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from tqdm import tqdm

from seta_stream.errors import ManifestError, SeTaStreamError
from seta_stream.remote import RangeFile
from seta_stream.shards.convert import check_fields_consistent
from seta_stream.shards.index import IndexBuilder, SampleIndex, read_index_table, write_index
from seta_stream.shards.manifest import (
    INDEX_NAME,
    Manifest,
    ShardInfo,
    read_manifest,
    write_manifest,
)
from seta_stream.shards.shardindex import write_index_files
from seta_stream.shards.tarindex import TarScan, scan_tar
from seta_stream.storage import Store

_PART = re.compile(r"^dataset\.part-(\d{5})-of-(\d{5})\.json$")


def _finish(store: Store, table: pa.Table, manifest_kw: dict[str, Any]) -> Manifest:
    """Write the per-shard index files, then the manifest (last: the dataset is finished)."""
    shards = write_index_files(store, table, manifest_kw.pop("shards"))
    manifest = Manifest(shards=shards, **manifest_kw)
    write_manifest(store, manifest)
    return manifest


def scan_shard(store: Store, name: str, *, checksum: bool = False) -> TarScan:
    """Index one tar shard of `store` by its headers (remote: one ranged request each)."""
    if store.is_local:
        with open(store.path(name), "rb") as f:
            return scan_tar(f, name=store.path(name), size=os.fstat(f.fileno()).st_size,
                            checksum=checksum)  # fmt: skip
    url = store.url_of(store.path(name))
    size = store.size(name)
    with RangeFile(store.fs, store.path(name), size, store.remote, label=url) as f:
        return scan_tar(f, name=url, size=size, checksum=checksum)


def index_tars(
    root: str,
    names: Sequence[str] | None = None,
    *,
    checksum: bool = False,
    progress: bool = True,
    storage_options: Mapping[str, Any] | None = None,
    workers: int | None = None,
) -> Manifest:
    """Write `index.parquet` and `dataset.json` beside existing WebDataset shards in `root`.

    `workers`: shards scanned at once (default 1 locally, 16 from an object store, where
    each header is a round trip).
    """
    store = Store(root, storage_options)
    if names is None:
        names = store.glob("*.tar")
    if not names:
        raise SeTaStreamError(f"{root}: no .tar shards to index")
    builder = IndexBuilder()
    shards = []
    fields: set[str] = set()
    n = workers or (1 if store.is_local else 16)
    bar = tqdm(total=len(names), unit="shard", desc="index", disable=not progress)
    with ThreadPoolExecutor(n, thread_name_prefix="seta_stream-index") as pool:
        scans = pool.map(lambda name: scan_shard(store, name, checksum=checksum), names)
        for s, (name, scan) in enumerate(zip(names, scans, strict=True)):
            bar.update(1)
            for smp in scan.samples:
                builder.add(
                    key=smp.key, shard=s, offset=smp.offset, length=smp.length, members=smp.members
                )
                fields.update(m[0] for m in smp.members)
            info = ShardInfo(
                name=name, bytes=scan.size, samples=len(scan.samples), sha256=scan.sha256
            )
            shards.append(info)
    bar.close()
    kw: dict[str, Any] = {"format": "tar", "shards": tuple(shards), "fields": tuple(sorted(fields))}
    kw["extra"] = {"source": "tools/shard.py index"}
    return _finish(store, builder.table(), kw)


def merge(root: str, *, storage_options: Mapping[str, Any] | None = None) -> Manifest:
    """Join the part manifests and indexes written by `convert --part I/N` into one dataset."""
    store = Store(root, storage_options)
    found = store.glob("dataset.part-*.json")
    parts = [(_PART.match(n), n) for n in found]
    counts = {int(m.group(2)) for m, _ in parts if m}
    if len(counts) != 1:
        raise ManifestError(f"{root}: part manifests of different totals or none: {found}")
    total = counts.pop()
    have = {int(m.group(1)) for m, _ in parts if m}
    if have != set(range(total)):
        raise ManifestError(f"{root}: parts missing: {sorted(set(range(total)) - have)} of {total}")
    manifests = [read_manifest(store, n) for _, n in parts]
    check_fields_consistent(manifests, root)
    tables: list[pa.Table] = []
    shards: list[ShardInfo] = []
    for m in manifests:
        t = read_index_table(store.read_bytes(m.index_name), source=store.path(m.index_name))
        t = t.set_column(
            t.column_names.index("shard"), "shard", pc.add(t["shard"], len(shards)).cast(pa.int32())
        )
        tables.append(t)
        shards += m.shards
    table = pa.concat_tables(tables)
    table = table.set_column(0, "sample_id", pa.array(np.arange(table.num_rows, dtype=np.int64)))
    first = manifests[0]
    kw = {
        "format": first.format,
        "shards": tuple(shards),
        "fields": tuple(sorted({f for m in manifests for f in m.fields})),
        "compression": first.compression,
        "metadata_columns": first.metadata_columns,
        "extra": {**first.extra, "merged_parts": total},
    }
    return _finish(store, table, kw)


def verify(
    root: str, *, progress: bool = True, storage_options: Mapping[str, Any] | None = None
) -> list[str]:
    """Every mismatch between manifest, index and shards, as messages; empty when all agree."""
    from seta_stream.shards.reader import Dataset

    read_manifest(Store(root, storage_options))  # not a dataset at all: that raises
    try:
        ds = Dataset.open(root, storage_options=storage_options)
    except ManifestError as e:  # the index does not match the manifest (checksum, ranges)
        return [str(e)]
    store, manifest, idx = ds.store, ds.manifest, ds.index
    problems: list[str] = []
    for s, info in enumerate(
        tqdm(manifest.shards, unit="shard", desc="verify", disable=not progress)
    ):
        path = store.path(info.name)
        if not store.exists(info.name):
            problems.append(f"{path}: missing")
            continue
        data = store.read_bytes(info.name)
        if len(data) != info.bytes:
            problems.append(f"{path}: {len(data)} bytes, manifest says {info.bytes}")
        if info.sha256 and hashlib.sha256(data).hexdigest() != info.sha256:
            problems.append(f"{path}: sha256 differs from the manifest")
        rows = np.flatnonzero(idx.shard == s)
        if len(rows) != info.samples:
            problems.append(f"{path}: index has {len(rows)} samples, manifest {info.samples}")
        problems += _check_rows(ds, rows, data, path)
    return problems


def _check_rows(ds: Any, rows: np.ndarray, data: bytes, path: str) -> list[str]:
    idx: SampleIndex = ds.index
    out = []
    if ds.manifest.format == "tar":
        try:
            scan = scan_tar(io.BytesIO(data), name=path, size=len(data))
        except SeTaStreamError as e:
            return [str(e)]
        got = [(s.key, s.offset, s.length, [tuple(m) for m in s.members]) for s in scan.samples]
        for r, i in enumerate(rows.tolist()):
            names, moff, msize = idx.members_of(i)
            want = (
                idx.keys[i].as_py(),
                int(idx.offset[i]),
                int(idx.length[i]),
                list(zip(names, moff.tolist(), msize.tolist(), strict=True)),
            )
            if r >= len(got) or got[r] != want:
                out.append(
                    f"{path}: sample {i} ({want[0]!r}) at offset {want[1]}: index says {want}, "
                    f"shard has {got[r] if r < len(got) else 'nothing'}"
                )
        if len(got) > len(rows):
            out.append(f"{path}: shard has {len(got) - len(rows)} samples the index lacks")
    else:
        for i in rows.tolist():
            _, moff, msize = idx.members_of(i)
            if len(moff) and int((moff + msize).max()) > len(data):
                out.append(
                    f"{path}: sample {i} has a field past the end of the file ({len(data)} bytes)"
                )
    return out
