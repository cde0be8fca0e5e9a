"""`index.parquet`: one row per sample, the byte ranges that let us read it alone.

| column | type | meaning |
|---|---|---|
| `sample_id` | int64 | 0..N-1 in shard order: the sample's identity (keys may repeat) |
| `key` | string | the WebDataset key |
| `shard` | int32 | position of the shard in `dataset.json`'s `shards` |
| `offset` | int64 | tar: first header byte of the sample's first member; arrow: row in the shard |
| `length` | int64 | tar: bytes to the end of the last member's padded data; arrow: the bytes |
| `members` | list<struct<name, offset, size>> | per member: field name as stored (`x.npy.zst`), |
| | | absolute data offset in the shard file, size |
| metadata… | | columns the source provides (`label` int64 when it has classes) |

In memory a `SampleIndex` holds these as flat numpy arrays (the members flattened with a
start array, CSR-style), so the read path never touches a Python object per sample.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from seta_stream.errors import ManifestError

INDEX_COLUMNS = ("sample_id", "key", "shard", "offset", "length", "members")
MEMBER_TYPE = pa.struct([("name", pa.string()), ("offset", pa.int64()), ("size", pa.int64())])


def write_index(table: pa.Table, where: object) -> None:
    """Write the index table to a path or binary file object."""
    pq.write_table(table, where, compression="zstd", row_group_size=1 << 20)


@dataclass(frozen=True, kw_only=True)
class SampleIndex:
    """The index as flat numpy arrays; `members_of(i)` slices one sample's members."""

    keys: pa.Array
    shard: np.ndarray  # int32 [N]
    offset: np.ndarray  # int64 [N]
    length: np.ndarray  # int64 [N]
    mstart: np.ndarray  # int64 [N+1]
    mfield: np.ndarray  # int32 [M]: code into field_names
    moffset: np.ndarray  # int64 [M]
    msize: np.ndarray  # int64 [M]
    field_names: tuple[str, ...]

    @property
    def num_samples(self) -> int:
        return len(self.offset)

    @classmethod
    def from_table(cls, table: pa.Table, *, source: str) -> SampleIndex:
        """The index in `table` (a whole `index.parquet`), its types and sample ids checked;
        the byte ranges are checked by the caller (`indexcheck.check_index`), which has the
        manifest."""
        cols = _typed_columns(table, source, _COLUMN_TYPES)
        n = table.num_rows
        ids = cols["sample_id"].to_numpy()
        if n and not np.array_equal(ids, np.arange(n, dtype=ids.dtype)):
            first = int(np.flatnonzero(ids != np.arange(n))[0])
            raise ManifestError(
                f"{source}: sample_id at row {first} is {ids[first]}, expected {first}"
            )
        return cls._from_columns(cols, cols["shard"].to_numpy().astype(np.int32), source)

    @classmethod
    def from_shard_table(cls, table: pa.Table, *, source: str, shard: int) -> SampleIndex:
        """One shard's index file (`seta_stream.shards.shardindex`), types checked; the
        ranges are checked by the caller, which knows the shard's place in the dataset."""
        cols = _typed_columns(table, source, _SHARD_COLUMN_TYPES)
        return cls._from_columns(cols, np.full(table.num_rows, shard, np.int32), source)

    @classmethod
    def _from_columns(
        cls, cols: dict[str, pa.ChunkedArray], shard: np.ndarray, source: str
    ) -> SampleIndex:
        n = len(shard)
        members = cols["members"].combine_chunks()
        if n:
            flat = members.flatten()
            start = members.offsets.to_numpy().astype(np.int64)
            start = start - start[0]
        else:
            flat = pa.array([], MEMBER_TYPE)
            start = np.zeros(1, np.int64)
        for name in ("name", "offset", "size"):
            if flat.field(name).null_count:
                row = int(np.searchsorted(start, _first_null(flat.field(name)), "right")) - 1
                raise ManifestError(f"{source}: sample {row} has a member with a null {name}")
        names = flat.field("name").dictionary_encode()
        _check_field_names(names.dictionary.to_pylist(), source)
        return cls(
            keys=cols["key"].combine_chunks(),
            shard=shard,
            offset=cols["offset"].to_numpy().astype(np.int64),
            length=cols["length"].to_numpy().astype(np.int64),
            mstart=start,
            mfield=names.indices.to_numpy(zero_copy_only=False).astype(np.int32),
            moffset=flat.field("offset").to_numpy(zero_copy_only=False).astype(np.int64),
            msize=flat.field("size").to_numpy(zero_copy_only=False).astype(np.int64),
            field_names=tuple(names.dictionary.to_pylist()),
        )

    def rows(self, a: int, b: int) -> SampleIndex:
        """Rows `a:b` as a `SampleIndex` of views (no copy but the shifted member starts)."""
        m0, m1 = int(self.mstart[a]), int(self.mstart[b])
        return SampleIndex(
            keys=self.keys.slice(a, b - a),
            shard=self.shard[a:b],
            offset=self.offset[a:b],
            length=self.length[a:b],
            mstart=self.mstart[a : b + 1] - m0,
            mfield=self.mfield[m0:m1],
            moffset=self.moffset[m0:m1],
            msize=self.msize[m0:m1],
            field_names=self.field_names,
        )

    def members_of(self, i: int) -> tuple[list[str], np.ndarray, np.ndarray]:
        a, b = self.mstart[i], self.mstart[i + 1]
        names = [self.field_names[c] for c in self.mfield[a:b]]
        return names, self.moffset[a:b], self.msize[a:b]

    def selected_bytes(self, ids: np.ndarray) -> int:
        """Bytes of the members of the given samples (what an exact reader must read)."""
        ids = np.asarray(ids, dtype=np.int64)
        counts = self.mstart[ids + 1] - self.mstart[ids]
        rows = np.repeat(self.mstart[ids], counts) + concat_aranges(counts)
        return int(self.msize[rows].sum())


def concat_aranges(counts: np.ndarray) -> np.ndarray:
    """Concatenated aranges: counts [2, 3] -> [0, 1, 0, 1, 2]."""
    c = counts[counts > 0]
    if c.size == 0:
        return np.zeros(0, np.int64)
    out = np.ones(int(c.sum()), np.int64)
    out[0] = 0
    out[np.cumsum(c)[:-1]] = 1 - c[:-1]
    return np.cumsum(out)


def read_index_table(data: bytes | pa.NativeFile, *, source: str) -> pa.Table:
    """The index table, its schema names and strings checked to be valid UTF-8."""
    try:
        table = pq.read_table(pa.BufferReader(data) if isinstance(data, bytes) else data)
        str(table.schema)  # decodes every (nested) field name: a damaged footer fails here
        table.validate(full=True)  # string values too (the reader would fail per sample)
    except (pa.ArrowException, OSError, UnicodeDecodeError) as e:
        raise ManifestError(f"{source}: unreadable index ({e})") from e
    return table


# column -> the type it is read as; numbers must be integers (cast safely: no overflow)
_COLUMN_TYPES = {
    "sample_id": pa.int64(),
    "key": pa.string(),
    "shard": pa.int32(),
    "offset": pa.int64(),
    "length": pa.int64(),
    "members": pa.list_(MEMBER_TYPE),
}


_SHARD_COLUMN_TYPES = {k: v for k, v in _COLUMN_TYPES.items() if k not in ("sample_id", "shard")}


def _typed_columns(
    table: pa.Table, source: str, types: dict[str, pa.DataType]
) -> dict[str, pa.ChunkedArray]:
    missing = [c for c in types if c not in table.column_names]
    if missing:
        raise ManifestError(f"{source}: index lacks columns {missing}")
    out = {}
    for name, want in types.items():
        col = table.column(name)
        if col.null_count:
            raise ManifestError(f"{source}: sample {_first_null(col)} has a null {name!r}")
        if pa.types.is_integer(want) and not pa.types.is_integer(col.type):
            raise ManifestError(f"{source}: column {name!r} is {col.type}, expected integers")
        if name == "key" and not (
            pa.types.is_string(col.type) or pa.types.is_large_string(col.type)
        ):
            raise ManifestError(f"{source}: column 'key' is {col.type}, expected strings")
        try:
            out[name] = col.cast(want)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as e:
            raise ManifestError(
                f"{source}: column {name!r} of type {col.type} cannot be read as {want} ({e})"
            ) from e
    return out


def _check_field_names(names: list[str], source: str) -> None:
    """A member's field name is a WebDataset extension: `x.npy`, `cls`; never a path."""
    for name in names:
        if not name or "/" in name or "\x00" in name or (name[:2] == "__" and name[-2:] == "__"):
            raise ManifestError(
                f"{source}: member field name {name!r} is not a WebDataset field name "
                "(non-empty, no '/', no NUL, not __reserved__)"
            )


def _first_null(col: pa.Array | pa.ChunkedArray) -> int:
    return int(np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[0])
