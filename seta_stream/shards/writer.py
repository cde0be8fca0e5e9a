"""Shard writers: deterministic WebDataset tar, and Arrow IPC with one row per sample.

Both return, per sample, the byte ranges that go into `index.parquet`. Members are written
with fixed metadata (mtime 0, uid/gid 0, mode 0644, no user names), so the same input gives
the same bytes, and with integer mtimes no pax header is needed for plain ASCII names.
"""

from __future__ import annotations

import hashlib
import tarfile
from typing import IO, Protocol

import pyarrow as pa
import pyarrow.ipc as ipc

from seta_stream.errors import SourceError

BLOCK = 512
RECORD = 20 * BLOCK  # tar's record size; tarfile and GNU tar pad archives to it

Members = list[tuple[str, int, int]]  # (field, absolute data offset, size)


def check_key(key: str) -> None:
    """A key must survive WebDataset's split of `KEY.EXT`: no dot in its last path part."""
    base = key.rsplit("/", 1)[-1]
    if not key or not base or "." in base or "\x00" in key or ".." in key.split("/"):
        raise SourceError(
            f"sample key {key!r} cannot be a WebDataset key (it needs a non-empty last part "
            "without dots, no '..' parts and no NUL); pass another key column"
        )


def _tarinfo_header(name: str, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = 0
    info.mode = 0o644
    info.uname = info.gname = ""
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


_TEMPLATE = _tarinfo_header("", 0)


def member_header(name: str, size: int) -> bytes:
    """The header block(s) `tarfile` writes for a regular member with our fixed metadata.

    For the common case (ASCII name of at most 100 bytes, size below 8 GiB) tarfile's own
    header for an empty name is patched with the name, the size and the checksum: the same
    bytes (a test checks it), at a twentieth of the cost. Anything else goes to tarfile.
    """
    raw = name.encode("utf-8", "surrogateescape")
    if len(raw) > 100 or not raw.isascii() or size >= 8**11:
        return _tarinfo_header(name, size)
    h = bytearray(_TEMPLATE)
    h[0 : len(raw)] = raw
    h[124:136] = b"%011o\0" % size
    h[148:156] = b"        "
    h[148:156] = b"%06o\0 " % sum(h)
    return bytes(h)


class ShardWriter(Protocol):
    pos: int  # bytes written so far

    def add(self, key: str, fields: list[tuple[str, bytes]]) -> tuple[int, int, Members]: ...
    def finish(self) -> str: ...


class TarWriter:
    """Appends samples as `KEY.FIELD` members to a binary file; `finish()` returns sha256."""

    def __init__(self, f: IO[bytes]):
        self._f = f
        self._hash = hashlib.sha256()
        self.pos = 0

    def _write(self, data: bytes | memoryview) -> None:
        self._f.write(data)
        self._hash.update(data)
        self.pos += len(data)

    def add(self, key: str, fields: list[tuple[str, bytes]]) -> tuple[int, int, Members]:
        start = self.pos
        members: Members = []
        for field, data in fields:
            self._write(member_header(f"{key}.{field}", len(data)))
            members.append((field, self.pos, len(data)))
            self._write(data)
            if len(data) % BLOCK:
                self._write(bytes(BLOCK - len(data) % BLOCK))
        return start, self.pos - start, members

    def finish(self) -> str:
        end = self.pos + 2 * BLOCK
        self._write(bytes(2 * BLOCK + (-end) % RECORD))
        return self._hash.hexdigest()


class ArrowWriter:
    """Buffers a shard's rows, then writes one Arrow IPC file (uncompressed, so rows map).

    One `binary` column per field plus `__key__`. After writing, the absolute file offset of
    every value is taken from the buffers' addresses, so the index can read a field by range
    exactly as for tar.
    """

    BATCH_ROWS = 1024

    def __init__(self, f: IO[bytes], fields: tuple[str, ...]):
        self._f = f
        self._fields = fields
        self._keys: list[str] = []
        self._cols: dict[str, list[bytes | None]] = {name: [] for name in fields}
        self._members: list[Members] = []
        self.pos = 0

    def add(self, key: str, fields: list[tuple[str, bytes]]) -> tuple[int, int, Members]:
        row = len(self._keys)
        given = dict(fields)
        unknown = set(given) - set(self._fields)
        if unknown:
            raise SourceError(f"sample {key!r}: fields {sorted(unknown)} not in {self._fields}")
        self._keys.append(key)
        for name in self._fields:
            self._cols[name].append(given.get(name))
        return row, sum(len(v) for v in given.values()), []

    def finish(self) -> str:
        schema = pa.schema(
            [("__key__", pa.string())] + [(name, pa.binary()) for name in self._fields]
        )
        sink = pa.BufferOutputStream()
        with ipc.new_file(sink, schema) as w:
            for a in range(0, max(len(self._keys), 1), self.BATCH_ROWS):
                b = a + self.BATCH_ROWS
                arrays = [pa.array(self._keys[a:b], pa.string())]
                arrays += [pa.array(self._cols[n][a:b], pa.binary()) for n in self._fields]
                w.write_batch(pa.record_batch(arrays, schema=schema))
        buf = sink.getvalue()
        self.row_members = _value_offsets(buf, self._fields)
        self._f.write(buf)
        self.pos = buf.size
        return hashlib.sha256(buf).hexdigest()


def _value_offsets(buf: pa.Buffer, fields: tuple[str, ...]) -> list[Members]:
    """Per row: (field, absolute offset in the file, size) of each non-null value."""
    base = buf.address
    rows: list[Members] = []
    reader = ipc.open_file(pa.BufferReader(buf))
    for b in range(reader.num_record_batches):
        batch = reader.get_batch(b)
        cols = []
        for name in fields:
            arr = batch.column(name)
            _, offs_buf, data_buf = arr.buffers()
            offs = memoryview(offs_buf).cast("i")[arr.offset : arr.offset + len(arr) + 1]
            # a column of empty values may have a data buffer that is not in `buf`
            data_at = data_buf.address - base if data_buf is not None and data_buf.size else 0
            valid = arr.is_valid().to_numpy(zero_copy_only=False)
            cols.append((name, valid, offs, data_at))
        for r in range(batch.num_rows):
            members: Members = []
            for name, valid, offs, data_at in cols:
                if valid[r]:
                    members.append((name, data_at + offs[r], offs[r + 1] - offs[r]))
            rows.append(members)
    return rows
