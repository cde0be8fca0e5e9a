"""The convert benchmark still runs (2000 samples, 200 PNGs) and writes the JSON it promises."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.webdataset  # it reads with webdataset (tests/conftest.py)

OURS = ("seta_stream convert workers=1", "seta_stream convert workers=2")
WDS = "webdataset.ShardWriter"
WDS0 = "webdataset.ShardWriter mtime=0"


def test_smoke_run_writes_json(script, tmp_path: Path, capsys) -> None:
    out = tmp_path / "c.json"
    assert (
        script("benchmarks/bench_convert.py").main(
            ["--smoke", "--out", str(out), "--workdir", str(tmp_path)]
        )
        == 0
    )
    data = json.loads(out.read_text())
    assert data["machine"]["torch_threads"] == 1
    got = {(r["input"], r["contestant"]): r for r in data["convert"]}
    want = {("npz", c) for c in (*OURS, "seta_stream convert workers=1 zstd", WDS, WDS0)}
    want |= {("png folder", c) for c in (*OURS, WDS)}
    assert set(got) == want
    for r in got.values():
        assert r["samples_per_s"] > 0
        assert r["shard_bytes"] > 0
        assert r["members"] == 2 * r["samples"]  # every sample's two fields reached the shards
    for kind in ("npz", "png folder"):
        ours, wds = got[(kind, OURS[0])], got[(kind, WDS)]
        assert ours["pax_header_bytes"] == 0
        assert wds["pax_header_bytes"] > 0
        assert ours["bytes_per_sample"] < wds["bytes_per_sample"]
        assert got[(kind, OURS[1])]["shard_bytes"] == ours["shard_bytes"]
    # with an integer mtime webdataset writes no pax headers, and then the same bytes count
    assert got[("npz", WDS0)]["pax_header_bytes"] == 0
    assert got[("npz", WDS0)]["shard_bytes"] == got[("npz", OURS[0])]["shard_bytes"]

    reads = [r for r in data["read"] if r["dataset"] == "seta_stream tar" and not r["decode"]]
    by_frac = {r["fraction"]: r for r in reads}
    assert set(by_frac) == {0.1, 0.3, 1.0}
    full, tenth = by_frac[1.0], by_frac[0.1]
    for key in ("reader_bytes", "os_rchar_bytes"):
        assert 0 < tenth[key] < 0.2 * full[key]
    assert 0.9 < full["reader_fraction"] <= 1.0
    assert abs(full["os_rchar_bytes"] - full["reader_bytes"]) < 4096  # no read-ahead
    # webdataset streamed from its byte-identical mtime=0 output, and from its default output
    streams = [r for r in data["read"] if r["dataset"].endswith("webdataset.WebDataset stream")]
    assert [r["dataset"].split(" output")[0] for r in streams] == [WDS0, WDS]
    assert streams[0]["shard_bytes"] == got[("npz", OURS[0])]["shard_bytes"]
    assert streams[1]["shard_bytes"] > streams[0]["shard_bytes"]
    assert all(r["samples"] == 2000 and len(r["seconds_all"]) == 1 for r in streams)
    assert len(data["machine"]["git_commit"]) == 40 and len(data["machine"]["loadavg_end"]) == 3
    printed = capsys.readouterr().out
    assert "| npz | webdataset.ShardWriter |" in printed
    assert "torch threads set to 1" in printed
