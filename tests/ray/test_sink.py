"""`seta_stream.ray` on a real local Ray cluster (2 CPUs): the shard sink and parallel indexing.

The sink's output equals single-process `convert`'s (shard bytes and index files) when the
rows come in whole shards and in order; a failed job leaves no manifest; a write task killed
half way through is retried and every sample is written exactly once.
"""

from __future__ import annotations

import io
import json
import os
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray
import torch
import webdataset as wds
from PIL import Image

from seta_stream.errors import SourceError
from seta_stream.policies import Full
from seta_stream.ray import ShardSink, index_shards
from seta_stream.shards import (
    ConvertOptions,
    Dataset,
    convert,
    index_tars,
    open_source,
    read_samples,
)
from seta_stream.shards.tables import TableSource
from seta_stream.stream import SeTaStream

pytestmark = pytest.mark.ray
N = 600
S = 100  # samples per shard


def _png(i: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (4, 4), (i % 256, 7, 9)).save(buf, "PNG")
    return buf.getvalue()


def _table(n: int = N, bad_key_at: int | None = None) -> pa.Table:
    keys = [f"s{i:05d}" for i in range(n)]
    if bad_key_at is not None:
        keys[bad_key_at] = "has.a.dot"  # convert refuses such a key (WebDataset splits it)
    return pa.table(
        {
            "key": keys,
            "label": [i % 10 for i in range(n)],
            "x": [[float(i), 0.5] for i in range(n)],
            "note": [f"row {i}" for i in range(n)],
            "image": [_png(i) for i in range(n)],
        }
    )


@pytest.fixture(scope="module")
def table_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ray-src") / "rows.parquet"
    pq.write_table(_table(), path)
    return path


@pytest.fixture
def ordered(ray_cluster: ModuleType) -> Any:
    ctx = ray_cluster.data.DataContext.get_current()
    old = ctx.execution_options.preserve_order
    ctx.execution_options.preserve_order = True
    yield ray_cluster
    ctx.execution_options.preserve_order = old


def _shard_files(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.suffix in (".tar", ".arrow"))


def _samples(root: Path) -> dict[str, dict[str, bytes]]:
    """Every sample by key, read by byte range through the dataset's index."""
    ds = Dataset.open(root)
    out: dict[str, dict[str, bytes]] = {}
    for r in read_samples(ds, range(ds.manifest.num_samples)):
        key = r.pop("__key__")
        r.pop("__index__")
        assert key not in out, f"sample {key} twice"
        out[key] = r
    return out


@pytest.mark.parametrize(("fmt", "compress"), [("tar", None), ("arrow", "zstd")])
def test_sink_equals_single_process_convert(
    ordered: Any, table_file: Path, tmp_path: Path, fmt: str, compress: str | None
) -> None:
    ref = convert(
        open_source(str(table_file)),
        tmp_path / "ref",
        ConvertOptions(format=fmt, samples_per_shard=S, compress=compress, progress=False),  # type: ignore[arg-type]
    )
    sink = ShardSink(str(tmp_path / "out"), samples_per_shard=S, format=fmt, compress=compress)  # type: ignore[arg-type]
    ds = ordered.data.read_parquet(str(table_file))
    ds.repartition(target_num_rows_per_block=S, strict=True).write_datasink(sink)
    m = Dataset.open(tmp_path / "out").manifest
    assert m == sink.manifest
    assert [(s.samples, s.bytes, s.sha256, s.index_sha256) for s in m.shards] == [
        (s.samples, s.bytes, s.sha256, s.index_sha256) for s in ref.shards
    ]
    assert (m.fields, m.metadata_columns, m.compression) == (
        ref.fields,
        ref.metadata_columns,
        ref.compression,
    )
    assert fmt != "tar" or m.fields == ("image.png", "label.cls", "note.txt", "x.json")
    for a, b in zip(m.shards, ref.shards, strict=True):  # the files themselves, byte for byte
        assert (tmp_path / "out" / a.name).read_bytes() == (tmp_path / "ref" / b.name).read_bytes()
        index_a = tmp_path / "out" / "index" / f"{a.name}.parquet"
        assert (
            index_a.read_bytes() == (tmp_path / "ref" / "index" / f"{b.name}.parquet").read_bytes()
        )
    assert _shard_files(tmp_path / "out") == [s.name for s in m.shards]


@pytest.mark.webdataset
def test_output_opens_in_seta_stream_and_webdataset(ray_cluster: Any, tmp_path: Path) -> None:
    """Ray's own blocks (50 rows), no key column: each task numbers its rows, a shard spans
    blocks (a task gets at least a shard's rows), every row once."""
    rows = _table().drop_columns(["key"])
    sink = ShardSink(str(tmp_path / "out"), samples_per_shard=64)
    ray_cluster.data.from_arrow(rows).repartition(12).write_datasink(sink)
    assert sink.manifest is not None
    assert max(s.samples for s in sink.manifest.shards) == 64  # > 50: across two blocks
    samples = _samples(tmp_path / "out")
    assert len(samples) == N
    assert sorted(s["note.txt"] for s in samples.values()) == sorted(
        f"row {i}".encode() for i in range(N)
    )
    torch.set_num_threads(1)
    with SeTaStream(tmp_path / "out", policy=Full(), losses=tmp_path / "losses") as stream:
        stream.set_epoch(0)
        seen = [(int(s["__index__"]), int(s["label.cls"]), s["image.png"].shape) for s in stream]
    assert sorted(i for i, _, _ in seen) == list(range(N))
    assert Counter(label for _, label, _ in seen) == Counter(i % 10 for i in range(N))
    assert {shape for _, _, shape in seen} == {(4, 4, 3)}
    urls = [str(tmp_path / "out" / s) for s in _shard_files(tmp_path / "out")]
    wds_keys = [s["__key__"] for s in wds.WebDataset(urls, shardshuffle=False)]
    assert sorted(wds_keys) == sorted(samples)


def test_failed_job_leaves_no_manifest_and_a_rerun_cleans_up(
    ray_cluster: Any, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    bad = ray_cluster.data.from_arrow(_table(bad_key_at=N - 10)).repartition(6)
    with pytest.raises(Exception, match=r"has\.a\.dot"):
        bad.write_datasink(ShardSink(str(out), samples_per_shard=S))
    assert not (out / "dataset.json").exists()
    left = _shard_files(out)  # the tasks that did finish left shards no manifest lists
    assert left
    sink = ShardSink(str(out), samples_per_shard=S)
    ray_cluster.data.from_arrow(_table()).repartition(2).write_datasink(sink)
    assert sink.manifest is not None
    assert _shard_files(out) == sorted(s.name for s in sink.manifest.shards)
    assert sorted(p.name for p in (out / "index").iterdir()) == sorted(
        f"{s.name}.parquet" for s in sink.manifest.shards
    )
    assert len(_samples(out)) == N
    with pytest.raises(Exception, match="already there"):
        ray_cluster.data.from_arrow(_table()).write_datasink(ShardSink(str(out)))


class _KilledOnce(ShardSink):
    """Kills its worker process (no exception: the process is gone) in the middle of task 1's
    first attempt, after it published some shards and while a shard is half written."""

    def __init__(self, path: str, marker: str, **kw: Any) -> None:
        super().__init__(path, **kw)
        self.marker = marker

    def _source(self, table: pa.Table, task: int, start: int) -> TableSource:
        source = super()._source(table, task, start)
        if task != 1 or os.path.exists(self.marker):
            return source
        load_many = source.load_many
        calls = [0]

        def dying_load_many(ids: Any) -> Any:
            calls[0] += 1
            if calls[0] == 2:  # the first chunk (256 samples) is in shards already
                with open(self.marker, "w") as f:
                    f.write(str(os.getpid()))
                os._exit(1)
            return load_many(ids)

        source.load_many = dying_load_many  # type: ignore[method-assign]
        return source


def test_task_killed_mid_write_is_retried_every_sample_once(
    ray_cluster: Any, tmp_path: Path
) -> None:
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    marker = tmp_path / "killed"
    out = tmp_path / "out"
    sink = _KilledOnce(str(out), str(marker), samples_per_shard=50)
    ray_cluster.data.from_arrow(_table()).repartition(2).write_datasink(sink)
    assert marker.exists()  # the kill happened
    assert sink.manifest is not None
    assert [s.name for s in sink.manifest.shards if s.name.startswith("shard-t000001")]
    samples = _samples(out)
    assert sorted(samples) == [f"s{i:05d}" for i in range(N)]
    assert _shard_files(out) == sorted(s.name for s in sink.manifest.shards)
    assert not list(out.rglob(".*tmp-*"))  # the killed attempt's half shard is gone


def test_sink_refuses_a_missing_key_column(ray_cluster: Any, tmp_path: Path) -> None:
    with pytest.raises(Exception, match="key='id'"):
        ray_cluster.data.from_arrow(_table()).write_datasink(ShardSink(str(tmp_path), key="id"))
    with pytest.raises(SourceError, match="samples_per_shard=0"):
        ShardSink(str(tmp_path), samples_per_shard=0)


def test_index_shards_equals_serial_index(
    ray_cluster: Any, table_file: Path, tmp_path: Path, script: Any
) -> None:
    opts = ConvertOptions(samples_per_shard=40, progress=False)
    convert(open_source(str(table_file)), tmp_path / "a", opts)  # 15 shards
    for p in (tmp_path / "a").iterdir():
        if p.is_file() and p.suffix != ".tar":
            p.unlink()
    for p in (tmp_path / "a" / "index").iterdir():
        p.unlink()
    (tmp_path / "b" / "index").mkdir(parents=True)
    for p in (tmp_path / "a").glob("*.tar"):
        (tmp_path / "b" / p.name).write_bytes(p.read_bytes())
    serial = index_tars(str(tmp_path / "a"), progress=False)
    shard = script("tools/shard.py", "shard_cli")
    assert shard.main(["index", str(tmp_path / "b"), "--ray", "--shards-per-task", "4"]) == 0
    on_ray = Dataset.open(tmp_path / "b").manifest
    assert on_ray == serial
    text = (tmp_path / "b" / "dataset.json").read_text()
    assert text == (tmp_path / "a" / "dataset.json").read_text()
    assert json.loads(text)["num_samples"] == N
    for s in serial.shards:
        name = f"index/{s.name}.parquet"
        assert (tmp_path / "b" / name).read_bytes() == (tmp_path / "a" / name).read_bytes()
    again = index_shards(str(tmp_path / "b"), shards_per_task=100)  # one task
    assert again == serial
    assert np.array_equal(again.first_ids, serial.first_ids)
