"""`LossTable`: the writing side of a loss table (one process per table; see the package doc)."""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from seta_stream.errors import LossTableError, NonFiniteLossError
from seta_stream.losses import layout
from seta_stream.losses.columns import PLAIN, XOR_FILL, LiveColumns
from seta_stream.losses.history import EpochRecord, Hook, WriteContext, write_epoch
from seta_stream.losses.history import write_snapshot as _write_snapshot
from seta_stream.losses.inputs import (
    DatasetLike,
    NonFinite,
    SelectionLike,
    all_finite,
    as_ids,
    as_losses,
    check_range,
    check_selection,
    check_shapes,
    first_nonfinite,
)
from seta_stream.losses.mirror import TableMirror, local_folder
from seta_stream.losses.options import HISTORY_FULL_MAX, TableOptions
from seta_stream.losses.reader import ReadOnlyLossTable, check_dataset, resolve_num_samples
from seta_stream.losses.schema import check_files, check_keys_file, file_metadata, read_checked
from seta_stream.losses.writer import Batch, LossWriter

NEW_TABLE_ENCODING = XOR_FILL  # of the live columns of tables created now (tests: PLAIN too)


class LossTable:
    """Per-sample losses of one dataset, updated asynchronously, snapshotted to Parquet.

    `update()` only validates, copies and queues; the `seta_stream-loss-writer` thread applies.
    Control methods (`flush`, `scores`, `record_selection`, `end_epoch`, `snapshot`) wait for
    everything queued before them. Use as a context manager, or call `close()`; a table left
    open is drained and unlocked at interpreter exit, without a final snapshot.

    Duplicate ids within one `update()` batch: the last loss wins, and the batch counts one
    visit for that sample.

    Args:
        path: the table directory (created if missing; `file://` URLs are accepted), or an
            fsspec URL (`s3://…`): the live table then stays in `local_dir` and its snapshots
            and history are uploaded atomically (see `seta_stream.losses.mirror`).
        num_samples: N; needed to create a table without a dataset, checked when reopening.
        dataset: the dataset (`DatasetLike`); its fingerprint is stored, and a table of another
            dataset is refused. Keys are not stored: join on `sample_id` with the dataset's
            index (`scan_index`).
        nonfinite: "raise" (default) refuses a batch with a NaN/inf loss; "skip" drops those
            losses and counts them in `stats()["nonfinite_skipped"]`.
        max_pending: batches queued before `update()` blocks (back-pressure).
        history_full_max: above this N (default 100M), epoch history keeps only the selected
            rows (see `HISTORY_FULL_MAX`).
        chunk_rows: rows per chunk when writing Parquet (bounds memory at large N).
        debug_hook: for tests; called on the writer thread with a point name ("apply:start",
            "apply:mid", "apply:end", "snapshot:partial", "snapshot:written",
            "history:partial", "history:written") so a test can slow, pause or fail it there.
        storage_options: fsspec options (credentials, endpoint) for a URL `path`.
        local_dir: the local folder of a URL table (default `layout.mirror_dir(path)`).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        num_samples: int | None = None,
        dataset: DatasetLike | None = None,
        nonfinite: NonFinite = "raise",
        max_pending: int = 1024,
        history_full_max: int = HISTORY_FULL_MAX,
        chunk_rows: int = 1 << 20,
        debug_hook: Hook | None = None,
        storage_options: Mapping[str, Any] | None = None,
        local_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        self.options = TableOptions(
            nonfinite=nonfinite,
            max_pending=max_pending,
            history_full_max=history_full_max,
            chunk_rows=chunk_rows,
        )
        self.mirror: TableMirror | None = None
        if layout.is_url(path):
            self.mirror = TableMirror(os.fspath(path), storage_options)
            self.root = local_folder(os.fspath(path), local_dir)
        else:
            self.root = layout.local_root(path)
        self.root.mkdir(parents=True, exist_ok=True)
        self._hook = debug_hook  # tests: called on the writer thread at named points
        self._lock = layout.WriterLock(self.root)
        try:
            if self.mirror is not None and not (self.root / layout.META_NAME).exists():
                self.mirror.pull(self.root)  # a new machine: start from the uploaded table
            self._cols = self._open(num_samples, dataset)
            if self.mirror is not None:
                self.mirror.push_all(self.root)
        except BaseException:
            self._lock.release()
            raise
        self._meta_lock = threading.Lock()
        self._closed = False
        self._counts = {"updates": 0, "samples_queued": 0, "nonfinite_skipped": 0, "flushes": 0}
        self._updated_since_end = False  # an ended epoch that gets updates must end again
        self._changes = 0  # updates and selections given; a snapshot notes the count it holds
        self._snapshot_mark: tuple[int, int] | None = None  # (epoch, changes) of the last one
        self._next_step = int(self._meta.get("next_step", 0))  # update()'s default step
        self._writer = LossWriter(self._apply, max_pending=max_pending)
        self._finalizer = weakref.finalize(self, _finalize, self._writer, self._cols, self._lock)

    @classmethod
    def open_readonly(
        cls,
        path: str | os.PathLike[str],
        *,
        dataset: DatasetLike | None = None,
        storage_options: Mapping[str, Any] | None = None,
    ) -> ReadOnlyLossTable:
        """Open for reading snapshots only (other DDP ranks): no lock, no writer thread."""
        return ReadOnlyLossTable(path, dataset=dataset, storage_options=storage_options)

    # -- opening -----------------------------------------------------------------------------
    def _open(self, num_samples: int | None, dataset: DatasetLike | None) -> LiveColumns:
        root = self.root
        layout.remove_stale_temps(root)
        if (root / layout.META_NAME).exists():
            self._meta = layout.read_meta(root)
            resolve_num_samples(root, self._meta["num_samples"], num_samples, dataset)
            check_dataset(root, self._meta, dataset)
            encoding = self._meta.get("live_encoding", PLAIN)  # absent: made before XOR_FILL
            cols = LiveColumns(root, self._meta["num_samples"], create=False, encoding=encoding)
            if self._meta.get("has_keys"):  # made before keys were dropped: still writes them
                check_keys_file(root / layout.KEYS_NAME, self._meta["num_samples"])
            if dataset is not None and self._meta.get("fingerprint") is None:
                self._adopt(dataset)  # a table made without a dataset meets its dataset
            return cols
        n = resolve_num_samples(root, None, num_samples, dataset)
        encoding = NEW_TABLE_ENCODING
        cols = LiveColumns(root, n, create=True, encoding=encoding)
        self._meta = layout.new_meta(
            n, **({} if encoding == PLAIN else {"live_encoding": encoding})
        )
        if dataset is not None:
            self._adopt(dataset)
        layout.write_meta(root, self._meta)  # last: a table without table.json is unfinished
        return cols

    def _adopt(self, dataset: DatasetLike) -> None:
        self._meta["fingerprint"] = str(dataset.fingerprint)
        if (self.root / layout.META_NAME).exists():
            layout.write_meta(self.root, self._meta)

    def _push(self, *names: str) -> None:
        """Upload `names` and `table.json` to the table's URL (nothing for a local table)."""
        if self.mirror is not None:
            self.mirror.push(self.root, names)

    def _context(self) -> WriteContext:
        return WriteContext(
            root=self.root,
            chunk_rows=self.options.chunk_rows,
            has_keys=bool(self._meta.get("has_keys")),
            num_samples=self._meta["num_samples"],
            fingerprint=self._meta.get("fingerprint"),
            hook=self._hook,
        )

    # -- properties --------------------------------------------------------------------------
    @property
    def num_samples(self) -> int:
        return int(self._meta["num_samples"])

    @property
    def fingerprint(self) -> str | None:
        return self._meta.get("fingerprint")

    @property
    def epoch(self) -> int:
        return int(self._meta["epoch"])

    # -- the hot path ------------------------------------------------------------------------
    def update(self, ids: Any, losses: Any, *, step: Any = None) -> None:
        """Queue per-sample losses (numpy or torch, any device/float dtype); returns at once.

        `step`: when the losses were computed (an int >= 0 for the batch, or one per sample);
        default: the table's own counter of `update()` calls, which continues after the last
        step given (kept in `table.json` at each epoch boundary). Recorded in the `step` column.
        Blocks only while `max_pending` batches are already queued (back-pressure).
        """
        self._writer.check()
        ids_np, loss_np = as_ids(ids), as_losses(losses)
        check_shapes(ids_np, loss_np)
        if not ids_np.size:
            return
        check_range(ids_np, self.num_samples)
        steps: Any = self._step_of(step, ids_np.size)
        if not all_finite(loss_np):
            keep = np.isfinite(loss_np)
            ids_np, loss_np = self._drop_nonfinite(ids_np, loss_np)
            if isinstance(steps, np.ndarray):
                steps = steps[keep]
        self._writer.put(Batch(ids_np, loss_np, self._meta["epoch"], steps))
        self._updated_since_end = True
        self._changes += 1
        self._counts["updates"] += 1
        self._counts["samples_queued"] += ids_np.size

    def _step_of(self, step: Any, size: int) -> int | np.ndarray[Any, np.dtype[np.int64]]:
        """The step(s) of one update; advances the table's counter past them."""
        if step is None:
            value = self._next_step
        elif isinstance(step, (int, np.integer)) and not isinstance(step, bool) and step >= 0:
            value = int(step)
        else:
            arr = np.asarray(step)
            if arr.shape != (size,) or arr.dtype.kind not in "iu" or (size and arr.min() < 0):
                raise LossTableError(
                    f"step={step!r}: give an int >= 0, or one int >= 0 per sample ({size})"
                )
            arr = arr.astype(np.int64)  # a private copy: the caller may reuse its buffer
            self._next_step = max(self._next_step, int(arr.max()) + 1)
            return arr
        self._next_step = max(self._next_step, value + 1)
        return value

    @property
    def next_step(self) -> int:
        """The step an `update()` without `step` records next."""
        return self._next_step

    def _drop_nonfinite(self, ids: np.ndarray, losses: np.ndarray) -> tuple[Any, Any]:
        if self.options.nonfinite == "raise":
            raise NonFiniteLossError(
                f"non-finite {first_nonfinite(ids, losses)}; nothing of this batch was queued. "
                "Pass nonfinite='skip' to LossTable to drop such losses (counted in stats())."
            )
        keep = np.isfinite(losses)
        with self._meta_lock:
            self._counts["nonfinite_skipped"] += int(keep.size - keep.sum())
        return ids[keep], losses[keep]

    def _apply(self, batch: Batch) -> None:
        """Writer thread: apply one batch, as stored bits; each element independently."""
        cols, hook, ids = self._cols, self._hook, batch.ids
        loss, stored = cols.encode("loss", batch.losses), cols.stored
        if hook is not None:
            hook("apply:start")
        stored["loss"][ids] = loss
        if hook is not None:
            hook("apply:mid")
        visits = stored["visits"][ids]
        visits += 1
        stored["visits"][ids] = visits
        stored["epoch"][ids] = cols.encode("epoch", batch.epoch)
        step = cols.encode("step", batch.step)
        stored["step"][ids] = step
        if not np.array_equal(stored["loss"][ids], loss) or (
            step.ndim and not np.array_equal(stored["step"][ids], step)
        ):
            # Duplicate ids with different losses (or steps): make the last occurrence win,
            # whatever order numpy's fancy assignment used.
            _, first_in_reversed = np.unique(ids[::-1], return_index=True)
            last = ids.size - 1 - first_in_reversed
            stored["loss"][ids[last]] = loss[last]
            if step.ndim:
                stored["step"][ids[last]] = step[last]
        if hook is not None:
            hook("apply:end")

    # -- control -----------------------------------------------------------------------------
    def flush(self) -> None:
        """Wait until every queued update is applied and msync'ed (survives an OS crash).

        Also hands the live columns' pages back to the page cache, so this process's resident
        set does not keep up to 20 bytes a sample of them.
        """
        self._writer.call(self._cols.release)
        self._counts["flushes"] += 1

    def scores(self) -> np.ndarray[Any, np.dtype[np.float32]]:
        """A float32 copy of the losses (NaN: never seen), taken after a flush: 4 bytes a
        sample, the only N-sized array it makes."""

        def copy() -> np.ndarray[Any, np.dtype[np.float32]]:
            self._cols.release()
            return self._cols.read("loss")

        return self._writer.call(copy)

    def columns(self, *names: str) -> dict[str, np.ndarray[Any, Any]]:
        """Copies of the live columns `names` (default all: loss, visits, epoch, group,
        selected, weight, step; and selections when tracked)."""
        have = self._cols.names
        wanted = names or have
        unknown = set(wanted) - set(have)
        if unknown:
            raise LossTableError(f"no live columns {sorted(unknown)}; have {list(have)}")
        return self._writer.call(lambda: {name: self._cols.read(name) for name in wanted})

    # -- selection counts (only for policies that ask) ---------------------------------------
    def track_selections(self) -> None:
        """Keep the optional `selections` column (uint32, 4 bytes a sample): per sample, how
        many recorded selections held it. Made on first call (from the history files when
        epochs were recorded before); after that `record_selection` adds to it."""
        self._check_open()
        if self._writer.call(lambda: self._cols.add_optional("selections")):
            self._set_meta(selections_through=None)

    def selection_counts(self, epoch: int) -> np.ndarray[Any, np.dtype[np.uint32]]:
        """Per sample, in how many epochs before `epoch` its recorded selection held it (a
        copy). Kept incrementally by `record_selection`; rebuilt from the history files only
        when the count does not stand at `epoch - 1` (a run resumed into an older epoch, a
        crash while counting, or tracking started mid-run)."""
        if "selections" not in self._cols.names:
            raise LossTableError("selection counts are not tracked: call track_selections()")
        self._count_before(epoch)
        return self._writer.call(lambda: self._cols.read("selections"))

    def _count_before(self, epoch: int) -> None:
        """Make the `selections` column count exactly the recorded epochs before `epoch`."""
        if self._meta.get("selections_through") == epoch - 1:
            return
        counts = np.zeros(self.num_samples, np.uint32)
        for name in sorted(p.name for p in (self.root / layout.HISTORY_DIR).glob("*.parquet")):
            path = self.root / layout.HISTORY_DIR / name
            meta = file_metadata(path, "history")
            if meta.get("info") is None or int(meta["epoch"]) >= epoch:
                continue  # no recorded selection, or not before `epoch`
            part = read_checked(path, "history", ["sample_id", "selected"])
            ids = part.column("sample_id").to_numpy()
            counts[ids[part.column("selected").to_numpy(zero_copy_only=False)]] += 1
        self._writer.call(lambda: self._cols.write("selections", 0, counts))
        self._set_meta(selections_through=epoch - 1)

    def _set_meta(self, **fields: Any) -> None:
        with self._meta_lock:
            self._meta.update(fields)
            layout.write_meta(self.root, self._meta)

    def set_epoch(self, epoch: int) -> None:
        """Set the current epoch: the `epoch` recorded by later `update()` calls."""
        if not isinstance(epoch, int | np.integer) or epoch < 0:
            raise LossTableError(f"epoch={epoch!r}; must be an int >= 0")
        self._check_open()
        with self._meta_lock:
            if int(epoch) != self._meta["epoch"]:
                # The live group/selected/weight columns hold another epoch's selection now. An
                # entry of `epoch` left by an earlier pass (a run resumed into an older epoch, or
                # killed before record_selection) would claim them: it goes until
                # record_selection(epoch), so a resume reads that selection from its history.
                self._meta["epochs"].pop(str(int(epoch)), None)
            self._meta["epoch"] = int(epoch)
            self._meta["max_epoch"] = max(int(epoch), self._meta.get("max_epoch", 0))
            self._meta["next_step"] = self._next_step
            layout.write_meta(self.root, self._meta)
        self._push()

    def record_selection(self, epoch: int, selection: SelectionLike) -> None:
        """Store the epoch's group/selected/weight columns and remember `selection.info`."""
        if epoch != self.epoch:
            raise LossTableError(
                f"record_selection(epoch={epoch}) but the table's epoch is {self.epoch}; "
                f"call set_epoch({epoch}) first"
            )
        ids, weights, groups, info = check_selection(selection, self.num_samples)

        chunk = self.options.chunk_rows
        self._changes += 1
        counting = "selections" in self._cols.names
        if counting:
            self._count_before(epoch)
            self._set_meta(selections_through=None)  # a crash while counting: rebuilt later
        self._writer.call(
            lambda: self._cols.store_selection(ids, weights, groups, chunk_rows=chunk)
        )
        with self._meta_lock:
            self._meta["epochs"][str(epoch)] = {"info": info, "ended": False}
            if counting:
                self._meta["selections_through"] = epoch
            self._meta["next_step"] = self._next_step
            layout.write_meta(self.root, self._meta)
        if self.mirror is not None:  # the snapshot carries the selection, for a resume elsewhere
            self.snapshot()

    def end_epoch(self) -> None:
        """Write the current epoch's history and summary, then a snapshot.

        Idempotent per epoch while no update comes in: an epoch that had ended and got updates
        since (a run resumed from a checkpoint taken before its end) is written again, so its
        history holds the losses the next epoch's selection is made from.
        """
        epoch = self.epoch
        entry = self._meta["epochs"].get(str(epoch), {"info": None})
        if entry.get("ended") and not self._updated_since_end:
            return
        record = EpochRecord(
            epoch=epoch,
            info=entry["info"],
            compact=self.num_samples > self.options.history_full_max,
        )
        ctx = self._context()

        def write() -> None:
            self._cols.release()
            write_epoch(self._cols, ctx, record)
            _write_snapshot(self._cols, ctx, epoch=epoch)

        self._updated_since_end = False  # the write below includes every update queued so far
        mark = (epoch, self._changes)
        self._writer.call(write)
        self._snapshot_mark = mark
        with self._meta_lock:
            self._meta["epochs"][str(epoch)] = {**entry, "ended": True}
            self._meta["next_step"] = self._next_step
            layout.write_meta(self.root, self._meta)
        name = layout.epoch_file_name(epoch)
        dirs = (layout.HISTORY_DIR, layout.SUMMARY_DIR, layout.HISTOGRAM_DIR)
        self._push(*(f"{d}/{name}" for d in dirs), layout.SNAPSHOT_NAME)

    def snapshot(self) -> Path:
        """Write `losses.parquet` atomically (after applying everything queued); return its path."""
        ctx, mark = self._context(), (self.epoch, self._changes)
        path = self._writer.call(lambda: _write_snapshot(self._cols, ctx, epoch=mark[0]))
        self._snapshot_mark = mark
        self._push(layout.SNAPSHOT_NAME)
        return path

    def sync(self) -> None:
        """Write a snapshot and upload it (URL tables), so another machine resumes from here."""
        self.snapshot()

    def verify(self) -> None:
        """Check the live columns' values and every Parquet file's version; raise on a problem."""
        n, chunk = self.num_samples, self.options.chunk_rows
        max_epoch = max(self.epoch, self._meta.get("max_epoch", 0))
        found = self._writer.call(
            lambda: self._cols.problems(max_epoch=max_epoch, chunk_rows=chunk)
        )
        found += check_files(self.root, n)
        if found:
            raise LossTableError(f"loss table {self.root} failed verification: " + "; ".join(found))

    def stats(self) -> dict[str, Any]:
        w = self._writer
        return {
            **self._counts,
            "num_samples": self.num_samples,
            "epoch": self.epoch,
            "pending": w.pending,
            "batches_applied": w.batches_applied,
            "samples_applied": w.samples_applied,
            "blocked_puts": w.blocked_puts,
            "writer_failed": w.failed,
        }

    # -- lifetime ----------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise LossTableError(f"loss table {self.root} is closed")

    def close(self) -> None:
        """Flush, write a final snapshot, stop the writer thread and release the lock.

        The snapshot is skipped when the last one (of this process) holds every update and
        selection given since. Idempotent. Raises the writer's failure if no earlier call has
        raised it.
        """
        if self._closed:
            return
        self._closed = True
        try:
            current = self._snapshot_mark == (self.epoch, self._changes)
            if not self._writer.failed and not current:
                self._writer.call(self._final_snapshot)
                self._push(layout.SNAPSHOT_NAME)
        finally:
            self._finalizer.detach()
            _finalize(self._writer, self._cols, self._lock)

    def _final_snapshot(self) -> None:
        self._cols.release()
        _write_snapshot(self._cols, self._context(), epoch=self.epoch)

    def __enter__(self) -> LossTable:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"LossTable({str(self.root)!r}, num_samples={self.num_samples}, epoch={self.epoch})"


def _finalize(writer: LossWriter, cols: LiveColumns, lock: layout.WriterLock) -> None:
    """Stop the writer (draining its queue), msync, unmap, unlock; also run at interpreter exit."""
    try:
        writer.close()
    finally:
        try:
            cols.flush()
            cols.close()
        finally:
            lock.release()
