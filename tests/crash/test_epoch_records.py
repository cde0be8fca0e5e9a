"""The two loss-table bugs the kill loop found, pinned in one process each (closing a table
where the killed process stopped leaves the same files as the kill)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from seta_stream.losses import LossTable
from seta_stream.policies import Selection
from seta_stream.resume import recorded_selection

N = 50


def _select(table: LossTable, epoch: int, ids: list[int]) -> None:
    table.set_epoch(epoch)
    table.record_selection(epoch, Selection(ids=np.array(ids, np.int64), info={"phase": "x"}))


def test_a_resume_stopped_before_recording_reads_the_epoch_from_history(tmp_path: Path) -> None:
    """A run in epoch 1 resumes a checkpoint of epoch 0: the table goes back to epoch 0 and is
    killed before epoch 0's selection is recorded again. Its live columns hold epoch 1's."""
    with LossTable(tmp_path / "t", num_samples=N) as table:
        _select(table, 0, [1, 2, 3])
        table.end_epoch()
        _select(table, 1, [4, 5])
        table.set_epoch(0)  # recorded_selection's first step; killed before the second
    with LossTable(tmp_path / "t") as table:
        ids, _ = recorded_selection(table, 0)
        assert ids.tolist() == [1, 2, 3]  # not [4, 5], the selection in the live columns


def test_an_ended_epoch_that_gets_updates_ends_again(tmp_path: Path) -> None:
    """Killed after end_epoch(0), resumed from a checkpoint inside epoch 0: the replayed rest
    of the epoch changes losses, and the history must hold them (the next selection does)."""
    ids = np.arange(10)
    with LossTable(tmp_path / "t", num_samples=N) as table:
        _select(table, 0, list(range(10)))
        table.update(ids, np.full(10, 1.0))
        table.end_epoch()
    with LossTable(tmp_path / "t") as table:
        table.end_epoch()  # nothing new: idempotent
        table.update(ids, np.full(10, 2.0))
        table.end_epoch()
        scores = table.scores()
    history = pl.read_parquet(tmp_path / "t" / "history" / "epoch=000000.parquet")
    np.testing.assert_array_equal(history.sort("sample_id")["loss"].to_numpy()[:10], scores[:10])
    assert (scores[:10] == 2.0).all()
