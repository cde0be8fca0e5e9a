"""`on_error`: a bad sample stops the epoch with an error naming it, or is skipped and counted."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from torch.utils.data import DataLoader

from seta_stream.errors import DecodeError, SeTaStreamError, ShardFormatError
from seta_stream.policies import Full
from seta_stream.shards import Dataset
from seta_stream.stream import SeTaStream

N = 1000
BAD_HEADER, BAD_DATA = 7, 611  # samples whose bytes the tests break


def _break(shards: Path, dst: Path, samples: tuple[int, ...]) -> Path:
    """A copy of the dataset with, per sample named, its .npy member's tar header (BAD_HEADER)
    or its .npy bytes (any other) overwritten."""
    shutil.copytree(shards, dst)
    ds = Dataset.open(dst)
    for i in samples:
        at, junk = (-512 + 257, b"XXXXX") if i == BAD_HEADER else (0, b"garbage!")
        fields, moff, _ = ds.index.members_of(i)
        k = next(j for j, f in enumerate(fields) if f.endswith("npy"))
        shard = ds.manifest.shards[int(ds.index.shard_of(np.array([i]))[0])].name
        with open(dst / shard, "r+b") as f:
            f.seek(int(moff[k]) + at)
            f.write(junk)
    ds.close()
    return dst


@pytest.fixture
def broken(shards: Path, tmp_path: Path) -> Path:
    return _break(shards, tmp_path / "ds", (BAD_HEADER, BAD_DATA))


def _epoch(path: Path, workers: int, **kw: object) -> tuple[list[int], dict]:
    with SeTaStream(path, policy=Full(), losses=None, **kw) as s:  # type: ignore[arg-type]
        s.set_epoch(0)
        loader = DataLoader(s, batch_size=64, num_workers=workers)
        ids = [int(i) for b in loader for i in b["__index__"]]
        return ids, s.stats()


@pytest.mark.parametrize(
    ("bad", "error", "match"),
    [
        (BAD_HEADER, ShardFormatError, rf"\.tar sample {BAD_HEADER} .*no tar header .*offset \d+"),
        (BAD_DATA, DecodeError, rf"sample {BAD_DATA} .*npy"),
    ],
)
def test_raise_is_the_default_and_names_the_sample(
    shards: Path, tmp_path: Path, bad: int, error: type[Exception], match: str
) -> None:
    path = _break(shards, tmp_path / "ds", (bad,))
    with SeTaStream(path, policy=Full(), losses=None) as s:
        s.set_epoch(0)
        with pytest.raises(error, match=match):
            list(s)


@pytest.mark.parametrize("workers", [0, 2])
def test_skip_leaves_out_only_the_bad_samples(
    broken: Path, workers: int, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="seta_stream"):
        ids, stats = _epoch(broken, workers, on_error="skip")
    assert sorted(ids) == sorted(set(range(N)) - {BAD_HEADER, BAD_DATA})  # each once
    assert stats["samples_skipped"] == 2
    assert stats["samples_yielded"] == N - 2
    if workers == 0:  # records from worker processes do not reach this process's handlers
        logged = " ".join(r.getMessage() for r in caplog.records)
        assert f"sample {BAD_HEADER}" in logged
        assert f"sample {BAD_DATA}" in logged
        assert "skipped" in logged


def test_skip_a_truncated_shard(shards: Path, tmp_path: Path) -> None:
    path = tmp_path / "ds"
    shutil.copytree(shards, path)
    ds = Dataset.open(path)
    last = ds.manifest.shards[-1].name
    in_last = ds.manifest.shards[-1].samples
    os.truncate(path / last, os.path.getsize(path / last) - 700)
    with SeTaStream(path, policy=Full(), losses=None) as s:
        s.set_epoch(0)
        with pytest.raises(ShardFormatError, match=rf"{last}: \d+ bytes but dataset.json"):
            list(s)
    ids, stats = _epoch(path, 0, on_error="skip")
    assert len(ids) == len(set(ids)) == N - in_last
    assert stats["samples_skipped"] == in_last


def test_on_error_must_be_known(shards: Path) -> None:
    with pytest.raises(SeTaStreamError, match="on_error='ignore'"):
        SeTaStream(shards, policy=Full(), losses=None, on_error="ignore")  # type: ignore[arg-type]
