"""The open benchmark still runs (20k samples, one fresh child a loader) and writes its JSON.
Without LitData / MosaicML Streaming (.venv) their rows say so and only ours are measured; with
them (.venv-bench, benchmarks/peers_env.sh) they are written and measured too."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

N, PER_SHARD, BATCH = 20_000, 1_000, 256
PEERS = {"litdata": "litdata", "mds": "streaming"}


def test_smoke_run_measures_ours_and_counts_index_bytes(
    script, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "open.json"
    argv = ["--smoke", "--keep", "--out", str(out), "--workdir", str(tmp_path / "work")]
    assert script("benchmarks/bench_open_peers.py").main(argv) == 0
    data = json.loads(out.read_text())
    assert data["machine"]["torch_threads"] == 1
    rows = {r["kind"]: r for r in data["rows"]}

    root = Path(data["workdir"]) / f"ours-{N}"  # kept: the index bytes are checked on disk
    index_files = list((root / "index").iterdir())
    want_index = (root / "dataset.json").stat().st_size + sum(p.stat().st_size for p in index_files)
    assert len(index_files) == N // PER_SHARD
    for kind in ("stream", "dataset"):
        r = rows[kind]
        assert r["n"] == r["len"] == N and r["shards"] == N // PER_SHARD
        assert r["batch_len"] == BATCH and {"bin.npy", "cls.npy"} <= set(r["sample_keys"])
        assert 0 < r["open_s"] < 60 and 0 < r["first_batch_s"] < 60
        assert r["open_peak"] >= r["open_rss"] and r["first_peak"] >= r["first_rss"]
        (run,) = r["runs"]  # --smoke: one fresh process
        assert run["base_rss"] > 0 and run["ru_maxrss"] >= run["base_rss"]
        assert r["index_bytes"] == want_index and r["in_shard_bytes"] == 0
    assert 0 < rows["stream"]["set_epoch_s"] <= rows["stream"]["first_batch_s"]

    for kind, module in PEERS.items():
        r = rows[kind]
        if importlib.util.find_spec(module) is None:
            assert r["status"] == "not installed" and set(r) == {"loader", "kind", "status"}
            continue
        assert r["n"] == r["len"] == N and r["batch_len"] == BATCH
        assert r["sample_keys"] == ["bin", "cls"]
        assert r["in_shard_bytes"] == r["shards"] * 8 + 4 * N  # count + N + 1 offsets a shard
        assert r["index_bytes"] == r["in_shard_bytes"] + r["index_json_bytes"]
        assert data["peers"][kind]["n"] == N and data["peers"][kind]["disk_bytes"] > 16 * N
    printed = capsys.readouterr().out
    assert f"| SeTaStream(dir, policy=Full(), losses=None) | {N:,} | {N // PER_SHARD} |" in printed
    assert str(out) in printed


def test_built_data_is_removed_and_bad_usage_refused(script, tmp_path: Path) -> None:
    bench = script("benchmarks/bench_open_peers.py")
    work, out = tmp_path / "work", tmp_path / "open.json"
    argv = ["--smoke", "--loaders", "ours", "--out", str(out), "--workdir", str(work)]
    assert bench.main(argv) == 0
    assert list(work.iterdir()) == []
    assert [r["kind"] for r in json.loads(out.read_text())["rows"]] == ["stream", "dataset"]
    assert bench.main(["--loaders", "ours,tfds", "--out", str(tmp_path / "x.json")]) == 2
    assert not (tmp_path / "x.json").exists()
