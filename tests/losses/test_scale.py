"""What keeps a table small at 100M-1B samples: no pages left mapped, chunked writes, no
snapshot written twice, copies of only the columns asked for."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest

from seta_stream.errors import LossTableError
from seta_stream.losses import LossTable

N = 50_000

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc smaps")


def _resident_kb(root: Path) -> dict[str, int]:
    """Resident KiB of this process's maps of the table's live columns, by file name."""
    found: dict[str, int] = {}
    current = None
    with open("/proc/self/smaps") as f:
        for line in f:
            fields = line.split()
            if re.fullmatch(r"[0-9a-f]+-[0-9a-f]+", fields[0]):  # a mapping's first line
                path = fields[5] if len(fields) > 5 else ""
                current = path if path.startswith(str(root)) else None
            elif current is not None and fields[0] == "Rss:":
                name = Path(current).name
                found[name] = found.get(name, 0) + int(fields[1])
    return found


@linux_only
def test_bulk_work_leaves_no_live_pages_resident(tmp_path: Path, seta_selection) -> None:
    root = tmp_path / "t"
    with LossTable(root, num_samples=N, chunk_rows=4096) as table:
        table.update(np.arange(N), np.ones(N, np.float32))
        table.flush()
        assert table.scores()[-1] == 1.0
        resident = _resident_kb(root)
        assert len(resident) == 7 and sum(resident.values()) == 0, resident
        table.record_selection(0, seta_selection(N, 0))  # written past the maps
        table.end_epoch()  # read past the maps
        assert sum(_resident_kb(root).values()) == 0
        table.update(np.arange(N), np.full(N, 2.0, np.float32))
        table.columns("loss")  # the writer has applied it: the update's pages are mapped
        assert _resident_kb(root)["loss.f32.xor"] > 0
        assert (table.scores() == 2.0).all()
        assert sum(_resident_kb(root).values()) == 0


def test_record_selection_across_chunks(tmp_path: Path, tiny_selection) -> None:
    ids = np.array([0, 4095, 4096, 9000, N - 1], np.int64)
    weights = np.array([1.5, 2.0, 2.5, 3.0, 3.5], np.float32)
    groups = (np.arange(N) % 5).astype(np.int8)
    with LossTable(tmp_path / "t", num_samples=N, chunk_rows=4096) as table:
        table.record_selection(0, tiny_selection(ids=ids, weights=weights, groups=groups))
        cols = table.columns("selected", "weight", "group")
    assert list(cols) == ["selected", "weight", "group"]
    assert np.flatnonzero(cols["selected"]).tolist() == ids.tolist()
    expected = np.ones(N, np.float32)
    expected[ids] = weights
    np.testing.assert_array_equal(cols["weight"], expected)
    np.testing.assert_array_equal(cols["group"], groups)


def test_columns_refuses_unknown_names(tmp_path: Path) -> None:
    with LossTable(tmp_path / "t", num_samples=10) as table:
        with pytest.raises(LossTableError, match=r"no live columns \['nope'\]"):
            table.columns("loss", "nope")
        assert list(table.columns()) == [
                "loss", "visits", "epoch", "group", "selected", "weight", "step"
            ]  # fmt: skip


def test_close_does_not_rewrite_a_current_snapshot(tmp_path: Path) -> None:
    snapshot = tmp_path / "t" / "losses.parquet"
    with LossTable(tmp_path / "t", num_samples=10) as table:
        table.update(np.array([1]), np.array([1.0]))
        table.end_epoch()
        written = snapshot.stat().st_ino  # each write replaces the file: a new inode
    assert snapshot.stat().st_ino == written
    with LossTable(tmp_path / "t") as table:
        table.snapshot()
        table.update(np.array([2]), np.array([2.0]))  # newer than the snapshot
        written = snapshot.stat().st_ino
    assert snapshot.stat().st_ino != written
    assert LossTable.open_readonly(tmp_path / "t").scores()[2] == 2.0
    with LossTable(tmp_path / "t") as table:
        table.snapshot()
        table.set_epoch(1)  # the snapshot names its epoch: this one is stale
    assert LossTable.open_readonly(tmp_path / "t").snapshot_epoch() == 1
