"""SeTa: random pruning, 1-D k-means on the losses, a sliding window over the groups, annealing.

The rules are those of `SETA_SPEC.md` (Zhou, Gao, Wang, "Scale Efficient Training for Large
Datasets", CVPR 2025; reference code github mrazhou/SeTa, `seta.py`).
"""

from __future__ import annotations

import operator
from collections.abc import Callable
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

    Beyond the paper, `target_keep` (default None = off) makes the kept count exact: with
    `T = min(floor(target·N), |R|)` (at least 1), R's samples in score order (group rank, then
    score, then id: k-means groups are intervals of the score) are kept at the ranks
    `[hi − T, hi)`, where `hi` is the end of the paper's window (`window`, start
    `e mod (k − w + 1)`; every group at e = 0), shifted up to `[0, T)` when `hi < T`. The
    window's hard edge stays where the paper puts it; the window gives up its easiest
    samples when it holds more than T and takes the hardest of the easier groups when it holds
    fewer. Inner groups are kept whole; an edge group gives its highest (easy side) or lowest
    (hard side) scores, ties by id. So every pruning epoch keeps T samples (the target, when
    `target <= 1 − prune_ratio`). The
    target is a number in (0, 1], or a schedule: a list of `(epoch, keep)` points, linearly
    interpolated between points and constant before the first and after the last (it
    serialises), or a callable `epoch -> keep` (it cannot be serialised: `to_dict()` raises).

    Args:
        epochs: E, total epochs (>= 1).
        prune_ratio: r, fraction dropped uniformly at random before clustering, in [0, 1).
        num_groups: k, groups of the loss distribution, 1…127.
        window: α, fraction of the groups the window covers, in (0, 1].
        anneal: δ, pruning runs while `e + 1 <= E·δ`, in (0, 1].
        init_score: the score of a sample never seen (finite).
        target_keep: optional exact kept fraction of N, in (0, 1], or a schedule of it.
    """

    name: ClassVar[str] = "seta"

    epochs: int
    prune_ratio: float = 0.0
    num_groups: int = 10
    window: float = 0.5
    anneal: float = 0.875
    init_score: float = 3.0
    target_keep: TargetKeep = None

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
        object.__setattr__(self, "target_keep", check_target_keep(self.target_keep))

    def to_dict(self) -> dict[str, Any]:
        if callable(self.target_keep):
            raise PolicyError(
                "SeTa with a callable target_keep cannot be serialised (to_dict, state_dict): "
                "give the schedule as a list of (epoch, keep) points instead"
            )
        d = super().to_dict()
        if isinstance(self.target_keep, tuple):
            d["target_keep"] = [list(point) for point in self.target_keep]
        return d

    def target_at(self, epoch: int) -> float | None:
        """The target kept fraction at `epoch` (None: target_keep is off)."""
        return target_value(self.target_keep, epoch)

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
        target = self.target_at(epoch)
        start, stop = window_bounds(len(found.sizes), epoch, self.window)
        picks: list[np.ndarray] = []  # positions in R of the cut edge groups' kept parts
        lo, hi = start, stop  # the groups kept whole
        if target is not None:
            want = min(num_clustered, max(1, keep_count(n, target)))
            start, stop, cuts = target_ranks(found.sizes, stop, want)
            picks = [_ranked(values, found.labels, g, a, b) for g, a, b in cuts]
            cut_groups = {g for g, _, _ in cuts}
            lo, hi = start + (start in cut_groups), stop - (stop - 1 in cut_groups)
        del values  # memory: at most a few N-sized arrays at once (a copy when pruned or filled)
        if in_r is None:
            groups = found.labels
        else:
            groups = np.full(n, -1, dtype=np.int8)
            groups[in_r] = found.labels
            r_ids = np.flatnonzero(in_r)
            picks = [r_ids[p] for p in picks]
            del in_r, r_ids
        ids = _in_window(groups, lo, hi) if hi > lo else np.empty(0, np.int64)
        if picks:
            ids = np.union1d(ids, np.concatenate(picks).astype(np.int64, copy=False))
        ids = nonempty(ids, rng, n)
        info = base_info("prune", epoch, n, int(ids.size))
        info.update(groups=found.stats, window=[start, stop], num_clustered=num_clustered)
        if target is not None:
            info.update(target_keep=target)
        return Selection(ids=ids, weights=None, groups=groups, info=info)


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


def target_ranks(
    sizes: list[int], stop: int, want: int
) -> tuple[int, int, list[tuple[int, int, int]]]:
    """The exact-count window: `want` consecutive ranks of R ending where the paper's ends.

    `sizes` are the groups' sizes (easy -> hard) and `stop` the end of the paper's window (in
    groups). The ranks are `[hi − want, hi)` with `hi` the rank where group `stop` begins,
    shifted up to `[0, want)` when `hi < want`. Returns the groups touched `[first, last + 1)`
    and the cut ones as `(group, a, b)`: that group's members of within-group ranks `[a, b)`
    (by score, then id) are kept; the groups between are kept whole.
    """
    cum = np.concatenate(([0], np.cumsum(sizes, dtype=np.int64))).tolist()
    if not sizes or want >= cum[-1]:  # want <= |R| always: at most every group
        return 0, len(sizes), []
    lo = max(0, cum[stop] - want)
    hi = lo + want
    first = next(g for g in range(len(sizes)) if cum[g + 1] > lo)
    last = next(g for g in reversed(range(len(sizes))) if cum[g] < hi)
    cuts = []
    for g in sorted({first, last}):
        a, b = max(lo, cum[g]) - cum[g], min(hi, cum[g + 1]) - cum[g]
        if (a, b) != (0, sizes[g]):
            cuts.append((g, a, b))
    return first, last + 1, cuts


def _ranked(values: np.ndarray, labels: np.ndarray, group: int, a: int, b: int) -> np.ndarray:
    """Positions (in R) of `group`'s members at within-group ranks [a, b) by (value, position)."""
    members = np.flatnonzero(labels == group)
    order = np.lexsort((members, values[members]))  # by value, then by position (= id order)
    return np.sort(members[order[a:b]])


TargetKeep = float | tuple[tuple[int, float], ...] | Callable[[int], float] | None


def check_target_keep(target: Any) -> TargetKeep:
    """Validate `target_keep`; a list of points becomes a tuple of (epoch, keep) pairs."""
    if target is None or callable(target):
        return target
    if isinstance(target, (list, tuple)):
        try:
            points = tuple((operator.index(e), float(k)) for e, k in target)
        except (TypeError, ValueError):
            points = ()
        epochs = [e for e, _ in points]
        if (
            not points
            or epochs != sorted(set(epochs))
            or epochs[0] < 0
            or not all(0.0 < k <= 1.0 for _, k in points)
        ):
            raise PolicyError(
                "target_keep as a schedule must be a non-empty list of (epoch, keep) points "
                f"with increasing epochs >= 0 and keep in (0, 1], got {target!r}"
            )
        return points
    if isinstance(target, bool) or not isinstance(target, (int, float)) or not 0.0 < target <= 1.0:
        raise PolicyError(
            "target_keep must be None, a number in (0, 1], a list of (epoch, keep) points or a "
            f"callable epoch -> keep, got {target!r}"
        )
    return float(target)


def target_value(target: TargetKeep, epoch: int) -> float | None:
    """The kept fraction `target` asks for at `epoch` (points: linear between them)."""
    if target is None or isinstance(target, float):
        return target
    if isinstance(target, tuple):
        epochs = [e for e, _ in target]
        keeps = [k for _, k in target]
        return float(np.interp(epoch, epochs, keeps))
    value = target(epoch)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value <= 1.0:
        raise PolicyError(f"target_keep({epoch}) returned {value!r}; must be a number in (0, 1]")
    return float(value)


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
