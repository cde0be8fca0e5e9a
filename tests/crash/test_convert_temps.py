"""A re-run of a killed conversion deletes the temp files that run left, and only those: a
part converting into the same folder keeps its own."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from seta_stream.shards import ConvertOptions, Dataset, convert, open_source


def test_rerun_removes_only_its_own_temp_files(tmp_path: Path) -> None:
    np.savez(tmp_path / "src.npz", x=np.arange(30, dtype=np.float32).reshape(10, 3))
    dst = tmp_path / "ds"
    dst.mkdir()
    mine = [".shard-000003.tar.tmp-0123456789ab", ".dataset.json.tmp-0123456789ab"]
    mine += [".index.parquet.tmp-abcdefabcdef"]
    others = [".shard-p00001-000000.tar.tmp-0123456789ab", ".notes.txt.tmp-0123456789ab"]
    others += ["shard-000009.tar.tmp-0123456789ab"]  # not a hidden temp name of ours
    (dst / "index").mkdir()
    mine += ["index/.shard-000001.tar.parquet.tmp-0123456789ab"]  # a shard's index file
    others += ["index/.shard-p00001-000000.tar.parquet.tmp-0123456789ab"]
    for name in mine + others:
        (dst / name).write_bytes(b"left by a killed run")
    convert(open_source(str(tmp_path / "src.npz")), dst, ConvertOptions(progress=False))
    left = sorted(str(p.relative_to(dst)) for p in dst.rglob("*") if "tmp" in p.name)
    assert left == sorted(others)
    ds = Dataset.open(dst)
    assert ds.num_samples == 10
    ds.close()
