"""InfoBatch (baseline): prune a random part of the below-mean samples and up-weight the rest.

Rules of `SETA_SPEC.md` (Qin et al., ICLR 2024; reference code github NUS-HPC-AI-Lab/InfoBatch,
`infobatch/infobatch.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from seta_stream.policies.base import (
    BLOCK,
    PolicyMixin,
    Selection,
    base_info,
    check_anneal,
    check_call,
    check_epochs,
    check_init_score,
    check_prune_ratio,
    check_scores,
    epoch_rng,
    fill_unseen,
    is_annealing,
    keep_count,
    keep_fraction,
    random_mask,
)

_SALT = 0x1BF0


@dataclass(frozen=True, kw_only=True)
class InfoBatch(PolicyMixin):
    """InfoBatch, as `SETA_SPEC.md` states it.

    Per epoch e, with keep = min(1, max(0.1, 1 − prune_ratio)):

    - Annealing (`e + 1 > epochs·anneal`): every sample, weight 1.
    - Otherwise: `low = {i : score[i] < mean(score)}` (strict; NaN = never seen =
      `init_score`). A uniform random `floor(keep·|low|)` of `low` is kept with weight
      `1/keep`; every other sample is kept with weight 1. At epoch 0 all scores are equal, so
      nothing is below the mean: full data.

    The mean is computed in float64 (exact for equal scores, so epoch 0 is always full data).
    Weights are 1 in every annealing epoch (the reference leaves some at 1/keep when
    `epochs·anneal` is not an integer). Multiply each sample's training loss by its weight.
    """

    name: ClassVar[str] = "infobatch"

    epochs: int
    prune_ratio: float = 0.5
    anneal: float = 0.875
    init_score: float = 3.0

    def __post_init__(self) -> None:
        check_epochs(self.epochs)
        check_prune_ratio(self.prune_ratio)
        check_anneal(self.anneal)
        check_init_score(self.init_score)

    def select(self, scores: np.ndarray, epoch: int, *, seed: int = 0) -> Selection:
        """Pick epoch `epoch`'s samples and their loss weights from `scores`."""
        epoch, seed = check_call(epoch, seed)
        has_unseen = check_scores(scores)
        n = int(scores.size)
        if is_annealing(epoch, self.epochs, self.anneal):
            ids = np.arange(n, dtype=np.int64)
            info = base_info("anneal", epoch, n, n)
            info.update(num_low=None, num_low_kept=None)
            return Selection(ids=ids, weights=None, info=info)

        values = fill_unseen(scores, self.init_score) if has_unseen else scores
        mean = values.mean(dtype=np.float64)
        low = values < np.float64(mean)  # compared in float64, not at the mean rounded to float32
        n_low = int(np.count_nonzero(low))
        keep = keep_fraction(self.prune_ratio)
        rng = epoch_rng(seed, epoch, _SALT)
        kept_low = random_mask(rng, n_low, keep_count(n_low, keep))
        n_low_kept = int(np.count_nonzero(kept_low))
        chosen = ~low
        chosen[low] = kept_low
        del kept_low
        ids = np.flatnonzero(chosen).astype(np.int64, copy=False)
        del chosen
        weights = None
        if n_low_kept and keep < 1.0:
            weights = _weights(low, ids, np.float32(1.0 / keep))
        info = base_info("prune", epoch, n, int(ids.size))
        info.update(mean_score=float(mean), num_low=n_low, num_low_kept=n_low_kept)
        return Selection(ids=ids, weights=weights, info=info)


def _weights(low: np.ndarray, ids: np.ndarray, up: np.float32) -> np.ndarray:
    """`up` for the ids in `low`, 1 for the others (a block at a time: no mask of all ids)."""
    weights = np.empty(ids.size, dtype=np.float32)
    for s in range(0, ids.size, BLOCK):
        part = ids[s : s + BLOCK]
        weights[s : s + BLOCK] = np.where(low[part], up, np.float32(1.0))
    return weights
