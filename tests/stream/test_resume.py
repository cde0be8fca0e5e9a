"""Resume mid-epoch in a new process: exactly the rest of the epoch, read once, nothing replayed.

A child process trains into epoch 1, checkpoints after K batches, trains on (so the loss table
gets newer than the checkpoint) and is killed with SIGKILL; the test process then resumes.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader
from torchdata.stateful_dataloader import StatefulDataLoader

from seta_stream.errors import SeTaStreamError
from seta_stream.policies import SeTa
from seta_stream.stream import SeTaStream

CHILD = Path(__file__).with_name("_resume_child.py")
POLICY = SeTa(epochs=6, prune_ratio=0.3, num_groups=5, window=0.6)
SEED, BATCH, K = 1, 50, 4

# torchdata 0.11's StatefulDataLoader calls torch.set_vital, deprecated in torch 2.13.
pytestmark = pytest.mark.filterwarnings("ignore:'set_vital' is deprecated:UserWarning")


@pytest.fixture(scope="module")
def killed_runs(
    shards: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[int, Path]]:
    """Two killed runs at once (2 cores): 0 workers (then into epoch 2), 2 workers (same epoch)."""
    root = tmp_path_factory.mktemp("killed")
    runs = {0: ("next", root / "w0"), 2: ("same", root / "w2")}
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = {}
    for workers, (after, out) in runs.items():
        out.mkdir()
        argv = [
            sys.executable,
            str(CHILD),
            str(shards),
            str(out / "losses"),
            str(out),
            str(workers),
            str(K),
            after,
        ]
        procs[workers] = subprocess.Popen(argv, env=env, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        for workers, (_, out) in runs.items():
            proc = procs[workers]
            while not (out / "ready").exists():
                if proc.poll() is not None:
                    err = proc.stderr.read().decode() if proc.stderr else ""
                    pytest.fail(f"child with {workers} workers exited {proc.returncode}: {err}")
                assert time.monotonic() < deadline, "child did not reach its checkpoint in 120 s"
                time.sleep(0.05)
            os.kill(proc.pid, signal.SIGKILL)
            assert proc.wait(30) == -signal.SIGKILL
        yield {w: out for w, (_, out) in runs.items()}
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if proc.stderr:
                proc.stderr.close()


def _copy(run: Path, dest: Path) -> tuple[Path, dict[str, Any], np.ndarray, np.ndarray]:
    shutil.copytree(run / "losses", dest / "losses")
    ckpt = torch.load(run / "ckpt.pt", weights_only=True)
    return dest / "losses", ckpt, np.load(run / "received.npy"), np.load(run / "selection.npy")


def _rest(loader: DataLoader, stream: SeTaStream) -> np.ndarray:
    seen = []
    for batch in loader:
        seen.append(batch["__index__"].numpy())
        stream.update(batch["__index__"], torch.zeros(len(batch["__index__"])))
    return np.concatenate(seen)


def _check(
    received: np.ndarray, rest: np.ndarray, selection: np.ndarray, stream: SeTaStream
) -> None:
    assert len(received) == K * BATCH and len(rest) > 0
    both = np.concatenate([received, rest])
    assert len(np.unique(both)) == len(both)  # no repeats
    np.testing.assert_array_equal(np.sort(both), selection)  # none lost, nothing else
    st = stream.stats()
    assert (
        st["samples_read"] == st["samples_yielded"] == len(rest) == len(selection) - len(received)
    )
    assert st["epoch"] == 1


def _newer_selection_differs(stream: SeTaStream, selection: np.ndarray) -> bool:
    """The resume is meaningful: re-running the policy on the table now would pick others."""
    assert stream.table is not None
    again = POLICY.select(stream.table.scores(), 1, seed=SEED).ids
    return len(again) != len(selection) or not np.array_equal(again, selection)


def test_resume_no_workers_plain_loader(
    killed_runs: dict[int, Path], shards: Path, tmp_path: Path
) -> None:
    losses, ckpt, received, selection = _copy(killed_runs[0], tmp_path)
    with SeTaStream(shards, policy=POLICY, losses=losses, seed=SEED) as stream:
        assert stream.table is not None and stream.table.epoch == 2  # the run had moved on
        stream.load_state_dict(ckpt["stream"])
        assert stream.table.epoch == 1 and _newer_selection_differs(stream, selection)
        stream.set_epoch(1)  # a resumed loop calls set_epoch(start): the plan is kept
        rest = _rest(DataLoader(stream, batch_size=BATCH), stream)
        _check(received, rest, selection, stream)
        assert ckpt["stream"]["loss_table"]["updates"] >= len(received)


def test_resume_two_workers_stateful_loader(
    killed_runs: dict[int, Path], shards: Path, tmp_path: Path
) -> None:
    losses, ckpt, received, selection = _copy(killed_runs[2], tmp_path)
    assert ckpt["stream"]["position"] is None  # the position is in the loader's state
    with SeTaStream(shards, policy=POLICY, losses=losses, seed=SEED) as stream:
        stream.load_state_dict(ckpt["stream"])
        assert _newer_selection_differs(stream, selection)
        loader = StatefulDataLoader(stream, batch_size=BATCH, num_workers=2)
        loader.load_state_dict(ckpt["loader"])
        rest = _rest(loader, stream)
        _check(received, rest, selection, stream)


def test_resume_two_workers_to_one(
    killed_runs: dict[int, Path], shards: Path, tmp_path: Path
) -> None:
    losses, ckpt, received, selection = _copy(killed_runs[2], tmp_path)
    with SeTaStream(shards, policy=POLICY, losses=losses, seed=SEED) as stream:
        stream.load_state_dict(ckpt["stream"], loader=ckpt["loader"])
        rest = _rest(DataLoader(stream, batch_size=BATCH, num_workers=1), stream)
        _check(received, rest, selection, stream)


def test_without_the_loader_state_the_error_says_so(
    killed_runs: dict[int, Path], shards: Path, tmp_path: Path
) -> None:
    losses, ckpt, _, _ = _copy(killed_runs[2], tmp_path)
    with SeTaStream(shards, policy=POLICY, losses=losses, seed=SEED) as stream:
        stream.load_state_dict(ckpt["stream"])
        with pytest.raises(SeTaStreamError, match=r"position is in the loader's state"):
            next(iter(stream))


def _into_epoch1(stream: SeTaStream) -> np.ndarray:
    """Train epoch 0 (losses fed), start epoch 1; return epoch 1's selection."""
    stream.set_epoch(0)
    for batch in DataLoader(stream, batch_size=100):
        stream.update(batch["__index__"], (batch["__index__"] % 11).float())
    stream.set_epoch(1)
    assert stream.table is not None
    return POLICY.select(stream.table.scores(), 1, seed=SEED).ids


def _take(it: Iterator[dict[str, Any]], n: int) -> list[np.ndarray]:
    return [next(it)["__index__"].numpy() for _ in range(n)]


def test_resume_twice_changing_workers_2_1_0(shards: Path, tmp_path: Path) -> None:
    """Stages: 2 workers, then 1 worker, then the training process itself."""
    losses, got = tmp_path / "l", []
    with SeTaStream(shards, policy=POLICY, losses=losses, seed=SEED) as a:
        selection = _into_epoch1(a)
        la = StatefulDataLoader(a, batch_size=20, num_workers=2)
        it = iter(la)
        got += _take(it, 3)
        s1, l1 = a.state_dict(), la.state_dict()
        del it, la
    with SeTaStream(shards, policy=POLICY, losses=losses, seed=SEED) as b:
        b.load_state_dict(s1, loader=l1)
        lb = StatefulDataLoader(b, batch_size=20, num_workers=1)
        it = iter(lb)
        got += _take(it, 5)
        s2, l2 = b.state_dict(), lb.state_dict()
        del it, lb
    with SeTaStream(shards, policy=POLICY, losses=losses, seed=SEED) as c:
        c.load_state_dict(s2, loader=l2)
        rest = [item["__index__"] for item in c]
        assert c.stats()["samples_read"] == len(rest) == len(selection) - 160
        assert c.state_dict()["position"][-1] == {"num_workers": 1, "yielded": [len(rest) + 100]}
    both = np.concatenate([*got, rest])
    assert len(both) == len(np.unique(both))
    np.testing.assert_array_equal(np.sort(both), selection)


def test_resume_main_process_position_with_workers(shards: Path, tmp_path: Path) -> None:
    """A state saved while the training process read (0 workers) needs no loader state."""
    losses = tmp_path / "l"
    with SeTaStream(shards, policy=POLICY, losses=losses, seed=SEED) as a:
        selection = _into_epoch1(a)
        it = iter(DataLoader(a, batch_size=30))
        got = _take(it, 2)
        state = a.state_dict()
        assert state["position"] == [{"num_workers": 1, "yielded": [60]}]
    with SeTaStream(shards, policy=POLICY, losses=losses, seed=SEED) as b:
        b.load_state_dict(state)
        assert b.state_dict()["position"] == state["position"]  # saved again before reading
        rest = _rest(DataLoader(b, batch_size=30, num_workers=2), b)
        assert b.stats()["samples_read"] == len(rest)
    np.testing.assert_array_equal(np.sort(np.concatenate([*got, rest])), selection)


def test_stateful_loader_without_workers(shards: Path, tmp_path: Path) -> None:
    losses = tmp_path / "l"
    with SeTaStream(shards, policy=POLICY, losses=losses, seed=SEED) as a:
        selection = _into_epoch1(a)
        la = StatefulDataLoader(a, batch_size=30)
        it = iter(la)
        got = _take(it, 3)
        state, ls = a.state_dict(), la.state_dict()
    with SeTaStream(shards, policy=POLICY, losses=losses, seed=SEED) as b:
        b.load_state_dict(state)
        b.set_epoch(1)
        lb = StatefulDataLoader(b, batch_size=30)
        lb.load_state_dict(ls)
        rest = _rest(lb, b)
        assert b.stats()["samples_read"] == len(rest)
    both = np.concatenate([*got, rest])
    assert len(both) == len(np.unique(both))
    np.testing.assert_array_equal(np.sort(both), selection)


def test_state_checks(shards: Path, tmp_path: Path) -> None:
    losses = tmp_path / "l"
    with SeTaStream(shards, policy=POLICY, losses=losses, seed=SEED) as a:
        with pytest.raises(SeTaStreamError, match=r"before set_epoch"):
            a.state_dict()
        _into_epoch1(a)
        start = a.state_dict()
        fed = a.stats()["total"]["samples_yielded"]  # every sample of epoch 0 got a loss
        assert start["position"] == [] and start["loss_table"] == {"epoch": 1, "updates": fed}
        next(iter(a))
        mid = a.state_dict()
    other = SeTa(epochs=6, prune_ratio=0.5, num_groups=5, window=0.6)
    for kw, match in [
        ({"policy": other}, "another policy"),
        ({"seed": SEED + 1}, "another seed"),
        ({"open_shards": 2}, "another plan options"),
    ]:
        args: dict[str, Any] = {"policy": POLICY, "losses": losses, "seed": SEED, **kw}
        with SeTaStream(shards, **args) as s, pytest.raises(SeTaStreamError, match=match):
            s.load_state_dict(mid)
    with SeTaStream(shards, policy=POLICY, losses=losses, seed=SEED) as s:
        for bad, match in [
            ({**mid, "dataset": "0" * 16}, "another dataset"),
            ({**mid, "version": 99}, "version 99"),
            ({"epoch": 1}, "not a SeTaStream state dict"),
            ({**mid, "world_size": 2}, r"mid-epoch 1 with world_size 2, now 1"),
            ({**mid, "position": [{"num_workers": 2, "yielded": [1]}]}, "invalid resume stage"),
            ({**mid, "position": [{"num_workers": 1, "yielded": [9999]}]}, "9999 samples"),
        ]:
            with pytest.raises(SeTaStreamError, match=match):
                s.load_state_dict(bad)
        s.load_state_dict({**start, "world_size": 2, "rank": 1})  # at the epoch start: fine
        assert len(s) == len(list(s))


def test_load_after_set_epoch_on_newer_losses_is_refused(shards: Path, tmp_path: Path) -> None:
    losses = tmp_path / "l"
    with SeTaStream(shards, policy=POLICY, losses=losses, seed=SEED) as a:
        _into_epoch1(a)
        it = iter(a)
        ids = [next(it)["__index__"] for _ in range(100)]
        state = a.state_dict()
        a.update(np.array(ids), np.linspace(5, 9, 100))  # losses newer than the checkpoint
    with SeTaStream(shards, policy=POLICY, losses=losses, seed=SEED) as b:
        b.set_epoch(1)  # re-runs the policy on the newer losses: another selection
        with pytest.raises(SeTaStreamError, match="load_state_dict\\(\\) on a new stream"):
            b.load_state_dict(state)
