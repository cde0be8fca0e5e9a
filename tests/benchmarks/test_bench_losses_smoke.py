"""The loss-table benchmark still runs (100k samples, --smoke) and writes the JSON it promises."""

from __future__ import annotations

import json
from pathlib import Path


def test_smoke_run_writes_json(script, tmp_path: Path, capsys) -> None:
    out = tmp_path / "losses.json"
    assert (
        script("benchmarks/bench_losses.py").main(
            ["--smoke", "--out", str(out), "--dir", str(tmp_path)]
        )
        == 0
    )
    data = json.loads(out.read_text())
    assert data["num_samples"] == 100_000 and data["smoke"] is True
    assert [r["batch"] for r in data["throughput"]] == [256, 4096]
    for r in data["throughput"]:
        assert r["calls"] > 0 and r["samples_per_s"] > 0 and r["samples_per_cpu_s"] > 0
    scenarios = {(r["scenario"], r["batch"]) for r in data["latency"]}
    assert scenarios == {(s, b) for s in ("train", "floor", "backlog") for b in (256, 4096)}
    for r in data["latency"]:
        assert 0 < r["p50_us"] <= r["p99_us"]
    assert data["snapshot_seconds"] > 0
    assert "update() latency" in capsys.readouterr().out
    assert [p.name for p in tmp_path.iterdir()] == ["losses.json"]  # the table dir is removed
