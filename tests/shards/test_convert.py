"""convert -> read back equals the source, for tar and arrow, with and without zstd."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pytest
import webdataset as wds
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seta_stream.errors import SourceError
from seta_stream.shards import (
    ConvertOptions,
    convert,
    open_source,
    read_samples,
    scan_index,
)
from seta_stream.shards.writer import _tarinfo_header, member_header


@pytest.mark.parametrize("fmt", ["tar", "arrow"])
@pytest.mark.parametrize("compress", [None, "zstd", "zstd:9"])
def test_npz_round_trip(tmp_path: Path, npz_source, fmt: str, compress: str | None) -> None:
    path, arrays = npz_source
    opts = ConvertOptions(format=fmt, samples_per_shard=100, compress=compress, progress=False)
    m = convert(open_source(str(path)), tmp_path / "out", opts)
    assert m.num_samples == 300 and len(m.shards) == 3
    assert [s.samples for s in m.shards] == [100, 100, 100]
    ids = np.random.default_rng(1).permutation(300)
    got = list(read_samples(tmp_path / "out", ids, decode=True))
    assert [g["__index__"] for g in got] == ids.tolist()
    for g in got:
        i = g["__index__"]
        assert g["__key__"] == f"{i:09d}"
        np.testing.assert_array_equal(g["x.npy"], arrays["x"][i])
        assert (
            g["y.npy"].shape == () and g["y.npy"] == arrays["y"][i] and g["w.npy"] == arrays["w"][i]
        )
    index = scan_index(tmp_path / "out").collect()
    assert index["sample_id"].to_list() == list(range(300))
    assert index["label"].to_list() == arrays["y"].tolist()  # `y` is taken as the label
    assert index["w"].to_list() == arrays["w"].tolist()


@pytest.mark.webdataset
def test_tar_shards_read_by_tar_and_webdataset(tmp_path: Path, npz_source) -> None:
    path, arrays = npz_source
    convert(
        open_source(str(path)),
        tmp_path / "out",
        ConvertOptions(samples_per_shard=100, progress=False),
    )
    names = subprocess.run(
        ["tar", "tf", str(tmp_path / "out" / "shard-000000.tar")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert names[:3] == ["000000000.x.npy", "000000000.y.npy", "000000000.w.npy"]
    urls = [str(tmp_path / "out" / f"shard-{i:06d}.tar") for i in range(3)]
    samples = list(wds.WebDataset(urls, shardshuffle=False).decode())
    assert len(samples) == 300
    for i, s in enumerate(samples):
        assert s["__key__"] == f"{i:09d}"
        np.testing.assert_array_equal(s["x.npy"], arrays["x"][i])


def test_deterministic_bytes(tmp_path: Path, npz_source) -> None:
    path, _ = npz_source
    for out in ("a", "b"):
        convert(
            open_source(str(path)),
            tmp_path / out,
            ConvertOptions(progress=False, shuffle=True, seed=3),
        )
    a = (tmp_path / "a" / "shard-000000.tar").read_bytes()
    assert a == (tmp_path / "b" / "shard-000000.tar").read_bytes()
    with tarfile.open(tmp_path / "a" / "shard-000000.tar") as t:
        m = t.getmembers()[0]
        assert (m.mtime, m.uid, m.gid, m.uname, m.mode) == (0, 0, 0, "", 0o644)


def test_workers_give_same_bytes(tmp_path: Path, npz_source) -> None:
    path, _ = npz_source
    convert(
        open_source(str(path)), tmp_path / "one", ConvertOptions(progress=False, compress="zstd")
    )
    convert(
        open_source(str(path)),
        tmp_path / "two",
        ConvertOptions(progress=False, compress="zstd", workers=2),
    )
    one, two = (tmp_path / d / "shard-000000.tar" for d in ("one", "two"))
    assert one.read_bytes() == two.read_bytes()


def test_shuffle_is_a_permutation(tmp_path: Path, npz_source) -> None:
    path, _ = npz_source
    convert(
        open_source(str(path)), tmp_path / "s", ConvertOptions(shuffle=True, seed=1, progress=False)
    )
    keys = scan_index(tmp_path / "s").select("key").collect()["key"].to_list()
    assert keys != sorted(keys) and sorted(keys) == [f"{i:09d}" for i in range(300)]


def test_max_shard_bytes(tmp_path: Path, npz_source) -> None:
    path, _ = npz_source
    m = convert(
        open_source(str(path)),
        tmp_path / "o",
        ConvertOptions(max_shard_bytes=40_000, progress=False),
    )
    assert len(m.shards) > 5
    # every shard but a single-sample one stays within the limit (plus the end-of-archive record)
    assert all(s.bytes <= 40_000 + 10240 for s in m.shards)
    assert sum(s.samples for s in m.shards) == 300


def test_manifest_written_last_and_overwrite_guard(tmp_path: Path, npz_source) -> None:
    path, _ = npz_source
    convert(open_source(str(path)), tmp_path / "o", ConvertOptions(progress=False))
    manifest = json.loads((tmp_path / "o" / "dataset.json").read_text())
    assert manifest["version"] == 2 and manifest["num_samples"] == 300
    assert manifest["index"] == {"layout": "shards"}
    assert not [p for p in (tmp_path / "o").iterdir() if ".tmp-" in p.name]
    assert not [p for p in (tmp_path / "o" / "index").iterdir() if ".tmp-" in p.name]
    with pytest.raises(SourceError, match="already there"):
        convert(open_source(str(path)), tmp_path / "o", ConvertOptions(progress=False))


def test_member_header_fast_path_matches_tarfile() -> None:
    for name in ["a.b", "k" * 95 + ".x.npy", "dir/sub/key.jpg", "é.txt", "x" * 101 + ".y"]:
        for size in [0, 1, 511, 512, 10**9, 8**11 - 1, 8**11]:
            assert member_header(name, size) == _tarinfo_header(name, size)


field_names = st.from_regex(r"[a-z][a-z0-9]{0,5}(\.[a-z0-9]{1,4})?", fullmatch=True)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    samples=st.lists(
        st.dictionaries(field_names, st.binary(max_size=3000), min_size=1, max_size=3),
        min_size=1,
        max_size=30,
    ),
    fmt=st.sampled_from(["tar", "arrow"]),
    compress=st.sampled_from([None, "zstd"]),
    per_shard=st.integers(1, 12),
)
def test_files_round_trip_property(tmp_path_factory, samples, fmt, compress, per_shard) -> None:
    root = tmp_path_factory.mktemp("src")
    for i, fields in enumerate(samples):
        for ext, data in fields.items():
            (root / f"s{i:04d}.{ext}").write_bytes(data)
    out = tmp_path_factory.mktemp("out")
    opts = ConvertOptions(
        format=fmt, compress=compress, samples_per_shard=per_shard, progress=False, overwrite=True
    )
    convert(open_source(str(root)), out, opts)
    got = list(read_samples(out, range(len(samples))))
    for i, (g, fields) in enumerate(zip(got, samples, strict=True)):
        assert g.pop("__key__") == f"s{i:04d}" and g.pop("__index__") == i
        assert g == {k.lower(): v for k, v in fields.items()}


def test_arrow_shards_read_row_by_row_through_a_memory_map(tmp_path: Path, npz_source) -> None:
    import pyarrow as pa
    import pyarrow.ipc as ipc

    path, arrays = npz_source
    convert(open_source(str(path)), tmp_path / "a", ConvertOptions(format="arrow", progress=False))
    with pa.memory_map(str(tmp_path / "a" / "shard-000000.arrow")) as source:
        reader = ipc.open_file(source)
        batch = reader.get_batch(reader.num_record_batches - 1)  # one batch, not the file
        row = batch.num_rows - 1
        x = np.load(io.BytesIO(batch.column("x.npy")[row].as_py()))
        i = int(batch.column("__key__")[row].as_py())
        np.testing.assert_array_equal(x, arrays["x"][i])
