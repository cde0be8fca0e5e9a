"""A destination or source given as an fsspec URL goes through the same code (memory:// here;
real S3 and HTTP servers are the object-store tests' business)."""

from __future__ import annotations

import fsspec
import numpy as np

from seta_stream.shards import ConvertOptions, Dataset, convert, open_source, read_samples, verify


def test_convert_to_and_read_from_a_url(tmp_path, npz_source) -> None:
    path, arrays = npz_source
    url = f"memory://seta-test-{tmp_path.name}/ds"
    m = convert(open_source(str(path)), url, ConvertOptions(samples_per_shard=120, progress=False))
    fs = fsspec.filesystem("memory")
    names = sorted(p.rsplit("/", 1)[-1] for p in fs.ls(url, detail=False))
    assert names == [
        "dataset.json",
        "index",
        "shard-000000.tar",
        "shard-000001.tar",
        "shard-000002.tar",
    ]
    index = sorted(p.rsplit("/", 1)[-1] for p in fs.ls(f"{url}/index", detail=False))
    assert index == [f"shard-00000{s}.tar.parquet" for s in range(3)]
    ds = Dataset.open(url)
    assert ds.fingerprint == m.fingerprint and not ds.store.is_local
    got = list(read_samples(ds, [299, 0], decode=True))
    np.testing.assert_array_equal(got[0]["x.npy"], arrays["x"][299])
    assert ds.stats.bytes_read == int(ds.index.lengths(np.array([299, 0])).sum())
    assert verify(url, progress=False) == []
