"""InfoBatch against SETA_SPEC.md: strict below-mean rule, 1/keep weights, annealing, epoch 0."""

from __future__ import annotations

import json

import numpy as np
import pytest

from seta_stream.errors import PolicyError
from seta_stream.policies import InfoBatch


def test_epoch_zero_is_full_data_with_unit_weights() -> None:
    scores = np.full(1_000, np.nan, np.float32)
    sel = InfoBatch(epochs=10).select(scores, 0)
    np.testing.assert_array_equal(sel.ids, np.arange(1_000))
    assert sel.weights is None
    assert sel.groups is None
    assert sel.info["phase"] == "prune"
    assert sel.info["num_low"] == 0


def test_equal_scores_that_are_not_exact_in_float32_are_never_below_the_mean() -> None:
    scores = np.full(1_000_003, 0.1, np.float32)  # a float32 mean would round
    sel = InfoBatch(epochs=10).select(scores, 1)
    assert sel.ids.size == scores.size
    assert sel.weights is None


def test_below_mean_is_strict_and_weights_are_one_over_keep() -> None:
    scores = np.array([0, 2, 1, 0, 2, 0, 1, 2, 0, 2], np.float32)  # mean exactly 1.0
    sel = InfoBatch(epochs=10, prune_ratio=0.5).select(scores, 1, seed=2)
    low = np.array([0, 3, 5, 8])  # the 1.0s equal the mean: not low
    kept_low = np.intersect1d(sel.ids, low)
    assert kept_low.size == 2  # floor(0.5 · 4)
    np.testing.assert_array_equal(np.setdiff1d(sel.ids, low), [1, 2, 4, 6, 7, 9])
    assert sel.weights is not None
    assert sel.weights.dtype == np.float32
    np.testing.assert_array_equal(sel.weights, np.where(np.isin(sel.ids, low), 2.0, 1.0))
    assert sel.info["num_low"] == 4
    assert sel.info["num_low_kept"] == 2


def test_a_score_equal_to_the_mean_is_not_low() -> None:
    scores = np.array([1.0, 2.0, 3.0], np.float32)  # mean exactly 2
    sel = InfoBatch(epochs=10, prune_ratio=0.9).select(scores, 1)
    # low = {0}: floor(0.1·1) = 0 kept, samples 1 and 2 kept with weight 1
    np.testing.assert_array_equal(sel.ids, [1, 2])
    assert sel.weights is None
    assert sel.info["num_low"] == 1
    assert sel.info["num_low_kept"] == 0


def test_counts_and_weights_on_skewed_losses() -> None:
    scores = np.random.default_rng(0).lognormal(size=10_000).astype(np.float32)
    scores[:100] = np.nan  # never seen: 3.0, above the mean of these losses
    policy = InfoBatch(epochs=10, prune_ratio=0.7)
    sel = policy.select(scores, 2, seed=1)
    filled = np.where(np.isnan(scores), np.float32(3.0), scores)
    low = filled < filled.mean(dtype=np.float64)
    n_low = int(low.sum())
    assert sel.info["num_low"] == n_low
    kept_from_low = int(low[sel.ids].sum())
    assert kept_from_low == int(n_low * (1 - 0.7))
    assert sel.ids.size == (10_000 - n_low) + kept_from_low
    assert np.all(np.diff(sel.ids) > 0)
    assert np.isin(np.arange(100), sel.ids).all()  # unseen samples are not low
    assert sel.weights is not None
    expected = np.where(low[sel.ids], np.float32(1 / 0.3), np.float32(1.0))
    np.testing.assert_array_equal(sel.weights, expected)
    assert sel.info["kept_fraction"] == sel.ids.size / 10_000
    json.dumps(sel.info)
    other = policy.select(scores, 2, seed=2)
    assert not np.array_equal(sel.ids, other.ids)
    np.testing.assert_array_equal(sel.ids, policy.select(scores, 2, seed=1).ids)


@pytest.mark.parametrize(("epochs", "first_anneal"), [(90, 78), (100, 87), (300, 262), (8, 7)])
def test_weights_are_one_in_every_annealing_epoch(epochs: int, first_anneal: int) -> None:
    scores = np.random.default_rng(1).lognormal(size=500).astype(np.float32)
    policy = InfoBatch(epochs=epochs, prune_ratio=0.5)
    before = policy.select(scores, first_anneal - 1)
    assert before.info["phase"] == "prune"
    assert before.weights is not None
    for e in range(first_anneal, epochs):
        sel = policy.select(scores, e)
        assert sel.info["phase"] == "anneal"
        assert sel.weights is None
        np.testing.assert_array_equal(sel.ids, np.arange(500))


def test_no_pruning_means_unit_weights() -> None:
    scores = np.random.default_rng(2).lognormal(size=500).astype(np.float32)
    sel = InfoBatch(epochs=10, prune_ratio=0.0).select(scores, 3)
    np.testing.assert_array_equal(sel.ids, np.arange(500))
    assert sel.weights is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"epochs": 0}, "epochs must be an int >= 1, got 0"),
        ({"epochs": 5, "prune_ratio": 1.5}, "prune_ratio .* got 1.5"),
        ({"epochs": 5, "anneal": 1.01}, "anneal .* got 1.01"),
        ({"epochs": 5, "init_score": float("inf")}, "init_score must be a finite number"),
    ],
)
def test_bad_parameters_are_named(kwargs, message) -> None:
    with pytest.raises(PolicyError, match=message):
        InfoBatch(**kwargs)


def test_bad_scores_raise() -> None:
    with pytest.raises(PolicyError, match="sample 2 has score -inf"):
        InfoBatch(epochs=5).select(np.array([1, 2, -np.inf], np.float32), 1)
    with pytest.raises(PolicyError, match="float32"):
        InfoBatch(epochs=5).select(np.array([1, 2], np.int32), 1)
