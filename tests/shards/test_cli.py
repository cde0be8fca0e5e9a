"""tools/shard.py end to end: convert, info, verify, parts + merge, index of existing tars."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import webdataset as wds

from seta_stream.shards import Dataset, read_samples, scan_index

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def shard(script) -> ModuleType:
    return script("tools/shard.py", "shard_cli")


def test_convert_info_verify(
    shard: ModuleType, tmp_path: Path, npz_source, capsys: pytest.CaptureFixture[str]
) -> None:
    path, arrays = npz_source
    out = str(tmp_path / "ds")
    assert (
        shard.main(["convert", str(path), out, "--samples-per-shard", "100", "--compress", "zstd"])
        == 0
    )
    assert shard.main(["info", out]) == 0
    text = capsys.readouterr().out
    assert "samples       300" in text and "shards        3" in text
    counts = np.bincount(arrays["y"])
    assert f"0: {counts[0]:,}" in text
    assert shard.main(["verify", out]) == 0
    # flip one byte inside a member: the checksum catches it and names the shard
    shard0 = tmp_path / "ds" / "shard-000000.tar"
    data = bytearray(shard0.read_bytes())
    data[700] ^= 0xFF
    shard0.write_bytes(bytes(data))
    capsys.readouterr()
    assert shard.main(["verify", out]) == 1
    assert "shard-000000.tar: sha256 differs" in capsys.readouterr().out


def test_parts_and_merge(shard: ModuleType, tmp_path: Path, npz_source) -> None:
    path, arrays = npz_source
    out = str(tmp_path / "ds")
    for i in (2, 0, 1):
        assert (
            shard.main(
                [
                    "convert",
                    str(path),
                    out,
                    "--part",
                    f"{i}/3",
                    "--shuffle",
                    "--seed",
                    "5",
                    "--samples-per-shard",
                    "40",
                ]
            )
            == 0
        )
    assert not (tmp_path / "ds" / "dataset.json").exists()
    assert shard.main(["merge", out]) == 0
    ds = Dataset.open(out)
    assert ds.num_samples == 300
    keys = scan_index(out).select("key").collect()["key"].to_list()
    assert sorted(keys) == [f"{i:09d}" for i in range(300)]  # every sample exactly once
    perm = np.random.default_rng(5).permutation(300)
    assert keys == [f"{i:09d}" for i in perm]  # merged in part order = the shuffled order
    for s in read_samples(ds, [0, 100, 256], decode=True):
        np.testing.assert_array_equal(s["x.npy"], arrays["x"][int(s["__key__"])])
    assert shard.main(["verify", out]) == 0


def test_merge_with_a_missing_part(
    shard: ModuleType, tmp_path: Path, npz_source, capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = npz_source
    shard.main(["convert", str(path), str(tmp_path / "ds"), "--part", "0/2"])
    assert shard.main(["merge", str(tmp_path / "ds")]) == 1
    assert "parts missing: [1]" in capsys.readouterr().err


@pytest.mark.webdataset
def test_index_existing_webdataset_tars(shard: ModuleType, tmp_path: Path) -> None:
    (tmp_path / "w").mkdir()
    with wds.ShardWriter(str(tmp_path / "w" / "part-%04d.tar"), maxcount=30) as w:
        for i in range(100):
            w.write({"__key__": f"dir.v1/s{i:04d}", "json": {"i": i}, "bin": bytes(i * 37)})
    assert shard.main(["index", str(tmp_path / "w"), "--checksum"]) == 0
    ds = Dataset.open(tmp_path / "w")
    assert ds.num_samples == 100 and len(ds.manifest.shards) == 4
    theirs = list(
        wds.WebDataset(sorted(str(p) for p in (tmp_path / "w").glob("*.tar")), shardshuffle=False)
    )
    ours = list(read_samples(ds, range(100)))
    for o, t in zip(ours, theirs, strict=True):
        assert o["__key__"] == t["__key__"] and o["json"] == t["json"] and o["bin"] == t["bin"]
    assert shard.main(["verify", str(tmp_path / "w")]) == 0


def test_index_gnu_tar_written_shard(shard: ModuleType, tmp_path: Path) -> None:
    src = tmp_path / "files"
    (src / "deep.dir").mkdir(parents=True)
    long = "k" * 120
    (src / "deep.dir" / f"{long}.txt").write_text("long")
    (src / "deep.dir" / f"{long}.cls").write_text("3")
    (src / "short.txt").write_text("short")
    (tmp_path / "t").mkdir()
    subprocess.run(
        ["tar", "--format=gnu", "-cf", str(tmp_path / "t" / "a.tar"), "-C", str(src), "."],
        check=True,
    )
    assert shard.main(["index", str(tmp_path / "t" / "a.tar")]) == 0
    got = {s["__key__"]: s for s in read_samples(tmp_path / "t", range(2))}
    assert got[f"./deep.dir/{long}"]["txt"] == b"long" and got["./short"]["txt"] == b"short"


def test_usage_error_exits_2(shard: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        shard.main(["convert"])
    assert e.value.code == 2


def test_cli_runs_as_a_script(shard: ModuleType, tmp_path: Path, npz_source) -> None:
    path, _ = npz_source
    r = subprocess.run(
        [
            sys.executable,
            str(ROOT / "tools" / "shard.py"),
            "convert",
            str(path),
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "o" / "dataset.json").read_text())["num_samples"] == 300
