"""Version-1 datasets for tests: a version-2 dataset turned back into the old layout.

Version 1 kept one `index.parquet` (with `sample_id` and `shard` columns) named by a
version-1 manifest. `to_v1(root)` writes that index from the per-shard files the way the old
writer did (`seta_stream.shards.index.write_index`), then the version-1 manifest, and removes
the shards' index files, so what is left is exactly what the old code wrote. Tests load it
with `script("tests/shards/v1_dataset.py")` (the fixture in tests/conftest.py).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from seta_stream.shards.index import MEMBER_TYPE, write_index
from seta_stream.shards.manifest import (
    INDEX_NAME,
    MANIFEST_NAME,
    Manifest,
    read_manifest,
    write_manifest,
)
from seta_stream.shards.shardindex import SHARD_INDEX_DIR, shard_index_name
from seta_stream.storage import Store


def v1_table(store: Store, manifest: Manifest) -> pa.Table:
    """The whole version-1 index of a version-2 dataset: its shards' files, with ids."""
    tables = []
    for s, info in enumerate(manifest.shards):
        t = pq.read_table(io.BytesIO(store.read_bytes(shard_index_name(info.name))))
        members = t["members"].cast(pa.list_(MEMBER_TYPE))  # Parquet's `element` -> `item`
        t = t.set_column(t.column_names.index("members"), "members", members)
        first = int(manifest.first_ids[s])
        t = t.add_column(0, "sample_id", pa.array(np.arange(first, first + t.num_rows)))
        t = t.add_column(2, "shard", pa.array(np.full(t.num_rows, s, np.int32)))
        tables.append(t)
    return pa.concat_tables(tables)


def to_v1(
    root: str | os.PathLike[str],
    storage_options: Mapping[str, Any] | None = None,
    *,
    manifest_name: str = MANIFEST_NAME,
    index_name: str = INDEX_NAME,
) -> Manifest:
    """Rewrite the version-2 dataset (or `convert --part` part, by its `manifest_name`) at
    `root` as version 1; returns the version-1 manifest."""
    store = Store(root, storage_options)
    manifest = read_manifest(store, manifest_name)
    assert manifest.per_shard_index, f"{root} is version {manifest.version} already"
    buf = io.BytesIO()
    write_index(v1_table(store, manifest), buf)
    data = buf.getvalue()
    store.write_atomic(index_name, data)
    old = dataclasses.replace(
        manifest,
        shards=tuple(dataclasses.replace(s, index_sha256=None) for s in manifest.shards),
        version=1,
        index_sha256=hashlib.sha256(data).hexdigest(),
        index_name=index_name,
    )
    write_manifest(store, old, manifest_name)
    for info in manifest.shards:
        store.remove(shard_index_name(info.name))
    if store.exists(SHARD_INDEX_DIR) and not store.glob(f"{SHARD_INDEX_DIR}/*"):
        store.fs.rm(store.path(SHARD_INDEX_DIR), recursive=True)
    return old
