"""Datasets that exist already: index tar shards in place, merge parts, verify.

`index_tars` reads tar headers only (member data too with `checksum=True`): from an object
store each header is one exact ranged request (`remote.RangeFile`), and several shards are
scanned at once. `verify` reads everything and names every mismatch between manifest, index
and shards.

Nothing is dropped without a word: `index_tars` on a folder names every file beside the tars
that it leaves out (logger `seta_stream`, and `extra["skipped_files"]` of the manifest) and a
tar without an end-of-archive marker (a cut-off upload looks like that); `strict=True` makes
either an error. `verify` says what it could not check (no checksums recorded) in `notes`.
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tqdm import tqdm

from seta_stream.errors import ManifestError, SeTaStreamError, ShardFormatError
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
from seta_stream.shards.skipped import SHOWN, skipped_files, skipped_message
from seta_stream.shards.tarindex import scan_shard, scan_tar
from seta_stream.shards.upgrade_v1 import file_sha256, split_v1_index
from seta_stream.storage import Store

log = logging.getLogger("seta_stream")

_PART = re.compile(r"^dataset\.part-(\d{5})-of-(\d{5})\.json$")
NO_CHECKSUMS = "no checksums recorded: checked sizes and headers only"


def index_tars(
    root: str,
    names: Sequence[str] | None = None,
    *,
    checksum: bool = False,
    progress: bool = True,
    storage_options: Mapping[str, Any] | None = None,
    workers: int | None = None,
    strict: bool = False,
) -> Manifest:
    """Write the index files (`index/`) and `dataset.json` beside existing WebDataset shards in
    `root`, each shard's index file as soon as that shard is scanned.

    Without `names`, every `*.tar` in `root` is indexed; any other file there is named in a
    warning and in `extra["skipped_files"]` (`{"count": n, "first": [...]}`) of the manifest.
    A tar without an end-of-archive marker is indexed with a warning. `strict=True` raises
    on either instead (skipped files before anything is written; no `dataset.json` either way).
    `workers`: shards scanned at once (default 1 locally, 16 from an object store, where
    each header is a round trip). `seta_stream.ray.index_shards` does the same on Ray.
    """
    store = Store(root, storage_options)
    names, skipped = tars_to_index(store, names, strict=strict)
    bar = tqdm(total=len(names), unit="shard", desc="index", disable=not progress)
    try:
        shards, fields = index_shard_files(
            store, names, checksum=checksum, strict=strict, workers=workers, on_shard=bar.update
        )
    finally:
        bar.close()
    manifest = tars_manifest(shards, fields, skipped)
    write_manifest(store, manifest)  # last: the dataset is finished
    return manifest


def tars_to_index(
    store: Store, names: Sequence[str] | None, *, strict: bool
) -> tuple[list[str], list[str]]:
    """(the tars to index, the other files of the folder left out) for `index_tars`."""
    skipped: list[str] = []
    if names is None:
        names = store.glob("*.tar")
        skipped = skipped_files(store, names)
        if skipped:
            message = skipped_message(store.url_of(store.root), skipped)
            if strict or not names:
                raise SeTaStreamError(message)
            log.warning("%s", message)
    if not names:
        raise SeTaStreamError(f"{store.url_of(store.root)}: no .tar shards to index")
    return list(names), skipped


def index_shard_files(
    store: Store,
    names: Sequence[str],
    *,
    checksum: bool = False,
    strict: bool = False,
    workers: int | None = None,
    on_shard: Callable[[int], object] | None = None,
) -> tuple[list[ShardInfo], set[str]]:
    """Scan tars `names` (headers only unless `checksum`) and write each one's index file;
    returns their `ShardInfo`s in order and the field names seen."""
    files = IndexFiles(store)

    def index_one(name: str) -> tuple[ShardInfo, set[str]]:
        """Scan one shard and write its index file: one shard's rows in memory per thread."""
        scan = scan_shard(store, name, checksum=checksum)
        if strict and scan.warnings:
            raise ShardFormatError(f"{scan.warnings[0]} (refused: strict)")
        rows = ShardRows()
        for smp in scan.samples:
            rows.add(key=smp.key, offset=smp.offset, length=smp.length, members=smp.members)
        info = ShardInfo(name=name, bytes=scan.size, samples=len(scan.samples), sha256=scan.sha256)
        return files.write(info, rows), set(rows.mname)

    shards = []
    fields: set[str] = set()
    n = workers or (1 if store.is_local else 16)
    with ThreadPoolExecutor(n, thread_name_prefix="seta_stream-index") as pool:
        for info, names_seen in pool.map(index_one, names):
            if on_shard is not None:
                on_shard(1)
            shards.append(info)
            fields |= names_seen
    return shards, fields


def tars_manifest(shards: Sequence[ShardInfo], fields: set[str], skipped: list[str]) -> Manifest:
    """The manifest `index_tars` writes for indexed tars."""
    return Manifest(
        format="tar",
        shards=tuple(shards),
        fields=tuple(sorted(fields)),
        extra={
            "source": "tools/shard.py index",
            **(
                {"skipped_files": {"count": len(skipped), "first": skipped[:SHOWN]}}
                if skipped
                else {}
            ),
        },
    )


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


class Verification(list[str]):
    """What `verify` found: the problems as list items (empty when all agree), and `notes`,
    what it could not check (e.g. no checksums recorded), which are not problems."""

    def __init__(self, problems: Sequence[str] = (), notes: Sequence[str] = ()) -> None:
        super().__init__(problems)
        self.notes = list(notes)


def verify(
    root: str,
    *,
    progress: bool = True,
    storage_options: Mapping[str, Any] | None = None,
    require_checksums: bool = False,
) -> Verification:
    """Every mismatch between manifest, index files and shards, as messages; empty when all
    agree. Each shard's index file is hashed and checked against the manifest, loaded the way
    readers load it, and compared with the shard's own headers (tar) or size (Arrow).

    Shards without a recorded sha256 are checked by size and headers only; that is said in
    `notes` ("no checksums recorded: …"), and is a problem with `require_checksums=True`.
    """
    from seta_stream.shards.reader import Dataset

    read_manifest(Store(root, storage_options))  # not a dataset at all: that raises
    try:
        ds = Dataset.open(root, storage_options=storage_options)
    except ManifestError as e:  # version 1: the one index does not match the manifest
        return Verification([str(e)])
    problems: list[str] = []
    notes: list[str] = []
    unchecked = _unchecked(ds.manifest)
    if unchecked:
        (problems if require_checksums else notes).append(
            unchecked + (" (checksums required)" if require_checksums else "")
        )
    shards = range(len(ds.manifest.shards))
    for s in tqdm(shards, unit="shard", desc="verify", disable=not progress):
        problems += _verify_shard(ds, s, notes)
    return Verification(problems, notes)


def _unchecked(manifest: Manifest) -> str | None:
    """The note for shards whose manifest entry has no sha256, or None when all have one."""
    lacking = [s.name for s in manifest.shards if not s.sha256]
    if not lacking:
        return None
    if len(lacking) == len(manifest.shards):
        return NO_CHECKSUMS
    return (
        f"no checksums recorded for {len(lacking)} of {len(manifest.shards)} shards (first"
        f" {lacking[0]}): checked their sizes and headers only"
    )


def _verify_shard(ds: Any, s: int, notes: list[str]) -> list[str]:
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
    return problems + _check_rows(manifest.format, idx, base, data, path, notes)


def _check_rows(
    fmt: str, idx: SampleIndex, base: int, data: bytes, path: str, notes: list[str]
) -> list[str]:
    """Shard rows `idx` (row r is sample `base + r`) against the shard's bytes `data`; what
    the scan accepted with a warning goes to `notes`."""
    out = []
    if fmt == "tar":
        try:
            scan = scan_tar(io.BytesIO(data), name=path, size=len(data))
        except SeTaStreamError as e:
            return [str(e)]
        notes += scan.warnings
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
