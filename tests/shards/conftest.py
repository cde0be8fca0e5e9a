"""Fixtures that write small sources in tmp_path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


@pytest.fixture
def npz_source(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    arrays = {
        "x": rng.standard_normal((300, 40)).astype(np.float32),
        "y": rng.integers(0, 10, 300),
        "w": rng.random(300),
    }
    path = tmp_path / "src.npz"
    np.savez(path, **arrays)
    return path, arrays
