"""One writer per table: a second opener gets LossTableError; the lock dies with its process."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from seta_stream.errors import LossTableError
from seta_stream.losses import LossTable

CHILD = Path(__file__).with_name("_kill_child.py")


def test_second_writer_in_the_same_process_is_refused(tmp_path: Path) -> None:
    with LossTable(tmp_path / "t", num_samples=10) as table:
        with pytest.raises(LossTableError, match="already open for writing"):
            LossTable(tmp_path / "t")
        table.update(np.array([1]), np.array([1.0]))
    with LossTable(tmp_path / "t") as again:  # released on close
        assert again.scores()[1] == 1.0


def test_lock_held_by_another_process_and_released_on_its_death(tmp_path: Path) -> None:
    child = subprocess.Popen(
        [sys.executable, str(CHILD), str(tmp_path / "t"), "10", "0", "hold", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "READY"
        with pytest.raises(LossTableError, match=rf"holder pid {child.pid}\)"):
            LossTable(tmp_path / "t")
    finally:
        child.send_signal(signal.SIGKILL)
        child.communicate(timeout=30)
    with LossTable(tmp_path / "t") as table:
        assert table.num_samples == 10
