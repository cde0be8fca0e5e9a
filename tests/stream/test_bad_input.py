"""Misuse of SeTaStream gets an error that says what to do (the rest is in test_stream.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from seta_stream.errors import LossTableError, SeTaStreamError
from seta_stream.policies import DynamicRandom
from seta_stream.shards import ConvertOptions, convert, open_source
from seta_stream.stream import SeTaStream

POLICY = DynamicRandom(epochs=4, prune_ratio=0.5)


def test_before_set_epoch(shards: Path, tmp_path: Path) -> None:
    with SeTaStream(shards, policy=POLICY, losses=tmp_path / "l") as s:
        for use in (lambda: len(s), lambda: s.steps_per_epoch(10), s.state_dict):
            with pytest.raises(SeTaStreamError, match=r"set_epoch\(epoch\)|before set_epoch"):
                use()
        for bad in (-1, 1.0, "2", True):
            with pytest.raises(SeTaStreamError, match="epoch must be an int >= 0"):
                s.set_epoch(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("ids", "losses", "match"),
    [
        (torch.tensor([1, 2, 3]), torch.tensor([0.5, 0.5]), "3.*2|2.*3"),  # lengths differ
        (torch.tensor([-1]), torch.tensor([0.5]), "-1"),  # unknown ids
        (np.array([10**6]), np.array([0.5]), "1000000"),
        (np.array([0.5]), np.array([0.5]), "integer"),  # ids must be integers
        (np.array([1]), np.array([float("nan")]), "non-finite"),
    ],
)
def test_update_bad_input(
    shards: Path, tmp_path: Path, ids: object, losses: object, match: str
) -> None:
    with SeTaStream(shards, policy=POLICY, losses=tmp_path / "l") as s:
        s.set_epoch(0)
        with pytest.raises(SeTaStreamError, match=match):
            s.update(ids, losses)
        s.update(np.array([1, 2]), np.array([0.1, 0.2]))  # the stream still works after
        assert len(list(s)) == 500


def test_loss_table_of_another_dataset(shards: Path, tmp_path: Path) -> None:
    x = np.random.default_rng(5).standard_normal((1000, 4)).astype(np.float32)
    np.savez(tmp_path / "other.npz", x=x, y=np.arange(1000))
    convert(
        open_source(str(tmp_path / "other.npz")),
        tmp_path / "other",
        ConvertOptions(samples_per_shard=500, progress=False),
    )
    with SeTaStream(shards, policy=POLICY, losses=tmp_path / "l") as s:
        s.set_epoch(0)
    with pytest.raises(LossTableError, match="belongs to another dataset"):
        SeTaStream(tmp_path / "other", policy=POLICY, losses=tmp_path / "l")


def test_other_ranks_refuse_bad_losses_at_the_caller(tmp_path: Path, shards: Path) -> None:
    from seta_stream.errors import LossTableError
    from seta_stream.policies import SeTa
    from seta_stream.stream import SeTaStream

    with SeTaStream(shards, policy=SeTa(epochs=3), losses=tmp_path / "l") as s:
        table, s.table = s.table, None  # what a rank other than 0 holds: no table, a buffer
        try:
            with pytest.raises(LossTableError, match="non-finite"):
                s.update(torch.tensor([1, 2]), torch.tensor([0.5, float("nan")]))
            s.update(torch.tensor([1, 2]), torch.tensor([0.5, 0.25]))
            assert [len(p) for p in s._pending] == [1, 1, 1]  # only the good batch is buffered
            assert s._pending[2][0].tolist() == [1, 1]  # with its step (the refused call was 0)
        finally:
            s.table = table
