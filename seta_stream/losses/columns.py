"""The live columns of a loss table: one fixed-width file per column, memory-mapped.

| column     | file (plain tables)  | dtype   | value before first use |
|------------|----------------------|---------|------------------------|
| `loss`     | `live/loss.f32`      | float32 | NaN (never seen)       |
| `visits`   | `live/visits.u32`    | uint32  | 0                      |
| `epoch`    | `live/epoch.i32`     | int32   | -1 (never seen)        |
| `group`    | `live/group.i8`      | int8    | -1 (not clustered)     |
| `selected` | `live/selected.b8`   | bool    | false                  |
| `weight`   | `live/weight.f32`    | float32 | 1.0                    |
| `step`     | `live/step.i64`      | int64   | -1 (never seen)        |

Native byte order, no header: a table of N samples is 26·N bytes, and updating a sample touches
only its own bytes (O(1)). `step` (when the sample's last loss was computed: the update counter
of `LossTable.update`/`SeTaStream.update`) came later: a table made before it gets the column,
all -1, when it is next opened for writing.

One column is optional, made only when a policy asks for it (`LossTable.track_selections`):
`selections` (`live/selections.u32`, uint32, 0): in how many recorded epochs the selection
held the sample. A table that never tracks it has no such file.

Writes land in the page cache at once, so a killed process loses
nothing it wrote; `flush()` (msync) makes them survive an OS crash too. Each file is created
under a temp name, sized and renamed, so a half-created column never exists.

**Encoding** (`live_encoding` in `table.json`). New tables store each value XOR its column's
initial value, bit for bit (`XOR_FILL`: the float32 columns through their uint32 bits, the
others in their own width), so all-zero bytes are the initial state: a column is created by
`ftruncate` alone, sparse, with nothing written, whatever N is. The XOR is lossless (NaN
payloads, -0.0, any weight) and undone by every read (`read`, `decode`). Such files are named
`<column>.<dtype>.xor`, so a seta_stream that predates the encoding finds no live column and
refuses the table instead of misreading it. Tables made before it (no `live_encoding`) keep
`PLAIN`: values as they are, files filled with the initial values when created.

**Memory.** Updates scatter over the maps, and every page they touch counts in this process's
resident set (20 bytes a sample: loss, visits, epoch, step). So the bulk work never goes
through the maps: `read()` and `write()` copy ranges with `pread`/`pwrite` (the same page
cache, so they agree with the maps at once), and `release()` hands the touched pages back to
the page cache after a flush.
"""

from __future__ import annotations

import mmap
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from seta_stream.errors import LossTableError
from seta_stream.losses.layout import LIVE_DIR, atomic_path

PLAIN = "plain"
XOR_FILL = "xor-fill"
ENCODINGS = (PLAIN, XOR_FILL)
_FILL_CHUNK = 1 << 22
_IO_MAX = 1 << 30  # bytes per pread/pwrite call (Linux moves at most ~2 GiB per call)


@dataclass(frozen=True, kw_only=True)
class ColumnSpec:
    name: str
    dtype: np.dtype[Any]
    fill: float | int | bool

    @property
    def bits(self) -> np.dtype[Any]:
        """The unsigned integer dtype of the column's width: what the XOR works on."""
        return np.dtype(f"u{self.dtype.itemsize}")

    def key(self, encoding: str) -> int:
        """What a stored value is XOR-ed with: the bits of the fill (XOR_FILL), or 0 (PLAIN)."""
        return int(np.array(self.fill, self.dtype).view(self.bits)) if encoding == XOR_FILL else 0

    def file_name(self, encoding: str) -> str:
        suffix = ".xor" if encoding == XOR_FILL else ""
        return f"{self.name}.{self.dtype.kind}{self.dtype.itemsize * 8}{suffix}"


COLUMN_SPECS: tuple[ColumnSpec, ...] = (
    ColumnSpec(name="loss", dtype=np.dtype(np.float32), fill=float("nan")),
    ColumnSpec(name="visits", dtype=np.dtype(np.uint32), fill=0),
    ColumnSpec(name="epoch", dtype=np.dtype(np.int32), fill=-1),
    ColumnSpec(name="group", dtype=np.dtype(np.int8), fill=-1),
    ColumnSpec(name="selected", dtype=np.dtype(np.bool_), fill=False),
    ColumnSpec(name="weight", dtype=np.dtype(np.float32), fill=1.0),
    ColumnSpec(name="step", dtype=np.dtype(np.int64), fill=-1),
)
OPTIONAL_SPECS: tuple[ColumnSpec, ...] = (
    ColumnSpec(name="selections", dtype=np.dtype(np.uint32), fill=0),
)
ADDED_LATER = frozenset({"step"})  # made (all fill) when a table without it is opened
SPECS = {spec.name: spec for spec in (*COLUMN_SPECS, *OPTIONAL_SPECS)}
BYTES_PER_SAMPLE = sum(spec.dtype.itemsize for spec in COLUMN_SPECS)


def _pread(fd: int, out: np.ndarray[Any, Any], offset: int) -> None:
    view = out.data.cast("B")
    done = 0
    while done < view.nbytes:
        got = os.preadv(fd, [view[done : done + _IO_MAX]], offset + done)
        if got <= 0:
            raise LossTableError(f"live column ended early: {view.nbytes - done} bytes missing")
        done += got


def _pwrite(fd: int, data: np.ndarray[Any, Any], offset: int) -> None:
    view = np.ascontiguousarray(data).data.cast("B")
    done = 0
    while done < view.nbytes:
        done += os.pwritev(fd, [view[done : done + _IO_MAX]], offset + done)


def _create_column(path: Path, spec: ColumnSpec, num_samples: int, encoding: str) -> None:
    """A column of `num_samples` initial values: sparse zeros, filled only for PLAIN."""
    with atomic_path(path) as tmp:
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.ftruncate(fd, num_samples * spec.dtype.itemsize)  # sparse zeros
            if encoding == PLAIN and spec.fill != 0:
                block = np.full(min(num_samples, _FILL_CHUNK), spec.fill, spec.dtype)
                for start in range(0, num_samples, _FILL_CHUNK):
                    part = block[: min(_FILL_CHUNK, num_samples - start)]
                    _pwrite(fd, part, start * spec.dtype.itemsize)
        finally:
            os.close(fd)


def _open_column(path: Path, spec: ColumnSpec, num_samples: int) -> tuple[int, mmap.mmap]:
    expected = num_samples * spec.dtype.itemsize
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        raise LossTableError(f"{path}: live column {spec.name!r} is missing") from None
    size = os.fstat(fd).st_size
    if size != expected:
        os.close(fd)
        raise LossTableError(
            f"{path}: live column {spec.name!r} has {size} bytes, expected {expected} "
            f"({num_samples} samples of {spec.dtype}); the table is damaged"
        )
    return fd, mmap.mmap(fd, expected)


class LiveColumns:
    """The live columns of one table: `stored[name]` is an unsigned view of the column's
    memory map holding the stored bits; `encode`/`decode` turn values into bits and back.

    Only the writer thread of a `LossTable` touches these arrays while the table is open.
    """

    def __init__(
        self, root: Path, num_samples: int, *, create: bool, encoding: str = XOR_FILL
    ) -> None:
        live = root / LIVE_DIR
        if num_samples < 1:
            raise LossTableError(f"num_samples={num_samples}: a loss table needs at least 1 sample")
        if encoding not in ENCODINGS:
            raise LossTableError(
                f"{root}: live column encoding {encoding!r} is not supported; this seta_stream "
                f"reads {list(ENCODINGS)}. Upgrade seta_stream."
            )
        if create:
            live.mkdir(parents=True, exist_ok=True)
            for spec in COLUMN_SPECS:
                _create_column(live / spec.file_name(encoding), spec, num_samples, encoding)
        self.num_samples = num_samples
        self.encoding = encoding
        self._live = live
        self.keys = {spec.name: spec.key(encoding) for spec in SPECS.values()}
        self.stored: dict[str, np.ndarray[Any, Any]] = {}
        self._fds: dict[str, int] = {}
        self._maps: dict[str, mmap.mmap] = {}
        try:
            for spec in COLUMN_SPECS:
                path = live / spec.file_name(encoding)
                if spec.name in ADDED_LATER and not path.exists():
                    _create_column(path, spec, num_samples, encoding)
                self._attach(spec)
            for spec in OPTIONAL_SPECS:
                if (live / spec.file_name(encoding)).exists():
                    self._attach(spec)
        except BaseException:
            self.close()
            raise

    def _attach(self, spec: ColumnSpec) -> None:
        fd, mm = _open_column(self._live / spec.file_name(self.encoding), spec, self.num_samples)
        self._fds[spec.name], self._maps[spec.name] = fd, mm
        self.stored[spec.name] = np.frombuffer(mm, dtype=spec.bits)

    def add_optional(self, name: str) -> bool:
        """Make optional column `name` (all fill) if it is not there; return whether it was made."""
        if name in self.stored:
            return False
        spec = SPECS[name]
        _create_column(self._live / spec.file_name(self.encoding), spec, self.num_samples,
                       self.encoding)  # fmt: skip
        self._attach(spec)
        return True

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(spec.name for spec in SPECS.values() if spec.name in self.stored)

    def encode(self, name: str, values: Any) -> np.ndarray[Any, Any]:
        """The stored bits of `values` (a new array; a scalar gives a 0-d one)."""
        spec = SPECS[name]
        bits = np.array(values, spec.dtype).view(spec.bits)
        bits ^= self.keys[name]
        return bits

    def decode(self, name: str, bits: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        """The values of stored `bits` (of `name`'s dtype or width), decoded in place."""
        spec = SPECS[name]
        raw = bits.view(spec.bits)
        key = self.keys[name]
        if key:
            raw ^= key
        return raw.view(spec.dtype)

    def read(self, name: str, start: int = 0, stop: int | None = None) -> np.ndarray[Any, Any]:
        """A private copy of `name[start:stop]`, read past the map (no resident pages here)."""
        stop = self.num_samples if stop is None else stop
        spec = SPECS[name]
        out = np.empty(stop - start, spec.dtype)
        _pread(self._fds[name], out, start * spec.dtype.itemsize)
        return self.decode(name, out)

    def write(self, name: str, start: int, values: np.ndarray[Any, Any]) -> None:
        """Store `values` at `name[start:]`, past the map (seen through it at once)."""
        spec = SPECS[name]
        _pwrite(self._fds[name], self.encode(name, values), start * spec.dtype.itemsize)

    def store_selection(
        self,
        ids: np.ndarray[Any, Any],
        weights: np.ndarray[Any, Any] | None,
        groups: np.ndarray[Any, Any] | None,
        *,
        chunk_rows: int,
        count: bool = True,
    ) -> None:
        """selected = `ids` (sorted), weight = `weights` there and 1 elsewhere, group =
        `groups` (-1 when None); written a chunk at a time, past the maps. `count`: add one to
        `selections` of `ids` (when that optional column is there)."""
        for start in range(0, self.num_samples, chunk_rows):
            stop = min(self.num_samples, start + chunk_rows)
            lo, hi = np.searchsorted(ids, [start, stop])
            local = ids[lo:hi] - start
            selected = np.zeros(stop - start, np.bool_)
            selected[local] = True
            weight = np.ones(stop - start, np.float32)
            if weights is not None:
                weight[local] = weights[lo:hi]
            self.write("selected", start, selected)
            self.write("weight", start, weight)
            group = np.full(stop - start, -1, np.int8) if groups is None else groups[start:stop]
            self.write("group", start, group)
            if count and "selections" in self.stored:
                selections = self.read("selections", start, stop)
                selections[local] += 1
                self.write("selections", start, selections)

    def flush(self) -> None:
        """msync every column, so what was written survives an OS crash."""
        for mm in self._maps.values():
            mm.flush()

    def release(self) -> None:
        """msync, then drop this process's pages of the maps (they stay in the page cache).

        Bounds the resident set: the next update of a sample faults its page back in.
        """
        self.flush()
        if sys.platform.startswith("linux"):
            for mm in self._maps.values():  # Linux keeps a shared map's data: safe after msync
                mm.madvise(mmap.MADV_DONTNEED)

    def close(self) -> None:
        """Drop the maps and close the files; the OS unmaps once the last view is gone."""
        self.stored.clear()
        self._maps.clear()
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def problems(self, *, max_epoch: int, chunk_rows: int) -> list[str]:
        """Values no sequence of updates and selections can produce (chunked, bounded memory)."""
        found: list[str] = []
        checks = (
            ("loss", lambda a: np.isinf(a), "is ±inf (only finite losses or NaN are stored)"),
            ("epoch", lambda a: (a < -1) | (a > max_epoch), f"is outside -1..{max_epoch}"),
            ("group", lambda a: a < -1, "is below -1"),
            ("selected", lambda a: a.view(np.uint8) > 1, "is not 0 or 1"),
            ("weight", lambda a: ~np.isfinite(a) | (a < 0), "is negative or not finite"),
            ("step", lambda a: a < -1, "is below -1"),
        )
        for name, bad, why in checks:
            for start in range(0, self.num_samples, chunk_rows):
                chunk = self.read(name, start, min(self.num_samples, start + chunk_rows))
                hits = np.flatnonzero(bad(chunk))
                if hits.size:
                    found.append(f"{name}[{start + int(hits[0])}] = {chunk[hits[0]]!r} {why}")
                    break
        return found
