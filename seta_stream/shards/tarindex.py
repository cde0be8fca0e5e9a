"""Index an existing WebDataset tar shard by reading its headers only.

`scan_tar` walks the tar with the standard library's `tarfile` (which seeks over member data)
and groups the members into samples exactly as WebDataset does (see `wdsname`): consecutive
regular files with the same key form one sample, a key seen again later starts another sample,
directories, links, meta paths and names without a key are skipped without ending a sample.
Each sample gets the byte range of its tar entries and, per field, the range of the data.

`tarfile` is lenient where an index must not be: it stops *silently* at a header with a bad
checksum, at a header cut by the end of the file, or at a pax header it cannot parse, and
WebDataset then yields the samples before that point as if the shard ended there. This module
instead raises `ShardFormatError` (naming the file, the member and the byte offset) unless the
walk ended at a proper end of archive. What counts as one, as GNU tar 1.34, `tarfile` and
WebDataset all accept:

- a zero block (normally two, then zero padding to a 10 KiB record), with only zero bytes after
  it up to the end of the file. Non-zero bytes after the marker (`cat a.tar b.tar`, or a header
  that was zeroed) are refused: tar and WebDataset would ignore every member after it;
- or the end of the file exactly at a block boundary after the last member (no marker at all).
  This is also what an upload or copy cut off between two members looks like, so it is
  logged as a warning (logger `seta_stream`, naming the file and the byte) and kept in
  `TarScan.warnings`; `index_tars(strict=True)` refuses it.
  A lone zero block before the end of the file is accepted too (GNU tar warns, exits 0).

Also refused: an empty file, a compressed tar (no byte ranges exist), a member whose data or
padding runs past the end of the file, a GNU sparse member (its bytes on disk are not its
content), member names with a `..` component or a NUL byte, a global pax header that renames or
resizes members, a field twice in one sample (WebDataset raises too), the field names
`__key__` / `__url__` / `__…__`, which WebDataset and seta_stream use for their own entries,
and an empty field name (`KEY.`: WebDataset yields field `''`, which no reader accepts).
Absolute names are kept as plain key strings; nothing here touches the file system.

Names are decoded as UTF-8 with `surrogateescape`, as WebDataset's `tarfile` does on a UTF-8
system, so a non-UTF-8 name gives the same key string as WebDataset (with lone surrogates).

`scan_shard` scans one shard of a `Store`: from an object store each header is one exact
ranged request (`remote.RangeFile`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import tarfile
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple, Protocol

from seta_stream.errors import ShardFormatError
from seta_stream.remote import RangeFile
from seta_stream.shards.wdsname import empty_field_message, is_skipped, split_name

if TYPE_CHECKING:
    from seta_stream.storage import Store

__all__ = ["TarMember", "TarSample", "TarScan", "scan_shard", "scan_tar"]

log = logging.getLogger("seta_stream")

BLOCK = tarfile.BLOCKSIZE
_TAIL_CHUNK = 1 << 16
_HASH_CHUNK = 1 << 20

# What a malformed header can make tarfile raise besides TarError (e.g. int() of a bad sparse
# map, indexing a short block, a base-256 number too large for an index).
_PARSE_ERRORS = (tarfile.TarError, ValueError, IndexError, OverflowError, EOFError)
_COMPRESSED = (
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bzip2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
)
# Global pax keys that would change the name or the data range of every later member.
_BAD_GLOBAL_KEYS = frozenset({"path", "linkpath", "size", "hdrcharset"})


class SeekableFile(Protocol):
    """A binary file opened for reading that can seek: `open(p, "rb")`, an fsspec file."""

    def read(self, size: int = ..., /) -> bytes: ...
    def seek(self, offset: int, whence: int = ..., /) -> int: ...
    def tell(self) -> int: ...


class TarMember(NamedTuple):
    """One field of a sample: its WebDataset field name and where its bytes lie."""

    ext: str
    data_offset: int
    size: int


@dataclass(frozen=True, kw_only=True, slots=True)
class TarSample:
    """A sample: bytes [offset, offset + length) hold all of its tar entries, headers included.

    The range can also hold entries WebDataset skips (a directory or link between two members
    of the sample); parsed alone, it gives the same sample.
    """

    key: str
    offset: int
    length: int
    members: tuple[TarMember, ...]


@dataclass(frozen=True, kw_only=True)
class TarScan:
    """The index of one shard.

    `num_members` counts every tar entry (files, directories, links, meta paths); `end_offset`
    is where the end-of-archive marker starts, or `size` when the file has none. `warnings`:
    what was accepted but may mean lost members (no end-of-archive marker), also logged.
    """

    name: str
    size: int
    num_members: int
    end_offset: int
    samples: tuple[TarSample, ...]
    sha256: str | None
    warnings: tuple[str, ...] = ()


def _padded(size: int) -> int:
    return -(-size // BLOCK) * BLOCK


class _ClampedReader:
    """Never reads past `size`: a corrupt size field must not make tarfile allocate gigabytes."""

    __slots__ = ("_f", "_pos", "_size")

    def __init__(self, f: SeekableFile, size: int) -> None:
        self._f = f
        self._size = size
        self._pos = f.tell()

    def read(self, n: int = -1, /) -> bytes:
        left = max(self._size - self._pos, 0)
        data = self._f.read(left if n < 0 or n > left else n)
        self._pos += len(data)
        return data

    def seek(self, offset: int, whence: int = os.SEEK_SET, /) -> int:
        self._pos = self._f.seek(offset, whence)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def write(self, b: bytes, /) -> int:
        raise OSError("read-only")

    def close(self) -> None:
        """The caller owns the file."""


class _Grouper:
    """WebDataset's `group_by_keys` over TarInfo records, keeping byte ranges instead of data."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.samples: list[TarSample] = []
        self._key: str | None = None
        self._offset = 0
        self._end = 0
        self._members: list[TarMember] = []
        self._exts: set[str] = set()

    def add(self, info: tarfile.TarInfo) -> None:
        path = info.name
        if not info.isreg() or is_skipped(path):
            return
        parts = split_name(path)
        if parts is None:
            return
        key, ext = parts
        if not ext:
            raise ShardFormatError(
                f"{self.name}: member {path!r} at byte {info.offset}: {empty_field_message(path)}"
            )
        if ext.startswith("__") and ext.endswith("__"):
            raise ShardFormatError(
                f"{self.name}: member {path!r} at byte {info.offset} has the field name {ext!r};"
                " names like __key__ are reserved for WebDataset's and seta_stream's own entries"
            )
        if key != self._key:
            self._flush()
            self._key, self._offset = key, info.offset
        elif ext in self._exts:
            raise ShardFormatError(
                f"{self.name}: member {path!r} at byte {info.offset} repeats field {ext!r} of"
                f" sample {key!r} (WebDataset raises on this too); give each field one member"
            )
        self._exts.add(ext)
        self._members.append(TarMember(ext, info.offset_data, info.size))
        self._end = info.offset_data + _padded(info.size)

    def finish(self) -> tuple[TarSample, ...]:
        self._flush()
        return tuple(self.samples)

    def _flush(self) -> None:
        if self._key is not None:
            self.samples.append(
                TarSample(
                    key=self._key,
                    offset=self._offset,
                    length=self._end - self._offset,
                    members=tuple(self._members),
                )
            )
        self._key = None
        self._members = []
        self._exts = set()


def scan_tar(
    fileobj: SeekableFile, *, name: str, size: int | None = None, checksum: bool = False
) -> TarScan:
    """Index the tar in `fileobj` (seekable, binary) by its headers; `name` is used in errors.

    `size` is the file size a listing reported; it is checked against the file. With
    `checksum=True` the whole file is read once more for its sha256.
    """
    actual = fileobj.seek(0, os.SEEK_END)
    if size is not None and size != actual:
        raise ShardFormatError(f"{name}: expected {size} bytes, the file has {actual}")
    fileobj.seek(0)
    reader = _ClampedReader(fileobj, actual)
    tar = _open(reader, name, actual)
    grouper = _Grouper(name)
    count = 0
    last: tarfile.TarInfo | None = None
    while (info := _next(tar, name, last)) is not None:
        # tarfile keeps every TarInfo in `members` (not in typeshed); drop them as webdataset does
        tar.members = []  # type: ignore[attr-defined]
        count += 1
        _check_member(info, name, tar.offset, actual)
        grouper.add(info)
        last = info
    _check_globals(tar, name)
    end = _check_end(tar, reader, name, actual, last)
    warnings: tuple[str, ...] = ()
    if end == actual:
        warnings = (_no_marker(name, actual, last),)
        log.warning("%s", warnings[0])
    digest = _sha256(fileobj, name, actual) if checksum else None
    return TarScan(
        name=name,
        size=actual,
        num_members=count,
        end_offset=end,
        samples=grouper.finish(),
        sha256=digest,
        warnings=warnings,
    )


def _no_marker(name: str, size: int, last: tarfile.TarInfo | None) -> str:
    return (
        f"{name}: no end-of-archive marker: the tar ends at byte {size}{_after(last)} with no"
        " zero blocks after it, as a cut-off upload or copy does; tar and WebDataset read it"
        " without a word, so check that no members are missing (or re-create the tar)"
    )


def _open(reader: _ClampedReader, name: str, size: int) -> tarfile.TarFile:
    if size == 0:
        raise ShardFormatError(f"{name}: empty file (0 bytes), not a tar archive")
    try:
        return tarfile.open(fileobj=reader, mode="r:", encoding="utf-8", errors="surrogateescape")
    except _PARSE_ERRORS as e:
        reader.seek(0)
        head = reader.read(8)
        for magic, kind in _COMPRESSED:
            if head.startswith(magic):
                raise ShardFormatError(
                    f"{name}: a {kind}-compressed tar has no per-member byte ranges; decompress"
                    " the shard (or compress members one by one, e.g. KEY.npy.zst)"
                ) from e
        raise ShardFormatError(f"{name}: not a readable tar archive: byte 0: {e}") from e


def _next(tar: tarfile.TarFile, name: str, last: tarfile.TarInfo | None) -> tarfile.TarInfo | None:
    try:
        return tar.next()
    except _PARSE_ERRORS as e:
        raise ShardFormatError(
            f"{name}: unreadable tar header at byte {tar.offset}{_after(last)}: {e}"
        ) from e


def _after(last: tarfile.TarInfo | None) -> str:
    return "" if last is None else f" (after member {last.name!r} at byte {last.offset})"


def _check_member(info: tarfile.TarInfo, name: str, next_offset: int, size: int) -> None:
    path = info.name
    if "\x00" in path:
        raise ShardFormatError(
            f"{name}: member {path!r} at byte {info.offset} has a NUL in its name"
        )
    if ".." in path and ".." in path.split("/"):
        raise ShardFormatError(
            f"{name}: member {path!r} at byte {info.offset} has a '..' path component; refused"
        )
    if (
        info.sparse is not None
        or info.type == tarfile.GNUTYPE_SPARSE
        or (info.pax_headers and any(k.startswith("GNU.sparse.") for k in info.pax_headers))
    ):
        raise ShardFormatError(
            f"{name}: member {path!r} at byte {info.offset} is a GNU sparse file, whose bytes in"
            " the tar are not its content; repack the shard without --sparse"
        )
    if next_offset > size:  # where tarfile reads the next header: after the padded data
        raise ShardFormatError(
            f"{name}: member {path!r} at byte {info.offset} has data up to byte {next_offset}"
            f" (size {info.size} at byte {info.offset_data}, padded), past the end of the file"
            f" ({size} bytes); the shard is truncated"
        )


def _check_globals(tar: tarfile.TarFile, name: str) -> None:
    bad = sorted(k for k in tar.pax_headers if k in _BAD_GLOBAL_KEYS or k.startswith("GNU.sparse."))
    if bad:
        raise ShardFormatError(
            f"{name}: a global pax header sets {bad} for every member after it; tar tools"
            " disagree on what that means, so the member ranges are not reliable; repack the shard"
        )


def _check_end(
    tar: tarfile.TarFile, reader: _ClampedReader, name: str, size: int, last: tarfile.TarInfo | None
) -> int:
    """Why tarfile stopped at `tar.offset`: a proper end of archive (its offset) or an error."""
    stop = tar.offset
    if stop == size:
        return stop
    reader.seek(stop)
    block = reader.read(BLOCK)
    if len(block) < BLOCK:
        raise ShardFormatError(
            f"{name}: the file ends inside a tar header at byte {stop} ({len(block)} of {BLOCK}"
            f" bytes){_after(last)}; the shard is truncated"
        )
    if block.count(0) == BLOCK:
        _check_zero_tail(reader, name, stop, size)
        return stop
    reader.seek(stop)
    try:  # tarfile stopped here silently; ask it again to learn why
        tar.tarinfo.fromtarfile(tar)
        reason = "tarfile stopped here"
    except _PARSE_ERRORS as e:
        reason = str(e) or type(e).__name__
    raise ShardFormatError(
        f"{name}: corrupt tar header at byte {stop}{_after(last)}: {reason}; tar and WebDataset"
        " would silently drop every member from here on"
    )


def _check_zero_tail(reader: _ClampedReader, name: str, stop: int, size: int) -> None:
    pos = stop + BLOCK
    reader.seek(pos)
    while pos < size:
        chunk = reader.read(_TAIL_CHUNK)
        if not chunk:
            break
        if chunk.count(0) != len(chunk):
            first = pos + len(chunk) - len(chunk.lstrip(b"\x00"))
            raise ShardFormatError(
                f"{name}: non-zero bytes at byte {first} after the end-of-archive marker at byte"
                f" {stop}; tar and WebDataset ignore everything after the marker"
                " (concatenated archives, or a zeroed header hiding the members after it)"
            )
        pos += len(chunk)


def _sha256(fileobj: SeekableFile, name: str, size: int) -> str:
    fileobj.seek(0)
    digest = hashlib.sha256()
    total = 0
    while chunk := fileobj.read(_HASH_CHUNK):
        digest.update(chunk)
        total += len(chunk)
    if total != size:
        raise ShardFormatError(f"{name}: read {total} bytes for the checksum, expected {size}")
    return digest.hexdigest()


def scan_shard(store: Store, name: str, *, checksum: bool = False) -> TarScan:
    """Index one tar shard of `store` by its headers (remote: one ranged request each)."""
    if store.is_local:
        with open(store.path(name), "rb") as f:
            return scan_tar(f, name=store.path(name), size=os.fstat(f.fileno()).st_size,
                            checksum=checksum)  # fmt: skip
    url = store.url_of(store.path(name))
    size = store.size(name)
    with RangeFile(store.fs, store.path(name), size, store.remote, label=url) as f:
        return scan_tar(f, name=url, size=size, checksum=checksum)
