"""The scale benchmark runs at a tiny size: a real hard-linked tar dataset, every step
measured, the version-1 upgrade checked, the table regenerated from its JSON, nothing left."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest


def test_smoke_run_writes_json_and_report(
    script, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bench = script("benchmarks/bench_scale.py")
    out = tmp_path / "scale.json"
    work = tmp_path / "work"
    work.mkdir()
    assert bench.main(["--smoke", "--upgrade", "--out", str(out), "--workdir", str(work)]) == 0
    data = json.loads(out.read_text())
    (r,) = data["results"]
    assert r["n"] == 20_000 and r["data"]["shards"] == 20
    run = r["run"]
    for key in ("open", "set_epoch_0", "first4_w0", "first4_w2", "updates_1", "close", "reopen"):
        assert run[key]["s"] >= 0 and run[key]["peak_over_base"] >= 0
    assert len(run["worker_uss_2"]) == 2 and all(u > 0 for u in run["worker_uss_2"])
    assert 0.2 < run["kept_1"] < 0.9  # SeTa pruned epoch 1
    assert 0 < run["losses_bytes_per_sample"] < 100
    assert r["upgrade"]["version_after"] == 2
    assert list(work.iterdir()) == []  # the datasets and tables are removed
    capsys.readouterr()
    assert bench.main(["--report", str(out)]) == 0
    table = capsys.readouterr().out
    assert "| `SeTaStream(...)` open (new loss table) |" in table and "N = 20,000" in table


def test_generated_shards_are_real_tars(script, tmp_path: Path) -> None:
    made = script("benchmarks/bench_scale.py").make_dataset(tmp_path / "ds", 3_000, 1_000)
    assert made["shards"] == 3
    with tarfile.open(tmp_path / "ds" / "shard-0000002.tar") as tar:
        names = tar.getnames()
    assert len(names) == 2 * 1_000 and names[0].endswith(".bin.npy")
    from seta_stream.shards import read_samples

    got = [s["__index__"] for s in read_samples(str(tmp_path / "ds"), [0, 1_500, 2_999])]
    assert got == [0, 1_500, 2_999]
