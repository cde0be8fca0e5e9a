"""Full, Static, DynamicRandom, and the dict form of every policy."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from seta_stream.errors import PolicyError
from seta_stream.policies import (
    DynamicRandom,
    Full,
    InfoBatch,
    Policy,
    SeTa,
    Static,
    policy_from_dict,
)


def _scores(n: int) -> np.ndarray:
    return np.random.default_rng(0).lognormal(size=n).astype(np.float32)


def test_full_selects_everything_every_epoch() -> None:
    for e in (0, 5, 99):
        sel = Full().select(_scores(300), e, seed=e)
        np.testing.assert_array_equal(sel.ids, np.arange(300))
        assert sel.weights is None
        assert sel.groups is None
        assert sel.info["phase"] == "full"
        assert sel.info["kept_fraction"] == 1.0
        assert sel.info["epoch"] == e


def test_static_is_one_random_subset_for_every_epoch() -> None:
    policy = Static(prune_ratio=0.3)
    scores = _scores(2_600)
    first = policy.select(scores, 0, seed=1)
    assert first.ids.size == 1819  # floor(2600 · 0.7)
    for e in (1, 7, 50):
        np.testing.assert_array_equal(policy.select(scores, e, seed=1).ids, first.ids)
    # the scores do not matter, the seed does
    np.testing.assert_array_equal(policy.select(scores[::-1].copy(), 3, seed=1).ids, first.ids)
    assert not np.array_equal(policy.select(scores, 0, seed=2).ids, first.ids)
    # a random subset, not the first 70% of the ids
    assert first.ids[-1] > 2_500
    assert first.ids.size - np.searchsorted(first.ids, 1_300) > 800


def test_tiny_datasets_still_select_one_sample() -> None:
    # floor(5 · 0.1) = 0: one random sample, as SeTa does when R is empty
    static = Static(prune_ratio=0.95)
    first = static.select(_scores(5), 0, seed=4)
    assert first.ids.size == 1
    np.testing.assert_array_equal(static.select(_scores(5), 9, seed=4).ids, first.ids)
    assert DynamicRandom(epochs=10, prune_ratio=0.95).select(_scores(5), 1).ids.size == 1


def test_dynamic_random_changes_each_epoch_and_anneals() -> None:
    policy = DynamicRandom(epochs=8, prune_ratio=0.5)  # annealing from epoch 7
    scores = _scores(1_000)
    seen = []
    for e in range(7):
        sel = policy.select(scores, e, seed=3)
        assert sel.info["phase"] == "prune"
        assert sel.ids.size == 500
        seen.append(sel.ids)
    assert all(not np.array_equal(a, b) for a, b in itertools.pairwise(seen))
    union = np.unique(np.concatenate(seen))
    assert union.size > 950  # fresh draws cover nearly everything
    last = policy.select(scores, 7, seed=3)
    assert last.info["phase"] == "anneal"
    np.testing.assert_array_equal(last.ids, np.arange(1_000))
    np.testing.assert_array_equal(policy.select(scores, 2, seed=3).ids, seen[2])


def test_dynamic_random_floors_keep_at_ten_percent() -> None:
    sel = DynamicRandom(epochs=10, prune_ratio=0.99).select(_scores(1_000), 1)
    assert sel.ids.size == 100


@pytest.mark.parametrize(
    "policy",
    [
        SeTa(epochs=30, prune_ratio=0.1, num_groups=5, window=0.9, target_keep=0.6),
        SeTa(epochs=3),
        InfoBatch(epochs=20, prune_ratio=0.3, anneal=0.5, init_score=1.0),
        DynamicRandom(epochs=4, prune_ratio=0.2, anneal=1.0),
        Static(prune_ratio=0.4),
        Full(),
    ],
)
def test_to_dict_round_trips_through_json(policy: Policy) -> None:
    assert isinstance(policy, Policy)
    d = json.loads(json.dumps(policy.to_dict()))
    assert d["name"] == policy.name
    again = policy_from_dict(d)
    assert again == policy
    assert type(again) is type(policy)


def test_policy_names_are_distinct() -> None:
    names = [p.name for p in (SeTa, InfoBatch, DynamicRandom, Static, Full)]
    assert names == ["seta", "infobatch", "dynamic_random", "static", "full"]


def test_policy_from_dict_rejects_unknown_names_and_fields() -> None:
    with pytest.raises(PolicyError, match="unknown policy name 'nope'"):
        policy_from_dict({"name": "nope"})
    with pytest.raises(PolicyError, match="unknown policy name None"):
        policy_from_dict({"epochs": 3})
    with pytest.raises(PolicyError, match="bad parameters for policy 'seta'"):
        policy_from_dict({"name": "seta", "epochs": 3, "colour": "red"})
    with pytest.raises(PolicyError, match="prune_ratio must be a number in"):
        policy_from_dict({"name": "static", "prune_ratio": 2})


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Static(prune_ratio=1.0), r"prune_ratio must be a number in \[0, 1\), got 1.0"),
        (lambda: DynamicRandom(epochs=0, prune_ratio=0.5), "epochs must be an int >= 1, got 0"),
        (lambda: DynamicRandom(epochs=5, prune_ratio=0.5, anneal=0), "anneal .* got 0"),
    ],
)
def test_bad_parameters_are_named(make, message) -> None:
    with pytest.raises(PolicyError, match=message):
        make()


@pytest.mark.parametrize("policy", [Full(), Static(prune_ratio=0.5)])
def test_simple_policies_validate_scores(policy: Policy) -> None:
    with pytest.raises(PolicyError, match="sample 0 has score inf"):
        policy.select(np.array([np.inf], np.float32), 0)
