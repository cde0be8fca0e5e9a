"""Datasets that exist already: index tar shards in place, merge parts, verify.

`index_tars` reads tar headers only (member data too with `checksum=True`): from an object
store each header is one exact ranged request (`remote.RangeFile`), and several shards are
scanned at once. `verify` reads everything and names every mismatch between manifest, index
and shards.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tqdm import tqdm

from seta_stream.errors import ManifestError, SeTaStreamError
from seta_stream.shards.convert import check_fields_consistent
from seta_stream.shards.index import SampleIndex
from seta_stream.shards.indexwriter import IndexFiles, ShardRows
from seta_stream.shards.manifest import (
    KEPT_FINGERPRINT,
    Manifest,
    ShardInfo,
    read_manifest,
    write_manifest,
)
from seta_stream.shards.shardindex import SHARD_INDEX_DIR, shard_index_name
from seta_stream.shards.tarindex import scan_shard, scan_tar
from seta_stream.shards.upgrade_v1 import file_sha256, split_v1_index
from seta_stream.storage import Store

_PART = re.compile(r"^dataset\.part-(\d{5})-of-(\d{5})\.json$")


def index_tars(
    root: str,
    names: Sequence[str] | None = None,
    *,
    checksum: bool = False,
    progress: bool = True,
    storage_options: Mapping[str, Any] | None = None,
    workers: int | None = None,
) -> Manifest:
    """Write the index files (`index/`) and `dataset.json` beside existing WebDataset shards in
    `root`, each shard's index file as soon as that shard is scanned.

    `workers`: shards scanned at once (default 1 locally, 16 from an object store, where
    each header is a round trip).
    """
    store = Store(root, storage_options)
    if names is None:
        names = store.glob("*.tar")
    if not names:
        raise SeTaStreamError(f"{root}: no .tar shards to index")
    files = IndexFiles(store)

    def index_one(name: str) -> tuple[ShardInfo, set[str]]:
        """Scan one shard and write its index file: one shard's rows in memory per thread."""
        scan = scan_shard(store, name, checksum=checksum)
        rows = ShardRows()
        for smp in scan.samples:
            rows.add(key=smp.key, offset=smp.offset, length=smp.length, members=smp.members)
        info = ShardInfo(name=name, bytes=scan.size, samples=len(scan.samples), sha256=scan.sha256)
        return files.write(info, rows), set(rows.mname)

    shards = []
    fields: set[str] = set()
    n = workers or (1 if store.is_local else 16)
    bar = tqdm(total=len(names), unit="shard", desc="index", disable=not progress)
    with ThreadPoolExecutor(n, thread_name_prefix="seta_stream-index") as pool:
        for info, names_seen in pool.map(index_one, names):
            bar.update(1)
            shards.append(info)
            fields |= names_seen
    bar.close()
    manifest = Manifest(
        format="tar",
        shards=tuple(shards),
        fields=tuple(sorted(fields)),
        extra={"source": "tools/shard.py index"},
    )
    write_manifest(store, manifest)  # last: the dataset is finished
    return manifest


def merge(
    root: str, *, storage_options: Mapping[str, Any] | None = None, progress: bool = True
) -> Manifest:
    """Join the parts written by `convert --part I/N` into one dataset.

    A version-2 part's shards keep their index files: the merged manifest lists the parts'
    shards in part order (O(shards); no index file is read, each is checked to exist). A
    version-1 part's one index is cut into per-shard files, a part at a time.
    """
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
    names = [n for m, n in parts if m]
    manifests = [read_manifest(store, n) for n in names]
    check_fields_consistent(manifests, root)
    present = set(store.glob(f"{SHARD_INDEX_DIR}/*.parquet"))  # one listing, not one per shard
    shards: list[ShardInfo] = []
    bar = tqdm(names, unit="part", desc="merge", disable=not progress)
    for name, m in zip(bar, manifests, strict=True):
        if not m.per_shard_index:
            shards += split_v1_index(store, m)
            continue
        lost = [s.name for s in m.shards if f"{s.name}.parquet" not in present]
        if lost:
            raise ManifestError(
                f"{store.path(name)}: {len(lost)} of its shards have no index file, first "
                f"{store.path(shard_index_name(lost[0]))} (convert that part again)"
            )
        shards += m.shards
    seen: set[str] = set()
    for info in shards:
        if info.name in seen:
            raise ManifestError(f"{root}: shard {info.name} is listed by two parts")
        seen.add(info.name)
    first = manifests[0]
    manifest = Manifest(
        format=first.format,
        shards=tuple(shards),
        fields=tuple(sorted({f for m in manifests for f in m.fields})),
        compression=first.compression,
        metadata_columns=first.metadata_columns,
        extra={**_without(first.extra, KEPT_FINGERPRINT), "merged_parts": total},
    )
    write_manifest(store, manifest)  # last: the dataset is finished
    return manifest


def _without(d: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k != key}


def verify(
    root: str, *, progress: bool = True, storage_options: Mapping[str, Any] | None = None
) -> list[str]:
    """Every mismatch between manifest, index files and shards, as messages; empty when all
    agree. Each shard's index file is hashed and checked against the manifest, loaded the way
    readers load it, and compared with the shard's own headers (tar) or size (Arrow)."""
    from seta_stream.shards.reader import Dataset

    read_manifest(Store(root, storage_options))  # not a dataset at all: that raises
    try:
        ds = Dataset.open(root, storage_options=storage_options)
    except ManifestError as e:  # version 1: the one index does not match the manifest
        return [str(e)]
    problems: list[str] = []
    shards = range(len(ds.manifest.shards))
    for s in tqdm(shards, unit="shard", desc="verify", disable=not progress):
        problems += _verify_shard(ds, s)
    return problems


def _verify_shard(ds: Any, s: int) -> list[str]:
    store, manifest = ds.store, ds.manifest
    info = manifest.shards[s]
    path = store.path(info.name)
    if manifest.per_shard_index and info.index_sha256 is not None:
        name = shard_index_name(info.name)
        if not store.exists(name):
            return [f"{store.path(name)}: the index of shard {s} ({info.name}) is missing"]
        got = file_sha256(store, name)
        if got != info.index_sha256:
            return [
                f"{store.path(name)}: the index of shard {s} ({info.name}) has sha256 {got}, "
                f"dataset.json records {info.index_sha256}"
            ]
    try:
        idx = ds.index.shard(s)
    except ManifestError as e:
        return [str(e)]
    if not store.exists(info.name):
        return [f"{path}: missing"]
    data = store.read_bytes(info.name)
    problems = []
    if len(data) != info.bytes:
        problems.append(f"{path}: {len(data)} bytes, manifest says {info.bytes}")
    if info.sha256 and hashlib.sha256(data).hexdigest() != info.sha256:
        problems.append(f"{path}: sha256 differs from the manifest")
    if idx.num_samples != info.samples:
        problems.append(f"{path}: index has {idx.num_samples} samples, manifest {info.samples}")
    base = int(manifest.first_ids[s])
    return problems + _check_rows(manifest.format, idx, base, data, path)


def _check_rows(fmt: str, idx: SampleIndex, base: int, data: bytes, path: str) -> list[str]:
    """Shard rows `idx` (row r is sample `base + r`) against the shard's bytes `data`."""
    out = []
    if fmt == "tar":
        try:
            scan = scan_tar(io.BytesIO(data), name=path, size=len(data))
        except SeTaStreamError as e:
            return [str(e)]
        got = [(s.key, s.offset, s.length, [tuple(m) for m in s.members]) for s in scan.samples]
        for r in range(idx.num_samples):
            names, moff, msize = idx.members_of(r)
            want = (
                idx.keys[r].as_py(),
                int(idx.offset[r]),
                int(idx.length[r]),
                list(zip(names, moff.tolist(), msize.tolist(), strict=True)),
            )
            if r >= len(got) or got[r] != want:
                out.append(
                    f"{path}: sample {base + r} ({want[0]!r}) at offset {want[1]}: index says "
                    f"{want}, shard has {got[r] if r < len(got) else 'nothing'}"
                )
        if len(got) > idx.num_samples:
            out.append(f"{path}: shard has {len(got) - idx.num_samples} samples the index lacks")
    else:
        for r in range(idx.num_samples):
            _, moff, msize = idx.members_of(r)
            if len(moff) and int((moff + msize).max()) > len(data):
                out.append(
                    f"{path}: sample {base + r} has a field past the end of the file "
                    f"({len(data)} bytes)"
                )
    return out
