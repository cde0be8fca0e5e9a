"""merge of many parts without reading an index file; merge of version-1 parts; verify per
shard, naming the shard, the sample and the index file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from seta_stream.errors import ManifestError
from seta_stream.shards import ConvertOptions, Dataset, convert, merge, open_source, verify
from seta_stream.storage import Store

PARTS = 6


def _parts(root: Path, src: Path, parts: int = PARTS) -> None:
    for i in range(parts):
        opts = ConvertOptions(samples_per_shard=20, part=(i, parts), progress=False)
        convert(open_source(str(src)), root, opts)


def _check_all(root: Path, arrays: dict[str, np.ndarray]) -> None:
    ds = Dataset.open(root)
    assert ds.num_samples == 300
    for i in range(300):
        np.testing.assert_array_equal(ds.read(i, decode=True)["x.npy"], arrays["x"][i])
    ds.close()


def test_merge_reads_no_index_file(
    tmp_path: Path, npz_source, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every part's index files are garbage while merge runs, and reads are counted: merge
    only checks that the files exist. With the files back the merged dataset reads right."""
    path, arrays = npz_source
    _parts(tmp_path, path)
    files = sorted((tmp_path / "index").iterdir())
    assert len(files) == 18  # 50 samples a part: 3 shards each
    saved = {f: f.read_bytes() for f in files}
    for f in files:
        f.write_bytes(b"not parquet")
    read: list[str] = []
    for method in ("read_bytes", "open", "read_range"):
        original = getattr(Store, method)

        def counted(self: Store, name: str, *a: object, _o: object = original, **k: object):
            read.append(name)
            return _o(self, name, *a, **k)  # type: ignore[operator]

        monkeypatch.setattr(Store, method, counted)
    m = merge(str(tmp_path), progress=False)
    monkeypatch.undo()
    assert read and not [n for n in read if n.startswith("index/")]
    assert len(m.shards) == 18 and m.num_samples == 300
    for f, data in saved.items():
        f.write_bytes(data)
    _check_all(tmp_path, arrays)
    assert verify(str(tmp_path), progress=False) == []


def test_merge_refuses_a_part_without_its_index_files(tmp_path: Path, npz_source) -> None:
    path, _ = npz_source
    _parts(tmp_path, path, 3)
    (tmp_path / "index" / "shard-p00001-000002.tar.parquet").unlink()
    with pytest.raises(ManifestError, match=r"part-00001-of-00003.json: 1 of its shards have no "
                       r"index file, first .*index/shard-p00001-000002.tar.parquet"):  # fmt: skip
        merge(str(tmp_path), progress=False)
    assert not (tmp_path / "dataset.json").exists()


def test_merge_refuses_parts_that_differ(tmp_path: Path, npz_source) -> None:
    path, _ = npz_source
    convert(open_source(str(path)), tmp_path, ConvertOptions(part=(0, 2), progress=False))
    opts = ConvertOptions(part=(1, 2), progress=False, compress="zstd")
    convert(open_source(str(path)), tmp_path, opts)
    with pytest.raises(ManifestError, match="parts differ in format, compression or metadata"):
        merge(str(tmp_path), progress=False)


def test_merge_of_version_1_parts(tmp_path: Path, npz_source, script) -> None:
    """Old parts (one index each) are cut into per-shard files, a part at a time; mixed with
    new parts, the merged dataset is the same as from new parts only."""
    v1 = script("tests/shards/v1_dataset.py")
    path, arrays = npz_source
    _parts(tmp_path / "new", path, 3)
    _parts(tmp_path / "old", path, 3)
    for i in (0, 2):
        name = f"dataset.part-{i:05d}-of-00003.json"
        v1.to_v1(tmp_path / "old", manifest_name=name, index_name=f"index.part-{i:05d}.parquet")
    assert sorted(p.name for p in (tmp_path / "old" / "index").iterdir())[0].startswith(
        "shard-p00001"
    )
    new = merge(str(tmp_path / "new"), progress=False)
    old = merge(str(tmp_path / "old"), progress=False)
    assert new.shards == old.shards and new.version == old.version == 2
    for f in (tmp_path / "new" / "index").iterdir():
        assert f.read_bytes() == (tmp_path / "old" / "index" / f.name).read_bytes()
    _check_all(tmp_path / "old", arrays)


@pytest.fixture
def ds(tmp_path: Path, npz_source) -> Path:
    path, _ = npz_source
    convert(open_source(str(path)), tmp_path, ConvertOptions(samples_per_shard=100, progress=False))
    return tmp_path


def _reindex(ds: Path, shard: int, edit) -> None:
    """Edit shard `shard`'s index rows and record the new file's sha256 (a consistent lie)."""
    import hashlib

    f = ds / "index" / f"shard-{shard:06d}.tar.parquet"
    pq.write_table(edit(pq.read_table(f)), f)
    m = json.loads((ds / "dataset.json").read_text())
    m["shards"][shard]["index_sha256"] = hashlib.sha256(f.read_bytes()).hexdigest()
    (ds / "dataset.json").write_text(json.dumps(m))


def test_verify_names_shard_sample_and_offset(ds: Path) -> None:
    assert verify(str(ds), progress=False) == []

    def rename(t):
        keys = t["key"].to_pylist()
        keys[5] = "elsewhere"
        return t.set_column(t.column_names.index("key"), "key", [keys])

    _reindex(ds, 1, rename)
    problems = verify(str(ds), progress=False)
    assert len(problems) == 1
    assert "shard-000001.tar: sample 105 ('elsewhere') at offset " in problems[0]


def test_verify_rehashes_each_index_file(ds: Path) -> None:
    f = ds / "index" / "shard-000002.tar.parquet"
    pq.write_table(pq.read_table(f), f, compression="snappy")  # same rows, other bytes
    (ds / "index" / "shard-000000.tar.parquet").unlink()
    problems = verify(str(ds), progress=False)
    assert len(problems) == 2
    assert (
        "index/shard-000000.tar.parquet: the index of shard 0 (shard-000000.tar) is missing"
        in problems[0]
    )
    assert (
        "index/shard-000002.tar.parquet: the index of shard 2 (shard-000002.tar) has sha256 "
        in problems[1]
    )


def test_verify_a_version_1_dataset(ds: Path, script) -> None:
    script("tests/shards/v1_dataset.py").to_v1(ds)
    assert verify(str(ds), progress=False) == []
    (ds / "shard-000001.tar").write_bytes(b"\0" * 10)
    problems = verify(str(ds), progress=False)
    assert any("shard-000001.tar: 10 bytes, manifest says" in p for p in problems)
