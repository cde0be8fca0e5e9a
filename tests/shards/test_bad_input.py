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


@pytest.fixture(params=["v2", "v1"])
def layout(request: pytest.FixtureRequest, ds: Path, script) -> str:
    """Each index test runs on the per-shard files (v2) and on one `index.parquet` (v1)."""
    if request.param == "v1":
        script("tests/shards/v1_dataset.py").to_v1(ds)
    return str(request.param)


def _index_file(ds: Path, layout: str, shard: int) -> Path:
    return ds / ("index.parquet" if layout == "v1" else f"index/shard-{shard:06d}.tar.parquet")


def _edit_offsets(
    ds: Path, layout: str, shard: int, edit: dict[int, int], *, manifest_too: bool
) -> None:
    """Rewrite shard `shard`'s index rows (`edit`: row in the shard -> new offset), and with
    `manifest_too` the checksum dataset.json records for it."""
    path = _index_file(ds, layout, shard)
    t = pq.read_table(path)
    base = 100 * shard if layout == "v1" else 0  # 100 samples a shard
    offsets = t["offset"].to_numpy().copy()
    for r, v in edit.items():
        offsets[base + r] = v
    t = t.set_column(t.column_names.index("offset"), "offset", [offsets])
    _rewrite_index(ds, layout, shard, t, manifest_too=manifest_too)


def _rewrite_index(ds: Path, layout: str, shard: int, t: pa.Table, *, manifest_too: bool) -> None:
    path = _index_file(ds, layout, shard)
    pq.write_table(t, path)
    if manifest_too:  # an index that is wrong but consistent with its manifest
        m = json.loads((ds / "dataset.json").read_text())
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        if layout == "v1":
            m["index"]["sha256"] = sha
        else:
            m["shards"][shard]["index_sha256"] = sha
        (ds / "dataset.json").write_text(json.dumps(m))


def _refused(ds: Path, layout: str, ids: list[int], error: type[Exception], match: str) -> None:
    """Reading `ids` raises before any sample comes out: v1 at open (the whole index is read
    there), v2 when the shard's index is first loaded; other shards of a v2 dataset still read."""
    got: list[object] = []
    with pytest.raises(error, match=match):
        got.extend(read_samples(ds, ids))  # appends each sample as it comes
    assert got == []
    if layout == "v2":  # shard 0 or 2 is fine: one of its samples reads
        other = 0 if ids[0] // 100 != 0 else 299
        assert [x["__index__"] for x in read_samples(ds, [other])] == [other]


@pytest.mark.parametrize("shard", [0, 1])
def test_index_changed_after_writing(ds: Path, layout: str, shard: int) -> None:
    _edit_offsets(ds, layout, shard, {5: 10**9}, manifest_too=False)
    name = "index.parquet" if layout == "v1" else f"shard-00000{shard}.tar.parquet"
    _refused(ds, layout, [100 * shard + 5], ChecksumError,
             rf"{name}: sha256 \w+ but dataset.json records")  # fmt: skip


@pytest.mark.parametrize("shard", [0, 1])
def test_index_offset_past_end(ds: Path, layout: str, shard: int) -> None:
    _edit_offsets(ds, layout, shard, {5: 10**9}, manifest_too=True)
    i = 100 * shard + 5  # the id, not the row in the shard's file
    match = rf"parquet: sample {i} .*shard-00000{shard}.tar.*offset 1000000000 runs past the end"
    _refused(ds, layout, [i], ManifestError, match)


def test_index_offset_shifted(ds: Path, layout: str) -> None:
    at = int(pq.read_table(_index_file(ds, layout, 1))["offset"][5 if layout == "v2" else 105])
    _edit_offsets(ds, layout, 1, {5: at + 512}, manifest_too=True)  # on another member's data
    _refused(ds, layout, [105], ManifestError, r"sample 105 .*shard-000001.tar.*outside the sample")


def test_unknown_manifest_version(ds: Path) -> None:
    m = json.loads((ds / "dataset.json").read_text())
    m["version"] = 99
    (ds / "dataset.json").write_text(json.dumps(m))
    with pytest.raises(
        ManifestError, match=r"dataset.json: manifest version 99 is not supported .*\[1, 2\]"
    ):
        Dataset.open(ds)


def test_missing_manifest(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="not a finished dataset"):
        Dataset.open(tmp_path)


def test_index_rows_disagree_with_manifest(ds: Path, layout: str) -> None:
    if layout == "v1":  # the whole index lacks shard 2
        t = pq.read_table(ds / "index.parquet").slice(0, 200)
        match = r"0 samples in shard 2 .*dataset.json records 100"
    else:  # shard 2's index lacks half its rows
        t = pq.read_table(_index_file(ds, layout, 2)).slice(0, 50)
        match = r"shard-000002.tar.parquet: 50 rows but dataset.json counts 100 samples in shard 2"
    _rewrite_index(ds, layout, 2, t, manifest_too=True)
    _refused(ds, layout, [250], ManifestError, match)


def test_missing_shard_index(ds: Path) -> None:
    (ds / "index" / "shard-000001.tar.parquet").unlink()
    _refused(ds, "v2", [150], ManifestError, r"shard-000001.tar.parquet: the index of shard 1")


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
    assert not (tmp_path / "o").exists()  # a failed convert removes what it created
    with pytest.raises(ManifestError):
        Dataset.open(tmp_path / "o")
    (tmp_path / "p").mkdir()  # a folder that was there: only its own files stay
    (tmp_path / "p" / "mine.txt").write_text("x")
    with pytest.raises(SourceError, match="boom"):
        convert(_Exploding(str(path)), tmp_path / "p",
                ConvertOptions(samples_per_shard=100, progress=False))  # fmt: skip
    assert [p.name for p in (tmp_path / "p").iterdir()] == ["mine.txt"]
    with pytest.raises(ManifestError, match="not a finished dataset"):
        Dataset.open(tmp_path / "p")


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
