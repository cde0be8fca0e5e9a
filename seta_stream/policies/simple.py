"""Baselines without scores: Full, Static (one seeded random subset) and DynamicRandom."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from seta_stream.policies.base import (
    PolicyMixin,
    Selection,
    base_info,
    check_anneal,
    check_call,
    check_epochs,
    check_prune_ratio,
    check_scores,
    epoch_rng,
    is_annealing,
    keep_count,
    keep_fraction,
    nonempty,
    random_subset,
)

_SALT_DYNAMIC = 0xD7A
_SALT_STATIC = 0x57A7


@dataclass(frozen=True, kw_only=True)
class Full(PolicyMixin):
    """Every sample, every epoch: the baseline every saving is measured against."""

    name: ClassVar[str] = "full"

    def select(self, scores: np.ndarray, epoch: int, *, seed: int = 0) -> Selection:
        """All N samples, weight 1."""
        epoch, seed = check_call(epoch, seed)
        check_scores(scores)
        n = int(scores.size)
        return Selection(ids=np.arange(n, dtype=np.int64), info=base_info("full", epoch, n, n))


@dataclass(frozen=True, kw_only=True)
class Static(PolicyMixin):
    """One uniform random `floor(keep·N)` subset, drawn once from `seed`, the same every epoch.

    keep = min(1, max(0.1, 1 − prune_ratio)). A random subset, not the reference's first
    (1 − r)·N samples: the fair baseline when the data is stored in some order.
    """

    name: ClassVar[str] = "static"

    prune_ratio: float

    def __post_init__(self) -> None:
        check_prune_ratio(self.prune_ratio)

    def select(self, scores: np.ndarray, epoch: int, *, seed: int = 0) -> Selection:
        """The same subset for every epoch (it depends on `seed` and N only)."""
        epoch, seed = check_call(epoch, seed)
        check_scores(scores)
        n = int(scores.size)
        rng = np.random.default_rng(np.random.SeedSequence([seed, _SALT_STATIC]))
        count = keep_count(n, keep_fraction(self.prune_ratio))
        ids = nonempty(random_subset(rng, n, count), rng, n)
        return Selection(ids=ids, info=base_info("prune", epoch, n, int(ids.size)))


@dataclass(frozen=True, kw_only=True)
class DynamicRandom(PolicyMixin):
    """A fresh uniform random `floor(keep·N)` subset each epoch; annealing epochs use all.

    keep = min(1, max(0.1, 1 − prune_ratio)); annealing while `e + 1 > epochs·anneal`.
    """

    name: ClassVar[str] = "dynamic_random"

    epochs: int
    prune_ratio: float
    anneal: float = 0.875

    def __post_init__(self) -> None:
        check_epochs(self.epochs)
        check_prune_ratio(self.prune_ratio)
        check_anneal(self.anneal)

    def select(self, scores: np.ndarray, epoch: int, *, seed: int = 0) -> Selection:
        """A random subset drawn from (seed, epoch), or all samples when annealing."""
        epoch, seed = check_call(epoch, seed)
        check_scores(scores)
        n = int(scores.size)
        if is_annealing(epoch, self.epochs, self.anneal):
            ids = np.arange(n, dtype=np.int64)
            return Selection(ids=ids, info=base_info("anneal", epoch, n, n))
        rng = epoch_rng(seed, epoch, _SALT_DYNAMIC)
        count = keep_count(n, keep_fraction(self.prune_ratio))
        ids = nonempty(random_subset(rng, n, count), rng, n)
        return Selection(ids=ids, info=base_info("prune", epoch, n, int(ids.size)))
