"""Shards: the manifest, the per-sample byte index, tar/Arrow writers and the raw reader."""

from __future__ import annotations

from seta_stream.shards.convert import ConvertOptions, convert
from seta_stream.shards.index import SampleIndex
from seta_stream.shards.maintain import index_tars, merge, verify
from seta_stream.shards.manifest import INDEX_NAME, MANIFEST_NAME, Manifest, ShardInfo
from seta_stream.shards.reader import Dataset, ReadStats, SampleReader, read_samples
from seta_stream.shards.scan import scan_index
from seta_stream.shards.sources import Sample, Source, open_source
from seta_stream.shards.upgrade_v1 import upgrade

__all__ = [
    "INDEX_NAME",
    "MANIFEST_NAME",
    "ConvertOptions",
    "Dataset",
    "Manifest",
    "ReadStats",
    "Sample",
    "SampleIndex",
    "SampleReader",
    "ShardInfo",
    "Source",
    "convert",
    "index_tars",
    "merge",
    "open_source",
    "read_samples",
    "scan_index",
    "upgrade",
    "verify",
]
