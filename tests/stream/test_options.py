"""Users' own data, first time right: nonfinite=, decode=, dataset paths, epoch warnings."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from seta_stream.errors import LossTableError, ManifestError, SeTaStreamError
from seta_stream.policies import Full, SeTa
from seta_stream.stream import SeTaStream

N = 1000
NAN = float("nan")


def test_nonfinite_raise_is_the_default_and_advises_skip(shards: Path, tmp_path: Path) -> None:
    with SeTaStream(shards, policy=SeTa(epochs=3), losses=tmp_path / "l") as s:
        s.set_epoch(0)
        with pytest.raises(LossTableError, match="non-finite") as info:
            s.update(torch.tensor([0, 1]), torch.tensor([NAN, 1.0]))
        assert "SeTaStream(..., nonfinite='skip')" in " ".join(info.value.__notes__)


def test_nonfinite_skip_reaches_the_loss_table(shards: Path, tmp_path: Path) -> None:
    with SeTaStream(shards, policy=SeTa(epochs=3), losses=tmp_path / "l", nonfinite="skip") as s:
        s.set_epoch(0)
        s.update(torch.tensor([0, 1, 2]), torch.tensor([NAN, 1.0, float("inf")]))
        assert s.table is not None
        s.table.flush()
        assert s.table.stats()["nonfinite_skipped"] == 2
        scores = s.table.scores()
        assert scores[1] == 1.0 and np.isnan(scores[0]) and np.isnan(scores[2])
    with pytest.raises(SeTaStreamError, match="nonfinite='drop'"):
        SeTaStream(shards, policy=Full(), losses=None, nonfinite="drop")  # type: ignore[arg-type]


def test_decode_false_is_raw_bytes(shards: Path) -> None:
    with SeTaStream(shards, policy=Full(), losses=None, decode=False) as s:
        s.set_epoch(0)
        item = next(iter(s))
        fields = {k: v for k, v in item.items() if not k.startswith("__")}
        assert fields and all(isinstance(v, bytes) for v in fields.values())


@pytest.mark.parametrize("bad", [True, "raw", 0, "Default"])
def test_decode_other_values_are_refused_up_front(shards: Path, bad: object) -> None:
    with pytest.raises(SeTaStreamError, match=rf"decode={bad!r}: use 'default'.*callable"):
        SeTaStream(shards, policy=Full(), losses=None, decode=bad)  # type: ignore[arg-type]


def test_missing_folder_and_file_get_their_own_message(shards: Path, tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match=r"no such folder: .*nowhere"):
        SeTaStream(tmp_path / "nowhere", policy=Full(), losses=None)
    tar = tmp_path / "data.tar"
    tar.write_bytes(b"\0" * 1024)
    with pytest.raises(ManifestError, match=r"data\.tar is a file, not a dataset folder.*index"):
        SeTaStream(tar, policy=Full(), losses=None)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ManifestError, match=r"dataset\.json: missing"):
        SeTaStream(tmp_path / "empty", policy=Full(), losses=None)


def _warnings(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    messages = [r.getMessage() for r in caplog.records if r.name == "seta_stream"]
    return [m for m in messages if text in m]


def _feed(s: SeTaStream, count: int) -> None:
    s.update(torch.arange(count), torch.rand(count) + 0.1)


def test_warn_past_the_policys_epochs_and_backwards(
    shards: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        caplog.at_level(logging.WARNING, logger="seta_stream"),
        SeTaStream(shards, policy=SeTa(epochs=2), losses=tmp_path / "l") as s,
    ):
        for e in range(2):
            s.set_epoch(e)
            _feed(s, N)
        assert not caplog.records
        s.set_epoch(2)
        s.set_epoch(3)
        past = _warnings(caplog, "past the policy's epochs=2")
        assert len(past) == 1 and "set_epoch(2)" in past[0]
        assert not _warnings(caplog, "go back")
        s.set_epoch(1)
        s.set_epoch(0)
        back = _warnings(caplog, "go back")
        assert len(back) == 1 and "set_epoch(1) after epoch 3" in back[0]
        assert len(_warnings(caplog, "past")) == 1  # once per stream


def test_no_epoch_warning_for_policies_without_epochs(
    shards: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        caplog.at_level(logging.WARNING, logger="seta_stream"),
        SeTaStream(shards, policy=Full(), losses=None) as s,
    ):
        for e in (0, 5, 50):
            s.set_epoch(e)
        assert not caplog.records


@pytest.mark.parametrize(("fed", "warns"), [(0, True), (400, True), (600, False)])
def test_warn_when_most_samples_were_never_seen(
    shards: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, fed: int, warns: bool
) -> None:
    with (
        caplog.at_level(logging.WARNING, logger="seta_stream"),
        SeTaStream(shards, policy=SeTa(epochs=5), losses=tmp_path / "l") as s,
    ):
        s.set_epoch(0)  # epoch 0: nothing is seen yet, and that is expected
        assert not caplog.records
        if fed:
            _feed(s, fed)
        s.set_epoch(1)
        s.set_epoch(2)
        unseen = _warnings(caplog, "samples have no loss yet")
        assert len(unseen) == (1 if warns else 0)
        if warns:
            assert f"{N - fed} of {N}" in unseen[0] and "seta" in unseen[0]
