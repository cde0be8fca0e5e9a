"""RePB (Resolving Pruning Biases): local window pruning, uniform resampling, temporal reweighting.

From Zhou et al., "Inconsistency Biases in Dynamic Data Pruning" (ICLR 2026, OpenReview
Zw1Uw7u6Su), built from the paper's description; `docs/policies.md` states every choice the
description leaves open and what this implementation chose.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from seta_stream.errors import PolicyError
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
)

_SALT = 0x4EB8


@dataclass(frozen=True, kw_only=True)
class RePB(PolicyMixin):
    """RePB on per-sample scores, the step of each score, and per-sample selection counts.

    Per epoch e (N samples; a sample is *seen* when it has a finite score and a step >= 0):

    - e = 0, annealing (`e + 1 > epochs·anneal`), or nothing seen: every sample, weight 1.
    - Otherwise, **local windows**: the seen samples fall into windows by
      `step // window_steps` (losses computed within the same `window_steps` steps, so under
      nearly the same model). Of the `S` seen samples, `P = floor(prune_ratio·S)` are pruned;
      window j (m_j samples) prunes `p_j = floor(prune_ratio·m_j)`, plus one for the windows
      with the largest remainders `prune_ratio·m_j − p_j` (ties: earlier window) until the
      p_j sum to P. So exactly `N − P` samples are kept.
    - **Uniform resampling**: window j's candidates are its `c_j = min(m_j, ceil(easy·p_j))`
      lowest scores (ties: lower id); p_j of them, drawn uniformly at random, are pruned.
      `easy = 1` prunes the p_j lowest outright; the default 2 prunes each low-loss candidate
      with probability about 1/2, so no sample is left out epoch after epoch.
    - Samples never seen are always kept.
    - **Cumulative temporal reweighting**: a kept sample that recorded selections held in
      c of the e epochs before this one gets weight `min(max_weight, (e + 1) / (c + 1))`,
      the inverse of its selection frequency including this epoch; a sample kept every epoch
      has weight 1. Multiply each sample's training loss by its weight.

    Randomness comes from (seed, epoch) only, so every DDP rank computes the same selection
    from the same inputs. `SeTaStream` passes `steps` and `selection_counts` (see `needs`).

    Args:
        epochs: E, total epochs (>= 1).
        prune_ratio: fraction of the seen samples pruned each pruning epoch, in [0, 1).
        window_steps: steps (`update()` calls) per local window, >= 1.
        easy: candidates per pruned sample in a window (>= 1).
        max_weight: the largest loss weight (>= 1).
        anneal: δ, pruning runs while `e + 1 <= E·δ`, in (0, 1].
    """

    name: ClassVar[str] = "repb"
    needs: ClassVar[frozenset[str]] = frozenset({"steps", "selection_counts"})

    epochs: int
    prune_ratio: float = 0.35
    window_steps: int = 16
    easy: float = 2.0
    max_weight: float = 3.0
    anneal: float = 0.875

    def __post_init__(self) -> None:
        check_epochs(self.epochs)
        check_prune_ratio(self.prune_ratio)
        check_anneal(self.anneal)
        ws = self.window_steps
        if isinstance(ws, bool) or not isinstance(ws, int) or ws < 1:
            raise PolicyError(f"window_steps must be an int >= 1, got {ws!r}")
        for label, value in (("easy", self.easy), ("max_weight", self.max_weight)):
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not (math.isfinite(value) and value >= 1.0)
            ):
                raise PolicyError(f"{label} must be a finite number >= 1, got {value!r}")

    def select(
        self,
        scores: np.ndarray,
        epoch: int,
        *,
        seed: int = 0,
        steps: np.ndarray | None = None,
        selection_counts: np.ndarray | None = None,
    ) -> Selection:
        """Pick epoch `epoch`'s samples and their loss weights.

        `steps`: int64, the step of each sample's score (-1: never seen). `selection_counts`:
        per sample, in how many recorded epochs before `epoch` it was selected.
        """
        epoch, seed = check_call(epoch, seed)
        check_scores(scores)
        n = int(scores.size)
        steps, counts = _check_inputs(steps, selection_counts, n)
        annealing = is_annealing(epoch, self.epochs, self.anneal)
        seen = np.flatnonzero((steps >= 0) & ~np.isnan(scores))
        if annealing or epoch == 0 or seen.size == 0:
            info = base_info("anneal" if annealing else "full", epoch, n, n)
            info.update(num_seen=int(seen.size), num_windows=0, num_pruned=0)
            return Selection(ids=np.arange(n, dtype=np.int64), weights=None, info=info)

        pruned, num_windows = self._pruned(scores, steps, seen, epoch_rng(seed, epoch, _SALT))
        keep = np.ones(n, dtype=bool)
        keep[pruned] = False
        ids = np.flatnonzero(keep).astype(np.int64, copy=False)
        del keep
        ratio = (epoch + 1) / (counts[ids].astype(np.float64) + 1.0)
        weights = np.minimum(ratio, self.max_weight).astype(np.float32)
        info = base_info("prune", epoch, n, int(ids.size))
        info.update(
            num_seen=int(seen.size),
            num_windows=num_windows,
            num_pruned=int(pruned.size),
            mean_weight=float(weights.mean(dtype=np.float64)),
            max_weight=float(weights.max()),
        )
        return Selection(ids=ids, weights=None if (weights == 1).all() else weights, info=info)

    def _pruned(
        self, scores: np.ndarray, steps: np.ndarray, seen: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, int]:
        """The ids pruned (sorted int64) and the number of windows."""
        window = steps[seen] // self.window_steps
        order = np.lexsort((seen, scores[seen], window))  # by window, score, then id
        ids, window = seen[order], window[order]
        del order
        _, starts, sizes = np.unique(window, return_index=True, return_counts=True)
        quota = self.prune_ratio * sizes.astype(np.float64)
        per = np.floor(quota).astype(np.int64)
        extra = math.floor(self.prune_ratio * ids.size) - int(per.sum())
        if extra > 0:  # largest remainders first, earlier windows on ties
            per[np.argsort(-(quota - per), kind="stable")[:extra]] += 1
        elif extra < 0:  # float rounding put the floors above floor(r·S): smallest remainders
            order = np.argsort(quota - per, kind="stable")
            per[order[per[order] > 0][:-extra]] -= 1
        cand = np.minimum(sizes, np.ceil(self.easy * per).astype(np.int64))
        # candidate positions: the first cand[j] of window j in (score, id) order
        win_of = np.repeat(np.arange(sizes.size), sizes)
        pos = np.arange(ids.size) - np.repeat(starts, sizes)
        cand_at = np.flatnonzero(pos < np.repeat(cand, sizes))
        u = rng.random(cand_at.size)  # one uniform draw per candidate, in (window, score, id) order
        by_draw = cand_at[np.lexsort((u, win_of[cand_at]))]
        rank = np.arange(by_draw.size) - np.repeat(np.cumsum(cand) - cand, cand)
        pruned = np.sort(ids[by_draw[rank < np.repeat(per, cand)]])
        return pruned.astype(np.int64, copy=False), int(sizes.size)


def _check_inputs(
    steps: np.ndarray | None, counts: np.ndarray | None, n: int
) -> tuple[np.ndarray, np.ndarray]:
    if steps is None or counts is None:
        raise PolicyError(
            "RePB.select needs steps= (the step of each score) and selection_counts= (recorded "
            "selections per sample); SeTaStream passes them from its loss table"
        )
    for label, arr in (("steps", steps), ("selection_counts", counts)):
        if not isinstance(arr, np.ndarray) or arr.shape != (n,) or arr.dtype.kind not in "iu":
            raise PolicyError(
                f"{label} must be a 1-D integer array of {n} values, got "
                f"{getattr(arr, 'dtype', type(arr).__name__)} with shape "
                f"{getattr(arr, 'shape', None)}"
            )
    return steps, counts
