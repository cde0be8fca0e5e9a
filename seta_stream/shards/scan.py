"""The index as one polars table: `scan_index(path)`, lazy, whatever the dataset's layout.

```python
import polars as pl
from seta_stream.shards import scan_index

idx = scan_index("data/mnist1d")  # LazyFrame: sample_id, shard, key, offset, length, members, …
idx.filter(pl.col("label") == 3).select("sample_id", "key").collect()
```
A version-2 dataset's per-shard files are scanned in manifest order, so the row index is the
sample id; `shard` is the shard's position in `dataset.json`. Nothing is read before
`collect()`, and polars reads only the columns and files a query needs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import polars as pl

from seta_stream.shards.manifest import read_manifest
from seta_stream.shards.shardindex import shard_index_name
from seta_stream.storage import Store


def scan_index(
    path: str | os.PathLike[str], *, storage_options: Mapping[str, Any] | None = None
) -> pl.LazyFrame:
    """The dataset's index as a polars LazyFrame, one row per sample in sample-id order.

    `storage_options` are polars' (object_store) options for a remote dataset; the manifest
    itself is read through fsspec with the same options.
    """
    store = Store(path, storage_options)
    manifest = read_manifest(store)
    opts = dict(storage_options) if storage_options else None
    if not manifest.per_shard_index:
        return pl.scan_parquet(store.url_of(store.path(manifest.index_name)), storage_options=opts)
    files = [store.url_of(store.path(shard_index_name(s.name))) for s in manifest.shards]
    columns = ["sample_id", "shard", "key", "offset", "length", "members"]
    if not files:
        schema = {"sample_id": pl.Int64, "shard": pl.Int32, "key": pl.String}
        return pl.LazyFrame(schema={**schema, "offset": pl.Int64, "length": pl.Int64})
    shard_of_file = pl.LazyFrame(
        {"__file__": files, "shard": pl.Series(range(len(files)), dtype=pl.Int32)}
    )
    frame = (
        pl.scan_parquet(files, include_file_paths="__file__", storage_options=opts)
        .with_row_index("sample_id")
        .with_columns(pl.col("sample_id").cast(pl.Int64))
        .join(shard_of_file, on="__file__", how="left", maintain_order="left")
        .drop("__file__")
    )
    rest = [c for c in frame.collect_schema().names() if c not in columns]
    return frame.select(*columns, *rest)
