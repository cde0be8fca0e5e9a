"""kill -9 at any moment (random, inside an apply, inside a snapshot or history write) loses
nothing that was flushed, never leaves a partial Parquet file, and releases the lock."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest

from seta_stream.losses import LossTable

CHILD = Path(__file__).with_name("_kill_child.py")
N = 3000
# (pause point, which occurrence) per round; "random" kills after a few flushes at a random time.
ROUNDS = [
    ("random", 0),
    ("apply:mid", 9),
    ("snapshot:partial", 3),
    ("random", 0),
    ("history:partial", 5),
    ("apply:start", 31),
    ("snapshot:written", 1),
    ("random", 0),
]
# The second pauses in the snapshot that end_epoch writes after a complete history file.
QUICK_ROUNDS = [("apply:mid", 9), ("snapshot:partial", 15)]


def _run_child(
    table: Path, round_: int, point: str, pause_at: int, rng: random.Random
) -> list[str]:
    """Start the child, kill -9 it at the chosen moment, return every line it printed."""
    child = subprocess.Popen(
        [sys.executable, str(CHILD), str(table), str(N), str(round_), point, str(pause_at)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    lines: list[str] = []
    flushes_wanted = rng.randint(1, 6)
    try:
        for line in child.stdout:
            lines.append(line.strip())
            if point != "random" and line.startswith("PAUSED"):
                break
            if point == "random" and sum(x.startswith("FLUSHED") for x in lines) >= flushes_wanted:
                time.sleep(rng.uniform(0.0, 0.03))
                break
            assert not line.startswith("DONE"), f"round {round_}: never reached {point}"
    finally:
        child.send_signal(signal.SIGKILL)
        rest, _ = child.communicate(timeout=30)
    assert child.returncode == -signal.SIGKILL
    return lines + rest.splitlines()


def _flushed_steps(lines: list[str]) -> int:
    steps = [int(x.split()[1]) for x in lines if x.startswith("FLUSHED")]
    return max(steps, default=-1)


def _kill_rounds(
    table_dir: Path, rounds: list[tuple[str, int]], kill_child: ModuleType
) -> set[int]:
    """Kill a child once per round at the chosen moment; after each, reopen and check.

    Returns the epochs the children ended."""
    rng = random.Random(12345)
    expect_loss = np.full(N, np.nan, np.float32)
    expect_visits = np.zeros(N, np.int64)
    expect_epoch = np.full(N, -1, np.int64)
    ended: set[int] = set()
    for round_, (point, pause_at) in enumerate(rounds):
        lines = _run_child(table_dir, round_, point, pause_at, rng)
        if point != "random":
            assert f"PAUSED {point}" in " ".join(lines), f"round {round_} never paused: {lines}"
        ended |= {int(x.split()[1]) for x in lines if x.startswith("ENDED")}
        for step in range(_flushed_steps(lines) + 1):
            ids = kill_child.batch_ids(N, round_, step)
            expect_loss[ids] = kill_child.loss_value(round_, step)
            expect_visits[np.unique(ids)] += 1
            expect_epoch[ids] = kill_child.epoch_of(round_, step)

        snapshot = table_dir / "losses.parquet"
        if snapshot.exists():  # killed mid-write or not: the visible file is always complete
            assert pq.read_table(snapshot).num_rows == N
        if point.startswith(("snapshot", "history")):
            assert list(table_dir.rglob("*.parquet.*.tmp")), f"the kill missed the {point} write"

        with LossTable(table_dir) as table:  # the dead child's lock is gone
            assert not list(table_dir.rglob("*.tmp")), "stale temp files are cleaned on open"
            table.verify()
            cols = table.columns()
        seen = ~np.isnan(expect_loss)
        assert not np.isnan(cols["loss"][seen]).any(), f"round {round_} lost flushed updates"
        # Later (unflushed) updates may have landed too; losses only grow over time.
        assert np.all(cols["loss"][seen] >= expect_loss[seen]), f"round {round_} lost updates"
        assert np.all(cols["visits"] >= expect_visits)
        assert np.all(cols["epoch"] >= expect_epoch)
        assert np.all(cols["loss"][seen] <= kill_child.loss_value(round_, 10_000))

    history = pl.scan_parquet(str(table_dir / "history" / "*.parquet")).collect()
    assert set(history["epoch"].unique()) >= ended
    assert history.group_by("epoch").len()["len"].to_list() == [N] * history["epoch"].n_unique()
    return ended


def test_kill_inside_an_apply_and_a_snapshot(tmp_path: Path, kill_child: ModuleType) -> None:
    _kill_rounds(tmp_path / "losses", QUICK_ROUNDS, kill_child)


@pytest.mark.slow
def test_kill_at_many_moments(tmp_path: Path, kill_child: ModuleType) -> None:
    assert _kill_rounds(tmp_path / "losses", ROUNDS, kill_child), "no round ended an epoch"
