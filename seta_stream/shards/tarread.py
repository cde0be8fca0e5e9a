"""Local tar shards read a chunk of samples at a time: the read path's hot loop.

For a chunk of sample ids (in read order) the index is gathered with numpy, runs of samples
that lie back to back in one shard are read with one `os.pread` each (a full epoch reads whole
stretches of a shard; a pruned one reads exactly the selected samples' bytes, nothing between
them), and every member's tar header is checked for all members at once: the `ustar` magic
and the size field in the 512 bytes in front of the member, inside the sample's own range.
What is left per sample is one dict and one bytes slice per member.

A sample that fails a check (or whose run was read short) is read again alone by
`Dataset.read_raw`, which raises the precise error naming shard, sample and offset; with
`skip_errors` that error takes the sample's place in the output instead.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from functools import partial
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from seta_stream.chunks import Raw, chunk_ends, guard
from seta_stream.errors import SeTaStreamError
from seta_stream.shards.colchunk import ColChunk, as_objects, fixed

if TYPE_CHECKING:
    from seta_stream.shards.index import SampleIndex
    from seta_stream.shards.shardindex import LazyIndex

CHUNK_SAMPLES = 256
GATHER_SAMPLES = 4 * CHUNK_SAMPLES  # index rows gathered at once (per-shard lookups amortised)
CHUNK_BYTES = 8 << 20  # a chunk holds at most this many bytes (one sample may be larger)
_USTAR = np.frombuffer(b"ustar", np.uint8)
_OCTAL = 8 ** np.arange(10, -1, -1, dtype=np.int64)  # an 11-digit octal number's place values


class _Counts(Protocol):
    samples_read: int


class TarDataset(Protocol):
    """What the loop uses of a local tar dataset (`seta_stream.shards.reader.Dataset`)."""

    @property
    def index(self) -> LazyIndex: ...

    @property
    def stats(self) -> _Counts: ...

    def read_raw(self, i: int) -> Raw: ...

    def unzst_fields(self, out: Raw) -> Raw: ...

    def pread_into(self, shard: int, start: int, view: memoryview) -> int: ...


def iter_local_tar(
    ds: TarDataset, ids: np.ndarray, *, skip_errors: bool = False, columns: bool = False
) -> Iterator[Any]:
    """`ds.read_raw(i)` for every `i` in `ids`, in order: a list per chunk read (`columns`:
    a `ColChunk` per chunk instead, no per-sample dict)."""
    n = ds.index.num_samples
    buf: list[bytearray] = [bytearray()]  # one read buffer for the whole pass (see read_chunk)
    read = read_chunk_columns if columns else read_chunk
    most = GATHER_SAMPLES if columns else CHUNK_SAMPLES  # columns: no per-sample cost to bound
    for a in range(0, len(ids), GATHER_SAMPLES):  # the index rows of a few chunks at once
        block = ids[a : a + GATHER_SAMPLES]
        if int(block.min()) < 0 or int(block.max()) >= n:
            bad = int(block[(block < 0) | (block >= n)][0])
            raise IndexError(f"sample id {bad} out of range [0, {n})")
        idx = ds.index.gather(block)
        c = 0  # chunks of <= CHUNK_SAMPLES samples and CHUNK_BYTES (one sample may be larger)
        for b in chunk_ends(idx.length, max_samples=most, max_bytes=CHUNK_BYTES):
            yield read(ds, block[c:b], skip_errors=skip_errors, buf=buf, idx=idx.rows(c, b))
            c = b


class _Members(NamedTuple):
    """A chunk read and checked: its bytes, and per member where it lies in them."""

    view: memoryview
    rel: np.ndarray  # per member: its data's start in `view`
    size: np.ndarray  # per member: its size
    owner: np.ndarray  # per member: its sample's row in the chunk
    counts: np.ndarray  # per sample: its members
    bad: np.ndarray  # per sample: read short or a header check failed


def _read_members(ds: TarDataset, idx: SampleIndex, buf: list[bytearray]) -> _Members:
    view, start, end, got = _read_runs(ds, idx, buf)
    counts = np.diff(idx.mstart)
    owner = np.repeat(np.arange(len(counts)), counts)
    rel = idx.moffset - idx.offset[owner] + start[owner]
    size = idx.msize
    ok = headers_ok(view, rel, size, start[owner], end[owner])
    bad = got < end  # the sample's bytes were not all read: shard truncated
    bad[owner[~ok]] = True
    return _Members(view, rel, size, owner, counts, bad)


def read_chunk(
    ds: TarDataset,
    part: np.ndarray,
    *,
    skip_errors: bool,
    buf: list[bytearray] | None = None,
    idx: SampleIndex | None = None,
) -> list[Raw | SeTaStreamError]:
    """The raw samples `part` (valid ids) of a local tar dataset, in order.

    `idx`: the index rows of `part` (`ds.index.gather(part)`), gathered here when not given.
    The chunk's bytes are read into `buf[0]` (replaced by a larger one when needed; pass the
    same list for every chunk of a pass): a fresh megabyte-sized bytes object per chunk costs
    the allocator an mmap, page faults and a munmap each time (measured: up to 1.6x the whole
    read path).
    """
    idx = ds.index.gather(part) if idx is None else idx
    buf = [bytearray()] if buf is None else buf
    try:
        view, rel, size, owner, counts, bad = _read_members(ds, idx, buf)
    except SeTaStreamError:  # e.g. a shard whose size changed: each sample gets the error
        if not skip_errors:
            raise
        return [guard(partial(ds.read_raw, i), True) for i in part.tolist()]
    names = idx.field_names
    mfield = idx.mfield
    values = list(
        map(bytes, map(view.__getitem__, map(slice, rel.tolist(), (rel + size).tolist())))
    )
    keys = idx.keys.to_pylist()
    out = _dicts(part.tolist(), keys, counts, [names[f] for f in mfield.tolist()], values)
    zst = [f[-4:] == ".zst" for f in names]
    if any(zst):
        has = np.zeros(len(part), bool)
        has[owner[np.asarray(zst, bool)[mfield]]] = True
        for j in np.flatnonzero(has & ~bad).tolist():
            out[j] = guard(partial(ds.unzst_fields, out[j]), skip_errors)  # type: ignore[arg-type]
    ds.stats.samples_read += len(part) - int(bad.sum())  # read_raw counts the others
    for j in np.flatnonzero(bad).tolist():  # the precise error, from the one-sample path
        out[j] = guard(partial(ds.read_raw, int(part[j])), skip_errors)
    return out


def read_chunk_columns(
    ds: TarDataset,
    part: np.ndarray,
    *,
    skip_errors: bool,
    buf: list[bytearray] | None = None,
    idx: SampleIndex | None = None,
) -> ColChunk:
    """`read_chunk` as columns: a field every sample has with one size is one uint8 array
    copied out of the read buffer, any other an object array of bytes. Samples that need
    Python on their own (a `.zst` member, or a failed check read again by `read_raw`) are
    set from their raw dict."""
    idx = ds.index.gather(part) if idx is None else idx
    buf = [bytearray()] if buf is None else buf
    try:
        view, rel, size, owner, _, bad = _read_members(ds, idx, buf)
    except SeTaStreamError:
        if not skip_errors:
            raise
        every = [guard(partial(ds.read_raw, i), True) for i in part.tolist()]
        return ColChunk.from_raws(part, every)
    names, n = idx.field_names, len(part)
    zst = np.asarray([f[-4:] == ".zst" for f in names], bool)
    redo = bad.copy()  # samples set from their raw dict
    if zst.any():
        redo[owner[zst[idx.mfield]]] = True
    chunk = ColChunk(ids=part, keys=idx.keys.to_numpy(zero_copy_only=False))
    arr = np.frombuffer(view, np.uint8)
    for f in np.unique(idx.mfield).tolist():
        m = np.flatnonzero(idx.mfield == f)
        s = size[m]
        one = len(m) == n and bool((owner[m] == np.arange(n)).all())  # one member a sample
        if one and n and (s == s[0]).all() and s[0] > 0:
            chunk.fields[names[f]] = sliding_window_view(arr, int(s[0]))[rel[m]]  # a copy
            continue
        col = np.full(n, None, object)
        a = rel[m]
        col[owner[m]] = list(map(bytes, map(view.__getitem__, map(slice, a.tolist(),
                                                                   (a + s).tolist()))))  # fmt: skip
        chunk.fields[names[f]] = col
    for name in [f for f in chunk.fields if f[-4:] == ".zst"]:
        chunk.fields[name] = as_objects(chunk.fields.pop(name))  # set below, without .zst
    ds.stats.samples_read += n - int(bad.sum())  # read_raw counts the others
    raws: dict[int, Raw | SeTaStreamError] = {}
    for j in np.flatnonzero(redo).tolist():
        if bad[j]:  # the precise error, from the one-sample path
            raws[j] = guard(partial(ds.read_raw, int(part[j])), skip_errors)
            continue
        lo, hi = int(idx.mstart[j]), int(idx.mstart[j + 1])
        d: Raw = {"__key__": chunk.keys[j], "__index__": int(part[j])}
        for f, o, k in zip(idx.mfield[lo:hi].tolist(), rel[lo:hi].tolist(),
                           size[lo:hi].tolist(), strict=True):  # fmt: skip
            d[names[f]] = bytes(view[o : o + k])
        raws[j] = guard(partial(ds.unzst_fields, d), skip_errors)
    chunk.put_raws(raws)
    if raws:
        chunk.fields = {k: fixed(v) for k, v in chunk.fields.items() if (v != None).any()}  # noqa: E711
    return chunk


def _dicts(
    ids: list[int], keys: list[str], counts: np.ndarray, fields: list[str], values: list[bytes]
) -> list[Raw | SeTaStreamError]:
    """One dict per sample: `__key__`, `__index__` and its members' (field, value) pairs."""
    c = int(counts[0]) if len(counts) else 0
    if (counts == c).all() and fields[:c] * len(ids) == fields:  # the usual case: same fields
        names = ("__key__", "__index__", *fields[:c])
        columns = [values[j::c] for j in range(c)]
        return list(
            map(dict, map(zip, itertools.repeat(names), zip(keys, ids, *columns, strict=True)))
        )
    out: list[Raw | SeTaStreamError] = []
    m = 0
    for i, key, n in zip(ids, keys, counts.tolist(), strict=True):
        d: Raw = {"__key__": key, "__index__": i}
        d.update(zip(fields[m : m + n], values[m : m + n], strict=True))
        m += n
        out.append(d)
    return out


def _read_runs(
    ds: TarDataset, idx: SampleIndex, buf: list[bytearray]
) -> tuple[memoryview, np.ndarray, np.ndarray, np.ndarray]:
    """Read the byte ranges of `idx`'s samples into `buf[0]`, one pread per run of back-to-back
    samples of one shard.

    The chunk is read in (shard, offset) order, whatever its read order (open shards are
    interleaved). Returns a view of the bytes read (runs one after the other) and, per sample,
    where its range starts and ends in them and how far the bytes read reach within its run
    (short of its end: the shard was truncated).
    """
    order = np.lexsort((idx.offset, idx.shard))
    shard, off, ln = idx.shard[order], idx.offset[order], idx.length[order]
    brk = np.ones(len(order), bool)
    brk[1:] = (shard[1:] != shard[:-1]) | (off[1:] != off[:-1] + ln[:-1])
    first = np.flatnonzero(brk)
    last = np.append(first[1:], len(order)) - 1
    r0, r1 = off[first], off[last] + ln[last]
    base = np.zeros(len(first) + 1, np.int64)
    np.cumsum(r1 - r0, out=base[1:])
    total = int(base[-1])
    if len(buf[0]) < total:  # a new one: views of the old may still be alive
        buf[0] = bytearray(max(total, 2 * len(buf[0])))
    view = memoryview(buf[0])[:total]
    got = [
        ds.pread_into(s, a, view[p:q])
        for s, a, p, q in zip(
            shard[first].tolist(), r0.tolist(), base[:-1].tolist(), base[1:].tolist(), strict=True
        )
    ]
    run = np.repeat(np.arange(len(first)), last - first + 1)
    start, reach = np.empty(len(order), np.int64), np.empty(len(order), np.int64)
    start[order] = base[run] + off - r0[run]
    reach[order] = (base[:-1] + np.asarray(got, np.int64))[run]
    return view, start, start + idx.length, reach


def headers_ok(
    buf: bytes | memoryview, rel: np.ndarray, size: np.ndarray, lo: np.ndarray, hi: np.ndarray
) -> np.ndarray:
    """Per member at `rel` of `size` bytes in `buf`: its ustar header (magic, size field) is in
    the 512 bytes in front of it, and header and data lie within its sample's `[lo, hi)`.

    Size fields written the usual way (11 octal digits and a NUL or space, as tarfile, GNU
    tar and our writer do) are compared at once; other spellings one by one.
    """
    arr = np.frombuffer(buf, np.uint8)
    inside = (rel - 512 >= lo) & (rel + size <= hi) & (rel + size <= len(arr))
    if len(arr) < 512:
        return np.zeros(len(rel), bool)
    # bytes 124..262 of each header, one copy: the size field (124..136) to the magic (257..262)
    win = sliding_window_view(arr, 138)[np.where(inside, rel - 388, 0)]
    digits = win[:, :11] - np.uint8(48)  # not octal digits: wrap to >= 8
    ok = (win[:, 133:138] == _USTAR).all(axis=1) & (digits < 8).all(axis=1)
    ok &= (digits.astype(np.int64) @ _OCTAL) == size
    ok &= ((win[:, 11] == 0) | (win[:, 11] == 32)) & inside
    view = memoryview(buf)
    for k in np.flatnonzero(inside & ~ok).tolist():  # other spellings of the size field
        start = int(lo[k])
        ok[k] = header_ok(view[start:], int(rel[k]) - start, int(size[k]))
    return ok


def header_ok(view: memoryview, rel: int, size: int) -> bool:
    """The 512 bytes before a member's data at `rel` in `view` are its ustar header."""
    hdr = view[rel - 512 : rel] if rel >= 512 else None
    ok = hdr is not None and bytes(hdr[257:262]) == b"ustar"
    if ok and hdr is not None and not hdr[124] & 0x80:  # base-256 sizes (> 8 GiB): skip
        raw = bytes(hdr[124:136]).rstrip(b"\x00 ").lstrip(b" ")
        ok = raw != b"" and all(48 <= c <= 55 for c in raw) and int(raw, 8) == size
    return ok
