"""Bad input: an error naming file, sample and offset; nothing half-done looks finished."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from seta_stream.errors import (
    ChecksumError,
    DecodeError,
    ManifestError,
    ShardFormatError,
    SourceError,
)
from seta_stream.shards import ConvertOptions, Dataset, convert, open_source, read_samples
from seta_stream.shards.decode import decode_fields, unzst
from seta_stream.shards.sources import NpzSource, Sample


@pytest.fixture
def ds(tmp_path: Path, npz_source) -> Path:
    path, _ = npz_source
    convert(
        open_source(str(path)),
        tmp_path / "ds",
        ConvertOptions(samples_per_shard=100, progress=False),
    )
    return tmp_path / "ds"


def test_truncated_shard(ds: Path) -> None:
    shard = ds / "shard-000002.tar"
    shard.write_bytes(shard.read_bytes()[:5000])
    with pytest.raises(
        ShardFormatError, match=r"shard-000002.tar: 5000 bytes but dataset.json records"
    ):
        list(read_samples(ds, [250]))


def _edit_offsets(ds: Path, edit: dict[int, int], *, manifest_too: bool) -> None:
    """Rewrite index.parquet with some offsets changed (and its checksum in dataset.json)."""
    t = pq.read_table(ds / "index.parquet")
    offsets = t["offset"].to_numpy().copy()
    for i, v in edit.items():
        offsets[i] = v
    _rewrite_index(ds, t.set_column(t.column_names.index("offset"), "offset", [offsets]),
                   manifest_too=manifest_too)  # fmt: skip


def _rewrite_index(ds: Path, t: pa.Table, *, manifest_too: bool) -> None:
    pq.write_table(t, ds / "index.parquet")
    if manifest_too:  # an index that is wrong but consistent with its manifest
        m = json.loads((ds / "dataset.json").read_text())
        m["index"]["sha256"] = hashlib.sha256((ds / "index.parquet").read_bytes()).hexdigest()
        (ds / "dataset.json").write_text(json.dumps(m))


def test_index_changed_after_writing(ds: Path) -> None:
    _edit_offsets(ds, {5: 10**9}, manifest_too=False)
    with pytest.raises(ChecksumError, match=r"index.parquet: sha256 \w+ but dataset.json records"):
        Dataset.open(ds)


def test_index_offset_past_end(ds: Path) -> None:
    _edit_offsets(ds, {5: 10**9}, manifest_too=True)
    with pytest.raises(ManifestError, match=r"index.parquet.* sample 5 .*shard-000000.tar"):
        Dataset.open(ds)


def test_index_offset_shifted(ds: Path) -> None:
    ds_ = Dataset.open(ds)
    at = int(ds_.index.gather(np.array([5])).offset[0]) + 512  # still inside the file, on another member's data
    _edit_offsets(ds, {5: at}, manifest_too=True)
    with pytest.raises(ManifestError, match=r"sample 5 .*shard-000000.tar.*outside the sample"):
        Dataset.open(ds)


def test_unknown_manifest_version(ds: Path) -> None:
    m = json.loads((ds / "dataset.json").read_text())
    m["version"] = 99
    (ds / "dataset.json").write_text(json.dumps(m))
    with pytest.raises(
        ManifestError, match=r"dataset.json: manifest version 99 is not supported .*\[1\]"
    ):
        Dataset.open(ds)


def test_missing_manifest(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="not a finished dataset"):
        Dataset.open(tmp_path)


def test_index_rows_disagree_with_manifest(ds: Path) -> None:
    t = pq.read_table(ds / "index.parquet")
    _rewrite_index(ds, t.slice(0, 200), manifest_too=True)
    with pytest.raises(ManifestError, match=r"0 samples in shard 2 .*dataset.json records 100"):
        Dataset.open(ds)


class _Exploding(NpzSource):
    def load(self, i: int) -> Sample:
        if i == 280:
            raise SourceError(f"sample {i}: boom")
        return super().load(i)


def test_interrupted_convert_never_looks_finished(tmp_path: Path, npz_source) -> None:
    path, _ = npz_source
    with pytest.raises(SourceError, match="boom"):
        convert(
            _Exploding(str(path)),
            tmp_path / "o",
            ConvertOptions(samples_per_shard=100, progress=False),
        )
    assert not (tmp_path / "o" / "dataset.json").exists()
    assert not [p.name for p in (tmp_path / "o").iterdir() if ".tmp-" in p.name]
    with pytest.raises(ManifestError, match="not a finished dataset"):
        Dataset.open(tmp_path / "o")


def test_pickle_refused_by_default() -> None:
    import pickle

    raw = {"__key__": "k", "x.pickle": pickle.dumps([1, 2])}
    with pytest.raises(DecodeError, match=r"'x.pickle': pickle is refused"):
        decode_fields(raw, where="s")
    assert decode_fields(raw, where="s", allow_pickle=True)["x.pickle"] == [1, 2]


def test_npy_with_objects_refused() -> None:
    buf = io.BytesIO()
    np.save(buf, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DecodeError, match=r"'x.npy': cannot decode"):
        decode_fields({"x.npy": buf.getvalue()}, where="s")


def test_zstd_bomb_refused() -> None:
    bomb = zstandard.ZstdCompressor().compress(bytes(10_000_000))
    with pytest.raises(
        DecodeError, match=r"decompresses to 10000000 bytes, over the limit of 1000000"
    ):
        unzst("x.npy.zst", bomb, where="sample 3", limit=1_000_000)
    with pytest.raises(DecodeError, match="corrupt zstd"):
        unzst("x.npy.zst", b"\x28\xb5\x2f\xfd garbage", where="sample 3")


def test_duplicate_field_in_sample(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.JPG").write_bytes(b"1")
    (tmp_path / "src" / "a.jpg").write_bytes(b"2")
    with pytest.raises(SourceError, match=r"field 'jpg' twice for key 'a'"):
        open_source(str(tmp_path / "src"))


def test_non_utf8_member_name_is_refused_by_index(tmp_path: Path) -> None:
    import tarfile

    from seta_stream.shards import index_tars

    (tmp_path / "t").mkdir()
    with tarfile.open(
        tmp_path / "t" / "a.tar", "w", format=tarfile.GNU_FORMAT, encoding="latin-1"
    ) as t:
        info = tarfile.TarInfo("caf\xe9.txt")
        info.size = 1
        t.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(ShardFormatError, match="not valid UTF-8"):
        index_tars(str(tmp_path / "t"), progress=False)
