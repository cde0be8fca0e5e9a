"""The read-path benchmark still runs (2000 PNG samples, 0 and 2 workers) and writes its JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.webdataset  # it reads with webdataset (tests/conftest.py)

N = 2000


def test_shard_split_states_an_imbalance(script) -> None:
    split = script("benchmarks/bench_stream.py").shard_split
    assert split(5, 2) == {"shards_per_worker": [3, 2], "imbalance": "shards 3+2"}
    assert split(10, 2) == {"shards_per_worker": [5, 5], "imbalance": None}
    assert split(3, 0) == {"shards_per_worker": [3], "imbalance": None}


def test_smoke_run_writes_json(script, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "stream.json"
    argv = ["--smoke", "--out", str(out), "--workdir", str(tmp_path)]
    assert script("benchmarks/bench_stream.py").main(argv) == 0
    data = json.loads(out.read_text())
    assert data["machine"]["torch_threads"] == 1
    rows = data["rows"]
    assert all(r["samples_per_s"] > 0 and r["epoch_s"] > 0 for r in rows)
    ours = [r for r in rows if r["reader"] == "SeTaStream"]
    assert {(r["workers"], r["keep"], r["decode"]) for r in ours} == {
        (w, k, d) for w in (0, 2) for k in (1.0, 0.7, 0.5, 0.3) for d in (True,)
    } | {(0, 1.0, False), (2, 1.0, False)}
    for w in (0, 2):
        mine = {(r["keep"], r["decode"]): r for r in ours if r["workers"] == w}
        full, pruned = mine[1.0, True], mine[0.3, True]
        assert full["samples"] == N
        assert full["bytes_read"] == full["bytes_selected"] <= data["bytes_on_disk"]
        assert pruned["samples"] == int(0.3 * N)
        assert pruned["bytes_read"] < 0.4 * full["bytes_read"]  # pruned bytes are never read
        for r in mine.values():
            assert r["decode_calls"] == (r["samples"] if r["decode"] else 0)
            assert r["samples_read"] == r["samples"]
        assert full["vs_webdataset"] > 0
    wds = [r for r in rows if r["reader"] == "webdataset.WebDataset"]
    assert len(wds) == 4
    assert all(r["samples"] == N for r in wds)
    # 4 shards: 2+2 over 2 workers, no imbalance to state
    assert {tuple(r["shards_per_worker"]) for r in wds} == {(4,), (2, 2)}
    assert all(r["imbalance"] is None for r in wds)
    for r in rows:  # the figure is the median of the timed rounds, every round kept
        assert r["rounds"] == len(r["epoch_s_all"]) == 1 and r["epoch_s"] == r["epoch_s_all"][0]
    machine = data["machine"]
    assert len(machine["git_commit"]) == 40 and len(machine["loadavg_end"]) == 3
    printed = capsys.readouterr().out
    assert "| SeTaStream | 2 | PNG | 0.3 |" in printed
    assert str(out) in printed
