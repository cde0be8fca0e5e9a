"""`dataset.json`: the versioned manifest of a sharded dataset.

```json
{"kind": "seta_stream.dataset", "version": 1, "format": "tar",
 "fields": ["cls", "x.npy"], "compression": null, "num_samples": 4000,
 "index": {"name": "index.parquet", "sha256": "…"},
 "metadata_columns": ["label"],
 "shards": [{"name": "shard-000000.tar", "bytes": 1234, "samples": 1000, "sha256": "…"}]}
```
The manifest is written last, atomically: a dataset without it is not finished.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from seta_stream.errors import ManifestError
from seta_stream.storage import Store

MANIFEST_NAME = "dataset.json"
INDEX_NAME = "index.parquet"
MANIFEST_KIND = "seta_stream.dataset"
MANIFEST_VERSION = 1
SUPPORTED_VERSIONS = (1,)

Format = Literal["tar", "arrow"]


@dataclass(frozen=True, kw_only=True)
class ShardInfo:
    name: str
    bytes: int
    samples: int
    sha256: str | None = None


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

    @property
    def num_samples(self) -> int:
        return sum(s.samples for s in self.shards)

    @property
    def total_bytes(self) -> int:
        return sum(s.bytes for s in self.shards)

    @property
    def fingerprint(self) -> str:
        """A stable hash of the dataset's identity: shards, sizes, checksums and index."""
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
            "index": {"name": self.index_name, "sha256": self.index_sha256},
            "metadata_columns": list(self.metadata_columns),
            "shards": [asdict(s) for s in self.shards],
            "extra": self.extra,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes, *, source: str) -> Manifest:
        try:
            d = json.loads(text)
        except ValueError as e:
            raise ManifestError(f"{source}: not valid JSON ({e})") from e
        if not isinstance(d, dict) or d.get("kind") != MANIFEST_KIND:
            raise ManifestError(f"{source}: not a seta_stream manifest (kind={d.get('kind')!r})")
        version = d.get("version")
        if version not in SUPPORTED_VERSIONS:
            raise ManifestError(
                f"{source}: manifest version {version!r} is not supported "
                f"(this seta_stream reads versions {list(SUPPORTED_VERSIONS)}); upgrade seta_stream"
            )
        try:
            shards = tuple(ShardInfo(**s) for s in d["shards"])
            m = cls(
                format=d["format"],
                shards=shards,
                fields=tuple(d.get("fields", ())),
                compression=d.get("compression"),
                metadata_columns=tuple(d.get("metadata_columns", ())),
                index_sha256=(d.get("index") or {}).get("sha256"),
                index_name=(d.get("index") or {}).get("name", INDEX_NAME),
                extra=d.get("extra") or {},
                version=version,
            )
        except (KeyError, TypeError) as e:
            raise ManifestError(f"{source}: malformed manifest ({e!r})") from e
        if d.get("num_samples", m.num_samples) != m.num_samples:
            raise ManifestError(
                f"{source}: num_samples={d['num_samples']} but the shards hold {m.num_samples}"
            )
        return m


def read_manifest(store: Store, name: str = MANIFEST_NAME) -> Manifest:
    if not store.exists(name):
        raise ManifestError(
            f"{store.path(name)}: missing; not a finished dataset "
            "(write one with `tools/shard.py convert` or index tars with `tools/shard.py index`)"
        )
    return Manifest.from_json(store.read_bytes(name), source=store.path(name))


def write_manifest(store: Store, manifest: Manifest, name: str = MANIFEST_NAME) -> None:
    store.write_atomic(name, manifest.to_json().encode())
