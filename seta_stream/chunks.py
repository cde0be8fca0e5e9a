"""What the two read loops share: a read order cut into chunks, and one sample's read with
its error kept in its place.

The local tar loop (`seta_stream.shards.tarread`) and the remote prefetcher
(`seta_stream.prefetch`) both read a worker's order a chunk at a time, a chunk bounded in
samples and in bytes, and both let a sample that cannot be read stand as its error when the
caller asked to skip errors.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from seta_stream.errors import SeTaStreamError

Raw = dict[str, Any]


def chunk_ends(lengths: np.ndarray, *, max_samples: int, max_bytes: int) -> list[int]:
    """End positions of consecutive chunks of <= max_samples samples and <= max_bytes bytes."""
    cum = np.cumsum(lengths, dtype=np.int64)
    ends, a, n = [], 0, len(lengths)
    while a < n:
        before = int(cum[a - 1]) if a else 0
        by_bytes = int(np.searchsorted(cum, before + max_bytes, side="right"))
        b = max(a + 1, min(a + max_samples, by_bytes))
        ends.append(b)
        a = b
    return ends


def guard(read: Callable[[], Raw], skip_errors: bool) -> Raw | SeTaStreamError:
    """`read()`, or with `skip_errors` the project error it raised."""
    try:
        return read()
    except SeTaStreamError as e:
        if not skip_errors:
            raise
        return e
