"""1-D k-means: exact against a brute-force DP, same partition as scikit-learn when separated."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from sklearn.cluster import KMeans

from seta_stream.errors import PolicyError
from seta_stream.policies.kmeans1d import inertia, kmeans1d, kmeans1d_sorted


def brute_force_inertia(values: np.ndarray, k: int) -> float:
    """Optimal k-means inertia of 1-D values: DP over all contiguous splits of the sorted values,
    O(k·n²) in plain Python (k groups at most; extra groups never help)."""
    x = sorted(float(v) for v in values)
    n = len(x)
    k = min(k, n)

    def sse(a: int, b: int) -> float:
        seg = x[a:b]
        mean = sum(seg) / len(seg)
        return sum((v - mean) ** 2 for v in seg)

    cost = [[sse(a, b) if a < b else 0.0 for b in range(n + 1)] for a in range(n + 1)]
    best = [cost[0][b] if b > 0 else float("inf") for b in range(n + 1)]
    for groups in range(2, k + 1):
        best = [
            min((best[a] + cost[a][b] for a in range(groups - 1, b)), default=float("inf"))
            for b in range(n + 1)
        ]
    return best[n]


def exact_inertia_vectorised(sorted_values: np.ndarray, k: int) -> float:
    """The same exact DP in numpy, O(k·n²), for a few thousand values."""
    x = sorted_values.astype(np.float64)
    n = x.size
    c1 = np.concatenate(([0.0], np.cumsum(x)))
    c2 = np.concatenate(([0.0], np.cumsum(x * x)))
    counts = (np.arange(n + 1)[None, :] - np.arange(n + 1)[:, None]).astype(np.float64)
    sums = c1[None, :] - c1[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        cost = (c2[None, :] - c2[:, None]) - sums * sums / counts
    cost[counts <= 0] = np.inf
    best = cost[0].copy()
    for _ in range(1, k):
        best = np.min(best[:, None] + cost, axis=0)
    return float(best[n])


def _check_partition(sorted_values: np.ndarray, bounds: np.ndarray, k: int) -> None:
    n_distinct = np.unique(sorted_values).size
    assert bounds[0] == 0
    assert bounds[-1] == sorted_values.size
    assert np.all(np.diff(bounds) > 0)
    assert bounds.size - 1 == min(k, n_distinct)
    # ties are never split between groups
    inner = bounds[1:-1]
    assert np.all(sorted_values[inner - 1] < sorted_values[inner])


@pytest.mark.parametrize("case", range(150))
def test_matches_brute_force_on_small_inputs(case: int) -> None:
    rng = np.random.default_rng(case)
    n = int(rng.integers(1, 36))
    k = int(rng.integers(1, 7))
    if case % 3 == 0:  # many ties
        values = rng.integers(0, 6, n).astype(np.float32)
    elif case % 3 == 1:
        values = rng.lognormal(size=n).astype(np.float32)
    else:
        values = (rng.normal(size=n) * 10 + rng.integers(0, 4, n) * 50).astype(np.float32)
    sorted_values = np.sort(values)
    part = kmeans1d_sorted(sorted_values, k)
    _check_partition(sorted_values, part.bounds, k)
    expected = brute_force_inertia(values, k)
    assert inertia(sorted_values, part.bounds) == pytest.approx(expected, rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("seed", range(4))
def test_histogram_path_is_near_the_exact_optimum_on_skewed_data(seed: int) -> None:
    # 2,500 distinct values: more than the DP's atoms, so the histogram + Lloyd path runs
    rng = np.random.default_rng(seed)
    draw = rng.lognormal(size=2_500) if seed % 2 else rng.gamma(0.5, size=2_500)
    sorted_values = np.sort(draw.astype(np.float32))
    for k in (3, 5, 8):
        part = kmeans1d_sorted(sorted_values, k)
        _check_partition(sorted_values, part.bounds, k)
        optimum = exact_inertia_vectorised(sorted_values, k)
        assert optimum * (1 - 1e-9) <= inertia(sorted_values, part.bounds) <= optimum * (1 + 1e-4)


def _separated(sizes: list[int], centres: list[float], seed: int, spread: float = 0.1):
    rng = np.random.default_rng(seed)
    parts = [rng.normal(c, spread, s) for c, s in zip(centres, sizes, strict=True)]
    truth = np.concatenate([np.full(s, g) for g, s in enumerate(sizes)])
    values = np.concatenate(parts).astype(np.float32)
    order = rng.permutation(values.size)
    return values[order], truth[order]


def _quantile_start_lloyd(sorted_values: np.ndarray, k: int) -> np.ndarray:
    m = sorted_values.size
    bounds = np.array([g * m // k for g in range(k + 1)])
    for _ in range(300):
        means = np.array([sorted_values[a:b].mean() for a, b in itertools.pairwise(bounds)])
        mids = (means[:-1] + means[1:]) / 2
        new = np.concatenate(([0], np.searchsorted(sorted_values, mids, side="right"), [m]))
        if np.array_equal(new, bounds):
            break
        bounds = new
    return bounds


def test_unequal_sizes_found_where_quantile_starts_fail() -> None:
    values, truth = _separated([900, 500, 300, 200, 100], [0.5, 2.0, 4.0, 7.0, 10.0], seed=0)
    sorted_values = np.sort(values)
    # the case is hard: Lloyd from quantile starts stops in a poor local optimum
    stuck = _quantile_start_lloyd(sorted_values, 5)
    assert not np.array_equal(np.diff(stuck), [900, 500, 300, 200, 100])
    labels, part = kmeans1d(values, 5)
    assert part.sizes.tolist() == [900, 500, 300, 200, 100]
    np.testing.assert_array_equal(labels, truth)
    assert inertia(sorted_values, part.bounds) < 0.1 * inertia(sorted_values, stuck)


@pytest.mark.parametrize(
    ("sizes", "centres"),
    [
        ([900, 500, 300, 200, 100], [0.5, 2.0, 4.0, 7.0, 10.0]),
        ([100, 200, 300, 500, 900], [0.5, 2.0, 4.0, 7.0, 10.0]),
        ([50, 3000, 20, 600], [-3.0, 1.0, 6.0, 9.0]),
    ],
)
def test_same_partition_as_sklearn_on_separated_data(sizes: list[int], centres: list[float]):
    values, truth = _separated(sizes, centres, seed=1)
    k = len(sizes)
    labels, _ = kmeans1d(values, k)
    km = KMeans(n_clusters=k, n_init=3, random_state=0).fit(values[:, None].astype(np.float64))
    # same partition up to relabelling: the pairs (ours, sklearn's) are a bijection
    pairs = set(zip(labels.tolist(), km.labels_.tolist(), strict=True))
    assert len(pairs) == k
    np.testing.assert_array_equal(labels, truth)


def test_histogram_path_separates_large_unequal_clusters() -> None:
    sizes = [90_000, 50_000, 30_000, 20_000, 10_000]
    values, truth = _separated(sizes, [0.5, 2.0, 4.0, 7.0, 10.0], seed=2, spread=0.1)
    assert np.unique(values).size > 10_000  # far more distinct values than DP atoms
    labels, part = kmeans1d(values, 5)
    assert part.sizes.tolist() == sizes
    np.testing.assert_array_equal(labels, truth)


def test_not_worse_than_sklearn_on_skewed_losses() -> None:
    values = np.random.default_rng(3).lognormal(size=8_000).astype(np.float32)
    sorted_values = np.sort(values)
    part = kmeans1d_sorted(sorted_values, 10)
    km = KMeans(n_clusters=10, n_init=3, random_state=0).fit(values[:, None].astype(np.float64))
    assert inertia(sorted_values, part.bounds) <= km.inertia_ * (1 + 1e-6)


def test_fewer_distinct_values_than_k_gives_one_group_per_value() -> None:
    values = np.array([2, 2, 1, 5, 1, 2, 5, 5, 5], dtype=np.float32)
    labels, part = kmeans1d(values, 10)
    assert part.sizes.tolist() == [2, 3, 4]
    np.testing.assert_allclose(part.means, [1, 2, 5])
    np.testing.assert_array_equal(labels, [1, 1, 0, 2, 0, 1, 2, 2, 2])
    assert part.iterations == 0


def test_lumpy_values_still_give_k_groups() -> None:
    # 2,000 distinct values packed in [0, 1e-3], a big lump at 0.5 and one outlier: the
    # histogram's edges alone make fewer than k bins, so bins are bisected.
    rng = np.random.default_rng(4)
    tiny = np.sort(rng.random(2_000)).astype(np.float32) * np.float32(1e-3)
    values = np.concatenate([tiny, np.full(50_000, 0.5, np.float32), [np.float32(1e6)]])
    sorted_values = np.sort(values)
    part = kmeans1d_sorted(sorted_values, 10)
    _check_partition(sorted_values, part.bounds, 10)
    assert part.sizes[-1] == 1  # the outlier alone
    assert np.all(np.diff(part.means) > 0)


def test_labels_follow_the_means_and_are_deterministic() -> None:
    values = np.random.default_rng(5).gamma(2.0, size=5_000).astype(np.float32)
    labels, part = kmeans1d(values, 6)
    again, _ = kmeans1d(values.copy(), 6)
    np.testing.assert_array_equal(labels, again)
    for g in range(6):
        assert values[labels == g].mean() == pytest.approx(part.means[g], rel=1e-6)
    assert np.all(np.diff(part.means) > 0)


def test_empty_input_and_bad_arguments() -> None:
    part = kmeans1d_sorted(np.empty(0, np.float32), 3)
    assert part.num_groups == 0
    assert part.bounds.tolist() == [0]
    with pytest.raises(PolicyError, match="k must be >= 1, got 0"):
        kmeans1d_sorted(np.ones(3, np.float32), 0)
    with pytest.raises(PolicyError, match="float32"):
        kmeans1d_sorted(np.ones(3, np.float64), 2)
