"""Live columns stored XOR their initial values: sparse at creation, lossless, and tables made
before (plain values, no `live_encoding`) keep working."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

from seta_stream.errors import LossTableError
from seta_stream.losses import LossTable
from seta_stream.losses import table as table_module
from seta_stream.losses.columns import COLUMN_SPECS, PLAIN, XOR_FILL, LiveColumns

N = 2_000
BIG = 100_000_000
NAMES = ["loss", "visits", "epoch", "group", "selected", "weight", "step"]


@pytest.fixture
def plain_tables(monkeypatch: pytest.MonkeyPatch) -> None:
    """New tables are made as before the encoding: plain values, no `live_encoding`."""
    monkeypatch.setattr(table_module, "NEW_TABLE_ENCODING", PLAIN)


def _allocated(root: Path) -> int:
    return sum(f.stat().st_blocks * 512 for f in (root / "live").iterdir())


def _bits(a: np.ndarray) -> np.ndarray:
    return a.view(f"u{a.dtype.itemsize}")


def _drive(root: Path, tiny_selection: Any) -> dict[str, np.ndarray]:
    """Epochs of updates and selections with awkward values; the columns at the end."""
    losses = np.array([0.0, -0.0, 1.3, 1e-38, 3.4e38, -2.5, 7.0], np.float32)
    with LossTable(root, num_samples=N, chunk_rows=512) as table:
        for epoch in range(3):
            table.set_epoch(epoch)
            ids = np.arange(epoch, N, 3 + epoch, dtype=np.int64)
            weights = np.resize(np.array([1.3, 0.0, 1.0, 2.5], np.float32), ids.size)
            groups = (np.arange(N) % 11 - 1).astype(np.int8)  # -1 … 9
            table.record_selection(epoch, tiny_selection(ids=ids, weights=weights, groups=groups))
            seen = ids[: ids.size // 2]
            table.update(seen, np.resize(losses, seen.size))
            table.update(seen[:5], losses[:5][::-1].copy())  # again: visits 2
            table.end_epoch()
        return table.columns()


def _snapshot(root: Path) -> dict[str, np.ndarray]:
    snap = pq.read_table(root / "losses.parquet")
    return {name: snap.column(name).to_numpy(zero_copy_only=False) for name in snap.column_names}


def test_a_new_table_of_100m_samples_allocates_nothing(tmp_path: Path) -> None:
    root = tmp_path / "t"
    table = LossTable(root, num_samples=BIG)
    try:
        assert _allocated(root) < 1 << 20  # 1.8 GB of live columns, sparse
        assert json.loads((root / "table.json").read_text())["live_encoding"] == XOR_FILL
        assert sorted(p.name for p in (root / "live").iterdir()) == sorted(
            spec.file_name(XOR_FILL) for spec in COLUMN_SPECS
        )
        table.update(np.array([0, BIG - 1]), np.array([1.5, 2.5], np.float32))
        table.flush()
        assert _allocated(root) < 1 << 20  # an update allocates the pages it touches only
    finally:
        table._finalizer()  # closed as at interpreter exit: no snapshot of 100M rows
        table._closed = True


def test_initial_values_are_all_zero_bits() -> None:
    keys = {spec.name: spec.key(XOR_FILL) for spec in COLUMN_SPECS}
    assert keys == {
        "loss": 0x7FC00000,  # NaN
        "visits": 0,
        "epoch": 0xFFFFFFFF,  # -1
        "group": 0xFF,  # -1
        "selected": 0,
        "weight": 0x3F800000,  # 1.0
        "step": 0xFFFFFFFFFFFFFFFF,  # -1
    }
    assert all(spec.key(PLAIN) == 0 for spec in COLUMN_SPECS)


@pytest.mark.parametrize("encoding", [PLAIN, XOR_FILL])
def test_every_bit_pattern_round_trips(tmp_path: Path, encoding: str) -> None:
    cols = LiveColumns(tmp_path, 8, create=True, encoding=encoding)
    try:
        nans = np.array(
            [0x7FC00000, 0x7FC00001, 0xFFC00000, 0x7F800001, 0x80000000, 0, 1, 2**32 - 1]
        )
        for name in ("loss", "weight"):
            cols.write(name, 0, nans.astype(np.uint32).view(np.float32))
            assert _bits(cols.read(name)).tolist() == nans.tolist()
            cols.stored[name][:] = cols.encode(name, nans.astype(np.uint32).view(np.float32))
            assert _bits(cols.read(name)).tolist() == nans.tolist()
        ints = np.array([-(2**31), -2, -1, 0, 1, 5, 2**31 - 1, 7], np.int32)
        cols.write("epoch", 0, ints)
        assert cols.read("epoch").tolist() == ints.tolist()
        cols.write("group", 0, np.arange(-128, 128, 32, dtype=np.int8))
        assert cols.read("group").tolist() == list(range(-128, 128, 32))
    finally:
        cols.close()


def test_both_encodings_hold_the_same_values(
    tmp_path: Path, tiny_selection, monkeypatch: pytest.MonkeyPatch
) -> None:
    xor = _drive(tmp_path / "xor", tiny_selection)
    monkeypatch.setattr(table_module, "NEW_TABLE_ENCODING", PLAIN)
    plain = _drive(tmp_path / "plain", tiny_selection)
    assert list(xor) == NAMES
    for name in NAMES:
        assert _bits(xor[name]).tolist() == _bits(plain[name]).tolist(), name
    assert np.signbit(xor["loss"]).any() and (xor["loss"] == 0).any()  # -0.0 kept
    assert set(xor["weight"].tolist()) == {0.0, 1.0, np.float32(1.3), 2.5}
    assert set(xor["group"].tolist()) == set(range(-1, 10))
    assert set(xor["epoch"].tolist()) == {-1, 0, 1, 2}
    for name, values in _snapshot(tmp_path / "xor").items():
        other = _snapshot(tmp_path / "plain")[name]
        np.testing.assert_array_equal(values, other, err_msg=name)
    monkeypatch.undo()
    for root in (tmp_path / "xor", tmp_path / "plain"):
        with LossTable(root, num_samples=N) as table:  # reopened by today's code
            again = table.columns()
            ro = LossTable.open_readonly(root).scores()
        for name in NAMES:
            assert _bits(again[name]).tolist() == _bits(xor[name]).tolist(), (root, name)
        assert _bits(ro).tolist() == _bits(xor["loss"]).tolist()


def test_an_old_table_opens_updates_and_snapshots(
    tmp_path: Path, plain_tables: None, tiny_selection
) -> None:
    root = tmp_path / "t"
    with LossTable(root, num_samples=N) as table:
        table.update(np.arange(10), np.full(10, 3.0, np.float32))
    meta = json.loads((root / "table.json").read_text())
    assert "live_encoding" not in meta
    assert (root / "live" / "loss.f32").exists()
    assert _allocated(root) >= 14 * N  # filled with NaN, -1, -1, 1.0 as before
    table_module.NEW_TABLE_ENCODING = XOR_FILL  # today's code (the fixture restores it)
    with LossTable(root, num_samples=N) as table:
        table.set_epoch(1)
        table.record_selection(1, tiny_selection(ids=np.array([3, 4]), weights=np.array([0.5, 2])))
        table.update(np.array([4, 11]), np.array([-0.0, 6.0], np.float32))
        table.end_epoch()
        cols = table.columns()
    assert "live_encoding" not in json.loads((root / "table.json").read_text())
    plain_loss = np.fromfile(root / "live" / "loss.f32", np.float32)  # stored as it is
    np.testing.assert_array_equal(_bits(plain_loss), _bits(cols["loss"]))
    assert cols["loss"][[9, 11]].tolist() == [3.0, 6.0] and np.isnan(cols["loss"][10])
    assert cols["loss"][4] == 0 and np.signbit(cols["loss"][4])
    assert cols["visits"][[0, 4, 10, 11]].tolist() == [1, 2, 0, 1]
    assert cols["epoch"][[0, 4, 10, 11]].tolist() == [0, 1, -1, 1]
    assert cols["weight"][[2, 3, 4]].tolist() == [1.0, 0.5, 2.0]
    assert np.flatnonzero(cols["selected"]).tolist() == [3, 4]
    snap = _snapshot(root)
    assert snap["loss"][4] == 0 and np.signbit(snap["loss"][4])
    assert snap["last_epoch"][[0, 11, 12]].tolist() == [0, 1, -1]
    assert snap["weight"][[2, 3]].tolist() == [1.0, 0.5]


def test_a_table_of_unknown_encoding_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "t"
    LossTable(root, num_samples=10).close()
    meta = json.loads((root / "table.json").read_text())
    (root / "table.json").write_text(json.dumps({**meta, "live_encoding": "zstd"}))
    with pytest.raises(LossTableError, match="encoding 'zstd' is not supported"):
        LossTable(root)


def test_columns_left_by_a_killed_creation_are_made_again(tmp_path: Path) -> None:
    """Killed after the columns, before table.json: the table is not there, and is made anew."""
    root = tmp_path / "t"
    cols = LiveColumns(root, 10, create=True, encoding=XOR_FILL)
    cols.stored["loss"][:] = 12345  # garbage a new table must not inherit
    cols.flush()
    cols.close()
    with pytest.raises(LossTableError, match="no loss table"):
        LossTable.open_readonly(root)
    with LossTable(root, num_samples=10) as table:
        assert np.isnan(table.scores()).all()
