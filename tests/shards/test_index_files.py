"""The writers' index files: byte for byte what the whole-index writer cut per shard, written
shard by shard with at most a few shards' rows in memory."""

from __future__ import annotations

import io
import tarfile
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from seta_stream.shards import ConvertOptions, convert, index_tars, open_source, read_samples
from seta_stream.shards import indexwriter as iw
from seta_stream.shards.index import MEMBER_TYPE
from seta_stream.shards.manifest import Manifest
from seta_stream.shards.shardindex import shard_index_name, write_index_files
from seta_stream.shards.tarindex import scan_tar
from seta_stream.shards.writer import _value_offsets
from seta_stream.storage import Store


def _whole_table(rows: list[tuple[Any, ...]], meta: dict[str, list[Any]]) -> pa.Table:
    """The whole index as the writers built it before issue 11 (one list per column for the
    whole dataset): rows are (key, shard, offset, length, members)."""
    mstart = np.cumsum([0] + [len(r[4]) for r in rows]).tolist()
    flat = [m for r in rows for m in r[4]]
    members = pa.ListArray.from_arrays(
        pa.array(mstart, pa.int32()),
        pa.StructArray.from_arrays(
            [
                pa.array([m[0] for m in flat], pa.string()),
                pa.array([m[1] for m in flat], pa.int64()),
                pa.array([m[2] for m in flat], pa.int64()),
            ],
            fields=list(MEMBER_TYPE),
        ),
    )
    cols = {
        "sample_id": pa.array(np.arange(len(rows), dtype=np.int64)),
        "key": pa.array([r[0] for r in rows], pa.string()),
        "shard": pa.array([r[1] for r in rows], pa.int32()),
        "offset": pa.array([r[2] for r in rows], pa.int64()),
        "length": pa.array([r[3] for r in rows], pa.int64()),
        "members": members,
    }
    cols.update({k: pa.array(v) for k, v in meta.items()})
    return pa.table(cols)


def _rows_from_shards(root: Path, m: Manifest) -> list[tuple[Any, ...]]:
    """Every sample's index row, found again from the shard files themselves."""
    rows = []
    for s, info in enumerate(m.shards):
        data = (root / info.name).read_bytes()
        if m.format == "tar":
            scan = scan_tar(io.BytesIO(data), name=info.name, size=len(data))
            rows += [(x.key, s, x.offset, x.length, x.members) for x in scan.samples]
            continue
        buf = pa.py_buffer(data)
        keys = pa.ipc.open_file(buf).read_all()["__key__"].to_pylist()
        fields = tuple(f for f in m.fields)
        for r, members in enumerate(_value_offsets(buf, fields)):
            rows.append((keys[r], s, r, sum(x[2] for x in members), members))
    return rows


def _assert_files_as_whole_writer(root: Path, m: Manifest, meta: dict[str, list[Any]]) -> None:
    ref = Store(root / "ref")
    write_index_files(ref, _whole_table(_rows_from_shards(root, m), meta), m.shards)
    for info in m.shards:
        name = shard_index_name(info.name)
        assert (root / name).read_bytes() == (root / "ref" / name).read_bytes(), name


@pytest.mark.parametrize("fmt", ["tar", "arrow"])
def test_convert_writes_the_files_the_whole_index_gave(tmp_path: Path, npz_source, fmt) -> None:
    path, arrays = npz_source
    opts = ConvertOptions(format=fmt, samples_per_shard=70, progress=False, compress="zstd")
    m = convert(open_source(str(path)), tmp_path, opts)
    assert len(m.shards) == 5 and m.metadata_columns == ("y", "w", "label")
    y, w = arrays["y"].tolist(), arrays["w"].tolist()
    _assert_files_as_whole_writer(tmp_path, m, {"y": y, "w": w, "label": y})


def _tars(root: Path, shards: int, per_shard: int) -> None:
    root.mkdir()
    for t in range(shards):
        with tarfile.open(root / f"w-{t:03d}.tar", "w") as tf:
            for i in range(per_shard + t):
                for ext in ("txt", "cls"):
                    data = f"{t} {i} {ext}".encode()
                    info = tarfile.TarInfo(f"s{t}_{i:03d}.{ext}")
                    info.size = len(data)
                    tf.addfile(info, io.BytesIO(data))


def test_index_tars_writes_the_files_the_whole_index_gave(tmp_path: Path) -> None:
    _tars(tmp_path / "w", 4, 9)
    m = index_tars(str(tmp_path / "w"), progress=False, workers=2)
    _assert_files_as_whole_writer(tmp_path / "w", m, {})


@pytest.fixture
def live_rows(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The most `ShardRows` alive at once, sampled at every row added (grows as they do)."""
    alive: weakref.WeakSet[iw.ShardRows] = weakref.WeakSet()
    most = [0]
    init, add = iw.ShardRows.__init__, iw.ShardRows.add

    def counted_init(self: iw.ShardRows) -> None:
        init(self)
        alive.add(self)

    def counted_add(self: iw.ShardRows, **kw: Any) -> None:
        add(self, **kw)
        most[0] = max(most[0], len(alive))

    monkeypatch.setattr(iw.ShardRows, "__init__", counted_init)
    monkeypatch.setattr(iw.ShardRows, "add", counted_add)
    return most


def test_convert_holds_one_shard_of_rows(tmp_path: Path, npz_source, live_rows) -> None:
    path, _ = npz_source
    m = convert(open_source(str(path)), tmp_path, ConvertOptions(samples_per_shard=10,
                                                                 progress=False))  # fmt: skip
    assert len(m.shards) == 30 and live_rows[0] == 1
    assert [x["__index__"] for x in read_samples(tmp_path, [299, 0])] == [299, 0]


def test_index_tars_holds_a_shard_of_rows_per_thread(tmp_path: Path, live_rows) -> None:
    _tars(tmp_path / "w", 12, 5)
    m = index_tars(str(tmp_path / "w"), progress=False, workers=2)
    assert len(m.shards) == 12 and 1 <= live_rows[0] <= 2


def test_metadata_types_agree_across_shards(tmp_path: Path) -> None:
    """A shard whose values are all missing, or ints after floats, keeps the type the first
    shard fixed: every index file has one schema."""
    store = Store(tmp_path)
    files = iw.IndexFiles(store, ("score",))
    from seta_stream.shards.manifest import ShardInfo

    for s, values in enumerate([[0.5, 1.5], [None, None], [2, 3]]):
        rows = iw.ShardRows()
        for k, v in enumerate(values):
            rows.add(key=f"k{s}{k}", offset=k * 1024, length=1024, members=[], meta={"score": v})
        files.write(ShardInfo(name=f"s{s}.tar", bytes=2048, samples=2), rows)
    import pyarrow.parquet as pq

    types = {pq.read_schema(tmp_path / f"index/s{s}.tar.parquet").field("score").type
             for s in range(3)}  # fmt: skip
    assert types == {pa.float64()}
