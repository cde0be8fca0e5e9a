"""`tools/shard.py upgrade`: a version-1 dataset reads the same before and after, gets the
files a version-2 conversion writes, keeps its fingerprint, and is version 1 until the end."""

from __future__ import annotations

import hashlib
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from seta_stream.errors import ChecksumError, ManifestError
from seta_stream.shards import ConvertOptions, Dataset, convert, open_source, upgrade, verify
from seta_stream.shards import reader as reader_mod
from seta_stream.shards import upgrade_v1 as upgrade_mod


@pytest.fixture(scope="module")
def shard(script) -> ModuleType:
    return script("tools/shard.py", "shard_cli_upgrade")


@pytest.fixture
def v1(script) -> ModuleType:
    return script("tests/shards/v1_dataset.py")


def _files(root: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (root / "index").iterdir()}


def _read_all(root: Path) -> list[dict[str, Any]]:
    ds = Dataset.open(root)
    ids = np.random.default_rng(0).permutation(ds.num_samples)
    got = list(ds.iter_raw(ids))
    ds.close()
    return got


@pytest.mark.parametrize("fmt", ["tar", "arrow"])
def test_upgrade_reads_the_same_and_writes_the_v2_files(
    tmp_path: Path, npz_source, v1, shard, fmt: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = npz_source
    opts = ConvertOptions(format=fmt, samples_per_shard=70, progress=False)  # type: ignore[arg-type]
    convert(open_source(str(path)), tmp_path, opts)
    want_files, want = _files(tmp_path), _read_all(tmp_path)
    old = v1.to_v1(tmp_path)
    assert not (tmp_path / "index").exists()
    assert Dataset.open(tmp_path).manifest.version == 1
    assert _read_all(tmp_path) == want
    assert shard.main(["upgrade", str(tmp_path)]) == 0
    assert "index.parquet is left in place" in capsys.readouterr().out
    ds = Dataset.open(tmp_path)
    assert ds.manifest.version == 2 and ds.fingerprint == old.fingerprint
    assert _files(tmp_path) == want_files  # the bytes a version-2 conversion writes
    assert (tmp_path / "index.parquet").exists()
    assert _read_all(tmp_path) == want
    assert verify(str(tmp_path), progress=False) == []
    assert shard.main(["upgrade", str(tmp_path)]) == 0  # again: nothing to do
    assert "already version 2; nothing to do" in capsys.readouterr().out
    assert _files(tmp_path) == want_files


@pytest.mark.parametrize("where", ["write_shard_index", "write_manifest"])
def test_interrupted_upgrade_leaves_a_version_1_dataset(
    tmp_path: Path, npz_source, v1, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    path, _ = npz_source
    convert(open_source(str(path)), tmp_path, ConvertOptions(samples_per_shard=40, progress=False))
    want = _read_all(tmp_path)
    v1.to_v1(tmp_path)
    manifest = (tmp_path / "dataset.json").read_bytes()
    original = getattr(upgrade_mod, where)
    calls = [0]

    def killed(*args: Any) -> Any:
        calls[0] += 1
        if where == "write_manifest" or calls[0] == 3:
            raise KeyboardInterrupt  # the process stops here
        return original(*args)

    monkeypatch.setattr(upgrade_mod, where, killed)
    with pytest.raises(KeyboardInterrupt):
        upgrade(str(tmp_path), progress=False)
    monkeypatch.undo()
    assert (tmp_path / "dataset.json").read_bytes() == manifest
    assert Dataset.open(tmp_path).manifest.version == 1
    assert _read_all(tmp_path) == want
    m, changed = upgrade(str(tmp_path), progress=False)  # run again: finishes
    assert changed and m.version == 2 and _read_all(tmp_path) == want


@pytest.fixture
def old(tmp_path: Path, npz_source, v1) -> Path:
    """A version-1 dataset of 3 shards of 100 samples."""
    path, _ = npz_source
    convert(open_source(str(path)), tmp_path, ConvertOptions(samples_per_shard=100, progress=False))
    v1.to_v1(tmp_path)
    return tmp_path


def test_upgrade_refuses_an_index_the_manifest_does_not_name(
    old: Path, shard, capsys: pytest.CaptureFixture[str]
) -> None:
    data = bytearray((old / "index.parquet").read_bytes())
    data[100] ^= 1
    (old / "index.parquet").write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match=r"index.parquet: sha256 \w+ but dataset.json"):
        upgrade(str(old), progress=False)
    assert not (old / "index").exists()
    assert shard.main(["upgrade", str(old)]) == 1
    assert "shard.py upgrade: error: " in capsys.readouterr().err


def test_upgrade_checks_rows_against_the_shard_counts(old: Path) -> None:
    """Counts in the manifest that cut the index elsewhere than its `shard` column does."""
    import json

    m = json.loads((old / "dataset.json").read_text())
    m["shards"][0]["samples"], m["shards"][1]["samples"] = 99, 101
    (old / "dataset.json").write_text(json.dumps(m))
    with pytest.raises(ManifestError, match=r"row 99 is sample 99 of shard 0, but .* shard 1"):
        upgrade(str(old), progress=False)


def test_large_version_1_dataset_asks_for_upgrade(
    old: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reader_mod, "V1_MAX_SAMPLES", 299)
    with pytest.raises(ManifestError, match=r"run `python tools/shard.py upgrade .*` once"):
        Dataset.open(old)
    upgrade(str(old), progress=False)
    assert Dataset.open(old).num_samples == 300


def test_upgrade_through_an_fsspec_url(tmp_path: Path, npz_source, v1) -> None:
    path, _ = npz_source
    url = f"memory://seta-upgrade-{tmp_path.name}/ds"
    convert(open_source(str(path)), url, ConvertOptions(samples_per_shard=100, progress=False))
    want = list(Dataset.open(url).iter_raw(np.arange(300)))
    v1.to_v1(url)
    assert Dataset.open(url).manifest.version == 1
    m, changed = upgrade(url, progress=False)
    assert changed and m.version == 2
    assert list(Dataset.open(url).iter_raw(np.arange(300))) == want
