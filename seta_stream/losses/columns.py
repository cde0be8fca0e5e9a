"""The live columns of a loss table: one fixed-width file per column, memory-mapped.

| column     | file                 | dtype   | value before first use |
|------------|----------------------|---------|------------------------|
| `loss`     | `live/loss.f32`      | float32 | NaN (never seen)       |
| `visits`   | `live/visits.u32`    | uint32  | 0                      |
| `epoch`    | `live/epoch.i32`     | int32   | -1 (never seen)        |
| `group`    | `live/group.i8`      | int8    | -1 (not clustered)     |
| `selected` | `live/selected.b8`   | bool    | false                  |
| `weight`   | `live/weight.f32`    | float32 | 1.0                    |

Native byte order, no header: a table of N samples is 18·N bytes, and updating a sample touches
only its own bytes (O(1)). Writes land in the page cache at once, so a killed process loses
nothing it wrote; `flush()` (msync) makes them survive an OS crash too. Each file is created
under a temp name, filled and renamed, so a half-created column never exists.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from seta_stream.errors import LossTableError
from seta_stream.losses.layout import LIVE_DIR, atomic_path

_FILL_CHUNK = 1 << 24


@dataclass(frozen=True, kw_only=True)
class ColumnSpec:
    name: str
    dtype: np.dtype[Any]
    fill: float | int | bool

    @property
    def file_name(self) -> str:
        return f"{self.name}.{self.dtype.kind}{self.dtype.itemsize * 8}"


COLUMN_SPECS: tuple[ColumnSpec, ...] = (
    ColumnSpec(name="loss", dtype=np.dtype(np.float32), fill=float("nan")),
    ColumnSpec(name="visits", dtype=np.dtype(np.uint32), fill=0),
    ColumnSpec(name="epoch", dtype=np.dtype(np.int32), fill=-1),
    ColumnSpec(name="group", dtype=np.dtype(np.int8), fill=-1),
    ColumnSpec(name="selected", dtype=np.dtype(np.bool_), fill=False),
    ColumnSpec(name="weight", dtype=np.dtype(np.float32), fill=1.0),
)
BYTES_PER_SAMPLE = sum(spec.dtype.itemsize for spec in COLUMN_SPECS)


def _create_column(path: Path, spec: ColumnSpec, num_samples: int) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.truncate(num_samples * spec.dtype.itemsize)  # sparse zeros
        if spec.fill != 0 and num_samples > 0:
            mm = np.memmap(tmp, dtype=spec.dtype, mode="r+", shape=(num_samples,))
            for start in range(0, num_samples, _FILL_CHUNK):
                mm[start : start + _FILL_CHUNK] = spec.fill
            mm.flush()
            del mm


def _open_column(path: Path, spec: ColumnSpec, num_samples: int) -> np.memmap[Any, Any]:
    expected = num_samples * spec.dtype.itemsize
    try:
        size = os.path.getsize(path)
    except FileNotFoundError:
        raise LossTableError(f"{path}: live column {spec.name!r} is missing") from None
    if size != expected:
        raise LossTableError(
            f"{path}: live column {spec.name!r} has {size} bytes, expected {expected} "
            f"({num_samples} samples of {spec.dtype}); the table is damaged"
        )
    return np.memmap(path, dtype=spec.dtype, mode="r+", shape=(num_samples,))


class LiveColumns:
    """The six live columns of one table, as plain ndarray views over their memory maps.

    Only the writer thread of a `LossTable` touches these arrays while the table is open.
    """

    loss: np.ndarray[Any, np.dtype[np.float32]]
    visits: np.ndarray[Any, np.dtype[np.uint32]]
    epoch: np.ndarray[Any, np.dtype[np.int32]]
    group: np.ndarray[Any, np.dtype[np.int8]]
    selected: np.ndarray[Any, np.dtype[np.bool_]]
    weight: np.ndarray[Any, np.dtype[np.float32]]

    def __init__(self, root: Path, num_samples: int, *, create: bool) -> None:
        live = root / LIVE_DIR
        if num_samples < 1:
            raise LossTableError(f"num_samples={num_samples}: a loss table needs at least 1 sample")
        if create:
            live.mkdir(parents=True, exist_ok=True)
            for spec in COLUMN_SPECS:
                _create_column(live / spec.file_name, spec, num_samples)
        self.num_samples = num_samples
        self._maps = {
            spec.name: _open_column(live / spec.file_name, spec, num_samples)
            for spec in COLUMN_SPECS
        }
        for name, mm in self._maps.items():
            # Plain ndarray views: numpy's memmap subclass adds overhead to every fancy index.
            setattr(self, name, mm.view(np.ndarray))

    def as_dict(self) -> dict[str, np.ndarray[Any, Any]]:
        return {spec.name: getattr(self, spec.name) for spec in COLUMN_SPECS}

    def flush(self) -> None:
        """msync every column, so what was written survives an OS crash."""
        for mm in self._maps.values():
            mm.flush()

    def close(self) -> None:
        """Drop the maps; the OS unmaps them once the last view is gone."""
        for spec in COLUMN_SPECS:
            setattr(self, spec.name, None)
        self._maps.clear()

    def problems(self, *, max_epoch: int, chunk_rows: int) -> list[str]:
        """Values no sequence of updates and selections can produce (chunked, bounded memory)."""
        found: list[str] = []
        checks = (
            ("loss", lambda a: np.isinf(a), "is ±inf (only finite losses or NaN are stored)"),
            ("epoch", lambda a: (a < -1) | (a > max_epoch), f"is outside -1..{max_epoch}"),
            ("group", lambda a: a < -1, "is below -1"),
            ("selected", lambda a: a.view(np.uint8) > 1, "is not 0 or 1"),
            ("weight", lambda a: ~np.isfinite(a) | (a < 0), "is negative or not finite"),
        )
        for name, bad, why in checks:
            column = getattr(self, name)
            for start in range(0, self.num_samples, chunk_rows):
                hits = np.flatnonzero(bad(column[start : start + chunk_rows]))
                if hits.size:
                    at = start + int(hits[0])
                    found.append(f"{name}[{at}] = {column[at]!r} {why}")
                    break
        return found
