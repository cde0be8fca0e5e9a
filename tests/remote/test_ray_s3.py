"""`seta_stream.ray` against the moto S3 server: Ray tasks write shards to and index tars on
s3://, and the result equals what the single-process tools make."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import s3fs

from seta_stream.ray import ShardSink, index_shards
from seta_stream.shards import ConvertOptions, Dataset, convert, index_tars, open_source

pytestmark = [pytest.mark.remote, pytest.mark.ray]
N = 300


def _rows() -> pa.Table:
    return pa.table(
        {
            "key": [f"k{i:04d}" for i in range(N)],
            "label": [i % 7 for i in range(N)],
            "blob": [bytes([i % 256]) * (100 + i) for i in range(N)],
        }
    )


def test_sink_writes_to_s3_as_convert_does_locally(
    ray_cluster: Any, s3: Any, bucket: str, tmp_path: Path
) -> None:
    pq.write_table(_rows(), tmp_path / "rows.parquet")
    ref = convert(
        open_source(str(tmp_path / "rows.parquet")),
        tmp_path / "ref",
        ConvertOptions(samples_per_shard=50, progress=False),
    )
    ctx = ray_cluster.data.DataContext.get_current()
    old, ctx.execution_options.preserve_order = ctx.execution_options.preserve_order, True
    try:
        so = s3.storage_options
        sink = ShardSink(f"s3://{bucket}/out", samples_per_shard=50, storage_options=so)
        rows = ray_cluster.data.from_arrow(_rows())
        rows.repartition(target_num_rows_per_block=50, strict=True).write_datasink(sink)
    finally:
        ctx.execution_options.preserve_order = old
    m = Dataset.open(f"s3://{bucket}/out", storage_options=so).manifest
    assert m == sink.manifest
    assert [(s.sha256, s.index_sha256) for s in m.shards] == [
        (s.sha256, s.index_sha256) for s in ref.shards
    ]
    assert m.fields == ("blob.bin", "label.cls") and m.metadata_columns == ("label",)
    fs = s3fs.S3FileSystem(**so)
    listed = sorted(p.rsplit("/", 1)[1] for p in fs.ls(f"{bucket}/out") if p.endswith(".tar"))
    assert listed == [s.name for s in m.shards]


def test_index_shards_on_s3_equals_serial(
    ray_cluster: Any, s3: Any, s3_ds: str, bucket: str, tmp_path: Path
) -> None:
    so = s3.storage_options
    fs = s3fs.S3FileSystem(**so)
    tars = [p for p in fs.ls(s3_ds.removeprefix("s3://")) if p.endswith(".tar")]
    for p in tars:
        for copy in ("a", "b"):
            fs.copy(p, f"{bucket}/{copy}/{p.rsplit('/', 1)[1]}")
    serial = index_tars(f"s3://{bucket}/a", storage_options=so, progress=False)
    on_ray = index_shards(f"s3://{bucket}/b", shards_per_task=1, storage_options=so)
    assert on_ray == serial and len(on_ray.shards) == len(tars)
    assert fs.cat(f"{bucket}/b/dataset.json") == fs.cat(f"{bucket}/a/dataset.json")
    for s in serial.shards:
        assert fs.cat(f"{bucket}/b/index/{s.name}.parquet") == fs.cat(
            f"{bucket}/a/index/{s.name}.parquet"
        )
