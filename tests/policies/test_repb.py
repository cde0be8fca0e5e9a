"""RePB on designed score/step/count sets: local windows, resampling, weights, determinism."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from seta_stream import RePB
from seta_stream.errors import PolicyError
from seta_stream.policies import policy_from_dict

# Two windows of 6 samples (window_steps=2: steps 0-1 and 2-3). Window 0's losses are all
# higher than window 1's: a global ranking would prune window 1 only, a local one prunes both.
STEPS = np.array([0, 0, 1, 1, 1, 0, 2, 2, 3, 3, 2, 3], np.int64)
SCORES = np.array([5, 6, 7, 8, 9, 10, 0, 1, 2, 3, 4, 5], np.float32)


def _select(policy: RePB, epoch: int, counts=None, scores=SCORES, steps=STEPS, seed=0):
    if counts is None:
        counts = np.full(scores.size, epoch, np.uint32)  # kept every epoch so far
    return policy.select(scores, epoch, seed=seed, steps=steps, selection_counts=counts)


def test_local_windows_prune_the_lowest_of_each_window() -> None:
    sel = _select(RePB(epochs=10, prune_ratio=0.5, window_steps=2, easy=1.0), 3)
    assert sel.ids.tolist() == [3, 4, 5, 9, 10, 11]  # the 3 highest of each window
    assert sel.weights is None  # every sample kept in all 3 earlier epochs: weight 1
    assert sel.info["num_windows"] == 2 and sel.info["num_pruned"] == 6
    assert sel.info["kept_fraction"] == 0.5


def test_one_wide_window_is_a_global_ranking() -> None:
    sel = _select(RePB(epochs=10, prune_ratio=0.5, window_steps=100, easy=1.0), 3)
    # one window: the 6 lowest go, ids 6…10 (0…4) and, of the tie at 5, the lower id 0
    assert sel.ids.tolist() == [1, 2, 3, 4, 5, 11]


def test_largest_remainder_makes_the_total_exact_and_resampling_stays_in_candidates() -> None:
    # prune_ratio 0.25: quotas 1.5 and 1.5 -> 1 + 1, and P = floor(0.25·12) = 3: the extra one
    # goes to window 0 (equal remainders: the earlier window). easy=2: window 0 draws 2 of its
    # 4 lowest (ids 0…3), window 1 draws 1 of its 2 lowest (ids 6, 7).
    policy = RePB(epochs=10, prune_ratio=0.25, window_steps=2, easy=2.0)
    seen_pruned: set[int] = set()
    for seed in range(40):
        sel = _select(policy, 3, seed=seed)
        pruned = sorted(set(range(12)) - set(sel.ids.tolist()))
        assert len(pruned) == 3
        w0 = [i for i in pruned if i < 6]
        w1 = [i for i in pruned if i >= 6]
        assert len(w0) == 2 and set(w0) <= {0, 1, 2, 3}  # the 4 lowest of window 0
        assert len(w1) == 1 and set(w1) <= {6, 7}  # the 2 lowest of window 1
        seen_pruned.update(pruned)
    assert seen_pruned == {0, 1, 2, 3, 6, 7}  # uniform among the candidates: each one drawn


def test_unseen_samples_are_kept() -> None:
    steps = STEPS.copy()
    steps[[6, 7]] = -1  # never seen (no step)
    scores = SCORES.copy()
    scores[0] = np.nan  # no loss
    sel = _select(RePB(epochs=10, prune_ratio=0.5, window_steps=2, easy=1.0), 3, None, scores,
                  steps)  # fmt: skip
    assert {0, 6, 7} <= set(sel.ids.tolist())
    assert sel.info["num_seen"] == 9
    assert len(sel) == 12 - 4  # floor(0.5·9) = 4 pruned: 2 of window 0 (5 seen), 2 of window 1


def test_weights_are_the_inverse_selection_frequency_capped() -> None:
    policy = RePB(epochs=20, prune_ratio=0.0, window_steps=2, max_weight=3.0)
    counts = np.array([4, 3, 2, 1, 0, 4, 4, 4, 4, 4, 4, 4], np.uint32)  # of epochs 0…3
    sel = _select(policy, 4, counts)
    assert sel.ids.tolist() == list(range(12))  # prune_ratio 0: nothing pruned
    assert sel.weights is not None and sel.weights.dtype == np.float32
    # (e + 1) / (c + 1) at e = 4: 5/5, 5/4, 5/3, 5/2, 5/1 -> capped at 3
    expected = np.array([1.0, 1.25, 5 / 3, 2.5, 3.0] + [1.0] * 7, np.float32)
    np.testing.assert_array_equal(sel.weights, expected)


def test_epoch_zero_and_annealing_are_full_data_weight_one() -> None:
    policy = RePB(epochs=8, prune_ratio=0.5, window_steps=2, anneal=0.5)  # anneal from epoch 4
    counts = np.zeros(12, np.uint32)
    for epoch, phase in ((0, "full"), (4, "anneal"), (7, "anneal")):
        sel = _select(policy, epoch, counts)
        assert sel.info["phase"] == phase
        assert sel.ids.tolist() == list(range(12)) and sel.weights is None
    assert _select(policy, 3, counts).info["phase"] == "prune"


def test_same_inputs_same_selection_in_another_process() -> None:
    rng = np.random.default_rng(1)
    n = 50_000
    scores = rng.lognormal(size=n).astype(np.float32)
    steps = (np.arange(n) // 64 + rng.integers(0, 3, n)).astype(np.int64)
    counts = rng.integers(0, 6, n).astype(np.uint32)
    policy = RePB(epochs=10, prune_ratio=0.35, window_steps=8)
    sel = policy.select(scores, 5, seed=7, steps=steps, selection_counts=counts)
    again = policy.select(scores.copy(), 5, seed=7, steps=steps.copy(),
                          selection_counts=counts.copy())  # fmt: skip
    np.testing.assert_array_equal(sel.ids, again.ids)
    np.testing.assert_array_equal(sel.weights, again.weights)
    assert len(sel) == n - int(0.35 * n)
    other = policy.select(scores, 5, seed=8, steps=steps, selection_counts=counts)
    assert not np.array_equal(sel.ids, other.ids)
    code = (
        "import numpy as np, hashlib; from seta_stream import RePB\n"
        "rng = np.random.default_rng(1); n = 50_000\n"
        "scores = rng.lognormal(size=n).astype(np.float32)\n"
        "steps = (np.arange(n) // 64 + rng.integers(0, 3, n)).astype(np.int64)\n"
        "counts = rng.integers(0, 6, n).astype(np.uint32)\n"
        "s = RePB(epochs=10, prune_ratio=0.35, window_steps=8).select(scores, 5, seed=7, "
        "steps=steps, selection_counts=counts)\n"
        "print(hashlib.sha256(s.ids.tobytes() + s.weights.tobytes()).hexdigest())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    import hashlib

    digest = hashlib.sha256(sel.ids.tobytes() + sel.weights.tobytes()).hexdigest()
    assert out.stdout.strip() == digest


def test_dict_round_trip_and_bad_input() -> None:
    policy = RePB(epochs=30, prune_ratio=0.4, window_steps=32, easy=1.5, max_weight=2.0)
    d = json.loads(json.dumps(policy.to_dict()))
    assert d["name"] == "repb"
    assert policy_from_dict(d) == policy
    assert RePB.needs == {"steps", "selection_counts"}
    with pytest.raises(PolicyError, match="needs steps="):
        policy.select(SCORES, 2)
    with pytest.raises(PolicyError, match="steps must be a 1-D integer array of 12"):
        policy.select(SCORES, 2, steps=STEPS[:5], selection_counts=np.zeros(12, np.uint32))
    for kwargs, message in (
        ({"window_steps": 0}, "window_steps must be an int >= 1"),
        ({"easy": 0.5}, "easy must be a finite number >= 1"),
        ({"max_weight": float("inf")}, "max_weight must be a finite number >= 1"),
        ({"prune_ratio": 1.0}, "prune_ratio must be a number in"),
    ):
        with pytest.raises(PolicyError, match=message):
            RePB(epochs=5, **kwargs)


def test_kept_count_is_exact_on_random_windows() -> None:
    rng = np.random.default_rng(0)
    for _ in range(100):
        n = int(rng.integers(10, 3000))
        ratio = float(rng.choice([0.1, 0.15, 0.3, 0.35, 0.55, 0.7]))
        steps = np.sort(rng.integers(0, n // 5 + 1, n)).astype(np.int64)
        scores = rng.random(n).astype(np.float32)
        policy = RePB(epochs=10, prune_ratio=ratio, window_steps=int(rng.integers(1, 5)))
        sel = policy.select(scores, 2, steps=steps, selection_counts=np.ones(n, np.uint32))
        assert len(sel) == n - int(np.floor(ratio * n)), (n, ratio)
        assert np.all(np.diff(sel.ids) > 0)
