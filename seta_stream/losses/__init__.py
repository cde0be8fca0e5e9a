"""The loss table: one row per sample, updated every step, read by the policies once per epoch.

```python
from seta_stream.losses import LossTable

with LossTable("runs/exp1/losses", dataset=ds) as table:  # or num_samples=N
    table.set_epoch(epoch)
    selection = policy.select(table.scores(), epoch, seed=0)
    table.record_selection(epoch, selection)
    for batch in loader:
        table.update(batch["__index__"], per_sample_loss)  # queued; returns at once
    table.end_epoch()  # history + summary + snapshot
```

**One writer.** A table is written by one process (under DDP, one rank, which receives the
others' updates); a second writer gets `LossTableError` (an `fcntl.flock` on `<table>/lock`,
released on close or process death). Other processes read with `LossTable.open_readonly(path)`.

**Updates.** `update(ids, losses)` takes numpy arrays or torch tensors (any device, any float
dtype; integer ids), checks the ids' range and the losses' finiteness, copies them and puts
them on a bounded queue; the `seta_stream-loss-writer` thread applies them to memory-mapped
columns. A full queue blocks `update()` (back-pressure). A writer failure is raised by the
next `update()`, `flush()` or `close()`. Within one batch a duplicate id's last loss wins and
counts one visit. Non-finite losses raise, or with `nonfinite="skip"` are dropped and counted
in `stats()["nonfinite_skipped"]`.

**Durability.** `flush()` returns once everything queued is applied and msync'ed. After a
`kill -9` at any moment the table opens with every update flushed before it; updates queued
after the last flush may be partly there (each sample's row is independent, so a half-applied
batch is harmless). Parquet files are replaced atomically: never a partial `losses.parquet`.

## Files and their schemas

Every Parquet file carries the metadata key `seta_stream.loss_table`: JSON with `kind`,
`version` (now 1), `num_samples`, `fingerprint` and, per epoch, `epoch`, `form` and `info`.
The table stores no sample keys: join any of its files on `sample_id` with the dataset's
index (`seta_stream.shards.scan_index`) for the keys, labels or shards.

`losses.parquet` — the latest snapshot (written by `snapshot()`, `end_epoch()`, `close()`):

| column | type | meaning |
|---|---|---|
| sample_id | int64 | 0 … N−1 |
| loss | float32 | last loss; null if never seen (NaN in `scores()`) |
| visits | uint32 | number of batches that carried the sample |
| last_epoch | int32 | epoch last seen, −1 if never |
| group | int8 | group rank in the last selection, −1 if not clustered |
| selected | bool | selected by the last selection |
| weight | float32 | loss weight of the last selection (1.0 when not selected) |
| step | int64 | step of the last loss (`update()` count, see docs/policies.md), −1 if never |

`history/epoch=000012.parquet` — one per ended epoch, all of one schema:
epoch int32, sample_id int64, loss float32 (as at the epoch's end), group int8, selected
bool, weight float32, step int64 (of that loss). Up to `history_full_max` samples (default
100M) every sample has a row ("full"); above it only the selected samples do ("compact"), and
`histogram/epoch=….parquet` (epoch, group, bin, lo, hi, count: 64 bins per group) describes
the losses of all samples. An epoch with no recorded selection stores group −1, weight 1 and
selected = seen during that epoch.

`summary/epoch=000012.parquet` — one row per group (−1: not clustered): epoch int32, phase
large_string, group int8, count int64, seen int64 (samples with a loss), loss_min float32,
loss_mean float64, loss_max float32 (over seen samples, at the epoch's end), selected int64,
window_start int32, window_stop int32 (the SeTa window over group ranks, half-open; null
otherwise), num_samples int64, kept_fraction float64.

Tables made before keys were dropped still have `keys.parquet` and a `key` large_string
column after `sample_id` in their snapshot and history; they keep it, so one table's files
always share one schema.

## Size, at 100M-1B samples

A new table writes nothing per sample: its live columns are sparse files whose zero bytes
mean "never seen" (each value is stored XOR its initial value, see `columns.py`), so creating
one takes milliseconds at any N, and blocks are allocated as samples are first written.
On disk, per sample: 26 bytes of live columns (30 with the optional selection counts),
about 4 for the snapshot and 4 per epoch of full history (about 4 per *selected* sample in
compact form), a little more with the steps; so about 40 bytes after two epochs. In memory,
`scores()` makes one float32 array (4 bytes a sample); `record_selection`, the snapshot,
history and summary go through the live columns a chunk (`chunk_rows`) at a time, past their
memory maps. The pages that updates touch stay mapped until `flush()`, `scores()` or
`end_epoch()` hands them back to the page cache (up to 20 bytes a sample during an epoch:
loss, visits, epoch, step; counted in this process's resident set, reclaimable by
the OS). `benchmarks/bench_losstable.py` measures each epoch step; at 100M on 2 cores:
`set_epoch` + `scores()` + SeTa + `record_selection` about 9 s and 1.2 GB, 100M updates 7-10
s, `end_epoch()` + `close()` 15-20 s.

```python
import polars as pl

summary = pl.scan_parquet("runs/exp1/losses/summary/*.parquet")
per_epoch = (
    summary.group_by("epoch", "phase")
    .agg(pl.col("selected").sum(), pl.col("num_samples").first())
    .with_columns(kept=pl.col("selected") / pl.col("num_samples"))
    .sort("epoch")
    .collect()
)
history = pl.scan_parquet("runs/exp1/losses/history/*.parquet")
curve = history.group_by("epoch").agg(pl.col("loss").mean()).sort("epoch").collect()
times_selected = history.group_by("sample_id").agg(pl.col("selected").sum()).collect()
```

## Carrying a table over to a re-sharded dataset

Sample ids follow the shard order, so they change when a dataset is re-sharded; keys do not.
Give the old snapshot its keys from the old dataset's index, join it to the new index on
`key` and write the result into a new table:

```python
import polars as pl
from seta_stream.losses import LossTable
from seta_stream.shards import scan_index

old = (
    pl.scan_parquet("runs/old/losses/losses.parquet")
    .filter(pl.col("loss").is_not_null())
    .join(scan_index(old_dataset_path).select("sample_id", "key"), on="sample_id")
    .select("key", "loss")
)
moved = (
    scan_index(new_dataset_path).select("sample_id", "key").join(old, on="key").collect()
)
with LossTable("runs/new/losses", dataset=new_dataset) as table:
    table.update(moved["sample_id"].to_numpy(), moved["loss"].to_numpy())
```
"""

from __future__ import annotations

from seta_stream.losses.inputs import DatasetLike, SelectionLike
from seta_stream.losses.reader import ReadOnlyLossTable
from seta_stream.losses.table import HISTORY_FULL_MAX, LossTable, TableOptions

__all__ = [
    "HISTORY_FULL_MAX",
    "DatasetLike",
    "LossTable",
    "ReadOnlyLossTable",
    "SelectionLike",
    "TableOptions",
]
