"""kill -9 a training run again and again, at chosen moments, and check what survives.

One run (tests/crash/_child.py `train`: SeTaStream, SeTa, a loss table) is killed once per
round at a moment it reaches deterministically (a hook writes a marker file and sleeps there);
the next round's child resumes from the last checkpoint the killed one saved, as a preempted
training job does. After every kill:

- the Parquet files read with polars (every history epoch has N rows), the table opens for
  writing (`LossTable`, which verifies) and for reading (`open_readonly`);
- the table holds every update flushed before the kill, and nothing but logged updates: each
  sample's loss is its last flushed value or one queued after the last flush;
- the last checkpoint's epoch selects what the policy picks from the loss snapshot the epoch
  began with (its predecessor's history), and a resumed stream yields exactly the rest of the
  epoch, in the order an uninterrupted pass has.

Interrupted `tools/shard.py convert` runs (killed while writing a shard, before a rename,
between the index and the manifest) never leave a dataset that opens, and a re-run succeeds.
"""

from __future__ import annotations

import json
import re
import shutil
from collections import defaultdict
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import polars as pl
import pytest

from seta_stream.errors import LossTableError, ManifestError
from seta_stream.losses import LossTable
from seta_stream.plan import selection_digest
from seta_stream.shards import Dataset
from seta_stream.stream import SeTaStream

N = 480  # as in conftest.py

# (moment, nth occurrence in the child). "epoch:published" 2 stops in set_epoch(1); the next
# round resumes epoch 0 and stops as its load_state_dict moves the table back to epoch 0;
# the next ends epoch 0 and stops; the last resumes epoch 0 again and stops in epoch 1.
SHORT = [("epoch:published", 2), ("epoch:table-set", 1), ("epoch:ended", 1), ("apply:mid", 10)]
LONG = [
    ("apply:mid", 10),
    ("snapshot:partial", 2),
    ("epoch:ended", 1),
    ("idle", 30),
    ("history:partial", 1),
    ("epoch:selected", 1),
    ("apply:start", 25),
    ("epoch:published", 2),
    ("epoch:table-set", 1),
    ("snapshot:written", 3),
    ("idle", 70),
    ("ckpt:written", 3),
    ("history:written", 1),
    ("epoch:recorded", 2),
    ("apply:end", 40),
    ("epoch:ended", 2),
    ("idle", 5),
    ("snapshot:partial", 9),
    ("epoch:table-set", 2),
    ("history:partial", 2),
    ("idle", 50),
    ("apply:mid", 3),
]
# (moment, nth, --overwrite over a finished dataset of other data). 5 shards of 100 samples:
# commits 1-5 are the shards, 6 the index, 7 the manifest.
CONVERT_SHORT = [("convert:add", 250, True)]
CONVERT_LONG = [
    ("convert:add", 150, False),
    ("convert:commit", 2, False),
    ("convert:index", 1, False),
    ("convert:commit", 7, False),
    ("convert:commit", 4, True),
]


def _read_log(path: Path) -> list[dict[str, Any]]:
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:  # a line cut by the kill (unlikely: each line is one write())
            break
    return records


def _kill_round(procs, zygote, dataset: Path, run: Path, round_: int, moment: str, nth: int):
    marker, stderr = run / "paused", run / f"stderr-{round_:03d}"
    proc = zygote.fork(["train", dataset, run, round_, moment, nth], stderr=stderr)
    try:
        # "idle" writes the marker at update NTH and runs on: the kill lands wherever it is
        procs.wait_for(marker, proc, stderr=stderr)
        holder = rf"{re.escape(str(run / 'losses'))} is already open for writing "
        with pytest.raises(LossTableError, match=rf"{holder}\(holder pid {proc.pid}\)"):
            LossTable(run / "losses")  # a second writer, at this moment
        procs.sigkill(proc)
    finally:
        proc.stop()
    assert marker.read_text() == moment
    marker.unlink()


def _check_files(losses: Path, moment: str) -> None:
    """Every Parquet file reads whole; a kill inside a write left only its temp file."""
    if (losses / "losses.parquet").exists():
        assert pl.read_parquet(losses / "losses.parquet")["sample_id"].to_list() == list(range(N))
    if list((losses / "history").glob("*.parquet")):
        history = pl.scan_parquet(str(losses / "history" / "*.parquet")).collect()
        assert set(history.group_by("epoch").len()["len"].to_list()) == {N}
        summary = pl.scan_parquet(str(losses / "summary" / "*.parquet")).collect()
        assert summary["num_samples"].unique().to_list() == [N]
    if moment.startswith(("snapshot", "history")):
        assert list(losses.rglob("*.parquet.*.tmp")), f"the kill missed the {moment} write"
    with LossTable.open_readonly(losses) as reader:
        assert reader.scores().shape == (N,)


def _check_losses(before: dict[str, np.ndarray], records: list[dict], after: dict) -> int:
    """`after` = `before` + every update logged before the last flush + some of the later ones.

    Returns how many updates were queued after the last flush (those may be lost)."""
    assert "start" in records[0]
    count, last_flush = records[0]["start"], 0
    for i, r in enumerate(records):
        if "u" in r:
            count += len(r["u"])
        elif "f" in r:
            assert r["f"] == count, "state_dict()['loss_table']['updates'] miscounts"
            last_flush = i
    loss, visits = before["loss"].copy(), before["visits"].astype(np.int64)
    epoch = before["epoch"].copy()
    for r in records[:last_flush]:
        if "u" in r:
            ids = np.array(r["u"])
            loss[ids], epoch[ids] = np.array(r["v"], np.float32), r["e"]
            visits[np.unique(ids)] += 1
    later = [r for r in records[last_flush:] if "u" in r]
    # A batch is applied element by element, column by column (a kill may split it).
    may: dict[str, dict[int, set[float]]] = {"loss": defaultdict(set), "epoch": defaultdict(set)}
    may_visits = np.zeros(N, np.int64)
    for r in later:
        for i, v in zip(r["u"], r["v"], strict=True):
            may["loss"][i].add(float(np.float32(v)))
            may["epoch"][i].add(r["e"])
        may_visits[np.unique(r["u"])] += 1
    nan_both = np.isnan(after["loss"]) & np.isnan(loss)
    for name, flushed in (("loss", loss), ("epoch", epoch)):
        for i in np.flatnonzero((after[name] != flushed) & ~nan_both).tolist():
            got = float(after[name][i])
            assert got in may[name][i], (
                f"sample {i}: {name} {got} is neither the flushed {float(flushed[i])} nor one "
                f"queued after the last flush {sorted(may[name][i])}"
            )
    extra = after["visits"].astype(np.int64) - visits
    assert (extra >= 0).all() and (extra <= may_visits).all(), "visits lost or invented"
    return len(later)


def _scores_at_start(losses: Path, epoch: int) -> np.ndarray:
    """The losses the epoch's selection was made from: the previous epoch's end (history)."""
    if epoch == 0:
        return np.full(N, np.nan, np.float32)
    hist = pl.read_parquet(losses / "history" / f"epoch={epoch - 1:06d}.parquet")
    return hist.sort("sample_id")["loss"].fill_null(float("nan")).to_numpy().astype(np.float32)


def _resume(child: ModuleType, dataset: Path, losses: Path, dest: Path, state: dict) -> tuple:
    """A new stream on a copy of the table, loaded with `state`: the ids it yields, its stats."""
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(losses, dest)
    with SeTaStream(dataset, policy=child.POLICY, losses=dest, seed=child.SEED) as stream:
        stream.load_state_dict(state)
        stream.set_epoch(state["epoch"])  # a resumed loop calls it: the plan is kept
        ids = np.array([int(item["__index__"]) for item in stream], np.int64)
        assert stream.state_dict()["selection"] == state["selection"]
        return ids, stream.stats()


def _check_resume(child: ModuleType, dataset: Path, run: Path, work: Path) -> bool:
    if not (run / "ckpt.json").exists():
        return False  # killed before the first epoch began
    ckpt = json.loads((run / "ckpt.json").read_text())
    state, start, received = ckpt["stream"], ckpt["start"], ckpt["received"]
    epoch, sel = state["epoch"], np.array(ckpt["selection"], np.int64)
    assert selection_digest(sel) == state["selection"] == start["selection"]
    scores = _scores_at_start(run / "losses", epoch)
    np.testing.assert_array_equal(scores, ckpt["scores"])  # the history holds what was used
    again = child.POLICY.select(scores, epoch, seed=child.SEED)
    np.testing.assert_array_equal(again.ids, sel)  # same snapshot, epoch, seed: same selection
    whole, _ = _resume(child, dataset, run / "losses", work / "a", start)
    rest, stats = _resume(child, dataset, run / "losses", work / "b", state)
    k = sum(sum(s["yielded"]) for s in state["position"])
    assert k == len(received)
    np.testing.assert_array_equal(np.sort(whole), sel)  # every selected sample, once
    np.testing.assert_array_equal(whole[:k], received)  # what the runs received, in order
    np.testing.assert_array_equal(rest, whole[k:])  # exactly the remainder, nothing replayed
    assert stats["samples_read"] == len(rest)
    return True


def _kill_loop(procs, zygote, child, dataset: Path, tmp_path: Path, rounds: list) -> dict:
    run = tmp_path / "run"
    run.mkdir()
    cols = {
        "loss": np.full(N, np.nan, np.float32),
        "visits": np.zeros(N, np.uint32),
        "epoch": np.full(N, -1, np.int32),
    }
    figures = {"kills": 0, "resume_checks": 0, "maybe_lost_updates": 0}
    for round_, (moment, nth) in enumerate(rounds):
        try:
            _kill_round(procs, zygote, dataset, run, round_, moment, nth)
            figures["kills"] += 1
            _check_files(run / "losses", moment)
            with LossTable(run / "losses") as table:  # the dead child's lock is gone
                assert not list((run / "losses").rglob("*.tmp")), "stale temp files are cleaned"
                table.verify()
                after = table.columns()
            records = _read_log(run / f"log-{round_:03d}.jsonl")
            figures["maybe_lost_updates"] += _check_losses(cols, records, after)
            cols = after
            figures["resume_checks"] += _check_resume(child, dataset, run, tmp_path / "resume")
        except AssertionError as e:
            e.add_note(f"after kill {round_} (at {moment} #{nth}); the run is in {run}")
            raise
    return figures


def _convert_round(procs, shard, source, tmp_path: Path, moment: str, nth: int, over: bool):
    path, arrays = source
    run = tmp_path / f"convert-{moment}-{nth}"
    dst = run / "ds"
    run.mkdir()
    argv = ["convert", str(path), str(dst), "--samples-per-shard", "100"]
    argv += ["--overwrite"] if over else []
    if over:  # a finished dataset of other data is there
        np.savez(run / "old.npz", x=arrays["x"] + 1, y=arrays["y"])
        assert shard.main(["convert", str(run / "old.npz"), str(dst)]) == 0
    with procs.child(["convert", run, moment, nth, *argv], stderr=run / "stderr") as proc:
        procs.wait_for(run / "paused", proc, stderr=run / "stderr")
        procs.sigkill(proc)
    assert not (dst / "dataset.json").exists()
    with pytest.raises(ManifestError, match="not a finished dataset"):
        Dataset.open(dst)
    if moment != "convert:index":  # killed inside a write: its temp file is there
        # (a shard's temp file, or its index file's in index/)
        assert [p.name for p in dst.rglob("*") if ".tmp-" in p.name], "the kill missed a write"
    assert shard.main(argv) == 0  # the same command again
    assert not [p.name for p in dst.iterdir() if ".tmp" in p.name], "temp files left behind"
    ds = Dataset.open(dst)
    try:
        assert ds.num_samples == N
        for i in range(N):
            item = ds.read(i, decode=True)
            np.testing.assert_array_equal(item["x.npy"], arrays["x"][i])
            assert int(item["y.npy"]) == arrays["y"][i]
    finally:
        ds.close()


@pytest.fixture
def shard(script) -> ModuleType:
    return script("tools/shard.py")


def test_kill_loop_short(procs, zygote, child, dataset, source, shard, tmp_path: Path) -> None:
    figures = _kill_loop(procs, zygote, child, dataset, tmp_path, SHORT)
    assert figures["resume_checks"] >= 2
    for moment, nth, over in CONVERT_SHORT:
        _convert_round(procs, shard, source, tmp_path, moment, nth, over)


@pytest.mark.slow
def test_kill_loop_many(procs, zygote, child, dataset, source, shard, tmp_path: Path) -> None:
    assert {m for m, _ in LONG} == set(child.TRAIN_MOMENTS)  # every moment, at least once
    assert {m for m, _, _ in CONVERT_LONG} == set(child.CONVERT_MOMENTS)
    figures = _kill_loop(procs, zygote, child, dataset, tmp_path, LONG)
    for moment, nth, over in CONVERT_LONG:
        _convert_round(procs, shard, source, tmp_path, moment, nth, over)
    assert figures["kills"] + len(CONVERT_LONG) >= 20
    assert figures["resume_checks"] >= len(LONG) - 1
    assert figures["maybe_lost_updates"] > 0  # some kills caught updates in flight
