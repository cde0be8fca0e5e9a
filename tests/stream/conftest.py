"""A small MNIST-1D-like dataset in tar shards, shared by the stream tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from seta_stream.shards import ConvertOptions, convert, open_source

N = 1000


@pytest.fixture(scope="session", autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)  # 2 shared cores: intra-op threads fight DataLoader workers


@pytest.fixture(scope="session")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("stream-data")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, 40)).astype(np.float32)
    y = rng.integers(0, 10, N)
    np.savez(root / "src.npz", x=x, y=y)
    convert(
        open_source(str(root / "src.npz")),
        root / "ds",
        ConvertOptions(samples_per_shard=150, progress=False),
    )
    return root / "ds"
