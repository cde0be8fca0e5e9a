"""Tables as a conversion source: Parquet, CSV and JSON-lines, read with polars.

Each column becomes a field named by its type: strings `COL.txt`, integers and booleans
`COL.cls` (decimal text, as WebDataset's class fields), floats `COL.txt`, binary `COL.bin`,
lists and structs `COL.json`. A column named with `path_columns` holds file paths (relative to
the table's folder) whose contents are read in as `COL.EXT`, EXT the file's extension. Scalar
columns are also kept as index metadata; an integer `label` column becomes the label.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import polars as pl

from seta_stream.errors import SourceError
from seta_stream.shards.sourcebase import LABEL_NAMES, Sample, Source, read_file
from seta_stream.shards.writer import check_key

_READERS: dict[str, Any] = {
    ".parquet": pl.read_parquet,
    ".csv": pl.read_csv,
    ".jsonl": pl.read_ndjson,
    ".ndjson": pl.read_ndjson,
}


class TableSource(Source):
    def __init__(
        self,
        path: str,
        *,
        key_column: str | None = None,
        path_columns: Sequence[str] = (),
        label: str | None = None,
    ):
        self.path = path
        ext = os.path.splitext(path)[1].lower()
        try:
            df = _READERS[ext](path)
        except Exception as e:
            raise SourceError(f"{path}: cannot read table ({e})") from e
        missing = [c for c in [key_column, label, *path_columns] if c and c not in df.columns]
        if missing:
            raise SourceError(f"{path}: no columns {missing}; the table has {df.columns}")
        self.key_column = key_column or next(
            (c for c in ("__key__", "key") if c in df.columns), None
        )
        self.path_columns = tuple(path_columns)
        self.base = os.path.dirname(os.path.abspath(path))
        scalar: tuple[Any, ...] = (pl.Int8, pl.Int16, pl.Int32, pl.Int64, pl.UInt8, pl.UInt16)
        scalar += (pl.UInt32, pl.UInt64, pl.Float32, pl.Float64, pl.Boolean, pl.String)
        self.metadata_columns = tuple(
            c
            for c in df.columns
            if c not in (self.key_column, *self.path_columns) and df.schema[c] in scalar
        )
        ints = [c for c in self.metadata_columns if df.schema[c].is_integer()]
        self.label = label or next((c for c in LABEL_NAMES if c in ints), None)
        if self.label and self.label != "label":
            self.metadata_columns += ("label",)
        self.kinds = {c: _kind(df.schema[c]) for c in df.columns if c != self.key_column}
        self.rows = df.to_dicts()
        self.fields = tuple(
            sorted(f"{c}.{k}" for c, k in self.kinds.items() if c not in self.path_columns)
        )
        for c in self.path_columns:
            exts = {os.path.splitext(str(r[c]))[1].lstrip(".").lower() or "bin" for r in self.rows}
            self.fields += tuple(sorted(f"{c}.{e}" for e in exts))
        self.description = f"table {path} ({len(self.rows)} rows, columns {df.columns})"

    def __len__(self) -> int:
        return len(self.rows)

    def load(self, i: int) -> Sample:
        row = self.rows[i]
        key = str(row[self.key_column]) if self.key_column else f"{i:09d}"
        check_key(key)
        fields: list[tuple[str, bytes]] = []
        for col, kind in self.kinds.items():
            value = row[col]
            if value is None:
                continue
            if col in self.path_columns:
                file = os.path.join(self.base, str(value))
                ext = os.path.splitext(file)[1].lstrip(".").lower() or "bin"
                fields.append((f"{col}.{ext}", read_file(file)))
            else:
                fields.append((f"{col}.{kind}", _encode(value, kind)))
        meta: dict[str, Any] = {c: row[c] for c in self.metadata_columns if c in row}
        if self.label:
            meta["label"] = row[self.label]
        return Sample(key=key, fields=fields, meta=meta)


def _kind(dtype: pl.DataType) -> str:
    if dtype == pl.Binary:
        return "bin"
    if dtype.is_integer() or dtype == pl.Boolean:
        return "cls"
    if dtype in (pl.String, pl.Float32, pl.Float64):
        return "txt"
    return "json"


def _encode(value: Any, kind: str) -> bytes:
    if kind == "bin":
        return bytes(value)
    if kind == "cls":
        return str(int(value)).encode()
    if kind == "txt":
        return (value if isinstance(value, str) else repr(value)).encode()
    return json.dumps(value).encode()
