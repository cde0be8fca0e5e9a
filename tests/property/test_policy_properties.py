"""Every policy: a unique sorted subset of range(N), deterministic, seed-dependent."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from seta_stream.policies import (
    DynamicRandom,
    Full,
    InfoBatch,
    Policy,
    Selection,
    SeTa,
    Static,
)

_score = st.one_of(
    st.floats(0.0, 20.0, width=32),
    st.just(float("nan")),
    st.sampled_from([0.5, 1.0, 3.0]),  # ties
)
scores_st = st.integers(1, 400).flatmap(lambda n: arrays(np.float32, n, elements=_score))

policies_st = st.one_of(
    st.builds(
        SeTa,
        epochs=st.integers(1, 40),
        prune_ratio=st.sampled_from([0.0, 0.1, 0.5, 0.95]),
        num_groups=st.integers(1, 12),
        window=st.sampled_from([0.1, 0.5, 0.6, 0.9, 1.0]),
        anneal=st.sampled_from([0.5, 0.875, 1.0]),
        target_keep=st.sampled_from([None, 0.3, 0.6]),
    ),
    st.builds(
        InfoBatch,
        epochs=st.integers(1, 40),
        prune_ratio=st.sampled_from([0.0, 0.3, 0.5, 0.9]),
    ),
    st.builds(DynamicRandom, epochs=st.integers(1, 40), prune_ratio=st.sampled_from([0.0, 0.5])),
    st.builds(Static, prune_ratio=st.sampled_from([0.0, 0.3, 0.5])),
    st.just(Full()),
)


def _check_selection(sel: Selection, n: int) -> None:
    ids = sel.ids
    assert ids.dtype == np.int64
    assert ids.size >= 1
    assert np.all(np.diff(ids) > 0)  # sorted and unique
    assert ids[0] >= 0
    assert ids[-1] < n
    if sel.weights is not None:
        assert sel.weights.shape == ids.shape
        assert np.all(sel.weights >= 1.0)
    if sel.groups is not None:
        assert sel.groups.shape == (n,)
        assert np.all(sel.groups[ids] >= 0) or sel.info["phase"] == "anneal" or ids.size == 1
    assert sel.info["kept_fraction"] == ids.size / n
    assert sel.info["phase"] in ("prune", "anneal", "full")


def _check_policy_rules(policy: Policy, sel: Selection, n: int) -> None:
    if isinstance(policy, SeTa) and sel.info["phase"] == "prune":
        assert sel.groups is not None
        start, stop = sel.info["window"]
        in_window = np.flatnonzero((sel.groups >= start) & (sel.groups < stop))
        target = policy.target_at(sel.info["epoch"])
        if target is not None and in_window.size:  # inner groups whole, edges cut, exact
            inner = np.flatnonzero((sel.groups > start) & (sel.groups < stop - 1))
            assert np.isin(inner, sel.ids).all() and np.isin(sel.ids, in_window).all()
            want = min(sel.info["num_clustered"], max(1, math.floor(n * target)))
            assert sel.ids.size == want
        elif in_window.size:  # else R was empty and one random sample was taken
            np.testing.assert_array_equal(sel.ids, in_window)
        sizes = [g["size"] for g in sel.info["groups"]]
        assert sizes == np.bincount(sel.groups[sel.groups >= 0], minlength=len(sizes)).tolist()
        means = [g["mean"] for g in sel.info["groups"]]
        assert means == sorted(means)
    if isinstance(policy, InfoBatch) and sel.weights is not None:
        up = np.float32(1 / min(1.0, max(0.1, 1 - policy.prune_ratio)))
        assert set(np.unique(sel.weights).tolist()) <= {1.0, float(up)}
    if isinstance(policy, (Full, InfoBatch)) and sel.info["phase"] in ("anneal", "full"):
        np.testing.assert_array_equal(sel.ids, np.arange(n))


@settings(max_examples=150, deadline=None)
@given(policy=policies_st, scores=scores_st, epoch=st.integers(0, 50), seed=st.integers(0, 2**32))
def test_selection_is_a_deterministic_unique_sorted_subset(
    policy: Policy, scores: np.ndarray, epoch: int, seed: int
) -> None:
    sel = policy.select(scores, epoch, seed=seed)
    _check_selection(sel, scores.size)
    _check_policy_rules(policy, sel, scores.size)
    again = policy.select(scores.copy(), epoch, seed=seed)
    np.testing.assert_array_equal(sel.ids, again.ids)
    assert (sel.weights is None) == (again.weights is None)
    if sel.weights is not None and again.weights is not None:
        np.testing.assert_array_equal(sel.weights, again.weights)
    assert sel.info == again.info


_random_policies = st.sampled_from(
    [
        SeTa(epochs=20, prune_ratio=0.5, num_groups=4, window=0.5),
        InfoBatch(epochs=20, prune_ratio=0.5),
        DynamicRandom(epochs=20, prune_ratio=0.5),
        Static(prune_ratio=0.5),
    ]
)


@settings(max_examples=60, deadline=None)
@given(
    policy=_random_policies,
    n=st.integers(200, 2_000),
    epoch=st.integers(0, 10),
    seeds=st.lists(st.integers(0, 2**32), min_size=2, max_size=2, unique=True),
)
def test_different_seeds_give_different_selections(
    policy: Policy, n: int, epoch: int, seeds: list[int]
) -> None:
    scores = np.random.default_rng(n).lognormal(size=n).astype(np.float32)
    a = policy.select(scores, epoch, seed=seeds[0])
    b = policy.select(scores, epoch, seed=seeds[1])
    assert not np.array_equal(a.ids, b.ids)
