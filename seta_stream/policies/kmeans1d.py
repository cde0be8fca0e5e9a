"""1-D k-means that we own: an exact dynamic program on a fine histogram, then Lloyd refinement.

In one dimension the optimal k-means groups are contiguous runs of the sorted values, so a
partition is just k+1 boundaries into the sorted array. The algorithm:

1. **Atoms.** If the values have at most `max_atoms` distinct values, every distinct value is an
   atom and step 2 is exact (the global optimum). Otherwise the atoms are the bins of a fine
   histogram whose edges are the union of equal-count (quantile) and equal-width edges, each
   moved to the first occurrence of a value, so equal values are never split. Equal-width edges
   put an edge in every gap wider than range / (max_atoms / 2), so well-separated clusters are
   separated by atoms whatever their sizes (quantile *starts* fail on a 900/500/300/200/100
   split; a histogram DP does not).
2. **Exact DP over atoms.** Minimising the inertia is maximising Σ_groups S_g² / n_g (S_g the
   centred sum, n_g the count), solved exactly over contiguous runs of atoms in O(k·A²)
   vectorised steps, A <= max_atoms.
3. **Lloyd refinement** on the full sorted values: boundaries move to the midpoints between
   neighbouring means (found by binary search), means come from prefix sums. Each iteration is
   O(k log N). The prefix sums are kept per block of 4,096 values (N / 4096 float64s, not N),
   a query adds at most one block.

No randomness: the result is a deterministic function of the values. No scikit-learn.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from seta_stream.errors import PolicyError

_PREFIX_BLOCK = 4096
# The DP costs about k·A² float operations; this keeps it to tens of milliseconds.
_DP_BUDGET = 12_000_000
_MAX_ATOMS = 1024
_MIN_ATOMS = 64
_DP_ROWS = 128
_BLOCK = 1 << 22  # elementwise passes over the sorted values run a block at a time


@dataclass(frozen=True, kw_only=True, eq=False)
class Partition1D:
    """Contiguous groups of sorted values: group g is `sorted[bounds[g]:bounds[g + 1]]`.

    `bounds` is int64 of length g+1 (0 first, N last, strictly increasing); `means` (float64,
    ascending) is each group's mean; `iterations` counts the Lloyd iterations run.
    """

    bounds: np.ndarray
    means: np.ndarray
    iterations: int

    @property
    def num_groups(self) -> int:
        return int(self.means.size)

    @property
    def sizes(self) -> np.ndarray:
        return np.diff(self.bounds)


class _BlockPrefix:
    """Prefix sums (float64) of a float32 array, stored once per block of `_PREFIX_BLOCK`."""

    def __init__(self, values: np.ndarray) -> None:
        self._values = values
        whole = values.size // _PREFIX_BLOCK
        block_sums = (
            values[: whole * _PREFIX_BLOCK]
            .reshape(whole, _PREFIX_BLOCK)
            .sum(axis=1, dtype=np.float64)
        )
        self._cum = np.zeros(whole + 1, dtype=np.float64)
        np.cumsum(block_sums, out=self._cum[1:])

    def at(self, idx: np.ndarray) -> np.ndarray:
        """sum(values[:i]) for every i in `idx`."""
        out = np.empty(idx.size, dtype=np.float64)
        for j, i in enumerate(idx.tolist()):
            q = i // _PREFIX_BLOCK
            out[j] = self._cum[q] + self._values[q * _PREFIX_BLOCK : i].sum(dtype=np.float64)
        return out


def kmeans1d_sorted(sorted_values: np.ndarray, k: int, *, max_iter: int = 100) -> Partition1D:
    """k-means of ascending float32 values; at most `k` groups, fewer only when there are
    fewer distinct values (then one group per distinct value).

    The values must be sorted ascending and finite (not checked: this is the hot path).
    """
    if k < 1:
        raise PolicyError(f"k must be >= 1, got {k}")
    if sorted_values.dtype != np.float32 or sorted_values.ndim != 1:
        raise PolicyError(
            f"kmeans1d_sorted needs 1-D float32 values, got {sorted_values.dtype} "
            f"with shape {sorted_values.shape}"
        )
    m = int(sorted_values.size)
    if m == 0:
        return Partition1D(bounds=np.zeros(1, np.int64), means=np.empty(0), iterations=0)
    prefix = _BlockPrefix(sorted_values)
    n_distinct = _count_distinct(sorted_values)
    if n_distinct <= k:
        bounds = _distinct_starts(sorted_values, m)
        return Partition1D(bounds=bounds, means=_means(prefix, bounds), iterations=0)
    max_atoms = max(_MIN_ATOMS, min(_MAX_ATOMS, math.isqrt(_DP_BUDGET // k)))
    if n_distinct <= max_atoms:
        atoms = _distinct_starts(sorted_values, m)
    else:
        atoms = _histogram_atoms(sorted_values, max_atoms, k)
    bounds = atoms[_dp_segments(prefix, atoms, k, sorted_values)]
    bounds, iterations = _lloyd(sorted_values, prefix, bounds, max_iter)
    return Partition1D(bounds=bounds, means=_means(prefix, bounds), iterations=iterations)


def kmeans1d(values: np.ndarray, k: int, *, max_iter: int = 100) -> tuple[np.ndarray, Partition1D]:
    """k-means of unsorted float32 values: (labels, partition), labels int64 in input order,
    0 for the group of smallest mean."""
    sorted_values = np.sort(values)
    part = kmeans1d_sorted(sorted_values, k, max_iter=max_iter)
    lowers = sorted_values[part.bounds[1:-1]]
    labels = np.searchsorted(lowers, values, side="right").astype(np.int64)
    return labels, part


def inertia(sorted_values: np.ndarray, bounds: np.ndarray) -> float:
    """Σ over groups of Σ (x − mean)², in float64 (O(N) memory: for tests and benchmarks)."""
    total = 0.0
    for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
        seg = sorted_values[a:b].astype(np.float64)
        total += float(((seg - seg.mean()) ** 2).sum())
    return total


def _changes(sorted_values: np.ndarray) -> Iterator[np.ndarray]:
    """Per block, the mask `sorted[i + 1] != sorted[i]` (a block at a time: no N-sized mask)."""
    for s in range(0, sorted_values.size - 1, _BLOCK):
        part = sorted_values[s : s + _BLOCK + 1]
        yield part[1:] != part[:-1]


def _count_distinct(sorted_values: np.ndarray) -> int:
    return 1 + sum(int(np.count_nonzero(c)) for c in _changes(sorted_values))


def _distinct_starts(sorted_values: np.ndarray, m: int) -> np.ndarray:
    changes = [np.flatnonzero(c) + (1 + i * _BLOCK) for i, c in enumerate(_changes(sorted_values))]
    return np.concatenate(([0], *changes, [m])).astype(np.int64)


def _means(prefix: _BlockPrefix, bounds: np.ndarray) -> np.ndarray:
    return np.diff(prefix.at(bounds)) / np.diff(bounds)


def _histogram_atoms(sorted_values: np.ndarray, max_atoms: int, k: int) -> np.ndarray:
    """Bin starts (and N) from quantile and equal-width edges, at value boundaries."""
    m = sorted_values.size
    half = max_atoms // 2
    quantile_values = sorted_values[(np.arange(1, half, dtype=np.int64) * m) // half]
    lo, hi = float(sorted_values[0]), float(sorted_values[-1])
    width_values = np.linspace(lo, hi, half + 1)[1:-1].astype(np.float32)
    starts = np.concatenate(
        (
            [0],
            np.searchsorted(sorted_values, quantile_values, side="left"),
            np.searchsorted(sorted_values, width_values, side="left"),
        )
    )
    starts = np.unique(starts[starts < m])
    atoms = np.append(starts, m).astype(np.int64)
    while atoms.size - 1 < k:  # very lumpy values: bisect every bin that holds 2+ values
        atoms = _bisect_bins(sorted_values, atoms)
    return atoms


def _bisect_bins(sorted_values: np.ndarray, atoms: np.ndarray) -> np.ndarray:
    cuts = []
    for a, b in zip(atoms[:-1].tolist(), atoms[1:].tolist(), strict=True):
        first, last = sorted_values[a], sorted_values[b - 1]
        if first == last:
            continue
        mid = np.float32((float(first) + float(last)) / 2)
        cut = int(np.searchsorted(sorted_values[a:b], mid, side="right")) + a
        if not a < cut < b:
            cut = int(np.searchsorted(sorted_values[a:b], first, side="right")) + a
        cuts.append(cut)
    return np.unique(np.concatenate((atoms, np.asarray(cuts, dtype=np.int64))))


def _dp_segments(
    prefix: _BlockPrefix, atoms: np.ndarray, k: int, sorted_values: np.ndarray
) -> np.ndarray:
    """Indices into `atoms` of the optimal k-segment partition (exact over atoms)."""
    n_atoms = atoms.size - 1
    centre = (float(sorted_values[0]) + float(sorted_values[-1])) / 2
    cum_n = atoms.astype(np.float64)
    cum_s = prefix.at(atoms) - centre * cum_n  # centred, for precision
    blocks = _gain_blocks(cum_s, cum_n)
    best = np.concatenate([block[:, 0] for _, block in blocks])
    choices = []
    for _ in range(1, k):
        arg = np.empty(n_atoms + 1, dtype=np.int64)
        new_best = np.empty(n_atoms + 1, dtype=np.float64)
        for r0, block in blocks:
            cand = block + best[None, : block.shape[1]]
            rows = np.arange(block.shape[0])
            arg[r0 : r0 + block.shape[0]] = cand.argmax(axis=1)
            new_best[r0 : r0 + block.shape[0]] = cand[rows, arg[r0 : r0 + block.shape[0]]]
        best = new_best
        choices.append(arg)
    cuts = [n_atoms]
    for arg in reversed(choices):
        cuts.append(int(arg[cuts[-1]]))
    cuts.append(0)
    return np.asarray(cuts[::-1], dtype=np.int64)


def _gain_blocks(cum_s: np.ndarray, cum_n: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """Row blocks of gain[b, a] = S(a, b)² / n(a, b) for a < b (-inf for a >= b).

    Row b only needs columns a < b, so block rows [r0, r1) keep columns [0, r1): the lower
    triangle, about half of the (A+1)² matrix, without any full-size temporary.
    """
    blocks = []
    size = cum_s.size
    for r0 in range(0, size, _DP_ROWS):
        r1 = min(size, r0 + _DP_ROWS)
        d_s = cum_s[r0:r1, None] - cum_s[None, :r1]
        d_n = cum_n[r0:r1, None] - cum_n[None, :r1]
        valid = np.arange(r1)[None, :] < np.arange(r0, r1)[:, None]
        gain = np.full_like(d_s, -np.inf)
        np.divide(d_s * d_s, d_n, out=gain, where=valid)
        blocks.append((r0, gain))
    return blocks


def _float32_floor(values: np.ndarray) -> np.ndarray:
    """The largest float32 <= each float64 value (so `x <= t` is exact on float32 x)."""
    out = values.astype(np.float32)
    over = out.astype(np.float64) > values
    out[over] = np.nextafter(out[over], np.float32(-np.inf))
    return out


def _lloyd(
    sorted_values: np.ndarray, prefix: _BlockPrefix, bounds: np.ndarray, max_iter: int
) -> tuple[np.ndarray, int]:
    m = sorted_values.size
    for iteration in range(max_iter):
        means = _means(prefix, bounds)
        mids = _float32_floor((means[:-1] + means[1:]) / 2)
        inner = np.searchsorted(sorted_values, mids, side="right")
        new = np.concatenate(([0], inner, [m])).astype(np.int64)
        if np.any(np.diff(new) <= 0):  # a group would empty: keep the last good partition
            return bounds, iteration
        if np.array_equal(new, bounds):
            return bounds, iteration
        bounds = new
    return bounds, max_iter
