"""The folder a `SeTaStream` shares with its DataLoader workers: the plan and the counters.

The training process publishes each epoch's read order (and loss weights) as `.npy` files and
names the current epoch in `current.json` (replaced atomically); iterators in any process —
forked, spawned or persistent workers — memory-map them. `counters.npy` holds what every
process read and yielded: row 0 this epoch, row 1 since the start; slot 0 is the training
process, slot 1 + w DataLoader worker w.

Cleanup. `owner.json`, written first, names the owner process (pid, and its start time so a
reused pid is not taken for it). The owner removes the folder on `remove()`, when the
`WorkDir` is collected, or at interpreter exit (normal exit, an exception, Ctrl-C); forked
workers never do. A killed owner removes nothing, so every new `WorkDir` first removes the
folders in its parent whose owner is dead (`remove_dead`).
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import socket
import tempfile
import time
import weakref
from typing import Any, NamedTuple

import numpy as np

from seta_stream.errors import SeTaStreamError

COUNTERS = (
    "samples_read",
    "samples_decoded",
    "bytes_read",
    "samples_yielded",
    "samples_skipped",
    "index_loads",  # per-shard index files read by the readers (each process caches its own)
    "index_bytes_read",
    "iterators",
)
READ, DECODED, BYTES, YIELDED, SKIPPED, INDEX_LOADS, INDEX_BYTES, ITERS = range(len(COUNTERS))
_SLOTS = 257
PREFIX = "seta_stream-"
OWNER = "owner.json"
# What tempfile.mkdtemp(prefix=PREFIX) makes; ".dead": claimed by a remover that did not finish.
_NAME = re.compile(re.escape(PREFIX) + r"[a-z0-9_]{8}(\.dead)?")
# A folder without a readable owner file is left alone until nothing in it changed for this
# long: one being created has none for a moment, and a live process of a version before
# owner files makes none at all.
NO_OWNER_AGE_S = 3600.0


class Plan(NamedTuple):
    epoch: int
    order: np.ndarray  # selected ids in read order (memory-mapped)
    weights: np.ndarray | None  # loss weights aligned with `order`; None: all 1
    digest: str  # plan.selection_digest of the selection


class Owner(NamedTuple):
    pid: int
    start: str | None  # field 22 of /proc/<pid>/stat (clock ticks since boot); None: no /proc
    host: str
    pidns: str | None  # /proc/self/ns/pid: pids of another namespace are not ours to check


class WorkDir:
    """A temporary folder; only the process that created it removes it."""

    def __init__(self, parent: str | None = None) -> None:
        remove_dead(parent)
        self.path = tempfile.mkdtemp(prefix=PREFIX, dir=parent)
        self.owner_pid = os.getpid()
        self._finalizer: weakref.finalize[..., WorkDir] | None = weakref.finalize(
            self, _remove_owned, self.path, self.owner_pid
        )
        try:
            _write_owner(self.path, _me(self.owner_pid))
            np.lib.format.open_memmap(
                self._file("counters.npy"), "w+", np.int64, (2, _SLOTS, len(COUNTERS))
            ).flush()
        except BaseException:
            self.remove()
            raise

    def __getstate__(self) -> dict[str, Any]:
        # A copy (a spawned worker's) never removes the folder when it is collected.
        return {k: v for k, v in self.__dict__.items() if k != "_finalizer"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _finalizer=None)

    def _file(self, name: str) -> str:
        return os.path.join(self.path, name)

    def publish(self, plan: Plan) -> None:
        for old in glob.glob(self._file("epoch-*.npy")):
            os.remove(old)  # readers that still map an old plan keep their pages (POSIX)
        base = self._file(f"epoch-{plan.epoch:06d}")
        np.save(base + ".order.npy", plan.order)
        if plan.weights is not None:
            np.save(base + ".weights.npy", plan.weights)
        tmp = self._file(".current.json.tmp")
        with open(tmp, "w") as f:
            cur = {"epoch": plan.epoch, "weights": plan.weights is not None, "digest": plan.digest}
            json.dump(cur, f)
        os.replace(tmp, self._file("current.json"))

    def load(self) -> Plan:
        path = self._file("current.json")
        if not os.path.exists(path):
            raise SeTaStreamError(
                "SeTaStream: call stream.set_epoch(epoch) before iterating (it runs the policy "
                "and publishes the epoch's plan to the DataLoader workers)"
            )
        with open(path) as f:
            cur = json.load(f)
        base = self._file(f"epoch-{cur['epoch']:06d}")
        order = np.load(base + ".order.npy", mmap_mode="r")
        weights = np.load(base + ".weights.npy", mmap_mode="r") if cur["weights"] else None
        return Plan(int(cur["epoch"]), order, weights, str(cur["digest"]))

    def counters(self) -> np.ndarray:
        """The shared (2, slots, counters) int64 array, writable."""
        return np.load(self._file("counters.npy"), mmap_mode="r+")

    def figures(self) -> tuple[dict[str, int], dict[str, int]]:
        """(this epoch, since the start): the counters summed over processes."""
        c = self.counters()[:, :, :ITERS].sum(axis=1).tolist()
        return dict(zip(COUNTERS, c[0], strict=False)), dict(zip(COUNTERS, c[1], strict=False))

    def remove(self) -> None:
        """Remove the folder, in the owner process only; again is a no-op."""
        if self._finalizer is not None and os.getpid() == self.owner_pid:
            self._finalizer()  # runs `_remove_owned` once and unregisters it
        else:
            _remove_owned(self.path, self.owner_pid)


def _remove_owned(path: str, owner_pid: int) -> None:
    if os.getpid() == owner_pid:  # a forked worker inherits the finalizer and its atexit hook
        shutil.rmtree(path, ignore_errors=True)


def remove_dead(parent: str | None = None) -> list[str]:
    """Remove the work folders in `parent` (default: the temp folder) whose owner is dead.

    Dead: the pid is gone, a zombie, or now another process (another start time). A folder
    without a readable owner file goes only once untouched for `NO_OWNER_AGE_S`. Never raises
    for a folder; several processes may sweep the same parent at once. Returns those removed.
    """
    removed = []
    parent = tempfile.gettempdir() if parent is None else parent  # as mkdtemp
    for folder in glob.glob(os.path.join(parent, PREFIX + "*")):
        try:
            if _NAME.fullmatch(os.path.basename(folder)) and _abandoned(folder):
                if not folder.endswith(".dead"):
                    os.rename(folder, folder + ".dead")  # the claim: one sweeper wins
                    folder += ".dead"
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder.removesuffix(".dead"))
        except OSError:  # removed or claimed meanwhile, or not ours to remove
            continue
    return removed


def _abandoned(folder: str) -> bool:
    if os.path.islink(folder) or not os.path.isdir(folder):
        return False
    if folder.endswith(".dead"):
        return True
    owner = _read_owner(folder)
    if owner is not None:
        return _dead(owner)
    with os.scandir(folder) as it:
        entries = list(it)
    if entries and not any(e.name in (OWNER, "counters.npy") for e in entries):
        return False  # not made by a WorkDir
    touched = max([os.stat(folder).st_mtime] + [e.stat().st_mtime for e in entries])
    return time.time() - touched > NO_OWNER_AGE_S


def _dead(owner: Owner) -> bool:
    me = _me(os.getpid())
    if (owner.host, owner.pidns) != (me.host, me.pidns):
        return False  # another machine or pid namespace sharing the folder: cannot tell
    try:
        os.kill(owner.pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # alive, another user's
    stat = _stat(owner.pid)
    if stat is None:
        return me.start is not None  # /proc works here, so the pid just went; else unknown
    state, start = stat
    return state in "ZX" or (owner.start is not None and start != owner.start)


def _stat(pid: int) -> tuple[str, str] | None:
    """(state, start time) from /proc/<pid>/stat; None without /proc or without the pid."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # the name (field 2) may hold spaces
    return fields[0], fields[19]  # fields 3 and 22


def _me(pid: int) -> Owner:
    stat = _stat(pid)
    try:
        pidns: str | None = os.readlink("/proc/self/ns/pid")
    except OSError:
        pidns = None
    return Owner(pid, stat[1] if stat else None, socket.gethostname(), pidns)


def _write_owner(path: str, owner: Owner) -> None:
    tmp = os.path.join(path, f".{OWNER}.tmp")
    with open(tmp, "w") as f:
        json.dump({"version": 1, **owner._asdict()}, f)
    os.replace(tmp, os.path.join(path, OWNER))  # readers see a whole file or none


def _read_owner(folder: str) -> Owner | None:
    try:
        with open(os.path.join(folder, OWNER)) as f:
            d = json.load(f)
        owner = Owner(int(d["pid"]), d["start"], str(d["host"]), d["pidns"])
    except (OSError, ValueError, TypeError, KeyError):
        return None
    return owner if owner.pid > 0 else None
