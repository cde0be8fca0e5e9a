"""Conversion: a source -> shards + their index files (`index/`) + `dataset.json`.

Worker processes load and encode samples (read files, serialise arrays, compress); the main
process writes shards in order, so the output bytes do not depend on the number of workers.
Shards are written under temporary names and renamed when complete (fsync'd first, on local
disk), each shard's index file right after it (so only one shard's index rows are ever held);
the manifest comes last, so an interrupted conversion never looks finished. Running the same
conversion again deletes the temp files a killed run left.

Large conversions run as parts (`part=(i, n)`): part i converts its contiguous slice of the
(shuffled) samples into shards named `shard-pIIIII-NNNNNN.*`, with its own manifest
`dataset.part-IIIII-of-NNNNN.json`; `merge()` joins the parts into one dataset.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import zstandard
from tqdm import tqdm

from seta_stream.errors import ManifestError, SourceError
from seta_stream.shards.indexwriter import IndexFiles, ShardRows
from seta_stream.shards.manifest import (
    INDEX_NAME,
    MANIFEST_NAME,
    Format,
    Manifest,
    ShardInfo,
    write_manifest,
)
from seta_stream.shards.shardindex import SHARD_INDEX_DIR, shard_index_name
from seta_stream.shards.sources import Sample, Source
from seta_stream.shards.writer import ArrowWriter, Members, ShardWriter, TarWriter, check_key
from seta_stream.storage import Store

CHUNK = 256  # samples per task handed to a worker process


@dataclass(frozen=True, kw_only=True)
class ConvertOptions:
    format: Format = "tar"
    samples_per_shard: int = 10_000
    max_shard_bytes: int | None = None
    compress: str | None = None  # "zstd" or "zstd:LEVEL"
    workers: int = 1
    shuffle: bool = False
    seed: int = 0
    part: tuple[int, int] | None = None
    overwrite: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        if self.format not in ("tar", "arrow"):
            raise SourceError(f"format={self.format!r}: use 'tar' or 'arrow'")
        if self.samples_per_shard < 1:
            raise SourceError(f"samples_per_shard={self.samples_per_shard}: must be >= 1")
        if self.max_shard_bytes is not None and self.max_shard_bytes < 1:
            raise SourceError(f"max_shard_bytes={self.max_shard_bytes}: must be >= 1")
        if self.workers < 1:
            raise SourceError(f"workers={self.workers}: must be >= 1")
        if self.part is not None and not 0 <= self.part[0] < self.part[1]:
            raise SourceError(f"part={self.part[0]}/{self.part[1]}: need 0 <= I < N")
        self.zstd_level  # noqa: B018 - validates `compress`

    @property
    def zstd_level(self) -> int | None:
        if self.compress is None:
            return None
        name, _, level = self.compress.partition(":")
        if name != "zstd" or (level and not level.lstrip("-").isdigit()):
            raise SourceError(f"compress={self.compress!r}: use 'zstd' or 'zstd:LEVEL'")
        return int(level) if level else 3

    def names(self) -> tuple[str, str, str]:
        """(shard name prefix, manifest name, index name) of this conversion or part."""
        if self.part is None:
            return "shard-", MANIFEST_NAME, INDEX_NAME
        i, n = self.part
        return (
            f"shard-p{i:05d}-",
            f"dataset.part-{i:05d}-of-{n:05d}.json",
            (f"index.part-{i:05d}-of-{n:05d}.parquet"),
        )


def _encode_chunk(args: tuple[Source, list[int], int | None]) -> list[Sample]:
    source, ids, level = args
    cctx = zstandard.ZstdCompressor(level=level) if level is not None else None
    out = []
    for s in source.load_many(ids):
        check_key(s.key)
        exts = [e for e, _ in s.fields]
        if len(set(exts)) != len(exts):
            raise SourceError(f"{source.description}: sample {s.key!r} has a field twice: {exts}")
        if cctx is not None:
            s = Sample(
                key=s.key, fields=[(f"{e}.zst", cctx.compress(d)) for e, d in s.fields], meta=s.meta
            )
        out.append(s)
    return out


def encoded_samples(source: Source, order: np.ndarray, opts: ConvertOptions) -> Iterator[Sample]:
    """`source`'s samples `order`, keys checked and fields compressed as `opts` say (in
    `opts.workers` processes, in order)."""
    chunks = (order[a : a + CHUNK].tolist() for a in range(0, len(order), CHUNK))  # lazily
    tasks = ((source, c, opts.zstd_level) for c in chunks)
    if opts.workers == 1:
        for t in tasks:
            yield from _encode_chunk(t)
        return
    with mp.get_context("spawn").Pool(opts.workers) as pool:
        for batch in pool.imap(_encode_chunk, tasks):
            yield from batch


def sample_order(n: int, opts: ConvertOptions) -> np.ndarray:
    order = np.arange(n, dtype=np.int64)
    if opts.shuffle:
        order = np.random.default_rng(opts.seed).permutation(n)
    if opts.part is not None:
        i, parts = opts.part
        order = order[i * n // parts : (i + 1) * n // parts]
    return order


def convert(
    source: Source,
    dst: str | os.PathLike[str],
    opts: ConvertOptions = ConvertOptions(),
    *,
    storage_options: Mapping[str, Any] | None = None,
) -> Manifest:
    """Convert `source` into a dataset at `dst` (a folder or fsspec URL); returns the manifest.

    If it fails, what it wrote is removed again: its shards and index files, and on local disk
    the folders it made (if empty: another part may be converting into the same one).
    """
    store = Store(dst, storage_options)
    made = _missing_dirs(store)
    store.makedirs()
    written: list[str] = []
    try:
        return _convert(source, store, opts, written)
    except BaseException as e:
        _undo(store, written, made, e)
        raise


def _missing_dirs(store: Store) -> list[str]:
    """The local folders a conversion into `store` makes, outermost first."""
    if not store.is_local:
        return []
    made: list[str] = []
    d = os.path.abspath(store.root)
    while not os.path.isdir(d) and d != os.path.dirname(d):
        made.insert(0, d)
        d = os.path.dirname(d)
    index = os.path.join(store.root, SHARD_INDEX_DIR)
    return [*made, index] if not os.path.isdir(index) else made


def _undo(store: Store, written: list[str], made: list[str], error: BaseException) -> None:
    """Remove the files a failed conversion published and the (empty) folders it made."""
    try:
        for name in reversed(written):
            store.remove(name)
        for d in reversed(made):
            if os.path.isdir(d) and not os.listdir(d):
                os.rmdir(d)
    except OSError as e:
        error.add_note(f"and cleaning up after it failed: {e}")


def _convert(source: Source, store: Store, opts: ConvertOptions, written: list[str]) -> Manifest:
    prefix, manifest_name, index_name = opts.names()
    if store.exists(manifest_name):
        if not opts.overwrite:
            raise SourceError(
                f"{store.path(manifest_name)}: a dataset is already there (use --overwrite)"
            )
        store.remove(manifest_name)  # from here on the folder no longer looks finished
    ext = "tar" if opts.format == "tar" else "arrow"
    _remove_stale_temps(store, prefix, ext, (manifest_name, index_name))
    order = sample_order(len(source), opts)
    meta_cols = tuple(dict.fromkeys(source.metadata_columns))
    all_fields: tuple[str, ...] = ()
    if opts.format == "arrow":  # arrow needs the schema up front: one pass over the first chunk
        all_fields = arrow_fields_of(source, order, opts)
    bar = tqdm(total=len(order), unit="sample", desc="convert", disable=not opts.progress)
    try:
        shards, fields = write_shards(
            encoded_samples(source, order, opts),
            store,
            opts,
            prefix=prefix,
            index_files=IndexFiles(store, meta_cols),
            arrow_fields=all_fields,
            written=written,
            on_sample=lambda: bar.update(1),
        )
    finally:
        bar.close()
    if not shards:
        raise SourceError(f"{source.description}: no samples to convert")
    manifest = Manifest(
        format=opts.format,
        shards=tuple(shards),
        fields=tuple(sorted(fields)),
        compression="zstd" if opts.compress else None,
        metadata_columns=meta_cols,
        extra={**source.extra, "source": source.description},
    )
    write_manifest(store, manifest, manifest_name)
    return manifest


def write_shards(
    samples: Iterable[Sample],
    store: Store,
    opts: ConvertOptions,
    *,
    prefix: str,
    index_files: IndexFiles,
    arrow_fields: tuple[str, ...] = (),
    written: list[str],
    on_sample: Callable[[], object] | None = None,
) -> tuple[list[ShardInfo], set[str]]:
    """Write encoded `samples` in order as shards `{prefix}NNNNNN.{ext}` (`opts`' size limits),
    each shard's index file right after it; returns the shards (for the manifest) and the
    field names seen. Each published name is appended to `written` (for an undo); an
    incomplete shard is removed on error. `convert` and the Ray sink (`seta_stream.ray`)
    both write through here, so the same samples give the same bytes."""
    ext = "tar" if opts.format == "tar" else "arrow"
    shards: list[ShardInfo] = []
    fields: set[str] = set()
    pending: list[tuple[str, dict[str, Any], int, int, Members]] = []  # this shard's rows
    writer: ShardWriter | None = None
    tmp = f = None

    def close_shard() -> None:
        nonlocal writer, f, pending
        assert writer is not None and f is not None and tmp is not None
        sha = writer.finish()
        if store.is_local:  # on disk before the manifest names it (power loss, not only kill)
            f.flush()
            os.fsync(f.fileno())
        f.close()
        name = f"{prefix}{len(shards):06d}.{ext}"
        store.commit(tmp, name)
        written.append(name)
        arrow_members = writer.row_members if isinstance(writer, ArrowWriter) else None
        rows = ShardRows()
        for r, (key, meta, off, length, members) in enumerate(pending):
            members = arrow_members[r] if arrow_members is not None else members
            rows.add(key=key, offset=off, length=length, members=members, meta=meta)
        info = ShardInfo(name=name, bytes=writer.pos, samples=len(pending), sha256=sha)
        written.append(shard_index_name(name))
        shards.append(index_files.write(info, rows))
        writer, f, pending = None, None, []

    try:
        for s in samples:
            size = sum(len(d) for _, d in s.fields)
            full = writer is not None and (
                len(pending) >= opts.samples_per_shard
                or (opts.max_shard_bytes is not None and writer.pos + size > opts.max_shard_bytes)
            )
            if full:
                close_shard()
            if writer is None:
                f, tmp = store.create(f"{prefix}{len(shards):06d}.{ext}")
                writer = TarWriter(f) if opts.format == "tar" else ArrowWriter(f, arrow_fields)
            off, length, members = writer.add(s.key, s.fields)
            pending.append((s.key, s.meta, off, length, members))
            fields.update(e for e, _ in s.fields)
            if on_sample is not None:
                on_sample()
        if writer is not None:
            close_shard()
    except BaseException:
        if f is not None and tmp is not None:  # an incomplete shard: leave nothing of it
            store.abort(f, tmp)
        raise
    return shards, fields


def _remove_stale_temps(store: Store, prefix: str, ext: str, names: tuple[str, ...]) -> None:
    """Delete the temp files a killed run of this conversion (or part) left behind.

    Only this conversion's own names: its shards (`.{prefix}NNNNNN.{ext}.tmp-…`), their index
    files (in `index/`), a version-1 index and its manifest; another part converting into the
    same folder keeps its temp files.
    """
    shard = rf"{re.escape(prefix)}\d{{6}}\.{ext}"
    tmp = r"\.tmp-[0-9a-f]{12}"
    mine = re.compile(rf"\.(?:{shard}|{'|'.join(map(re.escape, names))}){tmp}")
    for name in store.glob(".*.tmp-*"):
        if mine.fullmatch(name):
            store.remove(name)
    index_tmp = re.compile(rf"\.{shard}\.parquet{tmp}")
    for name in store.glob(f"{SHARD_INDEX_DIR}/.*.tmp-*"):
        if index_tmp.fullmatch(name):
            store.remove(f"{SHARD_INDEX_DIR}/{name}")


def arrow_fields_of(source: Source, order: np.ndarray, opts: ConvertOptions) -> tuple[str, ...]:
    fields = source.fields
    if not fields and len(order):  # a source that cannot tell: take the first sample's
        fields = tuple(e for e, _ in source.load(int(order[0])).fields)
    suffix = ".zst" if opts.compress else ""
    return tuple(sorted(f"{f}{suffix}" for f in fields))


def check_fields_consistent(manifests: list[Manifest], where: str) -> None:
    first = manifests[0]
    for m in manifests[1:]:
        if (m.format, m.compression, m.metadata_columns) != (
            first.format,
            first.compression,
            first.metadata_columns,
        ):
            raise ManifestError(f"{where}: parts differ in format, compression or metadata columns")
