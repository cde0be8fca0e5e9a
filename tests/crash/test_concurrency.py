"""Concurrent readers and writers stay correct.

- A process reading `losses.parquet` and the history with polars, pyarrow and
  `LossTable.open_readonly` while another process snapshots many times never sees a partial or
  mixed file (every snapshot holds one point in time) and never gets an exception.
- Four DataLoader workers (persistent or not), and two torchrun ranks with two workers each,
  reading the same shards at once: every selected sample exactly once per epoch (per rank;
  across ranks only the padding repeats), with the bytes of the source data.

A second process opening a table for writing is refused with an error that names the table
and the holder's pid: tests/losses/test_lock.py (a bare LossTable) and the kill loop (at every
kill moment, against a paused SeTaStream training process).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from types import ModuleType

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest
from torch.utils.data import DataLoader

from seta_stream.losses import LossTable
from seta_stream.plan import selection_digest
from seta_stream.stream import SeTaStream

SNAPSHOT_ROWS, SNAPSHOTS = 30_000, 30


def _one_version(frame: pl.DataFrame, rows: int, what: str) -> int:
    """Every row of a snapshot written after round r has loss r (and r visits, if present)."""
    assert frame.height == rows, f"{what}: {frame.height} rows, not {rows}"
    losses = frame["loss"].unique().to_list()
    assert len(losses) == 1 and float(losses[0]).is_integer(), f"{what}: mixed losses {losses}"
    if "visits" in frame.columns:
        assert frame["visits"].unique().to_list() == [int(losses[0])], f"{what}: mixed rows"
    return int(losses[0])


def _read_everything(table: Path, turn: int) -> int:
    """One reader pass (the reading API changes with `turn`); the snapshot's round."""
    snapshot = table / "losses.parquet"
    if turn % 3 == 0:  # one open file: polars given a path may open it twice (footer, pages),
        with open(snapshot, "rb") as f:  # and between the two the writer may replace it
            version = _one_version(pl.read_parquet(f), SNAPSHOT_ROWS, "polars")
    elif turn % 3 == 1:
        with open(snapshot, "rb") as f:
            frame = pl.DataFrame(pq.read_table(f))
        version = _one_version(frame, SNAPSHOT_ROWS, "pyarrow")
    else:
        with LossTable.open_readonly(table) as reader:
            scores = pl.DataFrame({"loss": reader.scores()})
        version = _one_version(scores, SNAPSHOT_ROWS, "open_readonly")
    if list((table / "history").glob("*.parquet")):
        history = pl.scan_parquet(str(table / "history" / "*.parquet")).collect()
        for (epoch,), part in history.group_by("epoch"):
            _one_version(part, SNAPSHOT_ROWS, f"history of epoch {epoch}")
    if list((table / "summary").glob("*.parquet")):  # written just after its history file
        summary = pl.scan_parquet(str(table / "summary" / "*.parquet")).collect()
        assert summary["num_samples"].unique().to_list() == [SNAPSHOT_ROWS]
    return version


def test_snapshot_readers_never_see_a_partial_file(procs: ModuleType, tmp_path: Path) -> None:
    table = tmp_path / "table"
    args = ["snapshots", table, SNAPSHOT_ROWS, SNAPSHOTS]
    seen: set[int] = set()
    turn = 0
    with procs.child(args, stderr=tmp_path / "stderr") as writer:
        procs.wait_for(table.with_suffix(".ready"), writer, stderr=tmp_path / "stderr")
        while not table.with_suffix(".done").exists():
            seen.add(_read_everything(table, turn))
            turn += 1
        assert writer.wait(120) == 0
    seen.add(_read_everything(table, turn))
    assert max(seen) == SNAPSHOTS
    print(f"reader passes: {turn + 1}, snapshots seen: {len(seen)} of {SNAPSHOTS}")
    assert len(seen) >= 5, f"the reader overlapped only {len(seen)} snapshots: {sorted(seen)}"
    assert len(list((table / "history").glob("*.parquet"))) == SNAPSHOTS // 5


# 4 workers on a 2-core machine: torch warns that this may be slow; here it is the point.
@pytest.mark.filterwarnings("ignore:This DataLoader will create 4 worker processes:UserWarning")
@pytest.mark.parametrize("persistent", [False, True], ids=["fresh", "persistent"])
def test_four_workers_read_each_selected_sample_once(
    child: ModuleType, dataset: Path, source, tmp_path: Path, persistent: bool
) -> None:
    _, arrays = source
    with SeTaStream(dataset, policy=child.POLICY, losses=tmp_path / "l", seed=child.SEED) as s:
        assert s.table is not None
        loader = DataLoader(s, batch_size=child.BATCH, num_workers=4, persistent_workers=persistent)
        for epoch in range(3):
            s.set_epoch(epoch)
            selected = np.flatnonzero(s.table.columns()["selected"])
            seen = []
            for batch in loader:
                ids = batch["__index__"].numpy()
                np.testing.assert_array_equal(batch["x.npy"].numpy(), arrays["x"][ids])
                np.testing.assert_array_equal(batch["y.npy"].numpy(), arrays["y"][ids])
                seen.append(ids)
                s.update(ids, child.loss_of(ids, epoch, 0))
            got = np.concatenate(seen)
            assert len(got) == len(np.unique(got))  # nothing twice
            np.testing.assert_array_equal(np.sort(got), selected)  # nothing missing or extra
            stats = s.stats()
            assert stats["samples_read"] == stats["samples_yielded"] == len(selected)
        assert len(s) < len(arrays["x"])  # pruning happened


@pytest.mark.slow
@pytest.mark.dist
def test_two_ranks_two_workers_each(procs: ModuleType, dataset: Path, source, tmp_path) -> None:
    # a hang is caught by the subprocess timeout (TimeoutExpired fails the test); no time asserted
    procs.torchrun(procs.CHILD, ["dist", str(dataset), str(source[0]), str(tmp_path)], nproc=2,
                   timeout=240)  # fmt: skip
    reports = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    for epoch, (r0, r1) in enumerate(zip(*reports, strict=True)):
        assert r0["digest"] == r1["digest"], f"epoch {epoch}: the ranks selected differently"
        for r in (r0, r1):
            assert r["wrong"] == 0, f"epoch {epoch}: a batch differed from the source data"
            assert len(r["ids"]) == len(set(r["ids"])) == r["len"]  # once per rank
        assert r0["len"] == r1["len"]  # equal counts: no rank waits on the other
        counts = Counter(r0["ids"] + r1["ids"])
        assert selection_digest(np.array(sorted(counts))) == r0["digest"]  # the whole selection
        assert sum(c - 1 for c in counts.values()) <= 1  # only the padding repeats
