"""The accuracy benchmark still runs (--smoke: 2k samples, 2 epochs, 1 seed, every policy)
and writes the JSON its plot script reads."""

from __future__ import annotations

import json
from pathlib import Path

POLICIES = {"full", "seta", "seta_target", "dynamic_random", "static", "infobatch"}


def test_smoke_run_writes_json_and_plot(script, tmp_path: Path, capsys) -> None:
    out = tmp_path / "accuracy.json"
    bench = script("benchmarks/bench_accuracy.py")
    assert bench.main(["--smoke", "--workdir", str(tmp_path / "work"), "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    grid = data["grid"]
    assert (grid["train"], grid["epochs"], grid["seeds"]) == (2000, 2, 1)
    assert data["machine"]["torch_threads"] == 1
    budget = grid["train"] * grid["epochs"]

    runs = {r["policy"]: r for r in data["runs"]}
    assert set(runs) == POLICIES
    assert len(data["runs"]) == len(POLICIES)
    for r in runs.values():
        assert 0.0 <= r["accuracy"] <= 1.0
        assert 0 < r["forwarded"] <= budget
        assert abs(r["saved"] - (1 - r["forwarded"] / budget)) < 1e-12
        kept = [row["kept"] for row in r["curriculum"]]
        assert len(kept) == grid["epochs"]  # one loss-table summary per epoch
        assert abs(sum(kept) * grid["train"] - r["forwarded"]) < 1e-6  # table agrees
    assert runs["full"]["forwarded"] == budget
    # the paper recipe at 2 epochs: 90% in the clustered epoch 0 and in the annealing epoch 1
    assert runs["seta"]["forwarded"] == int(0.9 * grid["train"]) * 2
    # the baselines matched to SeTa's saving (DynamicRandom prunes in 1 of 2 epochs here)
    assert runs["static"]["params"]["prune_ratio"] == runs["seta"]["saved"]
    assert abs(runs["dynamic_random"]["params"]["prune_ratio"] - 2 * runs["seta"]["saved"]) < 1e-9
    for key in ("static", "dynamic_random"):
        assert abs(runs[key]["saved"] - runs["seta"]["saved"]) < 1e-3
    assert runs["seta_target"]["params"]["target_keep"] == 0.6

    rows = {r["policy"]: r for r in data["rows"]}
    assert set(rows) == POLICIES
    for key, row in rows.items():
        assert row["saved_mean"] == runs[key]["saved"]
        assert row["vs_full"]["exceeds"] is None  # one seed: no spread to compare against
    assert set(data["verdict"]["seta"]) >= {"saves_30pct", "within_half_point"}

    printed = capsys.readouterr().out
    assert "torch.set_num_threads(1)" in printed
    assert "| SeTa target_keep=0.6 |" in printed

    png = tmp_path / "accuracy.png"
    assert script("benchmarks/plot_accuracy.py").main(["--json", str(out), "--out", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
