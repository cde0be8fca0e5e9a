"""SeTa against SETA_SPEC.md: windows, annealing, keep arithmetic, groups, determinism."""

from __future__ import annotations

import itertools
import json
import math
import subprocess
import sys
import time

import numpy as np
import pytest

from seta_stream.errors import PolicyError
from seta_stream.policies import SeTa, policy_from_dict
from seta_stream.policies.base import is_annealing, keep_count
from seta_stream.policies.seta import target_ranks, window_bounds


def _losses(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).lognormal(size=n).astype(np.float32)


# The spec's reference table: (E, δ, k, α) -> w, windows of epochs 0…6, first annealing epoch.
TABLE = [
    ((200, 0.875, 5, 0.9), 4, [None, (1, 5), (0, 4), (1, 5), (0, 4), (1, 5), (0, 4)], 175),
    ((300, 0.875, 5, 0.6), 3, [None, (1, 4), (2, 5), (0, 3), (1, 4), (2, 5), (0, 3)], 262),
    ((200, 0.875, 10, 0.5), 5, [None, (1, 6), (2, 7), (3, 8), (4, 9), (5, 10), (0, 5)], 175),
]


@pytest.mark.parametrize(("setting", "w", "windows", "first_anneal"), TABLE)
def test_window_schedule_matches_the_spec_table(setting, w, windows, first_anneal) -> None:
    epochs, anneal, k, alpha = setting
    policy = SeTa(epochs=epochs, anneal=anneal, num_groups=k, window=alpha)
    scores = _losses(3_000)
    for e, expected in enumerate(windows):
        sel = policy.select(scores, e, seed=7)
        assert sel.info["phase"] == "prune"
        assert len(sel.info["groups"]) == k
        window = tuple(sel.info["window"])
        assert window == ((0, k) if expected is None else expected)
        if expected is not None:
            assert window[1] - window[0] == w
        # the selection is exactly the union of the window's groups
        in_window = (sel.groups >= window[0]) & (sel.groups < window[1])
        np.testing.assert_array_equal(sel.ids, np.flatnonzero(in_window))
    phases = [policy.select(scores[:40], e).info["phase"] for e in range(epochs)]
    assert phases.index("anneal") == first_anneal
    assert set(phases[first_anneal:]) == {"anneal"}


def test_window_size_rounds_half_to_even() -> None:
    assert window_bounds(5, 1, 0.9) == (1, 5)  # round(4.5) = 4, not 5
    assert window_bounds(5, 1, 0.5) == (1, 3)  # round(2.5) = 2
    assert window_bounds(7, 1, 0.5) == (1, 5)  # round(3.5) = 4
    assert window_bounds(10, 3, 0.01) == (3, 4)  # w >= 1
    assert window_bounds(4, 9, 1.0) == (0, 4)


def test_annealing_uses_the_float64_product() -> None:
    assert 100 * 0.57 == 56.99999999999999
    assert not is_annealing(55, 100, 0.57)
    assert is_annealing(56, 100, 0.57)
    policy = SeTa(epochs=100, anneal=0.57, prune_ratio=0.3)
    scores = _losses(500)
    assert policy.select(scores, 55).info["phase"] == "prune"
    sel = policy.select(scores, 56)
    assert sel.info["phase"] == "anneal"
    assert sel.info["window"] is None
    assert sel.info["groups"] == []
    assert sel.groups is not None
    assert np.all(sel.groups == -1)
    assert sel.ids.size == keep_count(500, 0.7)


def test_keep_count_is_floored_product() -> None:
    assert keep_count(2600, 0.7) == 1819
    scores = np.full(2600, np.nan, np.float32)
    policy = SeTa(epochs=10, prune_ratio=0.3)
    assert policy.select(scores, 0).ids.size == 1819  # epoch 0 keeps all of R
    assert policy.select(scores, 9).ids.size == 1819  # annealing: floor(keep·N) too
    # keep is floored at 0.1
    assert SeTa(epochs=10, prune_ratio=0.95).select(scores, 0).ids.size == 260


def test_epoch_zero_splits_unseen_samples_into_equal_random_chunks() -> None:
    scores = np.full(1_003, np.nan, np.float32)
    sel = SeTa(epochs=10, num_groups=10, prune_ratio=0.2).select(scores, 0, seed=3)
    r_size = keep_count(1_003, 0.8)
    assert sel.ids.size == r_size
    sizes = [g["size"] for g in sel.info["groups"]]
    assert len(sizes) == 10
    assert sum(sizes) == r_size
    assert max(sizes) - min(sizes) <= 1
    assert all(g["mean"] == 3.0 for g in sel.info["groups"])
    assert sel.groups is not None
    assert np.all(sel.groups[sel.ids] >= 0)
    assert np.count_nonzero(sel.groups == -1) == 1_003 - r_size
    np.testing.assert_array_equal(np.bincount(sel.groups[sel.ids]), sizes)
    # chunks are random, not runs of ids
    first_chunk = np.flatnonzero(sel.groups == 0)
    assert first_chunk[-1] - first_chunk[0] > 500


def test_groups_are_ordered_easy_to_hard_and_match_the_scores() -> None:
    scores = _losses(5_000, seed=1)
    scores[::7] = np.nan  # never seen: init_score 3.0
    sel = SeTa(epochs=10, num_groups=5, window=0.6).select(scores, 2, seed=1)
    filled = np.where(np.isnan(scores), np.float32(3.0), scores)
    groups = sel.info["groups"]
    assert [g["rank"] for g in groups] == list(range(5))
    assert all(a["max"] < b["min"] for a, b in itertools.pairwise(groups))
    assert all(a["mean"] < b["mean"] for a, b in itertools.pairwise(groups))
    assert sel.groups is not None
    for g in groups:
        members = filled[sel.groups == g["rank"]]
        assert members.size == g["size"]
        assert members.min() == g["min"]
        assert members.max() == g["max"]
        assert members.mean(dtype=np.float64) == pytest.approx(g["mean"], rel=1e-9)
    assert sel.info["window"] == [2, 5]  # w = round(3.0) = 3, start = 2 mod 3
    assert sel.weights is None
    json.dumps(sel.info)


def test_random_pruning_then_clustering_only_r() -> None:
    scores = _losses(10_000, seed=2)
    sel = SeTa(epochs=20, prune_ratio=0.4, num_groups=4, window=0.5).select(scores, 3, seed=5)
    assert sel.groups is not None
    clustered = np.flatnonzero(sel.groups >= 0)
    assert clustered.size == keep_count(10_000, 0.6)
    assert sel.info["num_clustered"] == clustered.size
    assert np.isin(sel.ids, clustered).all()
    # R is a uniform random subset: its mean score is close to the whole set's
    assert scores[clustered].mean() == pytest.approx(scores.mean(), rel=0.05)


def test_tiny_r_uses_one_group_per_distinct_score() -> None:
    scores = np.array([1.0, 2.0, 2.0, 5.0, 1.0, 2.0], np.float32)
    sel = SeTa(epochs=10, num_groups=10).select(scores, 0)
    assert [g["size"] for g in sel.info["groups"]] == [2, 3, 1]
    assert sel.groups is not None
    np.testing.assert_array_equal(sel.groups, [0, 1, 1, 2, 0, 1])
    sel = SeTa(epochs=10, num_groups=10, window=0.5).select(scores, 1)
    assert sel.info["window"] == [1, 3]  # w = round(3·0.5) = 2 over the 3 groups
    np.testing.assert_array_equal(sel.ids, [1, 2, 3, 5])


def test_empty_r_still_selects_one_sample() -> None:
    scores = np.ones(5, np.float32)
    sel = SeTa(epochs=10, prune_ratio=0.9).select(scores, 1)  # floor(5·0.1) = 0
    assert sel.ids.size == 1
    assert 0 <= int(sel.ids[0]) < 5


def test_target_ranks_end_where_the_paper_window_ends() -> None:
    sizes = [500, 250, 125, 75, 50]  # rank boundaries 0, 500, 750, 875, 950, 1000
    # window ends at group 2's end (875): ranks [275, 875): 225 of group 0's highest, 1, 2
    assert target_ranks(sizes, 3, 600) == (0, 3, [(0, 275, 500)])
    assert target_ranks(sizes, 5, 400) == (1, 5, [(1, 100, 250)])  # ranks [600, 1000)
    assert target_ranks(sizes, 3, 375) == (1, 3, [])  # groups 1 and 2 exactly
    assert target_ranks(sizes, 1, 600) == (0, 2, [(1, 0, 100)])  # hi 500 < 600: ranks [0, 600)
    assert target_ranks(sizes, 5, 1000) == (0, 5, [])  # all of R
    assert target_ranks(sizes, 2, 60) == (1, 2, [(1, 190, 250)])  # inside one group
    assert target_ranks(sizes, 4, 10) == (3, 4, [(3, 65, 75)])


_DESIGNED = {
    "skewed": np.random.default_rng(3).lognormal(0.0, 1.5, 20_000).astype(np.float32),
    "uniform": np.random.default_rng(4).random(20_000).astype(np.float32),
    "ties": np.random.default_rng(5).integers(0, 3, 20_000).astype(np.float32),
    "nan_unseen": np.where(
        np.arange(20_000) % 7 == 0, np.nan, np.random.default_rng(6).lognormal(size=20_000)
    ).astype(np.float32),
}


@pytest.mark.parametrize("kind", sorted(_DESIGNED))
@pytest.mark.parametrize("target", [0.3, 0.6, 0.85])
def test_target_keep_is_exact_every_pruning_epoch(kind: str, target: float) -> None:
    scores = _DESIGNED[kind]
    n = scores.size
    policy = SeTa(epochs=30, num_groups=10, prune_ratio=0.1, target_keep=target)
    stops = set()
    for e in range(26):  # epochs 0…25 prune (26 > 30·0.875 anneals)
        sel = policy.select(scores, e, seed=1)
        assert sel.info["phase"] == "prune"
        assert sel.ids.size == math.floor(n * target)  # exact, within the ±1% asked
        assert np.all(np.diff(sel.ids) > 0)
        stops.add(sel.info["window"][1])
        # the kept set: the T highest ranks of R up to where the paper's window ends (shifted
        # up when too few lie below it): inner groups whole, the edge groups cut by score
        start, stop = sel.info["window"]
        g = sel.groups[sel.ids]
        assert g.min() >= start and g.max() < stop
        kept = np.zeros(n, bool)
        kept[sel.ids] = True
        filled = np.where(np.isnan(scores), np.float32(3.0), scores)
        for edge in (start, stop - 1):
            cut = (sel.groups == edge) & ~kept
            if cut.any() and (kept & (sel.groups == edge)).any():
                kept_here = filled[kept & (sel.groups == edge)]
                if edge == start and stop - 1 > start:  # easy side: its highest are kept
                    assert kept_here.min() >= filled[cut].max()
                else:  # hard side: its lowest are kept
                    assert kept_here.max() <= filled[cut].min()
        inner = (sel.groups > start) & (sel.groups < stop - 1)
        assert kept[inner].all()
        paper_stop = window_bounds(len(sel.info["groups"]), e, policy.window)[1]
        assert stop == paper_stop or g.min() == 0  # the hard edge stays, unless shifted up
    if target == 0.3 and kind != "ties":
        assert len(stops) > 1  # the hard edge moves as the paper's window does


def test_target_keep_ties_are_cut_by_id() -> None:
    scores = np.zeros(100, np.float32)
    scores[50:] = 1.0  # two groups of 50; target 70 at e = 0 (both groups): ranks [30, 100)
    sel = SeTa(epochs=10, num_groups=2, target_keep=0.7).select(scores, 0)
    assert sel.ids.tolist() == list(range(30, 100))  # group 0's 20 highest ids, then group 1
    sel = SeTa(epochs=10, num_groups=2, target_keep=0.3).select(scores, 1)  # w=1 from 1
    assert sel.ids.tolist() == list(range(70, 100))  # ranks [70, 100): group 1's 30 highest


def test_target_keep_schedule_points_and_callable() -> None:
    scores = _DESIGNED["skewed"]
    points = SeTa(epochs=30, target_keep=[(0, 1.0), (10, 0.5), (20, 0.5)])
    for e, want in [(0, 1.0), (5, 0.75), (10, 0.5), (15, 0.5), (25, 0.5)]:
        assert points.target_at(e) == want
        assert points.select(scores, e).ids.size == math.floor(scores.size * want)
    d = json.loads(json.dumps(points.to_dict()))
    assert d["target_keep"] == [[0, 1.0], [10, 0.5], [20, 0.5]]
    assert policy_from_dict(d) == points
    fn = SeTa(epochs=30, target_keep=lambda e: 0.9 - 0.02 * e)
    assert fn.select(scores, 10).ids.size == math.floor(scores.size * 0.7)
    with pytest.raises(PolicyError, match="callable target_keep cannot be serialised"):
        fn.to_dict()
    with pytest.raises(PolicyError, match=r"target_keep\(3\) returned 2"):
        SeTa(epochs=30, target_keep=lambda e: 2).select(scores, 3)


def test_target_keep_none_keeps_the_paper_rule() -> None:
    scores = _losses(5000, seed=9)
    for e in range(1, 8):
        sel = SeTa(epochs=30, num_groups=10).select(scores, e)
        sizes = len(sel.info["groups"])
        assert tuple(sel.info["window"]) == window_bounds(sizes, e, 0.5)
        assert "target_keep" not in sel.info


def test_same_inputs_same_selection_and_no_global_rng_touched() -> None:
    import torch

    torch.set_num_threads(1)
    np.random.seed(123)
    torch.manual_seed(123)
    np_state = np.random.get_state(legacy=True)
    assert isinstance(np_state, tuple)
    torch_state = torch.random.get_rng_state().clone()
    scores = _losses(4_000)
    policy = SeTa(epochs=10, prune_ratio=0.3, num_groups=5, window=0.6)
    a = policy.select(scores, 3, seed=11)
    b = policy.select(scores.copy(), 3, seed=11)
    np.testing.assert_array_equal(a.ids, b.ids)
    assert a.groups is not None
    assert b.groups is not None
    np.testing.assert_array_equal(a.groups, b.groups)
    assert a.info == b.info
    after = np.random.get_state(legacy=True)
    assert isinstance(after, tuple)
    assert after[0] == np_state[0]
    np.testing.assert_array_equal(after[1], np_state[1])
    assert after[2:] == np_state[2:]
    assert torch.equal(torch.random.get_rng_state(), torch_state)
    c = policy.select(scores, 3, seed=12)
    assert not np.array_equal(a.ids, c.ids)


def test_same_selection_in_another_process() -> None:
    code = (
        "import numpy as np, hashlib;"
        "from seta_stream.policies import SeTa;"
        "s = np.random.default_rng(0).lognormal(size=3000).astype(np.float32);"
        "sel = SeTa(epochs=10, prune_ratio=0.3, num_groups=5).select(s, 2, seed=4);"
        "print(hashlib.sha256(sel.ids.tobytes() + sel.groups.tobytes()).hexdigest())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    import hashlib

    s = _losses(3_000)
    sel = SeTa(epochs=10, prune_ratio=0.3, num_groups=5).select(s, 2, seed=4)
    assert sel.groups is not None
    here = hashlib.sha256(sel.ids.tobytes() + sel.groups.tobytes()).hexdigest()
    assert out.stdout.strip() == here


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"epochs": 0}, "epochs must be an int >= 1, got 0"),
        ({"epochs": 2.5}, "epochs must be an int >= 1, got 2.5"),
        ({"epochs": 5, "prune_ratio": 1.0}, r"prune_ratio must be a number in \[0, 1\), got 1.0"),
        ({"epochs": 5, "prune_ratio": -0.1}, "prune_ratio .* got -0.1"),
        ({"epochs": 5, "num_groups": 0}, r"num_groups must be an int in \[1, 127\], got 0"),
        ({"epochs": 5, "num_groups": 200}, "num_groups .* got 200"),
        ({"epochs": 5, "window": 0.0}, r"window must be a number in \(0, 1\], got 0.0"),
        ({"epochs": 5, "window": 1.5}, "window .* got 1.5"),
        ({"epochs": 5, "anneal": 0.0}, r"anneal must be a number in \(0, 1\], got 0.0"),
        ({"epochs": 5, "init_score": float("nan")}, "init_score must be a finite number"),
        ({"epochs": 5, "target_keep": 0.0}, r"target_keep must be None, .* got 0.0"),
        ({"epochs": 5, "target_keep": 1.2}, "target_keep .* got 1.2"),
        ({"epochs": 5, "target_keep": [(3, 0.5), (1, 0.6)]}, "increasing epochs"),
        ({"epochs": 5, "target_keep": [(0, 0.0)]}, r"keep in \(0, 1\]"),
    ],
)
def test_bad_parameters_are_named(kwargs, message) -> None:
    with pytest.raises(PolicyError, match=message):
        SeTa(**kwargs)


@pytest.mark.parametrize(
    ("scores", "message"),
    [
        (np.ones(10, np.float64), "1-D float32 array .* got float64"),
        (np.ones((2, 5), np.float32), r"got float32 with shape \(2, 5\)"),
        (np.array([1.0, np.inf, 2.0], np.float32), "sample 1 has score inf"),
        (np.empty(0, np.float32), "scores is empty"),
        ([1.0, 2.0], "scores must be a numpy array, got list"),
    ],
)
def test_bad_scores_raise(scores, message) -> None:
    with pytest.raises(PolicyError, match=message):
        SeTa(epochs=5).select(scores, 1)


def test_bad_epoch_or_seed_raise() -> None:
    scores = np.ones(10, np.float32)
    with pytest.raises(PolicyError, match="epoch must be an int >= 0, got -1"):
        SeTa(epochs=5).select(scores, -1)
    with pytest.raises(PolicyError, match="seed must be an int >= 0, got -3"):
        SeTa(epochs=5).select(scores, 0, seed=-3)


@pytest.mark.slow
def test_ten_million_scores_within_three_argsorts() -> None:
    scores = _losses(10_000_000)
    t0 = time.perf_counter()
    np.argsort(scores)
    argsort_s = time.perf_counter() - t0
    policy = SeTa(epochs=10, prune_ratio=0.3)
    t0 = time.perf_counter()
    sel = policy.select(scores, 3)
    select_s = time.perf_counter() - t0
    assert sel.ids.size > 0
    assert select_s < 3 * argsort_s
