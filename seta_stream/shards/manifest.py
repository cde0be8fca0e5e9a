"""`dataset.json`: the versioned manifest of a sharded dataset.

```json
{"kind": "seta_stream.dataset", "version": 2, "format": "tar",
 "fields": ["cls", "x.npy"], "compression": null, "num_samples": 4000,
 "index": {"layout": "shards"},
 "metadata_columns": ["label"],
 "shards": [{"name": "shard-000000.tar", "bytes": 1234, "samples": 1000, "sha256": "…",
             "index_sha256": "…"}]}
```
Version 2 keeps each shard's index in its own file, `index/<shard name>.parquet`
(`seta_stream.shards.shardindex`), checked against `index_sha256` when first read. Version 1
kept one `index.parquet` for the whole dataset (`index.name`, `index.sha256`); it still opens,
and `tools/shard.py upgrade DIR` rewrites it as version 2.
The manifest is written last, atomically: a dataset without it is not finished.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any, Literal

import numpy as np

from seta_stream.errors import ManifestError
from seta_stream.storage import Store

MANIFEST_NAME = "dataset.json"
INDEX_NAME = "index.parquet"
MANIFEST_KIND = "seta_stream.dataset"
MANIFEST_VERSION = 2
SUPPORTED_VERSIONS = (1, 2)
KEPT_FINGERPRINT = "fingerprint"  # extra's key for the fingerprint an upgrade keeps

Format = Literal["tar", "arrow"]
_SHA256 = re.compile("[0-9a-f]{64}")


@dataclass(frozen=True, kw_only=True)
class ShardInfo:
    name: str
    bytes: int
    samples: int
    sha256: str | None = None
    index_sha256: str | None = None  # version 2: sha256 of the shard's index file

    def __post_init__(self) -> None:
        check_name(self.name, "shard name")
        _count(self.bytes, f"shard {self.name!r} bytes")
        _count(self.samples, f"shard {self.name!r} samples")
        _sha256_or_none(self.sha256, f"shard {self.name!r} sha256")
        _sha256_or_none(self.index_sha256, f"shard {self.name!r} index_sha256")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if d["index_sha256"] is None:
            del d["index_sha256"]
        return d


@dataclass(frozen=True, kw_only=True)
class Manifest:
    format: Format
    shards: tuple[ShardInfo, ...]
    fields: tuple[str, ...] = ()
    compression: str | None = None
    metadata_columns: tuple[str, ...] = ()
    index_sha256: str | None = None
    index_name: str = INDEX_NAME
    extra: dict[str, Any] = field(default_factory=dict)
    version: int = MANIFEST_VERSION

    def __post_init__(self) -> None:
        if self.format not in ("tar", "arrow"):
            raise ManifestError(f"format={self.format!r} is not supported; use 'tar' or 'arrow'")
        if not isinstance(self.extra, dict):
            raise ManifestError(f"extra must be a dict, got {type(self.extra).__name__}")

    @property
    def per_shard_index(self) -> bool:
        """Version 2: one index file per shard; version 1: one `index.parquet`."""
        return self.version >= 2

    @cached_property
    def first_ids(self) -> np.ndarray:
        """int64 [shards + 1]: shard s holds sample ids first_ids[s] .. first_ids[s+1]-1."""
        first = np.zeros(len(self.shards) + 1, np.int64)
        np.cumsum([s.samples for s in self.shards], out=first[1:])
        return first

    @cached_property
    def shard_bytes(self) -> np.ndarray:
        """int64 [shards]: each shard file's size."""
        return np.array([s.bytes for s in self.shards], np.int64)

    @property
    def num_samples(self) -> int:
        return int(self.first_ids[-1])

    @property
    def total_bytes(self) -> int:
        return int(self.shard_bytes.sum())

    @cached_property
    def fingerprint(self) -> str:
        """A stable hash of the dataset's identity: shards, sizes, checksums and index.

        A dataset upgraded from version 1 keeps the fingerprint it had (`extra["fingerprint"]`,
        written by `tools/shard.py upgrade`): the same samples under the same ids, so its loss
        tables and checkpoints still match it."""
        kept = self.extra.get(KEPT_FINGERPRINT)
        if self.per_shard_index and isinstance(kept, str):
            return kept
        body = self.to_dict()
        body.pop("extra", None)
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:32]

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": MANIFEST_KIND,
            "version": self.version,
            "format": self.format,
            "fields": list(self.fields),
            "compression": self.compression,
            "num_samples": self.num_samples,
            "index": (
                {"layout": "shards"}
                if self.per_shard_index
                else {"name": self.index_name, "sha256": self.index_sha256}
            ),
            "metadata_columns": list(self.metadata_columns),
            "shards": [s.to_dict() for s in self.shards],
            "extra": self.extra,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes, *, source: str) -> Manifest:
        """Parse and check a manifest; any problem is a `ManifestError` naming `source`."""
        try:
            d = json.loads(text)
        except (ValueError, RecursionError) as e:  # RecursionError: absurdly deep nesting
            raise ManifestError(f"{source}: not valid JSON ({e})") from e
        kind = d.get("kind") if isinstance(d, dict) else type(d).__name__
        if not isinstance(d, dict) or kind != MANIFEST_KIND:
            raise ManifestError(f"{source}: not a seta_stream manifest (kind={kind!r})")
        version = d.get("version")
        if type(version) is not int or version not in SUPPORTED_VERSIONS:
            raise ManifestError(
                f"{source}: manifest version {version!r} is not supported "
                f"(this seta_stream reads versions {list(SUPPORTED_VERSIONS)}); upgrade seta_stream"
            )
        try:
            m = _parse(d, version)
        except ManifestError as e:
            raise ManifestError(f"{source}: {e}") from e
        count = d.get("num_samples", m.num_samples)
        if type(count) is not int or count != m.num_samples:
            raise ManifestError(
                f"{source}: num_samples={count!r} but the shards hold {m.num_samples}"
            )
        return m


def _parse(d: dict[str, Any], version: int) -> Manifest:
    """The fields of a manifest dict, each checked for its type (errors name the field)."""
    shards = d.get("shards")
    if not isinstance(shards, list):
        raise ManifestError(f"'shards' must be a list, got {_short(shards)}")
    infos = []
    for k, s in enumerate(shards):
        if not isinstance(s, dict) or not {"name", "bytes", "samples"} <= s.keys():
            raise ManifestError(f"shards[{k}] must be an object with name, bytes, samples")
        extra = set(s) - {"name", "bytes", "samples", "sha256", "index_sha256"}
        if extra:
            raise ManifestError(f"shards[{k}] has unknown keys {sorted(extra)}")
        try:
            infos.append(ShardInfo(**s))
        except ManifestError as e:
            raise ManifestError(f"shards[{k}]: {e}") from e
    index = d.get("index") or {}
    if not isinstance(index, dict):
        raise ManifestError(f"'index' must be an object, got {_short(index)}")
    index_name = index.get("name", INDEX_NAME)
    check_name(index_name, "index name")
    index_sha = _sha256_or_none(index.get("sha256"), "index sha256")
    compression = d.get("compression")
    if compression is not None and not isinstance(compression, str):
        raise ManifestError(f"'compression' must be a string or null, got {_short(compression)}")
    extra_d = d.get("extra") or {}
    if not isinstance(extra_d, dict):
        raise ManifestError(f"'extra' must be an object, got {_short(extra_d)}")
    return Manifest(
        format=d.get("format"),  # type: ignore[arg-type]  # checked by __post_init__
        shards=tuple(infos),
        fields=_strings(d, "fields"),
        compression=compression,
        metadata_columns=_strings(d, "metadata_columns"),
        index_sha256=index_sha,
        index_name=index_name,
        extra=extra_d,
        version=version,
    )


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _strings(d: dict[str, Any], key: str) -> tuple[str, ...]:
    value = d.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ManifestError(f"{key!r} must be a list of strings, got {_short(value)}")
    return tuple(value)


def _count(value: object, what: str) -> int:
    if type(value) is not int or value < 0:
        raise ManifestError(f"{what} must be an integer >= 0, got {_short(value)}")
    return value


def _sha256_or_none(value: object, what: str) -> str | None:
    if value is not None and not (isinstance(value, str) and _SHA256.fullmatch(value)):
        raise ManifestError(f"{what} must be 64 lower-case hex digits or null, got {_short(value)}")
    return value


def check_name(name: object, what: str) -> None:
    """A file named by a manifest must stay inside the dataset folder: a relative path
    without '..' parts or NUL bytes (a hostile manifest must not name /etc/passwd)."""
    if (
        not isinstance(name, str)
        or not name
        or name.startswith("/")
        or "\x00" in name
        or ".." in name.split("/")
    ):
        raise ManifestError(
            f"{what} {_short(name)} must be a relative path inside the dataset folder "
            "(no '..' parts, no leading '/', no NUL)"
        )


def read_manifest(store: Store, name: str = MANIFEST_NAME) -> Manifest:
    if not store.exists(name):
        if not store.fs.exists(store.root):
            raise ManifestError(f"no such folder: {store.url}")
        if store.fs.isfile(store.root):
            raise ManifestError(
                f"{store.url} is a file, not a dataset folder: for WebDataset tars run "
                "`python tools/shard.py index DIR`"
            )
        raise ManifestError(
            f"{store.path(name)}: missing; not a finished dataset "
            "(write one with `tools/shard.py convert` or index tars with `tools/shard.py index`)"
        )
    return Manifest.from_json(store.read_bytes(name), source=store.path(name))


def write_manifest(store: Store, manifest: Manifest, name: str = MANIFEST_NAME) -> None:
    store.write_atomic(name, manifest.to_json().encode())
