"""Per-group figures of one epoch, gathered chunk by chunk: the summary and histogram files.

Groups are the selection's ranks, -1 … 127, kept at index `group + 1` of fixed-size arrays, so
a chunk costs a few `bincount`s and `ufunc.at`s whatever N is, and nothing N-sized is held.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pyarrow as pa

from seta_stream.losses.schema import SUMMARY_SCHEMA

HISTOGRAM_BINS = 64
_SLOTS = 129  # group -1 … 127


class GroupStats:
    """count, seen, loss sum/min/max and selected per group, added to a chunk at a time."""

    def __init__(self) -> None:
        self.count = np.zeros(_SLOTS, np.int64)
        self.seen = np.zeros(_SLOTS, np.int64)
        self.selected = np.zeros(_SLOTS, np.int64)
        self.loss_sum = np.zeros(_SLOTS, np.float64)
        self.loss_min = np.full(_SLOTS, np.inf, np.float32)
        self.loss_max = np.full(_SLOTS, -np.inf, np.float32)

    def add(
        self,
        loss: np.ndarray[Any, Any],
        group: np.ndarray[Any, Any],
        selected: np.ndarray[Any, Any],
    ) -> None:
        slot = group.astype(np.intp) + 1
        self.count += np.bincount(slot, minlength=_SLOTS)
        self.selected += np.bincount(slot[selected], minlength=_SLOTS)
        seen = ~np.isnan(loss)
        slot, loss = slot[seen], loss[seen]
        self.seen += np.bincount(slot, minlength=_SLOTS)
        self.loss_sum += np.bincount(slot, weights=loss, minlength=_SLOTS)
        np.minimum.at(self.loss_min, slot, loss)
        np.maximum.at(self.loss_max, slot, loss)

    def slots(self) -> np.ndarray[Any, Any]:
        """Indices of the groups that have samples, in group order."""
        return np.flatnonzero(self.count)


def summary_table(
    stats: GroupStats, epoch: int, info: dict[str, Any] | None, num_samples: int
) -> pa.Table:
    """One row per group present; loss figures null where the group has no seen sample."""
    present = stats.slots()
    n = present.size
    seen = stats.seen[present]
    unseen = seen == 0
    selected = stats.selected[present]
    info = info or {}
    window = info.get("window")
    return pa.table(
        {
            "epoch": np.full(n, epoch, np.int32),
            "phase": [info.get("phase")] * n,
            "group": (present - 1).astype(np.int8),
            "count": stats.count[present],
            "seen": seen,
            "loss_min": pa.array(stats.loss_min[present], mask=unseen),
            "loss_mean": pa.array(stats.loss_sum[present] / np.maximum(seen, 1), mask=unseen),
            "loss_max": pa.array(stats.loss_max[present], mask=unseen),
            "selected": selected,
            "window_start": [None if window is None else int(window[0])] * n,
            "window_stop": [None if window is None else int(window[1])] * n,
            "num_samples": np.full(n, num_samples, np.int64),
            "kept_fraction": np.full(n, stats.selected.sum() / num_samples, np.float64),
        }
    ).cast(SUMMARY_SCHEMA)


def histograms(stats: GroupStats, parts: Iterable[dict[str, Any]], epoch: int) -> pa.Table:
    """Per group with seen samples, their losses counted in 64 equal-width bins from the
    group's min to its max (the last bin includes the max). `parts`: the epoch's chunks."""
    slots = np.flatnonzero(stats.seen)
    lo = stats.loss_min.astype(np.float64)
    hi = stats.loss_max.astype(np.float64)
    hi = np.where(hi > lo, hi, lo + 1.0)
    scale = np.zeros(_SLOTS)
    scale[slots] = HISTOGRAM_BINS / (hi[slots] - lo[slots])
    counts = np.zeros(_SLOTS * HISTOGRAM_BINS, np.int64)
    for part in parts:
        loss, seen = part["loss"], ~np.isnan(part["loss"])
        slot = part["group"][seen].astype(np.intp) + 1
        x = loss[seen].astype(np.float64)
        b = np.clip(((x - lo[slot]) * scale[slot]).astype(np.intp), 0, HISTOGRAM_BINS - 1)
        counts += np.bincount(slot * HISTOGRAM_BINS + b, minlength=counts.size)
    counts = counts.reshape(_SLOTS, HISTOGRAM_BINS)[slots]
    edges = np.linspace(lo[slots], hi[slots], HISTOGRAM_BINS + 1, axis=1)
    k = slots.size
    return pa.table(
        {
            "epoch": np.full(k * HISTOGRAM_BINS, epoch, np.int32),
            "group": np.repeat(slots - 1, HISTOGRAM_BINS).astype(np.int8),
            "bin": np.tile(np.arange(HISTOGRAM_BINS, dtype=np.int16), k),
            "lo": edges[:, :-1].astype(np.float32).ravel(),
            "hi": edges[:, 1:].astype(np.float32).ravel(),
            "count": counts.ravel(),
        }
    )
