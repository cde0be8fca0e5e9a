"""`ReadOnlyLossTable`: the reading side (DDP ranks that do not write, tools, notebooks).

It takes no lock and starts no thread; it reads `table.json` and the latest snapshot
(`losses.parquet`), which the writing process replaces atomically, so a read never sees half
a file. Until the writer's first snapshot every loss reads as NaN (never seen). A URL table
(`s3://…`) is read from the URL: each read downloads the uploaded `losses.parquet`.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import pyarrow as pa

from seta_stream.errors import LossTableError
from seta_stream.losses import layout
from seta_stream.losses.inputs import DatasetLike
from seta_stream.losses.schema import (
    METADATA_KEY,
    file_metadata,
    read_checked,
    read_column_into,
)


def resolve_num_samples(
    root: Path, stored: int | None, num_samples: int | None, dataset: DatasetLike | None
) -> int:
    """The table's sample count, checked against what the caller and the dataset say."""
    claims = {"table.json": stored, "num_samples": num_samples}
    if dataset is not None:
        claims["dataset.num_samples"] = int(dataset.num_samples)
    given = {k: v for k, v in claims.items() if v is not None}
    if not given:
        raise LossTableError(
            f"no loss table at {root} yet: pass num_samples=N or dataset= to create"
        )
    if len(set(given.values())) > 1:
        said = ", ".join(f"{k}={v}" for k, v in given.items())
        raise LossTableError(f"loss table {root}: sample counts disagree ({said})")
    n = next(iter(given.values()))
    if not isinstance(n, int | np.integer) or n < 1:
        raise LossTableError(f"num_samples={n!r}; must be an int >= 1")
    return int(n)


def check_dataset(root: Path, meta: dict[str, Any], dataset: DatasetLike | None) -> None:
    """Refuse to use a table for a dataset other than the one it was made for."""
    stored = meta.get("fingerprint")
    if dataset is None or stored is None:
        return
    if str(dataset.fingerprint) != stored:
        raise LossTableError(
            f"loss table {root} belongs to another dataset (fingerprint {stored}, this dataset "
            f"{dataset.fingerprint}). Use a new losses path, or carry the losses over through "
            "the two datasets' indexes (see 'Carrying a table over' in seta_stream.losses)."
        )


class ReadOnlyLossTable:
    """Scores and snapshots of a table another process writes."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        dataset: DatasetLike | None = None,
        storage_options: Mapping[str, Any] | None = None,
    ) -> None:
        self._store = None
        if layout.is_url(path):
            from seta_stream.storage import Store

            self._store = Store(os.fspath(path), storage_options)
            self.root = Path(self._store.root)
            meta_path = self._store.path(layout.META_NAME)
            if not self._store.exists(layout.META_NAME):
                raise LossTableError(f"no loss table at {path} ({layout.META_NAME} is missing)")
            self._meta = layout.parse_meta(self._store.read_bytes(layout.META_NAME), meta_path)
        else:
            self.root = layout.local_root(path)
            self._meta = layout.read_meta(self.root)
        resolve_num_samples(self.root, self._meta["num_samples"], None, dataset)
        check_dataset(self.root, self._meta, dataset)

    @property
    def num_samples(self) -> int:
        return int(self._meta["num_samples"])

    @property
    def fingerprint(self) -> str | None:
        return self._meta.get("fingerprint")

    @property
    def snapshot_path(self) -> Path:
        return self.root / layout.SNAPSHOT_NAME

    def read_snapshot(self, columns: list[str] | None = None) -> pa.Table | None:
        """The latest snapshot (None before the first one), its version and size checked."""
        if self._store is not None:
            return self._read_remote(columns)
        path = self.snapshot_path
        if not path.exists():
            return None
        table = read_checked(path, "snapshot", columns)
        if table.num_rows != self.num_samples:
            raise LossTableError(
                f"{path} has {table.num_rows} rows, but the table has {self.num_samples} samples"
            )
        return table

    @contextlib.contextmanager
    def _remote_snapshot(self) -> Iterator[Path | None]:
        """The URL's snapshot, downloaded to a temp file for the block (None: none yet)."""
        store = self._store
        assert store is not None
        if not store.exists(layout.SNAPSHOT_NAME):
            yield None
            return
        with tempfile.TemporaryDirectory(prefix="seta_stream-") as tmp:
            local = Path(tmp) / layout.SNAPSHOT_NAME
            store.download(layout.SNAPSHOT_NAME, local)
            yield local

    def _read_remote(self, columns: list[str] | None) -> pa.Table | None:
        with self._remote_snapshot() as local:
            if local is None:
                return None
            table = read_checked(local, "snapshot", columns)
        if table.num_rows != self.num_samples:
            url = self._store.url if self._store is not None else self.root
            raise LossTableError(
                f"{url}/{layout.SNAPSHOT_NAME} has {table.num_rows} rows, but the "
                f"table has {self.num_samples} samples"
            )
        return table

    def scores(self) -> np.ndarray[Any, np.dtype[np.float32]]:
        """float32 losses from the latest snapshot (NaN: never seen, or no snapshot yet),
        read a row group at a time: 4 bytes a sample in all."""
        scores = np.full(self.num_samples, np.nan, np.float32)
        if self._store is None:
            if self.snapshot_path.exists():
                read_column_into(self.snapshot_path, "snapshot", "loss", scores)
            return scores
        with self._remote_snapshot() as local:
            if local is not None:
                read_column_into(local, "snapshot", "loss", scores)
        return scores

    def snapshot_epoch(self) -> int | None:
        """The epoch the latest snapshot was taken in (None before the first one)."""
        if self._store is not None:
            table = self._read_remote(["sample_id"])
            if table is None:
                return None
            return int(json.loads(table.schema.metadata[METADATA_KEY])["epoch"])
        path = self.snapshot_path
        return None if not path.exists() else int(file_metadata(path, "snapshot")["epoch"])

    def close(self) -> None:
        """Nothing to release; present so both table kinds close the same way."""

    def __enter__(self) -> ReadOnlyLossTable:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
