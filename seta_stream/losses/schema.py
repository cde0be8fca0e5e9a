"""Parquet schemas of the loss table's files, their versioned metadata, and checked reading.

Every Parquet file a table writes carries, under the metadata key `seta_stream.loss_table`, a
JSON object with at least `kind` (snapshot, history, summary, histogram; `keys` in tables made
before keys were dropped) and `version`. A reader that meets an unknown version names the file,
the version and the versions it reads.

Encodings are chosen for size at 1B rows: `sample_id` delta-encoded (about 0 bytes a row),
`loss` byte-stream-split (its exponent bytes then compress), the few-valued columns
dictionary-encoded, all zstd: about 4 bytes a row for a snapshot or a full history.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from seta_stream.errors import LossTableError
from seta_stream.losses.layout import TABLE_VERSION, check_version

METADATA_KEY = b"seta_stream.loss_table"

SNAPSHOT_SCHEMA = pa.schema(
    [
        ("sample_id", pa.int64()),
        ("loss", pa.float32()),
        ("visits", pa.uint32()),
        ("last_epoch", pa.int32()),
        ("group", pa.int8()),
        ("selected", pa.bool_()),
        ("weight", pa.float32()),
        ("step", pa.int64()),
    ]
)
HISTORY_SCHEMA = pa.schema(
    [
        ("epoch", pa.int32()),
        ("sample_id", pa.int64()),
        ("loss", pa.float32()),
        ("group", pa.int8()),
        ("selected", pa.bool_()),
        ("weight", pa.float32()),
        ("step", pa.int64()),
    ]
)
SUMMARY_SCHEMA = pa.schema(
    [
        ("epoch", pa.int32()),
        ("phase", pa.large_string()),
        ("group", pa.int8()),
        ("count", pa.int64()),
        ("seen", pa.int64()),
        ("loss_min", pa.float32()),
        ("loss_mean", pa.float64()),
        ("loss_max", pa.float32()),
        ("selected", pa.int64()),
        ("window_start", pa.int32()),
        ("window_stop", pa.int32()),
        ("num_samples", pa.int64()),
        ("kept_fraction", pa.float64()),
    ]
)
HISTOGRAM_SCHEMA = pa.schema(
    [
        ("epoch", pa.int32()),
        ("group", pa.int8()),
        ("bin", pa.int16()),
        ("lo", pa.float32()),
        ("hi", pa.float32()),
        ("count", pa.int64()),
    ]
)
KEY_FIELD = pa.field("key", pa.large_string())

# Dictionary encoding only where values repeat: on losses and ids it is tried and abandoned on
# every page, which costs a third of the write time.
WRITE_OPTIONS: dict[str, Any] = {
    "use_dictionary": ["epoch", "last_epoch", "group", "phase", "visits", "weight"],
    "column_encoding": {"sample_id": "DELTA_BINARY_PACKED", "loss": "BYTE_STREAM_SPLIT"},
    "compression": "zstd",
}


def keyed(schema: pa.Schema) -> pa.Schema:
    """`schema` with the `key` column after `sample_id`, as tables made before keys were
    dropped have it (`keys.parquet`)."""
    return schema.insert(schema.get_field_index("sample_id") + 1, KEY_FIELD)


def with_metadata(schema: pa.Schema, kind: str, **fields: Any) -> pa.Schema:
    payload = {"kind": kind, "version": TABLE_VERSION, **fields}
    return schema.with_metadata({METADATA_KEY: json.dumps(payload).encode()})


def file_metadata(path: Path, kind: str | None = None, *, source: Any = None) -> dict[str, Any]:
    """The `seta_stream.loss_table` metadata of a Parquet file, its version checked.

    `source`: an open file of `path` to read instead (one open: the writer may replace the
    file between two opens of the path)."""
    try:
        raw = pq.read_schema(path if source is None else source).metadata or {}
    except FileNotFoundError:
        raise LossTableError(f"{path}: file not found") from None
    except (OSError, pa.ArrowException) as e:
        raise LossTableError(f"{path}: not a readable Parquet file: {e}") from e
    if METADATA_KEY not in raw:
        raise LossTableError(f"{path}: no {METADATA_KEY.decode()} metadata; not a loss table file")
    meta: dict[str, Any] = json.loads(raw[METADATA_KEY])
    check_version(meta.get("version"), path)
    if kind is not None and meta.get("kind") != kind:
        raise LossTableError(f"{path}: holds {meta.get('kind')!r} data, expected {kind!r}")
    return meta


@contextlib.contextmanager
def _open_checked(path: Path, kind: str) -> Iterator[BinaryIO]:
    """`path` open for reading, its kind and version checked, positioned at its start."""
    try:
        f = open(path, "rb")  # noqa: SIM115  # closed below
    except FileNotFoundError:
        raise LossTableError(f"{path}: file not found") from None
    with f:
        file_metadata(path, kind, source=f)
        f.seek(0)
        yield f


def read_checked(path: Path, kind: str, columns: list[str] | None = None) -> pa.Table:
    """Read a loss-table Parquet file after checking its kind and version (one open file, so
    a snapshot replaced meanwhile is read whole, old or new, never a mix)."""
    with _open_checked(path, kind) as f:
        return pq.read_table(f, columns=columns)


def read_column_into(path: Path, kind: str, column: str, out: np.ndarray[Any, Any]) -> None:
    """Fill `out` (one value per row, nulls as NaN) with `column` of a loss-table Parquet file,
    a row group at a time: no second N-sized copy."""
    with _open_checked(path, kind) as f:
        parquet = pq.ParquetFile(f)
        if parquet.metadata.num_rows != out.size:
            raise LossTableError(
                f"{path} has {parquet.metadata.num_rows} rows, but the table has {out.size} samples"
            )
        at = 0
        for i in range(parquet.num_row_groups):
            values = parquet.read_row_group(i, columns=[column]).column(0)
            part = values.to_numpy()  # a float column: nulls come back as NaN
            out[at : at + part.size] = part
            at += part.size


def check_files(root: Path, num_samples: int) -> list[str]:
    """Check every Parquet file's kind and version (raises); return the snapshot's problems."""
    found = []
    snapshot = root / "losses.parquet"
    if snapshot.exists():
        file_metadata(snapshot, "snapshot")
        rows = pq.read_metadata(snapshot).num_rows
        if rows != num_samples:
            found.append(f"{snapshot} has {rows} rows, expected {num_samples}")
    for kind in ("history", "summary"):
        for path in sorted((root / kind).glob("*.parquet")):
            file_metadata(path, kind)
    return found


def check_keys_file(path: Path, num_samples: int) -> None:
    file_metadata(path, "keys")
    rows = pq.read_metadata(path).num_rows
    if rows != num_samples:
        raise LossTableError(f"{path} holds {rows} keys for a table of {num_samples} samples")


class KeySource:
    """The keys of a table made before keys were dropped, in sample_id order, handed out in
    consecutive slices."""

    def __init__(self, path: Path, chunk_rows: int) -> None:
        self._batches = pq.ParquetFile(path).iter_batches(batch_size=chunk_rows, columns=["key"])
        self._buf: pa.Array = pa.array([], pa.large_string())

    def next(self, n: int) -> pa.Array:
        parts: list[pa.Array] = []
        while n > 0:
            if len(self._buf) == 0:
                self._buf = next(self._batches).column(0)
            part = self._buf.slice(0, n)
            parts.append(part)
            self._buf = self._buf.slice(len(part))
            n -= len(part)
        return parts[0] if len(parts) == 1 else pa.concat_arrays(parts)
