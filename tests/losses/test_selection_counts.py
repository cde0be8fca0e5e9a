"""The optional selection counts: absent unless tracked, incremental, rebuilt when out of step."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from seta_stream.errors import LossTableError
from seta_stream.losses import LossTable
from seta_stream.policies import Selection

N = 50


def _sel(ids: list[int]) -> Selection:
    return Selection(ids=np.array(ids, np.int64), info={"phase": "prune", "epoch": 0})


def test_counts_only_when_tracked_and_incremental(tmp_path: Path) -> None:
    with LossTable(tmp_path / "t", num_samples=N) as table:
        with pytest.raises(LossTableError, match="not tracked"):
            table.selection_counts(0)
        assert not list((tmp_path / "t" / "live").glob("selections*"))  # nothing N-sized
        picks = [list(range(N)), list(range(0, N, 2)), list(range(0, N, 5))]
        for epoch, ids in enumerate(picks):
            table.set_epoch(epoch)
            if epoch == 1:  # tracking starts mid-run: epoch 0 is counted from its history
                table.track_selections()
            table.record_selection(epoch, _sel(ids))
            table.update(np.array(ids), np.ones(len(ids), np.float32), step=epoch * 10)
            table.end_epoch()
        want = np.zeros(N, np.uint32)
        for ids in picks:
            want[ids] += 1
        np.testing.assert_array_equal(table.selection_counts(3), want)
        np.testing.assert_array_equal(table.columns("selections")["selections"], want)
        # a run resumed into epoch 1 records epoch 1 again: counts of epochs < 1 only, then 1
        table.set_epoch(1)
        np.testing.assert_array_equal(table.selection_counts(1), np.ones(N, np.uint32))
        table.record_selection(1, _sel([3]))
        np.testing.assert_array_equal(table.selection_counts(2), np.eye(1, N, 3, np.uint32)[0] + 1)
        assert table.columns("step")["step"][0] == 20 and table.next_step == 21


def test_step_argument_is_checked(tmp_path: Path) -> None:
    with LossTable(tmp_path / "t", num_samples=N) as table:
        table.update(np.array([1, 2]), np.ones(2, np.float32))  # table counter: 0
        table.update(np.array([2, 3]), np.ones(2, np.float32), step=np.array([7, 5]))
        table.update(np.array([4]), np.ones(1, np.float32))  # continues after the largest: 8
        assert table.columns("step")["step"][:6].tolist() == [-1, 0, 7, 5, 8, -1]
        with pytest.raises(LossTableError, match="step=-1"):
            table.update(np.array([1]), np.ones(1, np.float32), step=-1)
        with pytest.raises(LossTableError, match="one int >= 0 per sample"):
            table.update(np.array([1, 2]), np.ones(2, np.float32), step=np.array([1]))
