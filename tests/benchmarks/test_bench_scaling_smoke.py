"""The scaling benchmark still runs at tiny sizes, writes sane JSON, and its plots render."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest


def test_smoke_run_writes_json_and_plots(
    script, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "scaling.json"
    argv = ["--smoke", "--out", str(out), "--workdir", str(tmp_path)]
    assert script("benchmarks/bench_scaling.py").main(argv) == 0
    data = json.loads(out.read_text())
    assert data["benchmark"] == "scaling" and data["version"] == 1
    cfg = data["config"]
    rows = data["data"]
    assert [r["n"] for r in rows] == cfg["sizes"] == sorted(cfg["sizes"])
    for r in rows:
        assert r["full"]["samples"] == r["n"]  # Full reads every sample once
        assert 0.3 < r["seta"]["kept_fraction"] < 0.7  # k=10, window 0.5, uniform losses
        assert r["seta"]["samples"] < r["n"]
        for run in (r["full"], r["seta"]):
            assert run["epoch_s"] > 0 and run["samples_per_s"] > 0 and run["set_epoch_s"] > 0
            assert run["epoch_cpu_s"] > 0
        assert r["convert_s"] > 0 and r["open_s"] > 0
        assert r["shard_bytes"] > r["n"] * 160  # 40 float32 per sample, at least
        assert 0 < r["index_bytes"] < r["shard_bytes"]
        mem = r["mem"]
        assert mem["baseline"]["rss"] > 0 and mem["after_open"]["uss"] > 0
        assert r["peak_rss"] >= mem["after_seta_epoch"]["rss"]
        assert r["peak_rss"] >= mem["after_open"]["hwm"] > mem["baseline"]["rss"]
        assert r["open_peak_above_baseline"] > 0
        assert r["seta"]["loss_table_bytes"] > 0
    assert rows[-1]["shard_bytes"] > rows[0]["shard_bytes"]
    sel = data["selection"]
    assert [s["n"] for s in sel] == cfg["scores"]
    assert all(s["seconds"] > 0 and s["tracemalloc_peak"] >= 4 * s["n"] for s in sel)
    assert [r["workers"] for r in data["longrun"]] == [2]  # 0 workers: the read child
    for run in data["longrun"]:
        assert [e["epoch"] for e in run["epochs"]] == list(range(cfg["longrun_epochs"]))
        assert all(e["rss"] > 0 and e["fds"] > 0 for e in run["epochs"])
        assert {e["workers"] for e in run["epochs"]} == {run["workers"]}  # persistent workers
        assert run["epochs"][0]["samples"] == cfg["longrun_samples"]  # SeTa keeps all at epoch 0
        sizes = [e["loss_table_bytes"] for e in run["epochs"]]
        assert sizes == sorted(sizes) and sizes[0] > 0  # history grows by one epoch each time
        assert isinstance(run["rss_mb_per_epoch"], float)
    fits = data["fits"]
    # tiny sizes on a noisy machine: the fitted values exist, their size means nothing here
    assert math.isfinite(fits["full_epoch_exponent"]) and math.isfinite(fits["peak_rss_base_mb"])
    assert "grows as N^" in data["verdict"]
    printed = capsys.readouterr().out
    assert "| SeTa select s |" in printed and str(out) in printed
    assert not list(tmp_path.glob("bench_scaling-*"))  # the data sets were removed

    img = tmp_path / "img"
    assert script("benchmarks/plot_scaling.py").main(["--json", str(out), "--out", str(img)]) == 0
    for name in ("scaling.png", "memory.png"):
        assert (img / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
