"""Writing the Parquet side of a loss table: keys, snapshots, per-epoch history and summary.

All writers stream the live columns in chunks of `chunk_rows` rows (memory stays bounded at
100M samples) into a temp file that is renamed over the target only when complete. They run
on the writer thread, so the columns they read are a consistent point in time.

Per-epoch history has two forms. Up to `full_max` samples ("full") it holds one row per
sample. Above it ("compact") it holds only the selected samples, and a per-group histogram of
the losses (`histogram/`, 64 equal-width bins from each group's min to max) describes the rest.
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
    KEYS_SCHEMA,
    SNAPSHOT_SCHEMA,
    SUMMARY_SCHEMA,
    WRITE_OPTIONS,
    KeySource,
    with_metadata,
)

Hook = Callable[[str], None]
HISTOGRAM_BINS = 64


@dataclass(frozen=True, kw_only=True)
class WriteContext:
    """What every writer needs besides the columns."""

    root: Path
    chunk_rows: int
    has_keys: bool
    num_samples: int
    fingerprint: str | None
    hook: Hook | None = None

    def keys(self) -> KeySource:
        return KeySource(self.root / KEYS_NAME if self.has_keys else None, self.chunk_rows)

    def point(self, name: str) -> None:
        if self.hook is not None:
            self.hook(name)

    def meta(self) -> dict[str, Any]:
        return {"num_samples": self.num_samples, "fingerprint": self.fingerprint}


def _chunks(n: int, size: int) -> Iterator[tuple[int, int]]:
    for start in range(0, n, size):
        yield start, min(n, start + size)


def _loss_array(loss: np.ndarray[Any, Any]) -> pa.Array:
    return pa.array(loss, type=pa.float32(), mask=np.isnan(loss))  # never seen: null


def write_keys(root: Path, keys: pa.Array | pa.ChunkedArray, ctx: WriteContext) -> None:
    table = pa.table({"sample_id": np.arange(len(keys), dtype=np.int64), "key": keys})
    schema = with_metadata(KEYS_SCHEMA, "keys", **ctx.meta())
    with atomic_path(root / KEYS_NAME) as tmp:
        pq.write_table(table.cast(schema), tmp, row_group_size=ctx.chunk_rows, **WRITE_OPTIONS)


def write_snapshot(cols: LiveColumns, ctx: WriteContext, *, epoch: int) -> Path:
    """`losses.parquet`: every column of every sample, atomically replaced."""
    target = ctx.root / SNAPSHOT_NAME
    schema = with_metadata(SNAPSHOT_SCHEMA, "snapshot", epoch=epoch, **ctx.meta())
    keys = ctx.keys()
    with atomic_path(target) as tmp, pq.ParquetWriter(tmp, schema, **WRITE_OPTIONS) as out:
        for start, stop in _chunks(ctx.num_samples, ctx.chunk_rows):
            arrays = [
                pa.array(np.arange(start, stop, dtype=np.int64)),
                keys.next(stop - start),
                _loss_array(cols.loss[start:stop]),
                pa.array(cols.visits[start:stop]),
                pa.array(cols.epoch[start:stop]),
                pa.array(cols.group[start:stop]),
                pa.array(cols.selected[start:stop]),
                pa.array(cols.weight[start:stop]),
            ]
            out.write_batch(pa.record_batch(arrays, schema=schema))
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


def _epoch_chunk(cols: LiveColumns, rec: EpochRecord, start: int, stop: int) -> dict[str, Any]:
    """group/selected/weight of a chunk (no recorded selection: selected = seen this epoch)."""
    if rec.info is not None:
        return {
            "group": cols.group[start:stop],
            "selected": cols.selected[start:stop],
            "weight": cols.weight[start:stop],
        }
    n = stop - start
    return {
        "group": np.full(n, -1, np.int8),
        "selected": cols.epoch[start:stop] == rec.epoch,
        "weight": np.ones(n, np.float32),
    }


def _history_batch(
    cols: LiveColumns, rec: EpochRecord, keys: KeySource, start: int, stop: int
) -> tuple[pa.RecordBatch, dict[str, Any]]:
    part = _epoch_chunk(cols, rec, start, stop)
    loss = cols.loss[start:stop]
    key = keys.next(stop - start)
    sample_id = np.arange(start, stop, dtype=np.int64)
    group, selected, weight = part["group"], part["selected"], part["weight"]
    if rec.compact:
        rows = np.flatnonzero(selected)
        key = key.take(pa.array(rows))
        sample_id, loss = sample_id[rows], loss[rows]
        group, selected, weight = group[rows], selected[rows], weight[rows]
    arrays = [
        pa.array(np.full(len(sample_id), rec.epoch, np.int32)),
        pa.array(sample_id),
        key,
        _loss_array(loss),
        pa.array(group),
        pa.array(selected),
        pa.array(weight),
    ]
    return pa.record_batch(arrays, schema=HISTORY_SCHEMA), part


def _group_stats(loss: np.ndarray[Any, Any], part: dict[str, Any]) -> pa.Table:
    chunk = pa.table(
        {
            "group": part["group"],
            "loss": _loss_array(loss),
            "selected": part["selected"].view(np.uint8),
        }
    )
    aggs = [("loss", "min"), ("loss", "max"), ("loss", "sum"), ("loss", "count")]
    return chunk.group_by("group").aggregate([*aggs, ("selected", "sum"), ([], "count_all")])


def _summary_table(partials: list[pa.Table], rec: EpochRecord, num_samples: int) -> pa.Table:
    merged = (
        pa.concat_tables(partials)
        .group_by("group")
        .aggregate(
            [
                ("loss_min", "min"),
                ("loss_max", "max"),
                ("loss_sum", "sum"),
                ("loss_count", "sum"),
                ("selected_sum", "sum"),
                ("count_all", "sum"),
            ]
        )
        .sort_by("group")
    )
    groups = merged.column("group").to_numpy()
    seen = merged.column("loss_count_sum").to_numpy().astype(np.int64)
    loss_sum = merged.column("loss_sum_sum").to_numpy(zero_copy_only=False)
    selected = merged.column("selected_sum_sum").to_numpy().astype(np.int64)
    info = rec.info or {}
    window = info.get("window")
    n = len(groups)
    return pa.table(
        {
            "epoch": np.full(n, rec.epoch, np.int32),
            "phase": [info.get("phase")] * n,
            "group": groups,
            "count": merged.column("count_all_sum").to_numpy().astype(np.int64),
            "seen": seen,
            "loss_min": merged.column("loss_min_min"),
            "loss_mean": pa.array(
                np.divide(loss_sum, np.maximum(seen, 1)), mask=seen == 0, type=pa.float64()
            ),
            "loss_max": merged.column("loss_max_max"),
            "selected": selected,
            "window_start": [None if window is None else int(window[0])] * n,
            "window_stop": [None if window is None else int(window[1])] * n,
            "num_samples": np.full(n, num_samples, np.int64),
            "kept_fraction": np.full(n, selected.sum() / num_samples, np.float64),
        }
    ).cast(SUMMARY_SCHEMA)


def write_epoch(cols: LiveColumns, ctx: WriteContext, rec: EpochRecord) -> pa.Table:
    """Write an epoch's history and summary (compact: histograms too); return the summary."""
    name = epoch_file_name(rec.epoch)
    for folder in (HISTORY_DIR, SUMMARY_DIR, *([HISTOGRAM_DIR] if rec.compact else [])):
        (ctx.root / folder).mkdir(exist_ok=True)
    form = "compact" if rec.compact else "full"
    extra = {"epoch": rec.epoch, "form": form, "info": rec.info, **ctx.meta()}
    schema = with_metadata(HISTORY_SCHEMA, "history", **extra)
    keys = ctx.keys()
    partials: list[pa.Table] = []
    with (
        atomic_path(ctx.root / HISTORY_DIR / name) as tmp,
        pq.ParquetWriter(tmp, schema, **WRITE_OPTIONS) as out,
    ):
        for start, stop in _chunks(ctx.num_samples, ctx.chunk_rows):
            batch, part = _history_batch(cols, rec, keys, start, stop)
            out.write_batch(batch.cast(schema))
            partials.append(_group_stats(cols.loss[start:stop], part))
            ctx.point("history:partial")
        out.close()
        ctx.point("history:written")
    summary = _summary_table(partials, rec, ctx.num_samples)
    with atomic_path(ctx.root / SUMMARY_DIR / name) as tmp:
        pq.write_table(summary.cast(with_metadata(SUMMARY_SCHEMA, "summary", **extra)), tmp)
    if rec.compact:
        histogram = _histograms(cols, ctx, rec, summary)
        with atomic_path(ctx.root / HISTOGRAM_DIR / name) as tmp:
            pq.write_table(
                histogram.cast(with_metadata(HISTOGRAM_SCHEMA, "histogram", **extra)), tmp
            )
    return summary


def _histograms(
    cols: LiveColumns, ctx: WriteContext, rec: EpochRecord, summary: pa.Table
) -> pa.Table:
    """Per group, seen losses counted in 64 equal-width bins from the group's min to its max."""
    edges: dict[int, np.ndarray[Any, Any]] = {}
    for row in summary.select(["group", "loss_min", "loss_max"]).to_pylist():
        if row["loss_min"] is not None:
            lo, hi = row["loss_min"], row["loss_max"]
            edges[row["group"]] = np.linspace(lo, hi if hi > lo else lo + 1.0, HISTOGRAM_BINS + 1)
    counts = {g: np.zeros(HISTOGRAM_BINS, np.int64) for g in edges}
    for start, stop in _chunks(ctx.num_samples, ctx.chunk_rows):
        part = _epoch_chunk(cols, rec, start, stop)
        loss = cols.loss[start:stop]
        finite = ~np.isnan(loss)
        for g, e in edges.items():
            counts[g] += np.histogram(loss[finite & (part["group"] == g)], bins=e)[0]
    rows: dict[str, list[Any]] = {name: [] for name in HISTOGRAM_SCHEMA.names}
    for g, e in edges.items():
        for b in range(HISTOGRAM_BINS):
            for name, value in zip(
                HISTOGRAM_SCHEMA.names, (rec.epoch, g, b, e[b], e[b + 1], counts[g][b]), strict=True
            ):
                rows[name].append(value)
    return pa.table(rows)
