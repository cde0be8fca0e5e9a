"""benchmarks/bench_shuffle.py runs at tiny size and its figures have the expected shape."""

from __future__ import annotations

import json
from pathlib import Path


def test_smoke_run_writes_json(script, tmp_path: Path) -> None:
    bench = script("benchmarks/bench_shuffle.py")
    assert bench.main(["--smoke", "--out", str(tmp_path / "s.json")]) == 0
    rows = json.loads((tmp_path / "s.json").read_text())["rows"]
    by = {(r["layout"], r["order"]): r for r in rows}
    perfect = by[("labels iid", "perfect permutation")]
    ours = by[("labels iid", "seta_stream (4 open shards, window 1024)")]
    assert perfect["same_shard_neighbours"] < ours["same_shard_neighbours"] < 0.5
    assert abs(ours["same_class_neighbours"] - 0.1) < 0.03
