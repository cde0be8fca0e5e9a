"""SeTa: random pruning, 1-D k-means on the losses, a sliding window over the groups, annealing.

The rules are those of `SETA_SPEC.md` (Zhou, Gao, Wang, "Scale Efficient Training for Large
Datasets", CVPR 2025; reference code github mrazhou/SeTa, `seta.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from seta_stream.errors import PolicyError
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
    nonempty,
    random_mask,
    random_subset,
)
from seta_stream.policies.kmeans1d import kmeans1d_sorted

_SALT = 0x5E7A
_MAX_GROUPS = 127  # group ranks are stored as int8


@dataclass(frozen=True, kw_only=True)
class _Groups:
    """Groups of the clustered samples R, easy -> hard."""

    labels: np.ndarray  # int8, one per sample of R (in R's order)
    sizes: list[int]
    stats: list[dict[str, Any]]


@dataclass(frozen=True, kw_only=True)
class SeTa(PolicyMixin):
    """SeTa (Scale Efficient Training), exactly as `SETA_SPEC.md` states it.

    Per epoch e, with keep = min(1, max(0.1, 1 − prune_ratio)):

    - Annealing (`e + 1 > epochs·anneal`, float64 product): a uniform random
      `floor(keep·N)` of all samples (all N when prune_ratio is 0). No clustering.
    - Otherwise: R = a uniform random `floor(keep·N)` samples; 1-D k-means with `num_groups`
      groups on their scores (NaN = never seen = `init_score`), ordered by mean, easy -> hard
      (all scores equal, e.g. epoch 0: R is split at random into k chunks whose sizes differ by
      at most one). At e = 0 every group is kept; after that a window of
      `w = round(k·window)` groups (half to even, >= 1) starting at `e mod (k − w + 1)`.
    - Every weight is 1.

    If R has no more than k samples, or fewer than k distinct scores, there are as many groups
    as distinct scores (k-means cannot find more); the window is then computed with that count.

    Beyond the paper, `target_keep` (a fraction in (0, 1], default None = off) chooses the
    window's *width* each epoch: of the widths 1…k (window start `e mod (k − w + 1)`, so it
    still moves easy -> hard; start 0 at e = 0), the one whose kept count is nearest
    `target_keep·N` (ties: the wider). Groups stay whole, so the kept fraction is near, not
    at, the target; `window` is then ignored. This turns SeTa's variable saving into a budget.

    Args:
        epochs: E, total epochs (>= 1).
        prune_ratio: r, fraction dropped uniformly at random before clustering, in [0, 1).
        num_groups: k, groups of the loss distribution, 1…127.
        window: α, fraction of the groups the window covers, in (0, 1].
        anneal: δ, pruning runs while `e + 1 <= E·δ`, in (0, 1].
        init_score: the score of a sample never seen (finite).
        target_keep: optional kept fraction of N the window width aims at, in (0, 1].
    """

    name: ClassVar[str] = "seta"

    epochs: int
    prune_ratio: float = 0.0
    num_groups: int = 10
    window: float = 0.5
    anneal: float = 0.875
    init_score: float = 3.0
    target_keep: float | None = None

    def __post_init__(self) -> None:
        check_epochs(self.epochs)
        check_prune_ratio(self.prune_ratio)
        k = self.num_groups
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= _MAX_GROUPS:
            raise PolicyError(f"num_groups must be an int in [1, {_MAX_GROUPS}], got {k!r}")
        w = self.window
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not 0.0 < w <= 1.0:
            raise PolicyError(f"window must be a number in (0, 1], got {w!r}")
        check_anneal(self.anneal)
        check_init_score(self.init_score)
        t = self.target_keep
        if t is not None and (
            isinstance(t, bool) or not isinstance(t, (int, float)) or not 0.0 < t <= 1.0
        ):
            raise PolicyError(f"target_keep must be None or a number in (0, 1], got {t!r}")

    def select(self, scores: np.ndarray, epoch: int, *, seed: int = 0) -> Selection:
        """Pick epoch `epoch`'s samples from `scores` (float32, length N, NaN = never seen)."""
        epoch, seed = check_call(epoch, seed)
        has_unseen = check_scores(scores)
        n = int(scores.size)
        rng = epoch_rng(seed, epoch, _SALT)
        count = keep_count(n, keep_fraction(self.prune_ratio))
        if is_annealing(epoch, self.epochs, self.anneal):
            ids = nonempty(random_subset(rng, n, count), rng, n)
            info = base_info("anneal", epoch, n, int(ids.size))
            info.update(groups=[], window=None, num_clustered=0)
            unclustered = np.full(n, -1, dtype=np.int8)
            return Selection(ids=ids, weights=None, groups=unclustered, info=info)

        in_r = random_mask(rng, n, count) if count < n else None
        values = scores if in_r is None else scores[in_r]
        if has_unseen:
            values = fill_unseen(values, self.init_score)
        num_clustered = int(values.size)
        found = _cluster(values, self.num_groups, rng)
        del values  # memory: at most a few N-sized arrays at once (a copy when pruned or filled)
        start, stop = self._window(found.sizes, epoch, n)
        if in_r is None:
            groups = found.labels
        else:
            groups = np.full(n, -1, dtype=np.int8)
            groups[in_r] = found.labels
            del in_r
        ids = nonempty(_in_window(groups, start, stop), rng, n)
        info = base_info("prune", epoch, n, int(ids.size))
        info.update(groups=found.stats, window=[start, stop], num_clustered=num_clustered)
        return Selection(ids=ids, weights=None, groups=groups, info=info)

    def _window(self, sizes: list[int], t: int, n: int) -> tuple[int, int]:
        k = len(sizes)
        if self.target_keep is not None:
            return target_window(sizes, t, self.target_keep * n)
        return window_bounds(k, t, self.window)


def window_bounds(k: int, t: int, alpha: float) -> tuple[int, int]:
    """The spec's window over k groups at pruning epoch t, as half-open group ranks.

    t = 0: all groups. Else `w = max(1, round(k·α))` (Python's round: half to even), and the
    window starts at `t mod (k − w + 1)`.
    """
    if k == 0:
        return 0, 0
    if t == 0:
        return 0, k
    w = min(k, max(1, round(k * alpha)))
    start = t % (k - w + 1)
    return start, start + w


def target_window(sizes: list[int], t: int, target: float) -> tuple[int, int]:
    """The window (start `t mod (k − w + 1)`) whose kept count is nearest `target`; ties wider."""
    k = len(sizes)
    if k == 0:
        return 0, 0
    cum = np.concatenate(([0], np.cumsum(sizes)))
    best: tuple[float, int] | None = None
    best_window = (0, k)
    for w in range(1, k + 1):
        start = t % (k - w + 1)
        key = (abs(float(cum[start + w] - cum[start]) - target), -w)
        if best is None or key < best:
            best, best_window = key, (start, start + w)
    return best_window


def _in_window(groups: np.ndarray, start: int, stop: int) -> np.ndarray:
    """Sorted int64 ids whose group rank is in [start, stop) (-1, not in R, never is)."""
    kept = np.empty(groups.size, dtype=bool)
    for s in range(0, groups.size, BLOCK):
        part = groups[s : s + BLOCK]
        np.logical_and(part >= start, part < stop, out=kept[s : s + BLOCK])
    return np.flatnonzero(kept).astype(np.int64, copy=False)


def _cluster(values: np.ndarray, k: int, rng: np.random.Generator) -> _Groups:
    """Group `values` easy -> hard: 1-D k-means, or k random equal chunks if all are equal."""
    m = int(values.size)
    if m == 0:
        return _Groups(labels=np.empty(0, np.int8), sizes=[], stats=[])
    if m > k and values.min() == values.max():  # epoch 0: no sort needed
        return _equal_chunks(m, k, float(values[0]), rng)
    sorted_values = np.sort(values)
    part = kmeans1d_sorted(sorted_values, k)
    lowers = sorted_values[part.bounds[1:-1]]
    labels = np.zeros(m, dtype=np.int8)
    above = np.empty(min(m, BLOCK), dtype=bool)
    for s in range(0, m, BLOCK):  # a block at a time: no N-sized mask
        chunk, out = values[s : s + BLOCK], labels[s : s + BLOCK]
        for lower in lowers:
            np.greater_equal(chunk, lower, out=above[: chunk.size])
            out += above[: chunk.size]
    stats = []
    starts, stops = part.bounds[:-1].tolist(), part.bounds[1:].tolist()
    for rank, (a, b) in enumerate(zip(starts, stops, strict=True)):
        stats.append(
            {
                "rank": rank,
                "size": b - a,
                "min": float(sorted_values[a]),
                "max": float(sorted_values[b - 1]),
                "mean": float(part.means[rank]),
            }
        )
    return _Groups(labels=labels, sizes=part.sizes.tolist(), stats=stats)


def _equal_chunks(m: int, k: int, value: float, rng: np.random.Generator) -> _Groups:
    """k random chunks of m samples whose sizes differ by at most one (larger first).

    The order is `rng.permutation(m)`, drawn as int32 when m allows: `shuffle` makes the same
    draws for any dtype, so the same order in half the memory.
    """
    sizes = [m // k + (1 if g < m % k else 0) for g in range(k)]
    order = np.arange(m, dtype=np.int32 if m < 2**31 else np.int64)
    rng.shuffle(order)
    labels = np.empty(m, dtype=np.int8)
    at = 0
    for g, size in enumerate(sizes):
        labels[order[at : at + size]] = g
        at += size
    stats = [
        {"rank": g, "size": size, "min": value, "max": value, "mean": value}
        for g, size in enumerate(sizes)
    ]
    return _Groups(labels=labels, sizes=sizes, stats=stats)
