"""The peers benchmark still runs (500 PNG samples, 0 and 2 workers, raw and decoded) and writes
its JSON. Without LitData / MosaicML Streaming (.venv) their rows say so; with them
(.venv-bench, benchmarks/peers_env.sh) they are measured like every other reader."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.webdataset  # it reads with webdataset (tests/conftest.py)

N = 500
PEERS = {"litdata.StreamingDataset": "litdata", "streaming.StreamingDataset": "streaming"}


def test_smoke_run_writes_json(script, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "peers.json"
    argv = ["--smoke", "--out", str(out), "--workdir", str(tmp_path)]
    assert script("benchmarks/bench_peers.py").main(argv) == 0
    data = json.loads(out.read_text())
    assert data["machine"]["torch_threads"] == 1
    tar = data["bytes_on_disk"]["tar (ours, webdataset)"]
    measured = [r for r in data["rows"] if "status" not in r]
    assert all(r["samples_per_s"] > 0 and r["epoch_s"] > 0 for r in measured)
    for r in measured:  # one decode function, called once per yielded sample, only if decoding
        if not r["reader"].startswith("limit: sequential"):
            assert r["decode_calls"] == (r["samples"] if r["mode"] == "decoded" else 0), r

    by = {(r["reader"], r["workers"], r["mode"], r["keep"]): r for r in measured}
    for w in (0, 2):
        for mode in ("raw", "decoded"):
            wds, full = by["webdataset.WebDataset", w, mode, 1.0], by["SeTaStream", w, mode, 1.0]
            assert wds["samples"] == full["samples"] == N
            assert wds["vs_webdataset"] == 1.0 and full["epoch_vs_full"] == 1.0
            for keep in (0.7, 0.5, 0.3):
                pruned = by["SeTaStream", w, mode, keep]
                assert pruned["samples"] == int(keep * N)
                assert pruned["target"] == keep + 0.05
    for w in (0, 2):  # the batched mode's row: every sample, beside the per-sample Full row
        for mode in ("raw", "decoded"):
            batched = by["SeTaStream batched", w, mode, 1.0]
            assert batched["samples"] == N and batched["vs_per_sample"] > 0
    full, pruned = by["SeTaStream", 0, "raw", 1.0], by["SeTaStream", 0, "raw", 0.3]
    # the kernel saw the samples' bytes read, plus the per-shard index files (a few kB) and the
    # plan's small files: within 1% of the dataset on disk
    assert 0.9 * tar <= full["bytes_read"] <= 1.01 * tar
    assert pruned["bytes_read"] < 0.4 * full["bytes_read"]  # and pruned ones never read
    assert by["limit: sequential read, tar (ours, webdataset)", 0, "raw", 1.0]["bytes_read"] == tar
    assert by["limit: decode alone, in memory", 0, "decoded", 1.0]["decode_calls"] == N

    for reader, module in PEERS.items():
        rows = [r for r in data["rows"] if r["reader"].startswith(reader)]
        if importlib.util.find_spec(module) is None:
            assert rows == [{"reader": reader, "status": "not installed"}]
            continue
        assert len(rows) == 2 * 2 * 2  # iterated and ds[i], 2 worker counts, 2 modes
        for r in rows:
            assert r["samples"] == (N if r["reader"].endswith(" iter") else int(0.3 * N)), r
    printed = capsys.readouterr().out
    assert "| SeTaStream | 2 | decoded | 0.3 |" in printed
    assert str(out) in printed


def test_kept_data_of_another_size_is_refused(script, tmp_path: Path) -> None:
    (tmp_path / "built.json").write_text(
        json.dumps({"samples": 7, "samples_per_shard": 7, "seed": 0})
    )
    argv = [
        "--smoke",
        "--data",
        str(tmp_path),
        "--workdir",
        str(tmp_path),
        "--out",
        str(tmp_path / "x.json"),
    ]
    assert script("benchmarks/bench_peers.py").main(argv) == 2
    assert not (tmp_path / "x.json").exists() and not (tmp_path / "shards").exists()


def test_plan_subset_does_the_work_of_our_pruned_epochs(script, tmp_path: Path) -> None:
    """The peers' ds[i] rows read, each epoch, the very ids our keep-0.3 row reads, shard by
    shard (whole blocks), ascending within a shard."""
    import numpy as np

    from seta_stream import DynamicRandom, SeTaStream

    bs, lib = script("benchmarks/bench_stream.py"), script("benchmarks/peers_lib.py")
    shards = bs.build_dataset(tmp_path, bs.BenchConfig(samples=600, samples_per_shard=100))
    sampler = lib.PlanSubset(600, 0.3, 7, 100, bs.POLICY_EPOCHS)
    policy = DynamicRandom(epochs=bs.POLICY_EPOCHS, prune_ratio=1 - 0.3)
    losses = tmp_path / "losses"
    with SeTaStream(shards, policy=policy, losses=losses, seed=7, workdir=str(tmp_path)) as s:
        for epoch in range(3):
            s.set_epoch(epoch)
            ours = [int(item["__index__"]) for item in s]
            assert len(sampler) == len(ours) == 180
            theirs = np.array(list(sampler))
            assert sorted(ours) == sorted(theirs.tolist())
            shard = theirs // 100
            starts = np.flatnonzero(np.diff(shard)) + 1
            assert len(starts) == len(np.unique(shard)) - 1  # each shard one block
            for block in np.split(theirs, starts):
                assert (np.diff(block) > 0).all()
