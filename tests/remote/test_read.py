"""Reading from S3 (moto) and HTTP: only the selected bytes, every sample once despite faults.

Bytes are counted at the server (response bodies), not by the client.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from torch.utils.data import DataLoader

from seta_stream.errors import SeTaStreamError
from seta_stream.policies import DynamicRandom, Static
from seta_stream.remote import RemoteOptions
from seta_stream.shards import Dataset, read_samples
from seta_stream.stream import SeTaStream

pytestmark = pytest.mark.remote
FAST_RETRY = RemoteOptions(backoff=0.01, backoff_max=0.05)


def _where(kind: str, s3: Any, http: Any, s3_ds: str) -> tuple[str, dict[str, Any], Any]:
    if kind == "s3":
        return s3_ds, s3.storage_options, s3
    return f"{http.url}/ds", {}, http


def _epoch(stream: SeTaStream, epoch: int, workers: int = 0) -> np.ndarray:
    stream.set_epoch(epoch)
    loader = DataLoader(stream, batch_size=32, num_workers=workers)
    return np.concatenate([b["__index__"].numpy() for b in loader])


def _truth(local_ds: Path, ids: np.ndarray) -> dict[int, bytes]:
    ds = Dataset.open(local_ds)
    return {r["__index__"]: r["bin"] for r in read_samples(ds, ids)}


@pytest.mark.parametrize("kind", ["s3", "http"])
def test_keep_03_sends_at_most_110_percent_of_selected_bytes(
    kind: str, s3: Any, http: Any, s3_ds: str, local_ds: Path, tmp_path: Path
) -> None:
    url, so, server = _where(kind, s3, http, s3_ds)
    policy = Static(prune_ratio=0.7)
    with SeTaStream(url, policy=policy, losses=tmp_path / "l", storage_options=so) as stream:
        server.stats.reset()
        seen = _epoch(stream, 0)
        st = stream.stats()
    sel = policy.select(np.full(240, np.nan, np.float32), 0, seed=0).ids
    np.testing.assert_array_equal(np.sort(seen), sel)
    assert st["bytes_selected"] <= st["bytes_read"] <= 1.10 * st["bytes_selected"]
    # the client counts what the server sent: samples' ranges, plus each shard's index file once
    assert st["index_loads"] == len(list(local_ds.glob("*.tar")))
    assert st["bytes_read"] + st["index_bytes_read"] == server.stats.body_bytes
    assert server.stats.body_bytes < 0.4 * sum(p.stat().st_size for p in local_ds.glob("*.tar"))


@pytest.mark.parametrize("kind", ["s3", "http"])
def test_faults_every_selected_sample_once(
    kind: str, s3: Any, http: Any, s3_ds: str, faults: Any, tmp_path: Path
) -> None:
    """A server failing 20 % of ranged GETs (503) and cutting 10 % mid-body, 2 workers."""
    url, so, server = _where(kind, s3, http, s3_ds)
    policy = DynamicRandom(epochs=4, prune_ratio=0.5)
    remote = RemoteOptions(backoff=0.01, backoff_max=0.05, chunk_samples=16, retries=8)
    with SeTaStream(
        url, policy=policy, losses=tmp_path / "l", storage_options=so, remote=remote
    ) as stream:
        server.set(faults(error_rate=0.2, cut_rate=0.1, seed=3))
        seen = _epoch(stream, 0, workers=2)
        st = stream.stats()
    sel = policy.select(np.full(240, np.nan, np.float32), 0, seed=0).ids
    assert len(seen) == len(sel) == len(np.unique(seen))
    np.testing.assert_array_equal(np.sort(seen), sel)
    assert st["samples_read"] == st["samples_yielded"] == len(sel)
    assert server.stats.errors_injected > 0 and server.stats.cuts_injected > 0


def test_fault_retries_give_the_right_bytes(http: Any, local_ds: Path, faults: Any) -> None:
    ids = np.arange(0, 240, 3)
    http.set(faults(error_rate=0.25, cut_rate=0.15, seed=5))
    ds = Dataset.open(f"{http.url}/ds", remote=RemoteOptions(backoff=0.01, retries=10))
    got = {r["__index__"]: r["bin"] for r in read_samples(ds, ids)}
    assert got == _truth(local_ds, ids)
    assert ds.stats.retries > 0
    assert ds.stats.bytes_read == int(ds.index.lengths(ids).sum())  # retried spans counted once


def test_last_retry_names_url_and_byte_range(http: Any, faults: Any) -> None:
    http.set(faults(error_rate=1.0))
    ds = Dataset.open(f"{http.url}/ds", remote=RemoteOptions(retries=2, backoff=0.01))
    row = ds.index.gather(np.array([5]))
    start, end = int(row.offset[0]), int(row.offset[0] + row.length[0])
    with pytest.raises(SeTaStreamError) as info:
        list(read_samples(ds, [5]))
    msg = str(info.value)
    assert f"{http.url}/ds/shard-000000.tar" in msg
    assert f"bytes {start}-{end - 1}" in msg and "after 3 attempt(s)" in msg and "503" in msg
    assert http.stats.ranged_gets == 3


def test_server_ignoring_range_is_reported_or_sliced(
    http: Any, local_ds: Path, faults: Any
) -> None:
    http.set(faults(ignore_range=True))
    with pytest.raises(SeTaStreamError, match="ignores HTTP Range"):
        list(read_samples(f"{http.url}/ds", [7]))
    ds = Dataset.open(f"{http.url}/ds", remote=RemoteOptions(ignored_range="slice"))
    http.stats.reset()
    ids = np.array([7, 100])  # in shards 0 and 1
    got = {r["__index__"]: r["bin"] for r in read_samples(ds, ids)}
    assert got == _truth(local_ds, ids)
    whole = sum((local_ds / f"shard-00000{s}.tar").stat().st_size for s in (0, 1))
    # correct, and costly: whole shards, plus the two shards' index files (read whole anyway)
    assert ds.stats.bytes_read == whole
    assert ds.index.loads == 2
    assert http.stats.body_bytes == whole + ds.index.bytes_read


def test_cache_serves_repeated_epochs_within_its_bound(
    s3: Any, s3_ds: str, local_ds: Path, tmp_path: Path
) -> None:
    remote = RemoteOptions(cache_dir=str(tmp_path / "cache"), cache_bytes=64 << 20)
    ids = np.arange(0, 240, 2)
    ds = Dataset.open(s3_ds, storage_options=s3.storage_options, remote=remote)
    first = {r["__index__"]: r["bin"] for r in read_samples(ds, ids)}
    again = Dataset.open(s3_ds, storage_options=s3.storage_options, remote=remote)
    s3.stats.reset()
    second = {r["__index__"]: r["bin"] for r in read_samples(again, ids)}
    assert first == second == _truth(local_ds, ids)
    # samples come from the cache; the new dataset's only requests are its shards' index files
    assert again.stats.cache_hits == len(ids)
    assert s3.stats.gets == again.index.loads == len(list(local_ds.glob("*.tar")))
    assert s3.stats.body_bytes == again.index.bytes_read
    small = RemoteOptions(cache_dir=str(tmp_path / "small"), cache_bytes=1 << 20)
    ds = Dataset.open(s3_ds, storage_options=s3.storage_options, remote=small)
    list(read_samples(ds, ids))
    cache = ds.cache()
    assert cache is not None and cache.evicted > 0
    assert 0 < cache.size() <= (1 << 20) * 1.2


def test_fetch_threads_are_joined_when_the_reader_stops_early(s3: Any, s3_ds: str) -> None:
    remote = RemoteOptions(prefetch=2, chunk_samples=16)
    ds = Dataset.open(s3_ds, storage_options=s3.storage_options, remote=remote)
    it = iter(read_samples(ds, np.arange(240)))
    next(it)
    assert any(t.name.startswith("seta_stream-fetch") for t in threading.enumerate())
    it.close()  # type: ignore[attr-defined]
    assert not any(t.name.startswith("seta_stream-fetch") for t in threading.enumerate())
    assert ds.stats.samples_read <= 3 * 16  # the chunk taken and two ahead; never the rest


def test_arrow_shards_over_http_read_one_range_per_field(
    http: Any, source: Path, local_ds: Path
) -> None:
    from seta_stream.shards import ConvertOptions, convert, open_source

    out = local_ds.parent / "ads"  # served by the session's HTTP server
    if not out.exists():
        convert(open_source(str(source)), out, ConvertOptions(format="arrow", progress=False))
    ids = np.array([3, 4, 5, 200])
    ds = Dataset.open(f"{http.url}/ads")
    http.stats.reset()
    got = {r["__index__"]: (r["bin"], r["cls"]) for r in read_samples(ds, ids)}
    local = Dataset.open(out)
    want = {r["__index__"]: (r["bin"], r["cls"]) for r in read_samples(local, ids)}
    assert got == want
    field_bytes = sum(int(local.index.members_of(i)[2].sum()) for i in ids)
    assert field_bytes <= http.stats.ranged_bytes <= 1.10 * field_bytes


def _tampered_copy(src: Path, dst: Path, shard: int, *, fix_checksum: bool) -> None:
    """A copy of `src` whose shard `shard` index lists two samples swapped."""
    import hashlib
    import json
    import shutil

    import pyarrow as pa
    import pyarrow.parquet as pq

    from seta_stream.shards.shardindex import shard_index_name

    shutil.copytree(src, dst)
    man = json.loads((dst / "dataset.json").read_text())
    path = dst / shard_index_name(man["shards"][shard]["name"])
    t = pq.read_table(path)
    order = np.arange(t.num_rows)
    order[[1, 2]] = [2, 1]
    pq.write_table(t.take(pa.array(order)), path)
    if fix_checksum:
        man["shards"][shard]["index_sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
        (dst / "dataset.json").write_text(json.dumps(man))


@pytest.mark.parametrize("fix_checksum", [False, True])
def test_stale_shard_index_on_s3_is_refused_at_first_load(
    s3: Any, local_ds: Path, tmp_path: Path, fix_checksum: bool
) -> None:
    import s3fs

    bad = tmp_path / "bad"
    _tampered_copy(local_ds, bad, 1, fix_checksum=fix_checksum)
    fs = s3fs.S3FileSystem(**s3.storage_options)
    prefix = f"shared/stale-{int(fix_checksum)}"
    fs.put(str(bad), prefix, recursive=True)
    ds = Dataset.open(f"s3://{prefix}", storage_options=s3.storage_options)
    assert ds.index.loads == 0  # opening read the manifest only
    assert len(list(read_samples(ds, [0, 1]))) == 2  # shard 0 is fine
    per = ds.manifest.shards[0].samples
    want = r"sample \d+ .* in shard 1 .* offset \d+" if fix_checksum else r"sha256 .* dataset\.json"
    with pytest.raises(SeTaStreamError, match=want):
        list(read_samples(ds, [per + 5]))  # refused before any byte of shard 1 is read
    assert ds.stats.samples_read == 2


def test_stale_arrow_shard_index_over_http_is_refused(
    http: Any, source: Path, local_ds: Path
) -> None:
    from seta_stream.shards import ConvertOptions, convert, open_source

    good = local_ds.parent / "ads-good"
    if not good.exists():
        convert(open_source(str(source)), good, ConvertOptions(format="arrow", progress=False,
                                                               samples_per_shard=100))  # fmt: skip
    bad = local_ds.parent / "ads-stale"
    if not bad.exists():
        _tampered_copy(good, bad, 0, fix_checksum=True)
    ds = Dataset.open(f"{http.url}/ads-stale")
    with pytest.raises(SeTaStreamError, match=r"sample 2 .* in shard 0 .* offset \d+"):
        list(read_samples(ds, [150, 0]))
    assert ds.stats.samples_read == 0  # their chunk needs shard 0's index: nothing was read
