"""The folder a `SeTaStream` shares with its DataLoader workers: the plan and the counters.

The training process publishes each epoch's read order (and loss weights) as `.npy` files and
names the current epoch in `current.json` (replaced atomically); iterators in any process —
forked, spawned or persistent workers — memory-map them. `counters.npy` holds what every
process read and yielded: row 0 this epoch, row 1 since the start; slot 0 is the training
process, slot 1 + w DataLoader worker w.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import tempfile
from typing import NamedTuple

import numpy as np

from seta_stream.errors import SeTaStreamError

COUNTERS = (
    "samples_read",
    "samples_decoded",
    "bytes_read",
    "samples_yielded",
    "samples_skipped",
    "iterators",
)
READ, DECODED, BYTES, YIELDED, SKIPPED, ITERS = range(len(COUNTERS))
_SLOTS = 257


class Plan(NamedTuple):
    epoch: int
    order: np.ndarray  # selected ids in read order (memory-mapped)
    weights: np.ndarray | None  # loss weights aligned with `order`; None: all 1
    digest: str  # plan.selection_digest of the selection


class WorkDir:
    """A temporary folder; only the process that created it removes it."""

    def __init__(self, parent: str | None = None) -> None:
        self.path = tempfile.mkdtemp(prefix="seta_stream-", dir=parent)
        self.owner_pid = os.getpid()
        np.lib.format.open_memmap(
            self._file("counters.npy"), "w+", np.int64, (2, _SLOTS, len(COUNTERS))
        ).flush()

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
        if os.getpid() == self.owner_pid and os.path.isdir(self.path):
            shutil.rmtree(self.path, ignore_errors=True)
