"""The remote benchmark still runs (120 samples over HTTP with latency) and writes its JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.webdataset  # it reads with webdataset (tests/conftest.py)


@pytest.mark.remote
def test_smoke_run_writes_json(script, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "remote.json"
    assert (
        script("benchmarks/bench_remote.py").main(
            ["--smoke", "--out", str(out), "--workdir", str(tmp_path)]
        )
        == 0
    )
    data = json.loads(out.read_text())
    rows = {(r["reader"], r["keep"]): r for r in data["rows"]}
    assert set(rows) == {(r, k) for r in ("SeTaStream", "webdataset.WebDataset") for k in (1, 0.3)}
    full, pruned = rows["SeTaStream", 1.0], rows["SeTaStream", 0.3]
    assert full["samples"] == 120 and pruned["samples"] == 36
    assert all(r["samples_per_s"] > 0 for r in rows.values())
    # the server counted it: the full epoch sends the shards' bytes, the pruned one ~30 %
    assert full["bytes_sent"] <= data["shard_bytes"]
    assert pruned["bytes_sent"] < 0.4 * full["bytes_sent"]
    assert rows["webdataset.WebDataset", 0.3]["bytes_sent"] == data["shard_bytes"]
    assert "| SeTaStream | 0 | 0.3 | 36 |" in capsys.readouterr().out
