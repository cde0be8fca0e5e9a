"""Shared fixtures. A thread that outlives its test fails the test (litdata's `_thread_police`);
a work folder of this run left in the temp folder fails the run."""

from __future__ import annotations

import gc
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest

from seta_stream.workdir import OWNER, PREFIX, remove_dead

ROOT = Path(__file__).resolve().parents[1]


def load_script(path: str | Path, name: str | None = None) -> ModuleType:
    """Import a script (tools/, benchmarks/, a test's child script) as a module, by path."""
    path = ROOT / path
    spec = importlib.util.spec_from_file_location(name or path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while a class is made
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


@pytest.fixture(scope="session")
def script() -> Callable[..., ModuleType]:
    """`script("tools/shard.py")`: the script as a module (see `load_script`)."""
    return load_script


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


# webdataset (1.0.2) never closes the shard files it opens (`tariterators.tar_file_expander`
# leaves them to the garbage collector). Tests marked `webdataset` ignore those two warnings for
# a file object and collect the garbage before they end (so the warning lands inside them);
# everywhere else a ResourceWarning or an unraisable one fails the test (pyproject: "error").
_WEBDATASET_LEAKS = (
    "ignore:unclosed file <_io.(BufferedReader|FileIO) name=:ResourceWarning",
    "ignore:Exception ignored in. <_io.(BufferedReader|FileIO) name=:"
    "pytest.PytestUnraisableExceptionWarning",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("webdataset") is not None:
            for rule in _WEBDATASET_LEAKS:
                item.add_marker(pytest.mark.filterwarnings(rule))


@pytest.fixture(autouse=True)
def _webdataset_leaks(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if request.node.get_closest_marker("webdataset") is not None:
        gc.collect()  # webdataset's unclosed files are finalized here, under this test's filters


@pytest.fixture(autouse=True)
def _thread_police() -> Iterator[None]:
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 10.0  # a grace for exiting threads on a loaded 2-core machine
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


@pytest.fixture(scope="session", autouse=True)
def _work_folders() -> Iterator[None]:
    """Sweep the temp folder of dead runs' work folders; at the end, none may be this run's."""
    remove_dead()
    yield
    gc.collect()  # a SeTaStream no test holds any more removes its folder now
    remove_dead()  # those of children a test killed
    ours = []
    for owner in Path(tempfile.gettempdir()).glob(f"{PREFIX}*/{OWNER}"):
        try:
            if json.loads(owner.read_text())["pid"] == os.getpid():
                ours.append(str(owner.parent))
        except (OSError, ValueError, KeyError):
            continue
    assert not ours, f"work folders left by SeTaStreams still referenced at the end: {ours}"


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[ModuleType]:
    """A local Ray cluster of 2 CPUs for the session (tests marked `ray`); its session files
    go to a temp folder removed at the end."""
    import ray
    import ray.data

    folder = tempfile.mkdtemp(prefix="seta-ray-")
    try:
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            object_store_memory=256 << 20,
            log_to_driver=False,
            _temp_dir=folder,
        )
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        yield ray
    finally:
        ray.shutdown()
        shutil.rmtree(folder, ignore_errors=True)
