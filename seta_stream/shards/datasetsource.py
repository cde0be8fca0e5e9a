"""An existing seta_stream dataset (tar or Arrow shards) as a conversion source: re-sharding.

Samples are read through the dataset's own index (`Dataset.iter_raw`: exact byte ranges, no
header scan, `.zst` members decompressed), and the metadata columns of its index (`label`
and any others the first conversion kept) carry over into the new index, as do the
manifest's `classes`. `label=FIELD` makes the integer in field `FIELD` of every sample (e.g.
`cls`) the `label` column instead.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from seta_stream.shards.reader import Dataset
from seta_stream.shards.shardindex import shard_index_name
from seta_stream.shards.sourcebase import Sample, Source, check_label_field, field_label


class DatasetSource(Source):
    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        label: str | None = None,
        storage_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.root = str(root)
        self.dataset = Dataset.open(self.root, storage_options=storage_options)
        m = self.dataset.manifest
        self.fields = tuple(sorted({f.removesuffix(".zst") for f in m.fields}))
        self.description = (
            f"seta_stream dataset {self.root} ({m.num_samples} samples, {len(m.shards)} shards)"
        )
        check_label_field(label, self.fields, self.description)
        self.label = label
        columns = list(m.metadata_columns)
        self.meta: dict[str, list[Any]] = {}
        if columns:  # one list per metadata column, in sample-id order
            tables = list(index_columns(self.dataset, columns))
            self.meta = pa.concat_tables(tables).to_pydict()
        self.metadata_columns = tuple(columns) + (
            ("label",) if label and "label" not in columns else ()
        )
        classes = m.extra.get("classes")
        self.extra = {"classes": classes} if classes and not label else {}

    def __len__(self) -> int:
        return self.dataset.num_samples

    def load(self, i: int) -> Sample:
        return self.load_many([i])[0]

    def load_many(self, ids: Sequence[int]) -> list[Sample]:
        out = []
        for raw in self.dataset.iter_raw(np.asarray(ids, dtype=np.int64)):
            i = int(raw["__index__"])
            fields = [(f, d) for f, d in raw.items() if not f.startswith("__")]
            meta = {c: values[i] for c, values in self.meta.items()}
            if self.label is not None:
                meta["label"] = field_label(fields, self.label, self.dataset.index.where(i))
            out.append(Sample(key=raw["__key__"], fields=fields, meta=meta))
        return out


def index_columns(dataset: Dataset, columns: Sequence[str]) -> Iterator[pa.Table]:
    """`columns` of the dataset's index, one index file at a time in sample-id order (local or
    through the dataset's store, so any fsspec URL)."""
    m = dataset.manifest
    names = [shard_index_name(s.name) for s in m.shards] if m.per_shard_index else [m.index_name]
    for name in names:
        with dataset.store.open(name) as f:
            yield pq.read_table(f, columns=list(columns))
