"""`plan.steps` / `plan.worker_counts`: batches a DataLoader yields, per worker, after resumes."""

from __future__ import annotations

import pytest

from seta_stream.errors import SeTaStreamError
from seta_stream.plan import Stage, steps, worker_bounds, worker_counts


@pytest.mark.parametrize("rank_len", [0, 1, 7, 100, 1000])
@pytest.mark.parametrize("workers", [0, 1, 2, 3, 5])
def test_counts_are_the_worker_split(rank_len: int, workers: int) -> None:
    counts = worker_counts(rank_len, workers)
    w = max(workers, 1)
    assert counts == [b - a for a, b in (worker_bounds(rank_len, i, w) for i in range(w))]
    assert sum(counts) == rank_len and max(counts) - min(counts) <= 1


def test_steps_sum_over_workers() -> None:
    # 1000 over 3 workers: 333, 333, 334; a batch of 10 gives 34 + 34 + 34, not 100
    assert steps(1000, 10, 3, False) == 102 and steps(1000, 10, 3, True) == 99
    assert steps(1000, 10, 0, False) == steps(1000, 10, 1, False) == 100
    assert steps(1000, 64, 2, False) == 16 and steps(1000, 64, 2, True) == 14
    assert steps(0, 8, 4, False) == 0 and steps(2, 8, 4, False) == 2  # empty workers: no batch


def test_steps_after_a_resume() -> None:
    done = (Stage(num_workers=1, yielded=(120,)),)
    assert worker_counts(1000, 0, done) == [880]  # the same worker count continues
    assert worker_counts(1000, 2, done) == [440, 440]  # another one splits the rest again
    assert steps(1000, 50, 0, False, stages=done) == 18
    two = (Stage(num_workers=2, yielded=(100, 60)),)
    assert worker_counts(1000, 2, two) == [400, 440]
    assert steps(1000, 50, 2, True, stages=two) == 8 + 8
    assert worker_counts(1000, 3, (*done, *two)) == [240, 240, 240]


@pytest.mark.parametrize(
    ("batch", "workers"), [(0, 0), (-1, 0), (True, 0), (1.5, 0), (8, -1), (8, None)]
)
def test_bad_arguments(batch: object, workers: object) -> None:
    with pytest.raises(SeTaStreamError, match=r"batch_size|num_workers"):
        steps(10, batch, workers, False)  # type: ignore[arg-type]
