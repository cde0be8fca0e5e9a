"""The loss writer: a bounded queue and one background thread that applies queued work in order.

The training step only puts a batch on the queue (`put`); the thread named
`seta_stream-loss-writer` applies it. A full queue blocks `put` (back-pressure) instead of
growing, until the writer has drained it to half: producer and writer then take turns in long
runs instead of handing the GIL back and forth for every batch. While it has a backlog, the
writer yields the GIL (and its CPU) every `YIELD_EVERY_S`, so a training thread waiting for
the GIL waits about that long at most, not a whole switch interval (5 ms).

Control operations (flush, snapshot, a consistent copy of the scores) are `call`s: they run on
the writer thread after everything queued before them, so they see every earlier update and
never race with one.

Errors: an exception while applying a batch marks the writer failed. The thread then keeps
draining the queue without applying (so nobody blocks on a full queue) and every later `put`,
`call` and `close` raises `LossTableError` from the original exception: it is never lost. An
exception inside a `call` is raised to that call's caller only; the writer stays healthy.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np

from seta_stream.errors import LossTableError

THREAD_NAME = "seta_stream-loss-writer"
YIELD_EVERY_S = 1e-3
_POLL_S = 0.05
T = TypeVar("T")


@dataclass(slots=True)
class Batch:
    """One `update()`: private copies of the ids and losses, the epoch they were seen in, and
    the step (one for the batch, or one per sample for updates gathered from other ranks)."""

    ids: np.ndarray[Any, np.dtype[np.int64]]
    losses: np.ndarray[Any, np.dtype[np.float32]]
    epoch: int
    step: int | np.ndarray[Any, np.dtype[np.int64]] = -1


class _Call(Generic[T]):
    __slots__ = ("done", "error", "fn", "result")

    def __init__(self, fn: Callable[[], T]) -> None:
        self.fn = fn
        self.done = threading.Event()
        self.result: T | None = None
        self.error: BaseException | None = None


_STOP = object()


class LossWriter:
    """Owns the queue and the thread; `apply` is called on the thread, one batch at a time."""

    def __init__(self, apply: Callable[[Batch], None], *, max_pending: int) -> None:
        self._apply = apply
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max_pending)
        self._low_water = max_pending // 2
        self._room = threading.Event()  # set by the writer once the queue is down to half
        self._error: BaseException | None = None
        self._error_reported = False
        self._closed = False
        self.batches_applied = 0
        self.samples_applied = 0
        self.blocked_puts = 0
        self._thread = threading.Thread(target=self._run, name=THREAD_NAME, daemon=True)
        self._thread.start()

    # -- caller side -------------------------------------------------------------------------
    @property
    def pending(self) -> int:
        """Items queued and not yet taken by the thread."""
        return self._queue.qsize()

    @property
    def failed(self) -> bool:
        return self._error is not None

    def check(self) -> None:
        """Raise the writer's failure, if it has failed."""
        if self._error is not None:
            self._error_reported = True
            raise LossTableError(
                f"the loss writer thread failed applying an update: {self._error!r}; updates "
                "queued since the last successful flush() may be lost. Reopen the table."
            ) from self._error

    def put(self, batch: Batch) -> None:
        """Queue a batch; block while the queue is full (back-pressure)."""
        self.check()
        if self._closed:
            raise LossTableError("the loss table is closed; update() after close()")
        try:
            self._queue.put_nowait(batch)
            return
        except queue.Full:
            self.blocked_puts += 1
        self._put_blocking(batch)

    def _put_blocking(self, item: object) -> None:
        while True:
            try:
                self._queue.put_nowait(item)
                return
            except queue.Full:
                pass
            self._room.clear()
            if self._queue.qsize() > self._low_water:  # checked after clear(): no lost wake-up
                self._room.wait(_POLL_S)
            self.check()
            if not self._thread.is_alive():
                raise LossTableError("the loss writer thread is not running")

    def call(self, fn: Callable[[], T]) -> T:
        """Run `fn` on the writer thread after everything queued so far; return its result."""
        self.check()
        if self._closed:
            raise LossTableError("the loss table is closed")
        item: _Call[T] = _Call(fn)
        self._put_blocking(item)
        while not item.done.wait(_POLL_S):
            if not self._thread.is_alive():
                raise LossTableError("the loss writer thread is not running")
        self.check()
        if item.error is not None:
            raise item.error
        result, item.result = item.result, None  # the thread may still hold `item`
        return result  # type: ignore[return-value]  # set when done and error is None

    def close(self) -> None:
        """Stop the thread after it has drained the queue, and join it. Idempotent.

        Raises the writer's failure unless an earlier `put`/`call`/`check` already raised it.
        """
        if not self._closed:
            self._closed = True
            if self._thread.is_alive():
                self._put_blocking(_STOP)
                self._thread.join()
        if self._error is not None and not self._error_reported:
            self.check()

    # -- writer thread -----------------------------------------------------------------------
    def _run(self) -> None:
        busy_since = time.perf_counter()
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                item = self._queue.get()  # idle: the GIL is free while we wait
                busy_since = time.perf_counter()
            if item is _STOP:
                return
            if isinstance(item, _Call):
                self._run_call(item)
                item = None  # what it returns or holds may be N-sized: not kept while idle
            elif self._error is None:
                try:
                    self._apply(item)
                except BaseException as e:  # kept and re-raised on the caller side
                    self._error = e
                else:
                    self.batches_applied += 1
                    self.samples_applied += len(item.ids)
            if not self._room.is_set() and self._queue.qsize() <= self._low_water:
                self._room.set()
            if time.perf_counter() - busy_since > YIELD_EVERY_S:
                os.sched_yield()  # let a training thread that waits for the GIL have it
                busy_since = time.perf_counter()

    def _run_call(self, item: _Call[Any]) -> None:
        try:
            if self._error is None:
                item.result = item.fn()
        except BaseException as e:  # raised to the caller of call()
            item.error = e
        finally:
            item.done.set()
