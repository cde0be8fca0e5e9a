"""The loss-table scale benchmark still runs (tiny n) and writes the JSON it promises."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.mark.parametrize("full_max", [None, 1000])
def test_smoke_run_writes_json(script, tmp_path: Path, capsys, full_max: int | None) -> None:
    out = tmp_path / "losstable.json"
    argv = ["--n", "5000", "--batch", "512", "--out", str(out), "--dir", str(tmp_path)]
    if full_max is not None:
        argv += ["--history-full-max", str(full_max)]
    assert script("benchmarks/bench_losstable.py").main(argv) == 0
    data = json.loads(out.read_text())
    assert data["num_samples"] == 5000 and data["batch"] == 512
    assert data["history_form"] == ("full" if full_max is None else "compact")
    steps = [(r["epoch"], r["step"]) for r in data["steps"]]
    assert steps == [(0, "open"), (0, "select"), (0, "update"), (0, "end"),
                     (1, "select"), (1, "update"), (1, "end+close")]  # fmt: skip
    for r in data["steps"]:
        assert r["seconds"] > 0 and r["peak_gb"] >= r["start_gb"] - 1e-3
    parts = data["selections"]["select_1"]["parts"]
    assert list(parts) == ["scores", "select", "record_selection"]
    assert data["selections"]["select_1"]["phase"] == "prune"
    disk = data["disk"]
    assert disk["live"] >= 18 * 5000 and disk["keys"] == 0
    assert disk["history"] > 0 and disk["snapshot"] > 0 and disk["summary"] > 0
    assert (disk["histogram"] > 0) == (full_max is not None)
    assert "B/sample" in capsys.readouterr().out
    assert [p.name for p in tmp_path.iterdir()] == ["losstable.json"]  # the table is removed
