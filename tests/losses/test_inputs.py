"""Bad input to update() and record_selection() is refused at the caller, with a clear message."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from seta_stream.errors import LossTableError
from seta_stream.losses import LossTable

torch.set_num_threads(1)


@pytest.fixture
def table(tmp_path: Path):
    with LossTable(tmp_path / "t", num_samples=100) as t:
        yield t


@pytest.mark.parametrize(
    ("ids", "first_bad", "position"),
    [([1, 100, 200], 100, 1), ([5, -3, 7], -3, 1), ([2**40], 2**40, 0)],
)
def test_out_of_range_names_the_first_bad_id(table, ids, first_bad, position) -> None:
    with pytest.raises(LossTableError, match=rf"sample id {first_bad} \(position {position}"):
        table.update(np.array(ids), np.ones(len(ids), np.float32))
    assert table.stats()["updates"] == 0


def test_length_and_shape_mismatch(table) -> None:
    with pytest.raises(LossTableError, match=r"equal length, got shapes \(3,\) and \(2,\)"):
        table.update(np.arange(3), np.ones(2))
    with pytest.raises(LossTableError, match="1-D"):
        table.update(np.arange(4).reshape(2, 2), np.ones((2, 2)))


def test_swapped_or_wrong_dtypes(table) -> None:
    with pytest.raises(LossTableError, match="did you swap"):
        table.update(torch.tensor([0.5, 0.7]), torch.tensor([1, 2]))
    with pytest.raises(LossTableError, match="losses must be floating point"):
        table.update(np.array([1, 2]), np.array([1, 2]))


def test_nonfinite_raises_by_default(table) -> None:
    with pytest.raises(LossTableError, match=r"non-finite loss nan for sample id 8 \(position 1\)"):
        table.update(np.array([4, 8, 9]), np.array([1.0, np.nan, np.inf]))
    assert np.isnan(table.scores()[4]), "nothing of a refused batch is applied"


def test_nonfinite_skip_drops_and_counts(tmp_path: Path) -> None:
    with LossTable(tmp_path / "t", num_samples=10, nonfinite="skip") as table:
        table.update(torch.tensor([1, 2, 3, 4]), torch.tensor([1.0, float("nan"), -np.inf, 4.0]))
        scores = table.scores()
        assert table.stats()["nonfinite_skipped"] == 2
    assert scores[1] == 1.0 and scores[4] == 4.0
    assert np.isnan(scores[2]) and np.isnan(scores[3])


def test_selection_is_validated(table, tiny_selection) -> None:
    cases = [
        (tiny_selection(ids=np.array([3, 1])), "sorted and unique"),
        (tiny_selection(ids=np.array([1, 1])), "sorted and unique"),
        (tiny_selection(ids=np.array([1, 100])), "sample id 100"),
        (tiny_selection(ids=np.array([1.0])), "1-D integer array"),
        (tiny_selection(ids=np.array([1]), weights=np.ones(2)), "aligned with ids"),
        (tiny_selection(ids=np.array([1]), weights=np.array([np.nan])), "finite"),
        (tiny_selection(ids=np.array([1]), groups=np.zeros(99, np.int8)), "length 100"),
        (tiny_selection(ids=np.array([1]), groups=np.full(100, -2)), "0..127 or -1"),
        (tiny_selection(ids=np.array([1]), info={"x": object()}), "JSON-serialisable"),
    ]
    for selection, message in cases:
        with pytest.raises(LossTableError, match=message):
            table.record_selection(0, selection)
