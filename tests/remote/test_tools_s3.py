"""tools/shard.py convert, index, verify and upgrade against a real S3 server (moto, 127.0.0.1)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from seta_stream.shards import Dataset, read_samples
from seta_stream.shards.datasetsource import index_columns
from seta_stream.shards.tarindex import scan_tar

pytestmark = pytest.mark.remote
_CLI = Path(__file__).resolve().parents[2] / "tools" / "shard.py"


def _cli() -> ModuleType:
    spec = importlib.util.spec_from_file_location("shard_cli", _CLI)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _opts(s3: Any) -> list[str]:
    return [f"-o{k}={v}" for k, v in s3.storage_options.items()]


def test_convert_to_s3_then_verify_and_read(
    s3: Any, bucket: str, source: Path, local_ds: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import s3fs

    url = f"s3://{bucket}/ds"
    argv = ["convert", str(source), url, "--samples-per-shard", "60", *_opts(s3)]
    assert _cli().main(argv) == 0
    fs = s3fs.S3FileSystem(**s3.storage_options)
    names = sorted(p.rsplit("/", 1)[1] for p in fs.ls(f"{bucket}/ds", detail=False))
    assert names == sorted(p.name for p in local_ds.iterdir())  # no temporary objects left
    for p in [*local_ds.glob("*.tar"), *local_ds.glob("index/*")]:  # what a local run writes
        name = p.relative_to(local_ds).as_posix()
        assert fs.cat_file(f"{bucket}/ds/{name}") == p.read_bytes(), name
    remote_index = sorted(p.rsplit("/", 1)[1] for p in fs.ls(f"{bucket}/ds/index", detail=False))
    assert remote_index == sorted(p.name for p in (local_ds / "index").iterdir())
    assert _cli().main(["verify", url, *_opts(s3)]) == 0
    assert "ok:" in capsys.readouterr().out
    got = list(read_samples(url, [3, 200], storage_options=s3.storage_options))
    assert [g["__key__"] for g in got] == ["00003", "00200"]


def test_index_of_remote_tars_reads_only_headers(
    s3: Any, bucket: str, local_ds: Path, tmp_path: Path
) -> None:
    import s3fs

    fs = s3fs.S3FileSystem(**s3.storage_options)
    tars = sorted(local_ds.glob("*.tar"))[:2]  # moto answers ~50 requests/s: keep it short
    for p in tars:
        fs.put_file(str(p), f"{bucket}/tars/{p.name}")
    s3.stats.reset()
    assert _cli().main(["index", f"s3://{bucket}/tars", *_opts(s3)]) == 0
    headers = 0
    for p in tars:
        with open(p, "rb") as f:
            scan = scan_tar(f, name=str(p))
        # each header with the byte before it (tarfile's truncation check), then the end block
        # (with the byte before it) and the zero padding after it
        headers += 513 * (scan.num_members + 1) + (scan.size - scan.end_offset - 512)
    index_bytes = s3.stats.ranged_bytes  # (the rest: one listing of the folder)
    assert index_bytes == headers  # headers and the zero tail, nothing of the members' data
    assert index_bytes < 0.05 * sum(p.stat().st_size for p in tars)
    assert s3.stats.body_bytes - index_bytes < 10_000
    local = tmp_path / "tars"
    local.mkdir()
    for p in tars:
        (local / p.name).write_bytes(p.read_bytes())
    assert _cli().main(["index", str(local)]) == 0
    for p in tars:  # each shard's index file, byte for byte the local one
        name = f"index/{p.name}.parquet"
        assert fs.cat_file(f"{bucket}/tars/{name}") == (local / name).read_bytes()


def test_upgrade_a_version_1_dataset_on_s3(
    s3: Any, bucket: str, local_ds: Path, tmp_path: Path, script: Any
) -> None:
    import s3fs

    fs = s3fs.S3FileSystem(**s3.storage_options)
    fs.put(str(local_ds), f"{bucket}/old", recursive=True)
    url = f"s3://{bucket}/old"
    want = [r["bin"] for r in read_samples(url, [0, 100, 239], storage_options=s3.storage_options)]
    script("tests/shards/v1_dataset.py").to_v1(url, s3.storage_options)
    assert not fs.exists(f"{bucket}/old/index/shard-000000.tar.parquet")
    ds = Dataset.open(url, storage_options=s3.storage_options)
    assert ds.manifest.version == 1
    assert _cli().main(["upgrade", url, *_opts(s3)]) == 0
    ds = Dataset.open(url, storage_options=s3.storage_options)
    assert ds.manifest.version == 2 and fs.exists(f"{bucket}/old/index.parquet")
    for p in (local_ds / "index").iterdir():  # the files the conversion wrote
        assert fs.cat_file(f"{bucket}/old/index/{p.name}") == p.read_bytes()
    got = [r["bin"] for r in read_samples(ds, [0, 100, 239])]
    assert got == want
    assert _cli().main(["upgrade", url, *_opts(s3)]) == 0  # already version 2


def test_convert_from_remote_tars_to_s3(s3: Any, s3_ds: str, bucket: str, local_ds: Path) -> None:
    """Re-sharding: a remote dataset in (read through its index), remote tar shards out;
    `--label cls` makes each sample's `.cls` the label column."""
    argv = ["convert", s3_ds, f"s3://{bucket}/re", "--samples-per-shard", "100", *_opts(s3)]
    assert _cli().main([*argv, "--label", "cls"]) == 0
    ds = Dataset.open(f"s3://{bucket}/re", storage_options=s3.storage_options)
    assert ds.num_samples == 240 and len(ds.manifest.shards) == 3
    assert ds.manifest.metadata_columns == ("label",)
    index = pa.concat_tables(index_columns(ds, ["label"]))
    keys = [k.as_py() for s in range(3) for k in ds.index.shard(s).keys]
    assert index["label"].to_pylist() == [int(k) % 10 for k in keys]
    ids = np.array([0, 150, 239])
    got = [r["bin"] for r in read_samples(ds, ids)]
    want = [r["bin"] for r in read_samples(local_ds, ids)]
    assert got == want


def test_endpoint_and_credentials_from_aws_environment(
    s3: Any, s3_ds: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import s3fs

    monkeypatch.setenv("AWS_ENDPOINT_URL", s3.endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    s3fs.S3FileSystem.clear_instance_cache()
    got = list(read_samples(s3_ds, [10]))  # no storage_options at all
    assert got[0]["__key__"] == "00010"
    assert s3.stats.ranged_gets == 1
    s3fs.S3FileSystem.clear_instance_cache()


def test_unreachable_shard_names_the_url(s3: Any, bucket: str, local_ds: Path) -> None:
    import s3fs

    fs = s3fs.S3FileSystem(**s3.storage_options)
    fs.put(str(local_ds), f"{bucket}/ds", recursive=True)
    fs.rm(f"{bucket}/ds/shard-000001.tar")
    ds = Dataset.open(f"s3://{bucket}/ds", storage_options=s3.storage_options)
    with pytest.raises(FileNotFoundError, match=r"shard-000001\.tar"):
        list(read_samples(ds, [70]))
