"""`TableOptions`: how a `LossTable` treats bad losses, queues updates and writes history."""

from __future__ import annotations

from dataclasses import dataclass

from seta_stream.errors import LossTableError
from seta_stream.losses.inputs import NonFinite

HISTORY_FULL_MAX = 100_000_000
"""Above this many samples an epoch's history holds only the selected rows (plus histograms).

A full history costs about 4 bytes a sample an epoch, a compact one about 4 bytes a selected
sample. With the live columns (18) and the snapshot (4), a table is about 30 bytes a sample on
disk after two epochs with full history, about 27 with compact (SeTa keeping 70% then 35%):
under 40 either way. Full up to 100M samples keeps every sample's per-epoch loss where that is
still a few hundred MB an epoch; above, compact bounds a 1B-sample run's history by what it
reads."""


@dataclass(frozen=True, kw_only=True)
class TableOptions:
    """How a `LossTable` treats bad losses, how much it queues and how it writes history."""

    nonfinite: NonFinite = "raise"
    max_pending: int = 1024
    history_full_max: int = HISTORY_FULL_MAX
    chunk_rows: int = 1 << 20

    def __post_init__(self) -> None:
        if self.nonfinite not in ("raise", "skip"):
            raise LossTableError(f"nonfinite={self.nonfinite!r}; allowed: 'raise' or 'skip'")
        for name in ("max_pending", "chunk_rows"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise LossTableError(f"{name}={getattr(self, name)!r}; must be an int >= 1")
        if not isinstance(self.history_full_max, int) or self.history_full_max < 0:
            raise LossTableError(f"history_full_max={self.history_full_max!r}; must be an int >= 0")
