"""Policies at scale: a few N-sized temporaries at most, and blocked passes change nothing."""

from __future__ import annotations

import importlib
import tracemalloc

import numpy as np
import pytest

import seta_stream.policies.base as base
import seta_stream.policies.infobatch as infobatch
import seta_stream.policies.seta as seta
from seta_stream.policies import DynamicRandom, InfoBatch, SeTa

# the module, not the function of that name the package exports
kmeans1d = importlib.import_module("seta_stream.policies.kmeans1d")

N = 1_000_000
POLICIES = {
    "seta": SeTa(epochs=10),
    "seta_pruned": SeTa(epochs=10, prune_ratio=0.3),
    "infobatch": InfoBatch(epochs=10),
    "dynamic_random": DynamicRandom(epochs=10, prune_ratio=0.5),
}
# Peak bytes a sample beside the scores, ids (8 a kept sample) included: SeTa sorts one float32
# copy; InfoBatch keeps most samples and their weights. An argsort or a float64 copy adds 8.
PEAK_LIMIT = {"seta": 12, "seta_pruned": 12, "infobatch": 18, "dynamic_random": 6}


def _scores(unseen: float) -> np.ndarray:
    rng = np.random.default_rng(3)
    scores = rng.lognormal(size=N).astype(np.float32)
    scores[rng.random(N) < unseen] = np.nan
    return scores


@pytest.mark.parametrize("name", sorted(POLICIES))
@pytest.mark.parametrize(("epoch", "unseen"), [(0, 1.0), (3, 0.0), (3, 0.2)])
def test_peak_memory_is_a_few_bytes_a_sample(name: str, epoch: int, unseen: float) -> None:
    """No argsort, no float64 copy: a few N-sized temporaries at most."""
    scores = _scores(unseen)
    tracemalloc.start()
    try:
        POLICIES[name].select(scores, epoch, seed=0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak / N < PEAK_LIMIT[name], f"{name}: {peak / N:.1f} bytes a sample"


def test_seta_equal_chunks_follow_rng_permutation() -> None:
    """The int32 shuffle draws the order `rng.permutation(m)` would (the SeTa reference)."""
    m, k = 100_003, 7
    groups = seta._equal_chunks(m, k, 3.0, np.random.default_rng(11))
    order = np.random.default_rng(11).permutation(m)
    sizes = [m // k + (1 if g < m % k else 0) for g in range(k)]
    expected = np.empty(m, np.int8)
    expected[order] = np.repeat(np.arange(k, dtype=np.int8), sizes)
    np.testing.assert_array_equal(groups.labels, expected)


@pytest.mark.parametrize("name", sorted(POLICIES))
@pytest.mark.parametrize("epoch", [0, 3])
def test_blocked_passes_change_no_result(
    name: str, epoch: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    scores = _scores(0.2)[:20_000]
    want = POLICIES[name].select(scores, epoch, seed=5)
    for module in (base, seta, infobatch):
        monkeypatch.setattr(module, "BLOCK", 7)
    monkeypatch.setattr(kmeans1d, "_BLOCK", 5)
    got = POLICIES[name].select(scores, epoch, seed=5)
    np.testing.assert_array_equal(got.ids, want.ids)
    for field in ("weights", "groups"):
        a, b = getattr(got, field), getattr(want, field)
        assert (a is None) == (b is None)
        if a is not None:
            np.testing.assert_array_equal(a, b)
    assert got.info == want.info


def test_block_counts_split_past_the_marginals_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """From 1e9 ids one hypergeometric split comes first: still m in all, uniform on average."""
    sizes = np.array([300, 300, 300, 300, 250, 300, 300], dtype=np.int64)
    m, total = 700, int(sizes.sum())
    below = base._block_counts(np.random.default_rng(1), sizes, m)
    monkeypatch.setattr(base, "_MARGINALS_LIMIT", 1000)
    rng = np.random.default_rng(1)
    draws = np.array([base._block_counts(rng, sizes, m) for _ in range(2000)])
    assert (draws.sum(axis=1) == m).all() and (draws <= sizes).all() and (draws >= 0).all()
    np.testing.assert_allclose(draws.mean(axis=0), m * sizes / total, rtol=0.02)
    assert below.sum() == m  # below the limit: the one draw of before
    np.testing.assert_array_equal(
        below,
        np.random.default_rng(1).multivariate_hypergeometric(sizes, m, method="marginals"),
    )
