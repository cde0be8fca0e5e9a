"""The selection benchmark still runs (10k samples) and writes the JSON it promises."""

from __future__ import annotations

import json
from pathlib import Path


def test_smoke_run_writes_json(script, tmp_path: Path, capsys) -> None:
    out = tmp_path / "x.json"
    assert script("benchmarks/bench_select.py").main(["--smoke", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["sizes"] == [10_000]
    machine = data["machine"]
    assert len(machine["git_commit"]) == 40 and len(machine["loadavg_end"]) == 3
    names = {r["name"] for r in data["results"]}
    assert {"np.argsort", "seta", "infobatch", "dynamic_random", "static", "full"} <= names
    assert {"kmeans1d (ours)", "sklearn KMeans"} <= names
    for r in data["results"]:
        assert r["n"] == 10_000
        assert r["seconds"] == r["median_s"] > 0 and len(r["rounds_s"]) == data["repeat"] == 1
        assert r["peak_bytes"] > 0
    by_name = {r["name"]: r for r in data["results"]}
    assert by_name["full"]["kept_fraction"] == 1.0
    assert 0 < by_name["seta"]["kept_fraction"] < 1
    # our 1-D k-means is never worse than scikit-learn's on the same scores
    assert by_name["kmeans1d (ours)"]["inertia"] <= by_name["sklearn KMeans"]["inertia"] * 1.0001
    assert "seta" in capsys.readouterr().out
