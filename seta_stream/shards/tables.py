"""Tables as a conversion source: Parquet, CSV and JSON-lines files, a folder of Parquet files,
or a `datasets.Dataset.save_to_disk` folder (see `tableread`), read with polars.

Each column becomes a field named by its type: strings `COL.txt`, integers and booleans
`COL.cls` (decimal text, as WebDataset's class fields), floats `COL.txt`, lists and structs of
those `COL.json`. Bytes are files: a binary column, or a struct `{bytes, path}` (how Hugging
Face `datasets` stores its `Image`, `Audio` and `Video` features), becomes `COL.EXT`, EXT the
type its first bytes show (`jpg`, `png`, `webp`, `gif`, `wav`, `flac`, `mp3`, `ogg`, `mp4`,
else `bin`; see `magic.sniff`), so the default decoder decodes `image.png` as an image; the
struct's `path` is kept as the string metadata column `COL_path`. A column named with
`path_columns` holds file paths (relative to the table's folder) whose contents are read in as
`COL.EXT`, EXT the file's extension. Scalar columns are also kept as index metadata; an
integer `label` column becomes the label (a `ClassLabel`'s names go to the manifest's
`classes`). Any other column type (dates, decimals, bytes inside lists) is refused up front,
naming the column.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import polars as pl
from polars.datatypes import DataTypeClass

from seta_stream.errors import SourceError
from seta_stream.shards.magic import sniff
from seta_stream.shards.sourcebase import LABEL_NAMES, Sample, Source, read_file
from seta_stream.shards.tableread import class_names, read_table
from seta_stream.shards.writer import check_key

_SCALARS: tuple[Any, ...] = (pl.Int8, pl.Int16, pl.Int32, pl.Int64, pl.UInt8, pl.UInt16)
_SCALARS += (pl.UInt32, pl.UInt64, pl.Float32, pl.Float64, pl.Boolean, pl.String)
_BYTES = ("bin", "file")  # kinds whose field extension is sniffed from each value


class TableSource(Source):
    def __init__(
        self,
        path: str,
        *,
        key_column: str | None = None,
        path_columns: Sequence[str] = (),
        label: str | None = None,
    ):
        df, features = read_table(path)
        self._setup(
            path, df, features, key_column=key_column, path_columns=path_columns, label=label
        )

    @classmethod
    def from_frame(
        cls,
        df: pl.DataFrame,
        *,
        where: str,
        key_column: str | None = None,
        label: str | None = None,
        features: dict[str, Any] | None = None,
    ) -> TableSource:
        """The rows of an in-memory table (a Ray Data block), mapped to fields as a table file's
        are; `where` names it in messages. File-path columns are not taken here."""
        self = cls.__new__(cls)
        self._setup(where, df, features or {}, key_column=key_column, path_columns=(), label=label)
        return self

    def _setup(
        self,
        path: str,
        df: pl.DataFrame,
        features: dict[str, Any],
        *,
        key_column: str | None,
        path_columns: Sequence[str],
        label: str | None,
    ) -> None:
        self.path = path
        missing = [c for c in [key_column, label, *path_columns] if c and c not in df.columns]
        if missing:
            raise SourceError(f"{path}: no columns {missing}; the table has {df.columns}")
        self.key_column = key_column or next(
            (c for c in ("__key__", "key") if c in df.columns), None
        )
        self.path_columns = tuple(path_columns)
        full = os.path.abspath(path)
        self.base = full if os.path.isdir(full) else os.path.dirname(full)
        self.kinds = {c: _kind(df.schema[c], c, path) for c in df.columns if c != self.key_column}
        self.metadata_columns = tuple(
            c
            for c in df.columns
            if c not in (self.key_column, *self.path_columns) and df.schema[c] in _SCALARS
        )
        files = [c for c, k in self.kinds.items() if k == "file"]
        clash = [f"{c}_path" for c in files if f"{c}_path" in df.columns]
        if clash:
            raise SourceError(f"{path}: columns {clash} would clash with the image/audio paths")
        self.metadata_columns += tuple(f"{c}_path" for c in files)
        ints = [c for c in self.metadata_columns if c in df.columns and df.schema[c].is_integer()]
        self.label = label or next((c for c in LABEL_NAMES if c in ints), None)
        if self.label and self.label != "label":
            self.metadata_columns += ("label",)
        names = class_names(features, self.label) if self.label else None
        self.extra = {"classes": names} if names else {}
        self.rows = df.to_dicts()
        self.exts = {c: self._sniff_column(c) for c, k in self.kinds.items() if k in _BYTES}
        self.fields = tuple(
            sorted(
                f"{c}.{k}"
                for c, k in self.kinds.items()
                if c not in self.path_columns and k not in _BYTES
            )
        )
        for c, exts in self.exts.items():
            self.fields += tuple(sorted({f"{c}.{e}" for e in exts if e}))
        for c in self.path_columns:
            exts2 = {os.path.splitext(str(r[c]))[1].lstrip(".").lower() or "bin" for r in self.rows}
            self.fields += tuple(sorted(f"{c}.{e}" for e in exts2))
        self.description = f"table {path} ({len(self.rows)} rows, columns {df.columns})"

    def _sniff_column(self, col: str) -> list[str | None]:
        """Each row's extension for bytes column `col` (None where it has no bytes)."""
        exts: list[str | None] = []
        for i, row in enumerate(self.rows):
            data = _bytes_of(row[col], self.kinds[col])
            if data is None and self.kinds[col] == "file" and (row[col] or {}).get("path"):
                raise SourceError(
                    f"{self.path}: row {i} column {col!r} has no bytes, only the path "
                    f"{row[col]['path']!r}; write the table with the files embedded "
                    "(datasets: embed_external_files=True)"
                )
            exts.append(None if data is None else sniff(data))
        return exts

    def __len__(self) -> int:
        return len(self.rows)

    def load(self, i: int) -> Sample:
        row = self.rows[i]
        key = str(row[self.key_column]) if self.key_column else f"{i:09d}"
        check_key(key)
        fields: list[tuple[str, bytes]] = []
        meta: dict[str, Any] = {c: row[c] for c in self.metadata_columns if c in row}
        for col, kind in self.kinds.items():
            value = row[col]
            if kind == "file":
                meta[f"{col}_path"] = value.get("path") if value else None
            if value is None:
                continue
            if col in self.path_columns:
                file = os.path.join(self.base, str(value))
                ext = os.path.splitext(file)[1].lstrip(".").lower() or "bin"
                fields.append((f"{col}.{ext}", read_file(file)))
            elif kind in _BYTES:
                data = _bytes_of(value, kind)
                if data is not None:
                    fields.append((f"{col}.{self.exts[col][i]}", data))
            else:
                fields.append((f"{col}.{kind}", _encode(value, kind)))
        if self.label:
            meta["label"] = row[self.label]
        return Sample(key=key, fields=fields, meta=meta)


def _is_file_struct(dtype: pl.DataType) -> bool:
    """A `datasets` Image/Audio/Video column: a struct of `bytes` (binary) and `path` (string)."""
    if not isinstance(dtype, pl.Struct):
        return False
    return {f.name: f.dtype for f in dtype.fields} == {"bytes": pl.Binary, "path": pl.String}


def _jsonable(dtype: pl.DataType | DataTypeClass) -> bool:
    if dtype.is_integer() or dtype.is_float() or dtype in (pl.Boolean, pl.String, pl.Null):
        return True
    if isinstance(dtype, pl.List | pl.Array):
        return _jsonable(dtype.inner)
    if isinstance(dtype, pl.Struct):
        return all(_jsonable(f.dtype) for f in dtype.fields)
    return False


def _kind(dtype: pl.DataType, col: str, where: str) -> str:
    if dtype == pl.Binary:
        return "bin"
    if _is_file_struct(dtype):
        return "file"
    if dtype.is_integer() or dtype == pl.Boolean:
        return "cls"
    if dtype in (pl.String, pl.Float32, pl.Float64, pl.Categorical, pl.Enum):
        return "txt"
    if _jsonable(dtype):
        return "json"
    raise SourceError(
        f"{where}: column {col!r} has type {dtype}, which convert cannot write (it takes "
        "numbers, booleans, strings, binary, a {bytes, path} struct as datasets' Image/Audio, "
        "and lists/structs of numbers, booleans and strings); drop or cast that column"
    )


def _bytes_of(value: Any, kind: str) -> bytes | None:
    if value is None:
        return None
    data = value.get("bytes") if kind == "file" else value
    return None if data is None else bytes(data)


def _encode(value: Any, kind: str) -> bytes:
    if kind == "cls":
        return str(int(value)).encode()
    if kind == "txt":
        return (value if isinstance(value, str) else repr(value)).encode()
    return json.dumps(value).encode()
