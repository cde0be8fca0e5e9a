"""The Ray benchmark still runs (200 rows, 20 tars) on the session's Ray cluster and writes the
JSON it promises, with the Ray sink's shards byte-identical to convert's."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.ray


def test_smoke_run_writes_json(ray_cluster: Any, script: Any, tmp_path: Path) -> None:
    ctx = ray_cluster.data.DataContext.get_current()
    old = ctx.execution_options.preserve_order
    out = tmp_path / "r.json"
    try:
        assert script("benchmarks/bench_ray.py").main(["--smoke", "--out", str(out)]) == 0
    finally:
        ctx.execution_options.preserve_order = old
    data = json.loads(out.read_text())
    assert data["machine"]["torch_threads"] == 1
    got = {(r["input"], r["contestant"]): r for r in data["convert"]}
    assert len(got) == 8 and {i for i, _ in got} == {"rows", "png"}
    for r in got.values():
        assert r["samples_per_s"] > 0 and r["bytes_per_sample"] > 0 and r["shards"] >= 1
    assert got[("rows", "seta_stream.ray.ShardSink")]["byte_identical_to_convert"] is True
    assert got[("png", "seta_stream.ray.ShardSink")]["byte_identical_to_convert"] is True
    assert data["index"]["identical_manifest"] is True and data["index"]["shards"] == 20
