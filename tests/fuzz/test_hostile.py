"""Issue 7's "hostile and broken input" items that no other test covered: each asserts the
error type and that the message names the file, the sample and the offset."""

from __future__ import annotations

import copy
import hashlib
import io
import json
import re
import tarfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from seta_stream.errors import (
    ChecksumError,
    ManifestError,
    ShardFormatError,
    SourceError,
)
from seta_stream.shards import ConvertOptions, Dataset, convert, index_tars, open_source, verify
from seta_stream.shards.manifest import Manifest, read_manifest
from seta_stream.shards.reader import read_samples
from seta_stream.storage import Store


def _dataset(root: Path, fmt: str = "tar") -> Path:
    rng = np.random.default_rng(0)
    np.savez(root / "s.npz", x=rng.standard_normal((10, 6)).astype(np.float32), y=np.arange(10))
    out = root / fmt
    opts = ConvertOptions(samples_per_shard=5, progress=False, format=fmt)  # type: ignore[arg-type]
    convert(open_source(str(root / "s.npz")), out, opts)
    return out


@pytest.fixture(params=["v2", "v1"])
def ds(tmp_path: Path, request: pytest.FixtureRequest, script) -> Path:
    """A tar dataset of 2 shards of 5 samples: per-shard index files (v2), or one
    `index.parquet` (v1, tests/shards/v1_dataset.py)."""
    out = _dataset(tmp_path)
    if request.param == "v1":
        script("tests/shards/v1_dataset.py").to_v1(out)
    return out


def _source(ds: Path, shard: int) -> str:
    """The index file that errors about shard `shard` name."""
    v1 = json.loads((ds / "dataset.json").read_text())["version"] == 1
    return "index.parquet" if v1 else f"shard-{shard:06d}.tar.parquet"


def _edit(ds: Path, edit: object, *, manifest_too: bool = True) -> None:
    """Apply `edit(rows)` to the index rows of the whole dataset (row i is sample i); write
    back the files of the shards whose rows changed (all of them when none did: the files
    are rewritten with other bytes).

    `manifest_too`: also record the new files' sha256 in dataset.json (a wrong index that is
    consistent with its manifest, so the checks past the checksum are what is tested)."""
    m = json.loads((ds / "dataset.json").read_text())
    v1 = m["version"] == 1
    files = [ds / "index.parquet"] if v1 else [ds / "index" / f"{s['name']}.parquet"
                                               for s in m["shards"]]  # fmt: skip
    tables = [pq.read_table(f) for f in files]
    before = [t.to_pylist() for t in tables]
    rows = [r for t in before for r in copy.deepcopy(t)]
    edit(rows)  # type: ignore[operator]
    start, changed = 0, []
    for k, t in enumerate(tables):
        mine, start = rows[start : start + t.num_rows], start + t.num_rows
        if mine != before[k]:
            changed.append(k)
    for k in changed or range(len(files)):
        a = sum(t.num_rows for t in tables[:k])
        pq.write_table(pa.Table.from_pylist(rows[a : a + tables[k].num_rows],
                                            schema=tables[k].schema), files[k])  # fmt: skip
        sha = hashlib.sha256(files[k].read_bytes()).hexdigest()
        if manifest_too and v1:
            m["index"]["sha256"] = sha
        elif manifest_too:
            m["shards"][k]["index_sha256"] = sha
    (ds / "dataset.json").write_text(json.dumps(m))


def _refused(ds: Path, i: int, error: type[Exception] = ManifestError) -> str:
    """Reading sample `i` fails before a byte of it comes out (v1: at open, where the whole
    index is checked; v2: when its shard's index is first loaded); the message."""
    got: list[object] = []
    with pytest.raises(error) as e:
        got.extend(read_samples(ds, [i]))
    assert got == []
    return str(e.value)


def test_index_length_past_the_end_of_a_shard(ds: Path) -> None:
    def grow(rows: list[dict]) -> None:
        rows[7]["length"] += 10**6

    _edit(ds, grow)
    message = _refused(ds, 7)
    assert f"{_source(ds, 1)}: sample 7 ('000000007') in shard 1 (shard-000001.tar)" in message
    assert "at offset 4096 runs past the end of the shard" in message


def test_index_spans_that_overlap(ds: Path) -> None:
    def overlap(rows: list[dict]) -> None:
        rows[2]["length"] += 512  # over the header of sample 3

    _edit(ds, overlap)
    message = _refused(ds, 2)
    assert "sample 2 ('000000002') in shard 0 (shard-000000.tar): its span at bytes 4096..6656" in (
        message
    )
    assert "overlap those of sample 3 ('000000003') at bytes 6144..8192" in message


def test_index_members_that_overlap_refused_at_open(ds: Path) -> None:
    """Two samples reading the same bytes: refused before a sample is read, any format."""

    def share(rows: list[dict]) -> None:
        rows[4]["members"] = rows[3]["members"]

    _edit(ds, share)
    message = _refused(ds, 0)  # another sample of the shard: its index is refused whole
    assert (
        f"{_source(ds, 0)}: sample 3 ('000000003') in shard 0 (shard-000000.tar): "
        "its data at bytes 6656.." in message
    )
    assert "overlap those of sample 4 ('000000004') at bytes 6656.." in message


def test_index_rows_swapped(ds: Path) -> None:
    def swap(rows: list[dict]) -> None:
        for col in ("offset", "length", "members"):
            rows[1][col], rows[2][col] = rows[2][col], rows[1][col]

    _edit(ds, swap)
    match = r"sample 2 \('000000002'\) in shard 0 \(shard-000000\.tar\) at offset 2048 comes after"
    assert re.search(match + r" sample 1 \(shard 0, offset 4096\)", _refused(ds, 1))


def test_absurd_span_length(ds: Path) -> None:
    def absurd(rows: list[dict]) -> None:
        rows[9]["length"] = 2**63 - 100

    _edit(ds, absurd)
    message = _refused(ds, 9)
    assert "sample 9 ('000000009') in shard 1 (shard-000001.tar): absurd range of" in message
    assert "9223372036854775708 bytes at offset 8192 (it ends past 2**63)" in message


def test_absurd_member_size_refused_at_open(ds: Path) -> None:
    def absurd(rows: list[dict]) -> None:
        rows[9]["members"][1]["size"] = 2**63 - 100

    _edit(ds, absurd)
    message = _refused(ds, 8)
    assert (
        "sample 9 ('000000009') in shard 1 (shard-000001.tar): absurd range of 9223372036854775708"
        in message
    )
    assert "bytes at offset 9728 (it ends past 2**63)" in message


def test_absurd_tar_size_field(tmp_path: Path) -> None:
    data = bytearray(_tar([("a.cls", b"1"), ("b.cls", b"2")]))
    h = 1024  # a.cls's header (after its pax header): its size field says 8 GiB
    data[h + 124 : h + 136] = b"%011o\x00" % (8**11 - 1)
    data[h + 148 : h + 156] = b" " * 8
    data[h + 148 : h + 156] = b"%06o\x00 " % sum(data[h : h + 512])
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "a.tar").write_bytes(bytes(data))
    with pytest.raises(ShardFormatError, match=r"a\.tar: member 'a\.cls' at byte 0 has data up "
                       r"to byte 8589936128 .* past the end of the file"):  # fmt: skip
        index_tars(str(tmp_path / "t"), progress=False)


def test_corrupt_tar_header_after_indexing(ds: Path) -> None:
    shard = ds / "shard-000000.tar"
    data = bytearray(shard.read_bytes())
    data[6144 + 124] = ord("7")  # sample 3's first header: another size, same file size
    shard.write_bytes(bytes(data))
    with pytest.raises(ShardFormatError) as e:
        list(read_samples(ds, [3]))
    message = str(e.value)
    assert "shard-000000.tar sample 3 ('000000003')" in message
    assert "no tar header for field 'x.npy' of 152 bytes in front of offset 6656" in message


def test_index_checksum_mismatch_named_by_verify(ds: Path) -> None:
    def nudge(rows: list[dict]) -> None:
        rows[0]["key"] = "000000000"  # same content, rewritten file: another sha256

    _edit(ds, nudge, manifest_too=False)
    problems = verify(str(ds), progress=False)
    if _source(ds, 0) == "index.parquet":
        assert problems == [next(p for p in problems if "index.parquet: sha256" in p)]
        assert "but dataset.json records" in problems[0]
    else:  # every shard's file was rewritten: each is named, and only those
        assert len(problems) == 2
        for s, p in enumerate(problems):
            assert f"{_source(ds, s)}: the index of shard {s} (shard-00000{s}.tar) has sha256" in p


def _tar(members: list[tuple[str, bytes]], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.pax_headers = {"path": name}  # the whole name, NUL included
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.mark.parametrize(("name", "fragment"), [("../evil.cls", "'..'"), ("a\x00b.cls", "NUL")])
def test_bad_member_names_refused_by_convert_and_index(tmp_path: Path, name: str,
                                                       fragment: str) -> None:  # fmt: skip
    (tmp_path / "src").mkdir()
    tar = tmp_path / "src" / "bad.tar"
    tar.write_bytes(_tar([("ok.cls", b"1"), (name, b"2")]))
    for run in (
        lambda: convert(open_source(str(tar)), tmp_path / "out", ConvertOptions(progress=False)),
        lambda: index_tars(str(tmp_path / "src"), progress=False),
    ):
        with pytest.raises(ShardFormatError) as e:
            run()
        assert str(tar) in str(e.value) and "at byte 2048" in str(e.value)
        assert fragment in str(e.value)


@pytest.mark.parametrize("key", ["../evil", "a/../b", "a\x00b"])
def test_bad_keys_refused_by_convert(tmp_path: Path, key: str) -> None:
    (tmp_path / "t.jsonl").write_text(json.dumps({"key": key, "v": 1}) + "\n")
    with pytest.raises(SourceError, match="cannot be a WebDataset key"):
        convert(open_source(str(tmp_path / "t.jsonl")), tmp_path / "o",
                ConvertOptions(progress=False))  # fmt: skip


def test_absolute_member_names_stay_keys(tmp_path: Path) -> None:
    """`/…/evil.cls` is the key `/…/evil`: indexed, converted and read, never a path."""
    target = tmp_path / "elsewhere"
    name = f"{target}/evil.cls"
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.tar").write_bytes(_tar([(name, b"7"), ("ok.cls", b"1")]))
    index_tars(str(tmp_path / "src"), progress=False)
    convert(open_source(str(tmp_path / "src" / "a.tar")), tmp_path / "out",
            ConvertOptions(progress=False))  # fmt: skip
    for root in (tmp_path / "src", tmp_path / "out"):
        got = list(read_samples(root, [0, 1], decode=True))
        assert [(s["__key__"], s["cls"]) for s in got] == [(f"{target}/evil", 7), ("ok", 1)]
    assert not target.exists()


@pytest.mark.parametrize("name", ["../outside.tar", "/etc/passwd", "a/../../b.tar", "a\x00.tar"])
def test_manifest_shard_names_outside_the_dataset(ds: Path, name: str) -> None:
    doc = json.loads((ds / "dataset.json").read_text())
    doc["shards"][0]["name"] = name
    (ds / "dataset.json").write_text(json.dumps(doc))
    with pytest.raises(ManifestError) as e:
        Dataset.open(ds)
    assert f"dataset.json: shards[0]: shard name {name!r} must be a relative path" in str(e.value)


# ---------------------------------------------------------------- gaps in reader.py


def _rename(key: str | None, field: str | None) -> Callable[[list[dict]], None]:
    def edit(rows: list[dict]) -> None:
        if key is not None:
            rows[2]["key"] = key
        if field is not None:
            rows[2]["members"][0]["name"] = field

    return edit


@pytest.mark.parametrize(("key", "field"), [("evil", None), (None, "z.npy")])
def test_renamed_key_or_field_in_a_tar_index_is_refused(
    ds: Path, key: str | None, field: str | None
) -> None:
    """The read path checks each member's header magic and size, not its name: the index's
    sha256 in dataset.json, checked at open, is what catches an edited key or field."""
    _edit(ds, _rename(key, field), manifest_too=False)
    message = _refused(ds, 2, ChecksumError)
    assert re.search(rf"{_source(ds, 0)}: sha256 \w+ but dataset.json", message)


def test_arrow_member_size_edited_is_refused(tmp_path: Path) -> None:
    """Arrow members have no header in front: an edited range is caught by the checksum."""
    ds = _dataset(tmp_path, "arrow")

    def cut(rows: list[dict]) -> None:
        rows[2]["members"][0]["size"] -= 1

    _edit(ds, cut, manifest_too=False)
    assert "shard-000000.arrow.parquet: sha256" in _refused(ds, 2, ChecksumError)


def test_manifest_from_json_accepts_what_to_json_writes(ds: Path) -> None:
    m = read_manifest(Store(ds))
    assert Manifest.from_json(m.to_json(), source="x") == m
