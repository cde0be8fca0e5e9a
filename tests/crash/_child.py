"""Child process of the crash tests: run as a script; the tests load it as a module for its
constants and `loss_of`.

    _child.py train DATASET RUN ROUND MOMENT NTH
    _child.py convert RUN MOMENT NTH SHARD_ARGS...
    _child.py snapshots TABLE N ROUNDS
    _child.py zygote
    _child.py dist DATASET SOURCE_NPZ OUT      (under torchrun; see `dist_read`)

`zygote` imports torch once and forks a child per command it reads (see `zygote`): a kill
round then costs milliseconds instead of a torch import. The children are real processes.

`train` is a training loop over `SeTaStream` (SeTa, a loss table in RUN/losses, 0 workers)
that never ends on its own. It resumes from RUN/ckpt.json when there is one. Every update is
logged to RUN/log-ROUND.jsonl *before* it is queued (`{"u": ids, "v": losses, "e": epoch}`);
every `state_dict()` (a flush) logs `{"f": updates}` and fsyncs the log; every second one
also writes a snapshot and RUN/ckpt.json (atomically): the state, the ids received this
epoch, and, as of the epoch's start, its state, selection and the scores the policy was given.

`convert` runs `tools/shard.py SHARD_ARGS...`.

MOMENT names where to stop: when it is reached for the NTH time, the child writes RUN/paused
(the moment's name) and sleeps there until the test kills it. `idle` writes the marker at the
NTH update and does not stop. The moments are listed in `TRAIN_MOMENTS` / `CONVERT_MOMENTS`.

`snapshots` opens a table of N samples and, ROUNDS times, sets every loss to the round
number and writes a snapshot (every 5th round ends the epoch: history and summary files).
It writes TABLE.ready after the first snapshot and TABLE.done at the end.
"""

from __future__ import annotations

import functools
import json
import os
import runpy
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from seta_stream.losses import LossTable
from seta_stream.policies import SeTa
from seta_stream.shards.writer import TarWriter
from seta_stream.storage import Store
from seta_stream.workdir import WorkDir

POLICY = SeTa(epochs=40, prune_ratio=0.3, num_groups=3, window=0.6)
SEED, BATCH, FLUSH_EVERY, CHUNK_ROWS = 3, 16, 3, 128
SHARD_TOOL = Path(__file__).resolve().parents[2] / "tools" / "shard.py"

# The loss table's own debug-hook points (called on its writer thread).
TABLE_POINTS = (
    "apply:start",
    "apply:mid",
    "apply:end",
    "snapshot:partial",
    "snapshot:written",
    "history:partial",
    "history:written",
)
# Points inside SeTaStream.set_epoch (and the resume path), after the wrapped call returns.
EPOCH_POINTS = {
    "epoch:ended": (LossTable, "end_epoch"),  # history + snapshot written, epoch not moved yet
    "epoch:table-set": (LossTable, "set_epoch"),  # table.json names the new epoch
    "epoch:selected": (SeTa, "select"),  # the policy ran; nothing recorded
    "epoch:recorded": (LossTable, "record_selection"),  # selection stored; plan not published
    "epoch:published": (WorkDir, "publish"),  # plan published; epoch state not saved yet
}
TRAIN_MOMENTS = (*TABLE_POINTS, *EPOCH_POINTS, "ckpt:written", "idle")
# convert:add: before the NTH sample is added to a shard (a shard half-written);
# convert:commit: before the NTH rename of a finished file (each shard, then its index file;
# the manifest last);
# convert:index: after the first shard index file is written (index/*.parquet), before the rest.
CONVERT_MOMENTS = ("convert:add", "convert:commit", "convert:index")


def loss_of(ids: np.ndarray, epoch: int, round_: int) -> np.ndarray:
    """The loss a round feeds for `ids` in `epoch` (varied, so SeTa's groups differ)."""
    ids = np.asarray(ids, np.int64)
    return (((ids * (epoch + 3)) % 11) / 11 + 0.01 * (round_ % 7) + 0.001).astype(np.float32)


class Pauser:
    """Counts one moment; at its NTH occurrence writes the marker and (by default) sleeps."""

    def __init__(self, marker: Path, moment: str, nth: int) -> None:
        self.marker, self.moment, self.nth, self.count = marker, moment, nth, 0

    def reached(self, name: str, *, stop: bool = True) -> None:
        if name != self.moment:
            return
        self.count += 1
        if self.count != self.nth:
            return
        tmp = self.marker.with_name(self.marker.name + ".tmp")
        tmp.write_text(name)
        os.replace(tmp, self.marker)
        while stop:
            time.sleep(60)  # until SIGKILL

    def wrap(self, owner: Any, attr: str, name: str, *, before: bool = False) -> None:
        """Make `owner.attr` reach `name` before or after each call."""
        original: Callable[..., Any] = getattr(owner, attr)

        @functools.wraps(original)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if before:
                self.reached(name)
            result = original(*args, **kwargs)
            if not before:
                self.reached(name)
            return result

        setattr(owner, attr, wrapper)


def _write_atomic(path: Path, data: bytes, pauser: Pauser | None = None) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    if pauser is not None:
        pauser.reached("ckpt:written")
    os.replace(tmp, path)


class Log:
    """RUN/log-ROUND.jsonl, appended one whole line per write; fsync'd after each flush."""

    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def write(self, record: dict[str, Any], *, sync: bool = False) -> None:
        os.write(self.fd, (json.dumps(record) + "\n").encode())
        if sync:
            os.fsync(self.fd)


def _install_train_hooks(pauser: Pauser) -> None:
    init = LossTable.__init__

    def table_init(self: LossTable, *args: Any, **kwargs: Any) -> None:
        init(self, *args, chunk_rows=CHUNK_ROWS, debug_hook=pauser.reached, **kwargs)

    LossTable.__init__ = table_init  # type: ignore[method-assign]
    for name, (owner, attr) in EPOCH_POINTS.items():
        pauser.wrap(owner, attr, name)


def train(dataset: str, run: Path, round_: int, pauser: Pauser) -> None:
    import torch
    from torch.utils.data import DataLoader

    from seta_stream.stream import SeTaStream

    torch.set_num_threads(1)
    _install_train_hooks(pauser)
    log = Log(run / f"log-{round_:03d}.jsonl")
    ckpt_path = run / "ckpt.json"
    ckpt = json.loads(ckpt_path.read_text()) if ckpt_path.exists() else None
    log.write({"start": ckpt["stream"]["loss_table"]["updates"] if ckpt else 0}, sync=True)
    stream = SeTaStream(dataset, policy=POLICY, losses=run / "losses", seed=SEED)
    assert stream.table is not None
    epoch, resumed = 0, False
    if ckpt is not None:
        stream.load_state_dict(ckpt["stream"])
        epoch, resumed = ckpt["stream"]["epoch"], True
    loader = DataLoader(stream, batch_size=BATCH)
    flushes = 0
    while True:
        stream.set_epoch(epoch)  # after load_state_dict: the same epoch, plan kept
        if not resumed:
            sel = np.flatnonzero(stream.table.columns()["selected"]).tolist()
            scores = stream.table.scores().tolist()  # what the policy was given
            start = stream.state_dict()
            log.write({"f": start["loss_table"]["updates"]}, sync=True)
            ckpt = {"stream": start, "start": start, "received": [], "selection": sel}
            ckpt["scores"] = scores
            _write_atomic(ckpt_path, json.dumps(ckpt).encode(), pauser)
        assert ckpt is not None
        resumed = False
        for batch in loader:
            ids = batch["__index__"].numpy()
            losses = loss_of(ids, epoch, round_)
            log.write({"u": ids.tolist(), "v": losses.tolist(), "e": epoch})
            pauser.reached("idle", stop=False)
            stream.update(ids, losses)
            ckpt["received"] += ids.tolist()
            if len(ckpt["received"]) % (FLUSH_EVERY * BATCH) == 0:
                state = stream.state_dict()
                log.write({"f": state["loss_table"]["updates"]}, sync=True)
                flushes += 1
                if flushes % 2 == 0:
                    stream.table.snapshot()
                    ckpt["stream"] = state
                    _write_atomic(ckpt_path, json.dumps(ckpt).encode(), pauser)
        epoch += 1


def convert(argv: list[str], pauser: Pauser) -> None:
    pauser.wrap(TarWriter, "add", "convert:add", before=True)
    pauser.wrap(Store, "commit", "convert:commit", before=True)
    write_atomic = Store.write_atomic

    def index_then_pause(self: Store, name: str, data: bytes) -> None:
        write_atomic(self, name, data)
        if name.endswith(".parquet"):
            pauser.reached("convert:index")

    Store.write_atomic = index_then_pause  # type: ignore[method-assign]
    sys.argv = [str(SHARD_TOOL), *argv]
    runpy.run_path(str(SHARD_TOOL), run_name="__main__")


def snapshots(table_dir: Path, num_samples: int, rounds: int) -> None:
    ids = np.arange(num_samples)
    with LossTable(table_dir, num_samples=num_samples, chunk_rows=max(num_samples // 8, 1)) as t:
        for r in range(1, rounds + 1):
            t.update(ids, np.full(num_samples, r, np.float32))
            t.snapshot()
            if r == 1:
                table_dir.with_suffix(".ready").touch()
            if r % 5 == 0:
                t.end_epoch()
                t.set_epoch(t.epoch + 1)
    table_dir.with_suffix(".done").touch()


def dist_read(dataset: str, src: str, out: Path) -> None:
    """Under torchrun: 3 epochs of SeTaStream, 2 persistent DataLoader workers per rank, each
    batch compared with the source arrays; writes OUT/rank<r>.json."""
    from datetime import timedelta

    import torch
    import torch.distributed as dist
    from torch.utils.data import DataLoader

    from seta_stream.stream import SeTaStream

    torch.set_num_threads(1)
    dist.init_process_group("gloo", timeout=timedelta(seconds=60))
    with np.load(src) as z:
        x, y = z["x"], z["y"]
    epochs = []
    with SeTaStream(dataset, policy=POLICY, losses=out / "losses", seed=SEED) as stream:
        loader = DataLoader(stream, batch_size=BATCH, num_workers=2, persistent_workers=True)
        for epoch in range(3):
            stream.set_epoch(epoch)
            digest = stream.state_dict()["selection"]  # a collective: every rank calls it
            ids: list[int] = []
            wrong = 0
            for batch in loader:
                i = batch["__index__"].numpy()
                wrong += not np.array_equal(batch["x.npy"].numpy(), x[i])
                wrong += not np.array_equal(batch["y.npy"].numpy(), y[i])
                ids += i.tolist()
                stream.update(i, loss_of(i, epoch, 0))
            epochs.append({"ids": ids, "digest": digest, "len": len(stream), "wrong": wrong})
    (out / f"rank{dist.get_rank()}.json").write_text(json.dumps(epochs))
    dist.destroy_process_group()


def zygote() -> None:
    """Import torch and SeTaStream once, then per line of stdin (a JSON list: a stderr path and
    the arguments of `main`) fork a child that runs them; print its pid, then its exit code."""
    import torch

    import seta_stream.stream  # noqa: F401 - imported once here, not in every child

    torch.set_num_threads(1)
    for line in sys.stdin:
        if json.loads(line) == "quit":  # not EOF: a process forked from the test process (a
            break  # DataLoader worker) may hold the write end of this pipe open
        stderr, *args = json.loads(line)
        pid = os.fork()
        if pid == 0:  # the child: never returns into this loop
            code = 1
            try:
                os.dup2(os.open(stderr, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), 2)
                main(args)
                code = 0
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(code)
        print(pid, flush=True)
        print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), flush=True)


def main(argv: list[str]) -> None:
    mode, rest = argv[0], argv[1:]
    if mode == "zygote":
        zygote()
    elif mode == "snapshots":
        snapshots(Path(rest[0]), int(rest[1]), int(rest[2]))
    elif mode == "train":
        run = Path(rest[1])
        train(rest[0], run, int(rest[2]), Pauser(run / "paused", rest[3], int(rest[4])))
    elif mode == "dist":
        dist_read(rest[0], rest[1], Path(rest[2]))
    elif mode == "convert":
        run = Path(rest[0])
        convert(rest[3:], Pauser(run / "paused", rest[1], int(rest[2])))
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
