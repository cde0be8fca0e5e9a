"""A small dataset written with our own converter, and the crash tests' helper scripts."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

from seta_stream.shards import ConvertOptions, convert, open_source

N = 480  # samples of the shared dataset


@pytest.fixture(scope="session", autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)  # 2 shared cores: intra-op threads fight the child processes


@pytest.fixture(scope="session")
def source(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray]]:
    """An .npz of N samples (x: float32 vectors, y: labels) and its arrays."""
    rng = np.random.default_rng(7)
    arrays: dict[str, np.ndarray] = {
        "x": rng.standard_normal((N, 12)).astype(np.float32),
        "y": rng.integers(0, 10, N),
    }
    path = tmp_path_factory.mktemp("crash-src") / "src.npz"
    np.savez(path, x=arrays["x"], y=arrays["y"])
    return path, arrays


@pytest.fixture(scope="session")
def dataset(source: tuple[Path, dict[str, np.ndarray]], tmp_path_factory) -> Path:
    """`source` in tar shards of 100 samples (sample id i = row i of the arrays)."""
    out = tmp_path_factory.mktemp("crash-ds") / "ds"
    convert(open_source(str(source[0])), out, ConvertOptions(samples_per_shard=100, progress=False))
    return out


@pytest.fixture(scope="session")
def child(script) -> ModuleType:
    """The child script (tests/crash/_child.py) as a module: its constants and helpers."""
    return script(Path(__file__).with_name("_child.py"), "seta_crash_child")


@pytest.fixture(scope="session")
def procs(script) -> ModuleType:
    """Start, watch and kill child processes (tests/crash/_procs.py)."""
    return script(Path(__file__).with_name("_procs.py"), "seta_crash_procs")


@pytest.fixture(scope="session")
def zygote(procs: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A process that has imported torch and forks the kill loop's children (`_procs.Zygote`)."""
    z = procs.Zygote(tmp_path_factory.mktemp("zygote") / "stderr")
    try:
        yield z
    finally:
        z.close()
