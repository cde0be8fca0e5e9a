"""Converting and indexing on Ray: a Ray Data sink that writes shards, and parallel indexing.

    ds = ray.data.read_parquet("s3://bucket/table/")
    ds.write_datasink(ShardSink("s3://bucket/out", samples_per_shard=10_000, key="id"))

Each write task turns its rows into samples as `tools/shard.py convert` turns a table's rows
(`TableSource`: strings `COL.txt`, integers `COL.cls`, lists `COL.json`, bytes `COL.EXT` by
their magic number, a `{bytes, path}` struct as `datasets`' Image) and writes them through
the converter's own shard writer (`convert.write_shards`): whole shards named
`shard-tTTTTTT-NNNNNN.{tar,arrow}` after the task's index, each with its index file. A retried
task writes the same names again, so it overwrites instead of adding. `on_write_complete`,
on the driver, lists the tasks' shards in task order, removes shards of this sink's name
pattern that no task reported (left by a killed attempt or an earlier failed job), and writes
`dataset.json` last, atomically; a job that fails never gets there, so it leaves no manifest.

Equal to single-process `convert` (shard bytes and index files; the shard names differ):
the same rows in the same order, a key column (`key=`; without one each task numbers its own
rows), and shard boundaries where `convert` puts them. Ray's blocks decide what a task gets,
so repartition to whole shards and keep the order:

    ray.data.DataContext.get_current().execution_options.preserve_order = True
    ds.repartition(target_num_rows_per_block=S, strict=True).write_datasink(
        ShardSink(out, samples_per_shard=S, key="id"))

`index_shards` indexes existing tars with one Ray task per group of shards (headers only, as
`index_tars`) and writes the same index files and manifest as the serial tool.

Ray is imported here only; `seta_stream` itself imports without it (`pip install
'seta_stream[ray]'`).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import ray
from ray.data import Datasink
from ray.data.block import Block, BlockAccessor
from ray.data.datasource.datasink import WriteResult

from seta_stream.errors import SourceError
from seta_stream.shards.convert import (
    ConvertOptions,
    arrow_fields_of,
    encoded_samples,
    write_shards,
)
from seta_stream.shards.indexwriter import IndexFiles
from seta_stream.shards.maintain import index_shard_files, tars_manifest, tars_to_index
from seta_stream.shards.manifest import MANIFEST_NAME, Format, Manifest, ShardInfo, write_manifest
from seta_stream.shards.shardindex import SHARD_INDEX_DIR
from seta_stream.shards.sourcebase import Sample
from seta_stream.shards.tables import TableSource
from seta_stream.storage import Store

__all__ = ["ShardSink", "index_shards"]

_SHARD = re.compile(r"shard-t\d{6}-\d{6}\.(?:tar|arrow)")
_TEMP = re.compile(r"\.shard-t\d{6}-\d{6}\.(?:tar|arrow)(?:\.parquet)?\.tmp-[0-9a-f]{12}")


class ShardSink(Datasink[dict[str, Any]]):
    """A Ray Data sink writing a seta_stream dataset (`ds.write_datasink(ShardSink(...))`).

    `path`: a folder or fsspec URL. `samples_per_shard`, `max_shard_bytes`, `format` and
    `compress` as `convert`'s options. `key`: the column of sample keys (default `__key__` or
    `key` if there is one, else `TTTTTT-RRRRRRRRR` from the task and row). `label`: the
    integer column kept as the index's `label` (default `label`, `y`, `target`... as
    `convert`). `overwrite`: replace a finished dataset at `path`. After the write,
    `manifest` holds what was written.
    """

    def __init__(
        self,
        path: str,
        *,
        samples_per_shard: int = 10_000,
        max_shard_bytes: int | None = None,
        format: Format = "tar",
        compress: str | None = None,
        key: str | None = None,
        label: str | None = None,
        overwrite: bool = False,
        storage_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.path = str(path)
        self.opts = ConvertOptions(
            format=format,
            samples_per_shard=samples_per_shard,
            max_shard_bytes=max_shard_bytes,
            compress=compress,
            overwrite=overwrite,
            progress=False,
        )
        self.key = key
        self.label = label
        self.storage_options = dict(storage_options or {})
        self.manifest: Manifest | None = None

    def _store(self) -> Store:
        return Store(self.path, self.storage_options)

    @property
    def min_rows_per_write(self) -> int:
        """At least a shard's rows per task (fewer only at the end)."""
        return self.opts.samples_per_shard

    def on_write_start(self, schema: pa.Schema | None = None) -> None:
        store = self._store()
        store.makedirs()
        if store.exists(MANIFEST_NAME):
            if not self.opts.overwrite:
                raise SourceError(
                    f"{store.path(MANIFEST_NAME)}: a dataset is already there (overwrite=True)"
                )
            store.remove(MANIFEST_NAME)  # from here on the folder no longer looks finished
        if self.key is not None and schema is not None and self.key not in schema.names:
            raise SourceError(f"key={self.key!r}: no such column; the rows have {schema.names}")

    def write(self, blocks: Iterable[Block], ctx: Any) -> dict[str, Any]:
        """Write this task's rows as whole shards; what it wrote, for `on_write_complete`.

        Tar shards are written block by block (a shard may span blocks); Arrow needs every
        field name before its first shard, so an Arrow task takes its blocks as one table."""
        task = int(ctx.task_idx)
        tables: Iterable[pa.Table] = (BlockAccessor.for_block(b).to_arrow() for b in blocks)
        if self.opts.format == "arrow":
            tables = [pa.concat_tables(list(tables))]
        sources = self._sources(tables, task)
        first = next(sources, None)
        result: dict[str, Any] = {"task": task, "shards": [], "fields": []}
        if first is None:
            return result
        meta = first.metadata_columns
        store = self._store()
        arrow_fields: tuple[str, ...] = ()
        if self.opts.format == "arrow":
            arrow_fields = arrow_fields_of(first, np.arange(len(first)), self.opts)
        written: list[str] = []
        try:
            shards, fields = write_shards(
                self._samples(first, sources),
                store,
                self.opts,
                prefix=f"shard-t{task:06d}-",
                index_files=IndexFiles(store, meta),
                arrow_fields=arrow_fields,
                written=written,
            )
        except BaseException as e:  # a retry writes them again; a failed job lists none
            try:
                for name in reversed(written):
                    store.remove(name)
            except OSError as e2:
                e.add_note(f"and cleaning up after it failed: {e2}")
            raise
        result.update(
            shards=[s.to_dict() for s in shards],
            fields=sorted(fields),
            metadata_columns=list(meta),
            extra=first.extra,
        )
        return result

    def _sources(self, tables: Iterable[pa.Table], task: int) -> Iterator[TableSource]:
        start = 0  # the task's row number of each block's first row (for default keys)
        for table in tables:
            if table.num_rows:
                yield self._source(table, task, start)
                start += table.num_rows

    def _samples(self, first: TableSource, rest: Iterator[TableSource]) -> Iterator[Sample]:
        for source in itertools.chain([first], rest):
            if source.metadata_columns != first.metadata_columns:
                raise SourceError(
                    f"{source.description}: metadata columns {source.metadata_columns} after "
                    f"{first.metadata_columns} in the task's first block; give the rows one schema"
                )
            yield from encoded_samples(source, np.arange(len(source)), self.opts)

    def _source(self, table: pa.Table, task: int, start: int) -> TableSource:
        """A block of task `task`'s rows (its first row the task's `start`-th) as a conversion
        source: fields as `convert` makes of a table's columns."""
        df = pl.from_arrow(table)
        assert isinstance(df, pl.DataFrame)  # a Table always makes a DataFrame
        key = self.key or next((c for c in ("__key__", "key") if c in df.columns), None)
        if key is None:
            key = "__key__"
            keys = [f"{task:06d}-{start + i:09d}" for i in range(df.height)]
            df = df.with_columns(pl.Series(key, keys))
        return TableSource.from_frame(
            df, where=f"Ray write task {task}, rows {start}..", key_column=key, label=self.label
        )

    def on_write_complete(self, write_result: WriteResult[dict[str, Any]]) -> None:
        """Write `dataset.json` listing every task's shards in task order (last, atomically)."""
        results = sorted(write_result.write_returns, key=lambda r: r["task"])
        done = [r for r in results if r["shards"]]
        if not done:
            raise SourceError(f"{self.path}: no rows were written")
        meta = {tuple(r["metadata_columns"]) for r in done}
        if len(meta) != 1:
            raise SourceError(f"{self.path}: write tasks differ in metadata columns: {meta}")
        shards = tuple(ShardInfo(**s) for r in done for s in r["shards"])
        store = self._store()
        _remove_unlisted(store, {s.name for s in shards})
        manifest = Manifest(
            format=self.opts.format,
            shards=shards,
            fields=tuple(sorted({f for r in done for f in r["fields"]})),
            compression="zstd" if self.opts.compress else None,
            metadata_columns=meta.pop(),
            extra={**done[0]["extra"], "source": "seta_stream.ray.ShardSink"},
        )
        write_manifest(store, manifest)
        self.manifest = manifest


def _remove_unlisted(store: Store, listed: set[str]) -> None:
    """Delete this sink's shards (and index and temp files) that no finished task reported:
    left by a killed task attempt or by an earlier job that failed."""
    for name in store.glob("*shard-t*"):
        if (_SHARD.fullmatch(name) and name not in listed) or _TEMP.fullmatch(name):
            store.remove(name)
    for name in store.glob(f"{SHARD_INDEX_DIR}/*shard-t*"):
        shard = name.removesuffix(".parquet")
        if (_SHARD.fullmatch(shard) and shard not in listed) or _TEMP.fullmatch(name):
            store.remove(f"{SHARD_INDEX_DIR}/{name}")


def _index_group(
    url: str,
    storage_options: dict[str, Any],
    names: list[str],
    checksum: bool,
    strict: bool,
    threads: int | None,
) -> tuple[list[ShardInfo], set[str]]:
    store = Store(url, storage_options)
    return index_shard_files(store, names, checksum=checksum, strict=strict, workers=threads)


def index_shards(
    url: str,
    names: Sequence[str] | None = None,
    *,
    shards_per_task: int = 64,
    checksum: bool = False,
    strict: bool = False,
    threads: int | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> Manifest:
    """`index_tars` on Ray: one task per `shards_per_task` tars (each scanning `threads` at
    once, as `index_tars`' `workers`), the manifest written last by the caller. The index
    files and `dataset.json` are the ones the serial `index_tars` writes."""
    if shards_per_task < 1:
        raise SourceError(f"shards_per_task={shards_per_task}: must be >= 1")
    so = dict(storage_options or {})
    store = Store(url, so)
    names, skipped = tars_to_index(store, names, strict=strict)
    task = ray.remote(_index_group)
    groups = [names[a : a + shards_per_task] for a in range(0, len(names), shards_per_task)]
    refs = [task.remote(url, so, g, checksum, strict, threads) for g in groups]
    shards: list[ShardInfo] = []
    fields: set[str] = set()
    for group_shards, group_fields in ray.get(refs):
        shards += group_shards
        fields |= group_fields
    manifest = tars_manifest(shards, fields, skipped)
    write_manifest(store, manifest)  # last: the dataset is finished
    return manifest
