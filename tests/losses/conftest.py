"""Stand-ins for what a loss table meets (a dataset, a policy's selection) and the kill child."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest


@dataclass(frozen=True)
class TinyDataset:
    """Implements `seta_stream.losses.DatasetLike` (a fingerprint and a size; no keys)."""

    fingerprint: str
    num_samples: int


@dataclass(frozen=True)
class TinySelection:
    """Implements `seta_stream.losses.SelectionLike`."""

    ids: np.ndarray
    weights: np.ndarray | None = None
    groups: np.ndarray | None = None
    info: dict[str, Any] = field(default_factory=dict)


def _seta_like(num_samples: int, epoch: int, num_groups: int = 3) -> TinySelection:
    """Groups by id range, a window of all but one group, as a SeTa pruning epoch records."""
    groups = np.full(num_samples, -1, np.int8)
    clustered = num_samples - num_samples // 10  # the rest was pruned at random
    groups[:clustered] = np.arange(clustered) * num_groups // clustered
    window = (epoch % 2, epoch % 2 + num_groups - 1)
    ids = np.flatnonzero((groups >= window[0]) & (groups < window[1])).astype(np.int64)
    info = {
        "phase": "prune",
        "kept_fraction": ids.size / num_samples,
        "window": list(window),
        "groups": [{"rank": g, "size": int((groups == g).sum())} for g in range(num_groups)],
    }
    return TinySelection(ids=ids, groups=groups, info=info)


@pytest.fixture
def tiny_dataset() -> type[TinyDataset]:
    return TinyDataset


@pytest.fixture
def tiny_selection() -> type[TinySelection]:
    return TinySelection


@pytest.fixture
def seta_selection() -> Callable[..., TinySelection]:
    return _seta_like


@pytest.fixture(scope="session")
def kill_child(script) -> ModuleType:
    """The child script of the kill and lock tests, loaded as a module for its helpers."""
    return script(Path(__file__).with_name("_kill_child.py"), "seta_losses_kill_child")
