"""The writer side of the index: one shard's rows at a time, its file written when it is done.

`convert`, `index_tars` and `merge` hold a `ShardRows` per shard being written (or scanned)
and hand it to `IndexFiles.write` as soon as the shard is finished: no process keeps a Python
object per sample of the whole dataset, only the shards' `ShardInfo` for the manifest, which
is written last. The files are those `shardindex.write_index_files` cuts from a whole table.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import pyarrow as pa

from seta_stream.errors import ShardFormatError, SourceError
from seta_stream.shards.index import MEMBER_TYPE
from seta_stream.shards.manifest import ShardInfo
from seta_stream.shards.shardindex import write_shard_index
from seta_stream.storage import Store


class ShardRows:
    """One shard's index rows, collected while the shard is written or scanned."""

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.offset: list[int] = []
        self.length: list[int] = []
        self.mstart: list[int] = [0]
        self.mname: list[str] = []
        self.moffset: list[int] = []
        self.msize: list[int] = []
        self.meta: list[dict[str, object]] = []

    def __len__(self) -> int:
        return len(self.keys)

    def add(
        self,
        *,
        key: str,
        offset: int,
        length: int,
        members: Sequence[tuple[str, int, int]],
        meta: dict[str, object] | None = None,
    ) -> None:
        self.keys.append(key)
        self.offset.append(offset)
        self.length.append(length)
        for name, off, size in members:
            self.mname.append(name)
            self.moffset.append(off)
            self.msize.append(size)
        self.mstart.append(len(self.mname))
        self.meta.append(meta or {})

    def table(
        self, metadata_columns: Sequence[str] = (), types: dict[str, pa.DataType] | None = None
    ) -> pa.Table:
        """The shard's index table (columns as in its index file); a metadata column takes
        its type from `types` where given (the type earlier shards' files have)."""
        members = pa.ListArray.from_arrays(
            pa.array(self.mstart, pa.int32()),
            pa.StructArray.from_arrays(
                [
                    _strings(self.mname, "field"),
                    pa.array(self.moffset, pa.int64()),
                    pa.array(self.msize, pa.int64()),
                ],
                fields=list(MEMBER_TYPE),
            ),
        )
        cols: dict[str, pa.Array] = {
            "key": _strings(self.keys, "key"),
            "offset": pa.array(self.offset, pa.int64()),
            "length": pa.array(self.length, pa.int64()),
            "members": members,
        }
        for col in metadata_columns:
            cols[col] = _meta_array([m.get(col) for m in self.meta], col, (types or {}).get(col))
        return pa.table(cols)


class IndexFiles:
    """Writes each shard's index file as soon as the shard is finished.

    The first shard with values fixes a metadata column's type; later shards' values are
    written as that type, so every file of the dataset has one schema.
    """

    def __init__(self, store: Store, metadata_columns: Sequence[str] = ()) -> None:
        self.store = store
        self.metadata_columns = tuple(metadata_columns)
        self.types: dict[str, pa.DataType] = {}

    def write(self, info: ShardInfo, rows: ShardRows) -> ShardInfo:
        """Write `rows` as shard `info`'s index file; `info` with the file's sha256."""
        table = rows.table(self.metadata_columns, self.types)
        for col in self.metadata_columns:
            if not pa.types.is_null(table[col].type):
                self.types.setdefault(col, table[col].type)
        sha = write_shard_index(self.store, info.name, table)
        return dataclasses.replace(info, index_sha256=sha)


def _meta_array(values: list[object], col: str, want: pa.DataType | None) -> pa.Array:
    arr = pa.array(values)
    if want is None or arr.type == want:
        return arr
    try:
        return arr.cast(want) if pa.types.is_null(arr.type) else pa.array(values, want)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        raise SourceError(
            f"metadata column {col!r}: values of type {arr.type} after earlier shards' "
            f"{want}; give the column one type in the source"
        ) from e


def _strings(values: list[str], what: str) -> pa.Array:
    try:
        return pa.array(values, pa.string())
    except UnicodeEncodeError as e:
        bad = next(v for v in values if not _is_utf8(v))
        raise ShardFormatError(
            f"{what} {bad!r} is not valid UTF-8 (a tar member name in another encoding); "
            "rename the member or re-shard the data with UTF-8 names"
        ) from e


def _is_utf8(v: str) -> bool:
    try:
        v.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
