"""The background writer: errors surface, a full queue pushes back, update() never applies."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from seta_stream.errors import LossTableError
from seta_stream.losses import LossTable

torch.set_num_threads(1)


class FailOn:
    """A debug hook that, once armed, fails every batch the writer thread applies."""

    def __init__(self) -> None:
        self.armed = False

    def __call__(self, point: str) -> None:
        if point == "apply:start" and self.armed:
            raise OSError("disk on fire")


def _wait_failed(table: LossTable) -> None:
    deadline = time.monotonic() + 5
    while not table.stats()["writer_failed"]:
        assert time.monotonic() < deadline, "the writer never applied the failing batch"
        time.sleep(0.005)


def _failing_table(path: Path) -> tuple[LossTable, FailOn]:
    hook = FailOn()
    table = LossTable(path, num_samples=10, debug_hook=hook)
    table.update(np.array([1]), np.array([1.0]))
    table.flush()
    hook.armed = True
    table.update(np.array([2]), np.array([2.0]))
    return table, hook


def test_writer_error_raised_by_next_update(tmp_path: Path) -> None:
    table, _ = _failing_table(tmp_path / "t")
    _wait_failed(table)
    with pytest.raises(LossTableError, match="writer thread failed") as info:
        table.update(np.array([3]), np.array([3.0]))
    assert isinstance(info.value.__cause__, OSError)
    with pytest.raises(LossTableError, match="disk on fire"):  # sticky: the table is broken
        table.flush()
    table.close()  # already reported: close releases everything without raising again
    with LossTable(tmp_path / "t") as again:  # lock released
        assert again.scores()[1] == 1.0


def test_writer_error_raised_by_flush(tmp_path: Path) -> None:
    table, _ = _failing_table(tmp_path / "t")
    with pytest.raises(LossTableError, match="disk on fire"):
        table.flush()
    table.close()


def test_writer_error_raised_by_close(tmp_path: Path) -> None:
    table, _ = _failing_table(tmp_path / "t")
    with pytest.raises(LossTableError, match="disk on fire"):
        table.close()
    assert "seta_stream-loss-writer" not in [t.name for t in threading.enumerate()]
    table.close()  # reported once; closing again is quiet


def test_full_queue_applies_back_pressure(tmp_path: Path) -> None:
    entered, release = threading.Event(), threading.Event()

    def hook(point: str) -> None:
        if point == "apply:start":
            entered.set()
            release.wait(10)

    with LossTable(tmp_path / "t", num_samples=100, max_pending=4, debug_hook=hook) as table:
        table.update(np.array([0]), np.array([0.0]))
        assert entered.wait(5)  # the writer holds batch 0
        for i in range(1, 5):  # fill the queue
            table.update(np.array([i]), np.array([float(i)]))
        blocked = threading.Thread(
            target=table.update, args=(np.array([5]), np.array([5.0])), name="test-producer"
        )
        blocked.start()
        time.sleep(0.2)
        assert blocked.is_alive(), "update() must block while the queue is full"
        stats = table.stats()
        assert stats["pending"] == 4 and stats["blocked_puts"] == 1
        release.set()
        blocked.join(5)
        assert not blocked.is_alive()
        assert table.scores()[:6].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]


def test_update_latency_with_a_slowed_writer(tmp_path: Path) -> None:
    """The writer sleeps 2 ms per batch; update() must not wait for it."""
    apply_s = 0.002

    def slow(point: str) -> None:
        if point == "apply:start":
            time.sleep(apply_s)

    rng = np.random.default_rng(0)
    n_calls = 200
    batches = [
        (torch.from_numpy(rng.integers(0, 100_000, 256)), torch.rand(256)) for _ in range(n_calls)
    ]
    with LossTable(tmp_path / "t", num_samples=100_000, max_pending=4096, debug_hook=slow) as table:
        latencies = []
        for ids, losses in batches:
            start = time.perf_counter()
            table.update(ids, losses)
            latencies.append(time.perf_counter() - start)
        behind = table.stats()["pending"]
        table.flush()
        assert table.stats()["samples_applied"] == 256 * n_calls
    median = float(np.median(latencies))
    assert behind > n_calls // 2, "the writer should still be far behind after the calls"
    assert median < apply_s / 4, f"median update() took {median * 1e6:.0f} µs"
