"""Writing the Parquet side of a loss table: snapshots, per-epoch history and summary.

Every writer reads the live columns a chunk of `chunk_rows` rows at a time (with `pread`, not
through the maps, see `columns.py`) and writes that chunk as one row group of a temp file,
renamed over the target only when complete: memory stays at a few chunks whatever N is. They
run on the writer thread, so the columns they read are a consistent point in time.

Per-epoch history has two forms. Up to `full_max` samples ("full") it holds one row per
sample. Above it ("compact") it holds only the selected samples, and a per-group histogram of
the losses (`histogram/`, 64 equal-width bins from each group's min to max) describes the rest.

Tables made before keys were dropped (they have `keys.parquet`) keep writing a `key` column,
so all the files of one table share one schema.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from seta_stream.losses.columns import LiveColumns
from seta_stream.losses.layout import (
    HISTOGRAM_DIR,
    HISTORY_DIR,
    KEYS_NAME,
    SNAPSHOT_NAME,
    SUMMARY_DIR,
    atomic_path,
    epoch_file_name,
)
from seta_stream.losses.schema import (
    HISTOGRAM_SCHEMA,
    HISTORY_SCHEMA,
    SNAPSHOT_SCHEMA,
    SUMMARY_SCHEMA,
    WRITE_OPTIONS,
    KeySource,
    keyed,
    with_metadata,
)
from seta_stream.losses.summary import GroupStats, histograms, summary_table

Hook = Callable[[str], None]


@dataclass(frozen=True, kw_only=True)
class WriteContext:
    """What every writer needs besides the columns."""

    root: Path
    chunk_rows: int
    has_keys: bool  # a table made before keys were dropped: write its `key` column too
    num_samples: int
    fingerprint: str | None
    hook: Hook | None = None

    def keys(self) -> KeySource | None:
        return KeySource(self.root / KEYS_NAME, self.chunk_rows) if self.has_keys else None

    def schema(self, schema: pa.Schema, kind: str, **extra: Any) -> pa.Schema:
        full = keyed(schema) if self.has_keys and "sample_id" in schema.names else schema
        meta = {"num_samples": self.num_samples, "fingerprint": self.fingerprint, **extra}
        return with_metadata(full, kind, **meta)

    def point(self, name: str) -> None:
        if self.hook is not None:
            self.hook(name)

    def chunks(self) -> Iterator[tuple[int, int]]:
        for start in range(0, self.num_samples, self.chunk_rows):
            yield start, min(self.num_samples, start + self.chunk_rows)


def _loss_array(loss: np.ndarray[Any, Any]) -> pa.Array:
    return pa.array(loss, type=pa.float32(), mask=np.isnan(loss))  # never seen: null


def _batch(
    schema: pa.Schema, columns: dict[str, Any], keys: KeySource | None, chunk: int
) -> pa.RecordBatch:
    """A record batch of `schema` from a chunk's `columns` (legacy tables: with its keys;
    `columns["rows"]`, when present, says which rows of the chunk were kept)."""
    rows = columns.pop("rows", None)
    if keys is not None:
        key = keys.next(chunk)
        columns["key"] = key if rows is None else key.take(pa.array(rows))
    arrays = [
        col if isinstance(col, pa.Array) else pa.array(col, type=schema.field(name).type)
        for name, col in ((name, columns[name]) for name in schema.names)
    ]
    return pa.record_batch(arrays, schema=schema)


def write_snapshot(cols: LiveColumns, ctx: WriteContext, *, epoch: int) -> Path:
    """`losses.parquet`: every column of every sample, atomically replaced."""
    target = ctx.root / SNAPSHOT_NAME
    schema = ctx.schema(SNAPSHOT_SCHEMA, "snapshot", epoch=epoch)
    keys = ctx.keys()
    with atomic_path(target) as tmp, pq.ParquetWriter(tmp, schema, **WRITE_OPTIONS) as out:
        for start, stop in ctx.chunks():
            columns = {
                "sample_id": np.arange(start, stop, dtype=np.int64),
                "loss": _loss_array(cols.read("loss", start, stop)),
                "visits": cols.read("visits", start, stop),
                "last_epoch": cols.read("epoch", start, stop),
                "group": cols.read("group", start, stop),
                "selected": cols.read("selected", start, stop),
                "weight": cols.read("weight", start, stop),
                "step": cols.read("step", start, stop),
            }
            out.write_batch(_batch(schema, columns, keys, stop - start))
            ctx.point("snapshot:partial")
        out.close()
        ctx.point("snapshot:written")
    return target


@dataclass(frozen=True, kw_only=True)
class EpochRecord:
    """One epoch as the history writer sees it."""

    epoch: int
    info: dict[str, Any] | None  # the selection's info; None when no selection was recorded
    compact: bool


def epoch_chunk(cols: LiveColumns, rec: EpochRecord, start: int, stop: int) -> dict[str, Any]:
    """loss/group/selected/weight/step of a chunk (no recorded selection: selected = seen in
    it)."""
    loss, step = cols.read("loss", start, stop), cols.read("step", start, stop)
    if rec.info is not None:
        return {
            "loss": loss,
            "group": cols.read("group", start, stop),
            "selected": cols.read("selected", start, stop),
            "weight": cols.read("weight", start, stop),
            "step": step,
        }
    n = stop - start
    return {
        "loss": loss,
        "group": np.full(n, -1, np.int8),
        "selected": cols.read("epoch", start, stop) == rec.epoch,
        "weight": np.ones(n, np.float32),
        "step": step,
    }


def _history_columns(rec: EpochRecord, part: dict[str, Any], start: int) -> dict[str, Any]:
    n = part["loss"].size
    columns = {"sample_id": np.arange(start, start + n, dtype=np.int64), **part}
    if rec.compact:
        rows = np.flatnonzero(part["selected"])
        columns = {name: values[rows] for name, values in columns.items()}
        columns["rows"] = rows  # which keys of the chunk a legacy table keeps
    columns["loss"] = _loss_array(columns["loss"])
    columns["epoch"] = np.full(columns["sample_id"].size, rec.epoch, np.int32)
    return columns


def write_epoch(cols: LiveColumns, ctx: WriteContext, rec: EpochRecord) -> pa.Table:
    """Write an epoch's history and summary (compact: histograms too); return the summary."""
    name = epoch_file_name(rec.epoch)
    for folder in (HISTORY_DIR, SUMMARY_DIR, *([HISTOGRAM_DIR] if rec.compact else [])):
        (ctx.root / folder).mkdir(exist_ok=True)
    form = "compact" if rec.compact else "full"
    extra = {"epoch": rec.epoch, "form": form, "info": rec.info}
    schema = ctx.schema(HISTORY_SCHEMA, "history", **extra)
    keys = ctx.keys()
    stats = GroupStats()
    with (
        atomic_path(ctx.root / HISTORY_DIR / name) as tmp,
        pq.ParquetWriter(tmp, schema, **WRITE_OPTIONS) as out,
    ):
        for start, stop in ctx.chunks():
            part = epoch_chunk(cols, rec, start, stop)
            stats.add(part["loss"], part["group"], part["selected"])
            columns = _history_columns(rec, part, start)
            out.write_batch(_batch(schema, columns, keys, stop - start))
            ctx.point("history:partial")
        out.close()
        ctx.point("history:written")
    summary = summary_table(stats, rec.epoch, rec.info, ctx.num_samples)
    with atomic_path(ctx.root / SUMMARY_DIR / name) as tmp:
        pq.write_table(summary.cast(ctx.schema(SUMMARY_SCHEMA, "summary", **extra)), tmp)
    if rec.compact:
        parts = (epoch_chunk(cols, rec, start, stop) for start, stop in ctx.chunks())
        histogram = histograms(stats, parts, rec.epoch)
        with atomic_path(ctx.root / HISTOGRAM_DIR / name) as tmp:
            pq.write_table(histogram.cast(ctx.schema(HISTOGRAM_SCHEMA, "histogram", **extra)), tmp)
    return summary
