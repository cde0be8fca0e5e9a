"""LossTable behaviour: updates, epochs, selections, reopening, closing."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from seta_stream.errors import LossTableError
from seta_stream.losses import LossTable

torch.set_num_threads(1)


def test_update_then_scores_round_trip(tmp_path: Path) -> None:
    with LossTable(tmp_path / "t", num_samples=100) as table:
        assert np.isnan(table.scores()).all()
        table.update(np.array([3, 7, 99]), np.array([0.5, 1.25, 9.0], np.float32))
        scores = table.scores()
    assert scores.dtype == np.float32
    assert scores[[3, 7, 99]].tolist() == [0.5, 1.25, 9.0]
    assert np.isnan(np.delete(scores, [3, 7, 99])).all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_torch_inputs_of_any_float_dtype(tmp_path: Path, dtype: torch.dtype) -> None:
    losses = torch.tensor([0.5, 2.0, 3.0], dtype=dtype, requires_grad=True) * 1
    with LossTable(tmp_path / "t", num_samples=10) as table:
        table.update(torch.tensor([1, 2, 3], dtype=torch.int32), losses)
        assert table.scores()[1:4].tolist() == [0.5, 2.0, 3.0]


def test_update_copies_its_inputs(tmp_path: Path) -> None:
    ids, losses = torch.tensor([1, 2]), torch.tensor([1.0, 2.0])
    with LossTable(tmp_path / "t", num_samples=10) as table:
        table.update(ids, losses)
        ids[:] = 5  # a training loop reusing its buffers must not change what was queued
        losses[:] = 9.0
        table.update([], [])  # an empty batch is a no-op
        assert table.scores()[[1, 2, 5]].tolist()[:2] == [1.0, 2.0]
        assert np.isnan(table.scores()[5])


def test_visits_and_epoch_last_seen(tmp_path: Path) -> None:
    with LossTable(tmp_path / "t", num_samples=10) as table:
        table.update(np.array([1, 2]), np.array([1.0, 1.0]))
        table.set_epoch(4)
        table.update(np.array([2, 3]), np.array([2.0, 2.0]))
        cols = table.columns()
    assert cols["visits"][:5].tolist() == [0, 1, 2, 1, 0]
    assert cols["epoch"][:5].tolist() == [-1, 0, 4, 4, -1]


def test_duplicates_in_one_batch_last_wins_one_visit(tmp_path: Path) -> None:
    with LossTable(tmp_path / "t", num_samples=10) as table:
        table.update(np.array([5, 1, 5, 5, 1]), np.array([1.0, 2.0, 3.0, 4.0, 5.0]))
        cols = table.columns()
    assert cols["loss"][5] == 4.0 and cols["loss"][1] == 5.0
    assert cols["visits"][5] == 1 and cols["visits"][1] == 1


def test_duplicates_last_wins_in_large_batches(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 50, 20_000)  # every id repeated ~400 times
    losses = rng.random(20_000).astype(np.float32)
    expected = np.full(50, np.nan, np.float32)
    for i, loss in zip(ids, losses, strict=True):
        expected[i] = loss
    with LossTable(tmp_path / "t", num_samples=50) as table:
        table.update(ids, losses)
        cols = table.columns()
    np.testing.assert_array_equal(cols["loss"], expected)
    assert (cols["visits"] == 1).all()


def test_epoch_is_taken_when_update_is_called(tmp_path: Path) -> None:
    gate = threading.Event()

    def hook(point: str) -> None:
        if point == "apply:start":
            gate.wait(5)

    with LossTable(tmp_path / "t", num_samples=10, debug_hook=hook) as table:
        table.set_epoch(1)
        table.update(np.array([0]), np.array([1.0]))
        table.set_epoch(2)  # before the writer applied the batch
        gate.set()
        assert table.columns()["epoch"][0] == 1


def test_reopen_keeps_losses_and_epoch(tmp_path: Path) -> None:
    with LossTable(tmp_path / "t", num_samples=50) as table:
        table.set_epoch(3)
        table.update(np.arange(10), np.arange(10, dtype=np.float32))
    with LossTable(tmp_path / "t") as table:  # num_samples is read from the table
        assert table.num_samples == 50 and table.epoch == 3
        assert table.scores()[:10].tolist() == list(range(10))
    with pytest.raises(LossTableError, match="sample counts disagree"):
        LossTable(tmp_path / "t", num_samples=51)


def test_record_selection_stores_columns(tmp_path: Path, tiny_selection: type) -> None:
    groups = np.array([0, 0, 1, 1, -1, -1], np.int8)
    selection = tiny_selection(
        ids=np.array([1, 2]), weights=np.array([2.0, 0.5], np.float32), groups=groups,
        info={"phase": "prune", "kept_fraction": 2 / 6},
    )  # fmt: skip
    with LossTable(tmp_path / "t", num_samples=6) as table:
        with pytest.raises(LossTableError, match=r"call set_epoch\(1\) first"):
            table.record_selection(1, selection)
        table.record_selection(0, selection)
        cols = table.columns()
        assert cols["selected"].tolist() == [False, True, True, False, False, False]
        assert cols["weight"].tolist() == [1.0, 2.0, 0.5, 1.0, 1.0, 1.0]
        assert cols["group"].tolist() == groups.tolist()
        table.set_epoch(1)
        table.record_selection(1, tiny_selection(ids=np.array([4]), info={"phase": "full"}))
        cols = table.columns()
    assert cols["selected"].tolist() == [False, False, False, False, True, False]
    assert (cols["group"] == -1).all() and (cols["weight"] == 1.0).all()


def test_end_epoch_is_idempotent(tmp_path: Path, seta_selection) -> None:
    with LossTable(tmp_path / "t", num_samples=40) as table:
        table.record_selection(0, seta_selection(40, 0))
        table.update(np.arange(40), np.ones(40, np.float32))
        table.end_epoch()
        history = tmp_path / "t" / "history" / "epoch=000000.parquet"
        first = history.stat().st_ino
        table.end_epoch()
        assert history.stat().st_ino == first  # not rewritten
        assert (tmp_path / "t" / "losses.parquet").exists()


def test_close_is_idempotent_and_final(tmp_path: Path) -> None:
    table = LossTable(tmp_path / "t", num_samples=5)
    table.update(np.array([1]), np.array([1.0]))
    table.close()
    table.close()
    assert (tmp_path / "t" / "losses.parquet").exists()
    with pytest.raises(LossTableError, match="closed"):
        table.update(np.array([1]), np.array([1.0]))
    with pytest.raises(LossTableError, match="closed"):
        table.set_epoch(1)


def test_writer_thread_is_named_and_joined(tmp_path: Path) -> None:
    table = LossTable(tmp_path / "t", num_samples=5)
    names = [t.name for t in threading.enumerate()]
    assert names.count("seta_stream-loss-writer") == 1
    table.close()
    assert "seta_stream-loss-writer" not in [t.name for t in threading.enumerate()]


def test_file_url_is_a_local_table(tmp_path: Path) -> None:
    # object-store URLs are tests/remote's business (a real S3 server)
    with LossTable(f"file://{tmp_path}/t", num_samples=5) as table:
        assert table.root == tmp_path / "t"


def test_options_are_validated(tmp_path: Path) -> None:
    with pytest.raises(LossTableError, match=r"nonfinite='ignore'; allowed: 'raise' or 'skip'"):
        LossTable(tmp_path / "t", num_samples=5, nonfinite="ignore")  # type: ignore[arg-type]
    with pytest.raises(LossTableError, match="max_pending=0"):
        LossTable(tmp_path / "t", num_samples=5, max_pending=0)
    with pytest.raises(LossTableError, match="num_samples=0"):
        LossTable(tmp_path / "u", num_samples=0)
    with pytest.raises(LossTableError, match="pass num_samples=N or dataset="):
        LossTable(tmp_path / "v")


def test_a_table_never_closed_is_drained_at_exit(tmp_path: Path) -> None:
    code = (
        "import numpy as np; from seta_stream.losses import LossTable; "
        f"t = LossTable({str(tmp_path / 't')!r}, num_samples=10); "
        "t.update(np.array([4]), np.array([2.5]))"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    with LossTable(tmp_path / "t") as table:
        assert table.scores()[4] == 2.5
