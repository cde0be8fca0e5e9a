"""The lazy per-shard index: open reads the manifest only; a shard's index is read, checked and
cached when a reader first needs it; a stale or edited shard index is refused there, naming
shard, sample and offset, before any byte of that shard is yielded."""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from seta_stream.errors import ChecksumError, ManifestError
from seta_stream.shards import ConvertOptions, Dataset, convert, open_source, read_samples
from seta_stream.shards.shardindex import shard_index_name

N, PER_SHARD = 300, 50


def _write(tmp_path: Path, fmt: str) -> Path:
    rng = np.random.default_rng(0)
    src = tmp_path / "src.npz"
    np.savez(src, x=rng.standard_normal((N, 6)).astype(np.float32), y=np.arange(N) % 7)
    out = tmp_path / "ds"
    opts = ConvertOptions(samples_per_shard=PER_SHARD, progress=False, format=fmt)
    convert(open_source(str(src)), out, opts)
    return out


@pytest.fixture(params=["tar", "arrow"])
def ds(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    return _write(tmp_path, request.param)


def _truth(path: Path, ids: list[int]) -> dict[int, bytes]:
    return {r["__index__"]: r["x.npy"] for r in read_samples(Dataset.open(path), ids)}


def test_open_reads_no_index_file(ds: Path) -> None:
    for f in (ds / "index").iterdir():  # the indexes can't even be read: open still works
        f.rename(f.with_suffix(".gone"))
    d = Dataset.open(ds)
    assert d.num_samples == N and d.index.loads == 0
    with pytest.raises(ManifestError, match=r"index of shard 0 \(shard-000000\.\w+\) is missing"):
        d.read_raw(3)


def test_a_shard_index_is_read_once_when_first_needed(ds: Path) -> None:
    d = Dataset.open(ds)
    ids = [2 * PER_SHARD + 1, 2 * PER_SHARD + 7, 2 * PER_SHARD + 3]  # all in shard 2
    got = {r["__index__"] for r in read_samples(d, ids)}
    assert got == set(ids) and d.index.loads == 1
    list(read_samples(d, [PER_SHARD * 4]))  # shard 4
    list(read_samples(d, ids))
    assert d.index.loads == 2  # shard 2 came from the cache
    size = (ds / shard_index_name(d.manifest.shards[2].name)).stat().st_size
    size += (ds / shard_index_name(d.manifest.shards[4].name)).stat().st_size
    assert d.index.bytes_read == size


def test_cache_is_bounded_and_reloads_what_it_evicted(ds: Path) -> None:
    d = Dataset.open(ds, index_cache_samples=2 * PER_SHARD)
    ids = np.arange(N)
    want = _truth(ds, ids.tolist())
    for _ in range(2):
        assert {r["__index__"]: r["x.npy"] for r in read_samples(d, ids)} == want
    assert len(d.index._cache) <= 2
    assert d.index.loads == 2 * (N // PER_SHARD)  # every shard evicted before its second use


def test_gather_matches_the_rows_of_each_shard(ds: Path) -> None:
    d = Dataset.open(ds)
    rng = np.random.default_rng(1)
    ids = rng.permutation(N)[:120]
    g = d.index.gather(ids)
    assert g.num_samples == len(ids)
    for k, i in enumerate(ids.tolist()):
        s = i // PER_SHARD
        row = d.index.shard(s)
        assert g.shard[k] == s and g.keys[k] == row.keys[i - s * PER_SHARD]
        assert g.offset[k] == row.offset[i - s * PER_SHARD]
        names, moff, msize = g.members_of(k)
        want_names, want_off, want_size = d.index.members_of(i)
        assert names == want_names
        np.testing.assert_array_equal(moff, want_off)
        np.testing.assert_array_equal(msize, want_size)


def test_pickled_dataset_carries_no_index(ds: Path) -> None:
    d = Dataset.open(ds)
    list(read_samples(d, list(range(N))))
    clone = pickle.loads(pickle.dumps(d))
    assert clone.index.loads == 0 and not clone.index._cache
    assert _truth(ds, [5, 250]) == {
        r["__index__"]: r["x.npy"] for r in read_samples(clone, [5, 250])
    }


def _edit_shard_index(ds: Path, shard: int, edit, *, fix_checksum: bool) -> None:
    man = json.loads((ds / "dataset.json").read_text())
    info = man["shards"][shard]
    path = ds / shard_index_name(info["name"])
    table = edit(pq.read_table(path))
    pq.write_table(table, path)
    if fix_checksum:
        info["index_sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
        (ds / "dataset.json").write_text(json.dumps(man))


def _shift_offset(row: int, by: int):
    def edit(t: pa.Table) -> pa.Table:
        off = t["offset"].to_numpy().copy()
        off[row] += by
        return t.set_column(t.column_names.index("offset"), "offset", pa.array(off))

    return edit


def test_edited_shard_index_fails_its_checksum(ds: Path) -> None:
    _edit_shard_index(ds, 1, _shift_offset(4, 512), fix_checksum=False)
    d = Dataset.open(ds)  # opening reads no index: it works
    assert _truth(ds, [3]) == {r["__index__"]: r["x.npy"] for r in read_samples(d, [3])}
    with pytest.raises(ChecksumError, match=r"index/shard-000001\.\w+\.parquet: sha256"):
        list(read_samples(d, [PER_SHARD + 10]))


def test_swapped_rows_are_refused_naming_shard_sample_and_offset(ds: Path) -> None:
    def swap(t: pa.Table) -> pa.Table:
        order = np.arange(t.num_rows)
        order[[3, 4]] = [4, 3]
        return t.take(pa.array(order))

    _edit_shard_index(ds, 2, swap, fix_checksum=True)
    d = Dataset.open(ds)
    sid = 2 * PER_SHARD + 4
    with pytest.raises(ManifestError, match=rf"sample {sid} .* in shard 2 .* at offset \d+"):
        list(read_samples(d, [2 * PER_SHARD]))  # refused at load, before any sample is yielded


def test_overlapping_tar_spans_are_refused_at_load(tmp_path: Path) -> None:
    ds = _write(tmp_path, "tar")
    _edit_shard_index(ds, 0, _shift_offset(7, -512), fix_checksum=True)
    d = Dataset.open(ds)
    with pytest.raises(ManifestError, match=r"sample [67] .*shard 0"):
        list(read_samples(d, [0]))


def test_count_differs_from_the_manifest(ds: Path) -> None:
    _edit_shard_index(ds, 3, lambda t: t.slice(0, PER_SHARD - 1), fix_checksum=True)
    d = Dataset.open(ds)
    with pytest.raises(ManifestError, match=rf"{PER_SHARD - 1} rows but dataset.json counts"):
        list(read_samples(d, [3 * PER_SHARD]))
