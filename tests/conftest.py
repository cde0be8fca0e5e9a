"""Shared fixtures. A thread that outlives its test fails the test (litdata's `_thread_police`)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

# Threads that third-party libraries start and keep on purpose (not ours to join).
_ALLOWED_THREAD_PREFIXES = (
    "fsspecIO",  # fsspec's event loop thread for async filesystems
    "asyncio_",  # fsspec/s3fs executors
    "ThreadPoolExecutor",  # concurrent.futures pools owned by the caller of a test helper
    "Thread-",  # moto's server threads are named by the stdlib default
    "pydevd",
    "tqdm_monitor",  # tqdm's monitor thread (class TMonitor)
)


def _ours(thread: threading.Thread) -> bool:
    return (thread.is_alive() and not thread.daemon) or thread.name.startswith("seta_stream")


@pytest.fixture(autouse=True)
def _thread_police() -> Iterator[None]:
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 2.0
    while True:
        leaked = [
            t
            for t in threading.enumerate()
            if t not in before
            and t.is_alive()
            and _ours(t)
            and not t.name.startswith(_ALLOWED_THREAD_PREFIXES)
        ]
        if not leaked or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert not leaked, f"threads leaked by this test: {[t.name for t in leaked]}"
