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


# Waits are hang guards only: long enough for a loaded 2-core machine; no test asserts a time.
HANG_S = 60


def _wait_failed(table: LossTable) -> None:
    deadline = time.monotonic() + HANG_S
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
            release.wait(HANG_S)

    with LossTable(tmp_path / "t", num_samples=100, max_pending=4, debug_hook=hook) as table:
        table.update(np.array([0]), np.array([0.0]))
        assert entered.wait(HANG_S)  # the writer holds batch 0
        for i in range(1, 5):  # fill the queue
            table.update(np.array([i]), np.array([float(i)]))
        blocked = threading.Thread(
            target=table.update, args=(np.array([5]), np.array([5.0])), name="test-producer"
        )
        blocked.start()
        deadline = time.monotonic() + HANG_S
        while table.stats()["blocked_puts"] == 0:  # the producer reached the full queue
            assert time.monotonic() < deadline and blocked.is_alive(), "update() did not block"
            time.sleep(0.005)
        assert blocked.is_alive(), "update() must block while the queue is full"
        stats = table.stats()
        assert stats["pending"] == 4 and stats["blocked_puts"] == 1
        release.set()
        blocked.join(HANG_S)
        assert not blocked.is_alive()
        assert table.scores()[:6].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]


def test_update_never_waits_for_the_writer(tmp_path: Path) -> None:
    """update() only queues: with the writer held inside its first batch, 200 more calls all
    return, every batch is applied on the writer thread, and all of them once released.
    (A property, not a time: update()'s latency is measured by benchmarks/bench_losses.py.)"""
    entered, release = threading.Event(), threading.Event()
    appliers: list[str] = []

    def hold(point: str) -> None:
        if point == "apply:start":
            appliers.append(threading.current_thread().name)
            entered.set()
            release.wait(HANG_S)

    rng = np.random.default_rng(0)
    n_calls = 200
    batches = [
        (torch.from_numpy(rng.integers(0, 100_000, 256)), torch.rand(256)) for _ in range(n_calls)
    ]
    with LossTable(tmp_path / "t", num_samples=100_000, max_pending=4096, debug_hook=hold) as table:
        table.update(*batches[0])
        assert entered.wait(HANG_S)  # the writer holds batch 0 until released
        producer = threading.Thread(
            target=lambda: [table.update(ids, losses) for ids, losses in batches[1:]],
            name="test-producer",
        )
        producer.start()
        producer.join(HANG_S)
        returned, stats = not producer.is_alive(), table.stats()
        release.set()
        producer.join(HANG_S)
        assert returned, "update() waited for the writer"
        assert stats["pending"] == n_calls - 1 and stats["batches_applied"] == 0, stats
        table.flush()
        assert table.stats()["samples_applied"] == 256 * n_calls
    assert set(appliers) == {"seta_stream-loss-writer"}, set(appliers)
