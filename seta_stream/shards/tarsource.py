"""Existing WebDataset tar shards as a conversion source (re-sharding plain tars), local or
at fsspec URLs: headers scanned, samples grouped as webdataset groups them, members read by
exact ranges.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from seta_stream.errors import SourceError
from seta_stream.remote import Request, Span, coalesce
from seta_stream.shards.sourcebase import FieldLabelSource, Sample
from seta_stream.shards.tarindex import scan_shard
from seta_stream.storage import Store


class TarSource(FieldLabelSource):
    """Existing WebDataset tar shards (re-sharding); samples grouped as webdataset does.

    Paths may be fsspec URLs (`s3://bucket/shards/a.tar`): their headers are read by exact
    ranged requests, and each sample's members by ranged requests, retried (`Store`).
    `label=FIELD`: the integer that field `FIELD` of each sample holds (decimal text, as
    webdataset's `cls`) becomes the `label` metadata column; a sample without it, or with
    something else in it, is an error naming the shard and the sample.
    """

    def __init__(
        self,
        paths: Sequence[str],
        *,
        storage_options: Mapping[str, Any] | None = None,
        label: str | None = None,
    ) -> None:
        self.paths = list(paths)
        if not self.paths:
            raise SourceError("no .tar files given")
        self.stores = [_store_of(p, storage_options) for p in self.paths]
        self.samples: list[tuple[int, str, list[tuple[str, int, int]]]] = []
        remote = not all(store.is_local for store, _ in self.stores)
        with ThreadPoolExecutor(16 if remote else 1, thread_name_prefix="seta_stream-scan") as pool:
            scans = list(pool.map(lambda sn: scan_shard(*sn), self.stores))
        for t, scan in enumerate(scans):
            for s in scan.samples:
                self.samples.append((t, s.key, [(m[0], m[1], m[2]) for m in s.members]))
        self.fields = tuple(sorted({m[0] for _, _, ms in self.samples for m in ms}))
        self.description = f"{len(self.paths)} tar shards ({len(self.samples)} samples)"
        self.use_label(label)

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, i: int) -> Sample:
        t, key, members = self.samples[i]
        if self.stores[t][0].is_local:
            with open(self.paths[t], "rb") as f:
                fields = [(ext, os.pread(f.fileno(), size, off)) for ext, off, size in members]
            return self.sample(key, fields, f"{self.paths[t]}: sample {key!r}")
        return self.load_many([i])[0]

    def load_many(self, ids: Sequence[int]) -> list[Sample]:
        """Remote: all members of `ids` fetched together, neighbours merged into one request."""
        if all(self.stores[self.samples[i][0]][0].is_local for i in ids):
            return [self.load(i) for i in ids]
        spans = [
            Span(f"{t}/{self.stores[t][1]}", off, off + size)
            for t, _, members in (self.samples[i] for i in ids)
            for _, off, size in members
        ]
        data: list[bytes] = [b""] * len(spans)
        by_shard: dict[int, list[Request]] = {}
        for req in coalesce(spans, gap=64 << 10, max_request=64 << 20):
            by_shard.setdefault(int(req.span.path.split("/", 1)[0]), []).append(req)
        for t, reqs in by_shard.items():  # one shard's requests concurrently
            store, name = self.stores[t]
            got = store.read_spans([(name, r.span.start, r.span.end) for r in reqs])
            for req, body in zip(reqs, got.data, strict=True):
                for k in req.parts:
                    data[k] = body[spans[k].start - req.span.start : spans[k].end - req.span.start]
        out, k = [], 0
        for i in ids:
            t, key, members = self.samples[i]
            fields = [(m[0], data[k + j]) for j, m in enumerate(members)]
            out.append(self.sample(key, fields, f"{self.paths[t]}: sample {key!r}"))
            k += len(members)
        return out


def _store_of(path: str, storage_options: Mapping[str, Any] | None) -> tuple[Store, str]:
    """The folder of `path` as a Store, and the file's name in it."""
    if not is_url(path):
        return Store(os.path.dirname(os.path.abspath(path))), os.path.basename(path)
    folder, _, name = path.rstrip("/").rpartition("/")
    return Store(folder, storage_options), name


def is_url(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


def remote_tars(src: str, storage_options: Mapping[str, Any] | None) -> list[str]:
    """The tar shards an fsspec URL names: one .tar, a glob, or a folder of them."""
    from fsspec.core import url_to_fs

    fs, root = url_to_fs(src, **(storage_options or {}))
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]

    def url(p: str) -> str:
        return p if "://" in p else f"{protocol}://{p}"

    if any(ch in root for ch in "*?["):
        found = sorted(fs.glob(root))
    elif root.endswith(".tar"):
        found = [root]
    else:
        found = sorted(fs.glob(root.rstrip("/") + "/*.tar"))
    if not found:
        raise SourceError(f"{src}: no .tar shards there (remote sources are tar shards)")
    return [url(p) for p in found]
