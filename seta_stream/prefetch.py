"""Remote reading ahead: a worker's read order in chunks, each fetched with coalesced ranges.

`Prefetcher(dataset, ids)` yields `dataset`'s raw samples `ids` in that order. It cuts the
order into chunks (`RemoteOptions.chunk_samples` / `chunk_bytes`), and keeps `prefetch`
chunks in flight on `seta_stream-fetch` threads: a chunk's sample ranges, minus those in the
local cache, are grouped by shard, merged when their gap is at most `gap` bytes, and fetched
concurrently (`Store.read_spans`: exact ranges, retried). The consumer takes chunks in order,
so a slow request delays only its own chunk's turn, and memory holds at most `prefetch`
chunks. `close()` (also at exhaustion, or when the generator that uses it closes) cancels
what was not started, waits for the running fetches and joins the threads.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from seta_stream.chunks import chunk_ends, guard
from seta_stream.remote import Fetched, Span, coalesce

if TYPE_CHECKING:
    from seta_stream.cache import RangeCache
    from seta_stream.storage import Store

THREAD_PREFIX = "seta_stream-fetch"


class _Lengths(Protocol):
    @property
    def num_samples(self) -> int: ...

    def lengths(self, ids: np.ndarray) -> np.ndarray: ...


class _Shard(Protocol):
    @property
    def bytes(self) -> int: ...


class _Shards(Protocol):
    @property
    def shards(self) -> Sequence[_Shard]: ...


class FetchDataset(Protocol):
    """What the prefetcher uses of a dataset (`seta_stream.shards.reader.Dataset`): its store,
    index lengths, shard names and sizes, each sample's byte ranges, and where to put them."""

    @property
    def store(self) -> Store: ...

    @property
    def index(self) -> _Lengths: ...

    @property
    def manifest(self) -> _Shards: ...

    def cache(self) -> RangeCache | None: ...

    def spans_of(self, i: int) -> tuple[int, list[tuple[int, int]]]: ...

    def shard_name(self, s: int) -> str: ...

    def assemble(self, i: int, parts: list[bytes]) -> dict[str, Any]: ...

    def count_fetch(self, got: Fetched, *, samples: int, cached: int) -> None: ...


def chunk_bounds(lengths: np.ndarray, *, max_samples: int, max_bytes: int) -> list[int]:
    """Start positions of the chunks (plus the end): <= max_samples samples and <= max_bytes
    bytes each (a single sample larger than max_bytes is a chunk of its own)."""
    return [0, *chunk_ends(lengths, max_samples=max_samples, max_bytes=max_bytes)]


def fetch_chunk(dataset: FetchDataset, ids: list[int], skip_errors: bool = False) -> list[Any]:
    """The raw samples `ids` of `dataset`, in that order, read with coalesced ranged requests."""
    store, opts, cache = dataset.store, dataset.store.remote, dataset.cache()
    spans: list[tuple[int, int, int]] = []  # (shard, start, end) of every sample's ranges
    owner: list[int] = [0]  # sample k's ranges are spans[owner[k]:owner[k + 1]]
    for i in ids:
        shard, ranges = dataset.spans_of(i)
        spans += [(shard, a, b) for a, b in ranges]
        owner.append(len(spans))
    names = {s: dataset.shard_name(s) for s in {s for s, _, _ in spans}}
    parts: list[bytes | None] = [None] * len(spans)
    if cache is not None:
        parts = [cache.get(s, a, b) for s, a, b in spans]
    todo = [k for k, p in enumerate(parts) if p is None]
    requests = coalesce(
        [Span(names[spans[k][0]], spans[k][1], spans[k][2]) for k in todo],
        gap=opts.gap,
        max_request=opts.max_request,
        max_waste=opts.max_waste,
    )
    sizes = {names[s]: dataset.manifest.shards[s].bytes for s in names}
    got = store.read_spans([r.span for r in requests], sizes=sizes)
    for req, body in zip(requests, got.data, strict=True):
        for j in req.parts:
            k = todo[j]
            _, a, b = spans[k]
            piece = body[a - req.span.start : b - req.span.start]
            parts[k] = piece
            if cache is not None:
                cache.put(*spans[k], piece)
    out = [
        guard(partial(dataset.assemble, i, parts[owner[k] : owner[k + 1]]), skip_errors)  # type: ignore[arg-type]
        for k, i in enumerate(ids)
    ]
    dataset.count_fetch(got, samples=len(ids), cached=len(spans) - len(todo))
    return out


def _chunks(dataset: FetchDataset, ids: np.ndarray) -> Iterator[list[int]]:
    """`ids` cut into fetch chunks; each block's lengths gathered only when it comes up (the
    index of a shard is read when the first chunk that needs it is cut)."""
    opts = dataset.store.remote
    n = dataset.index.num_samples
    for a in range(0, len(ids), opts.chunk_samples):
        block = ids[a : a + opts.chunk_samples]
        if int(block.min()) < 0 or int(block.max()) >= n:
            bad = int(block[(block < 0) | (block >= n)][0])
            raise IndexError(f"sample id {bad} out of range [0, {n})")
        lengths = dataset.index.lengths(block)
        bounds = chunk_bounds(lengths, max_samples=opts.chunk_samples, max_bytes=opts.chunk_bytes)
        for b0, b1 in itertools.pairwise(bounds):
            yield block[b0:b1].tolist()


class Prefetcher(Iterator[Any]):
    """Raw samples `ids` of a remote `dataset`, in order, fetched ahead in chunks."""

    def __init__(
        self, dataset: FetchDataset, ids: np.ndarray, *, skip_errors: bool = False
    ) -> None:
        opts = dataset.store.remote
        self._chunks: Iterator[list[int]] | None = _chunks(dataset, np.asarray(ids, np.int64))
        self._dataset = dataset
        self._skip = skip_errors
        self._ahead = opts.prefetch
        self._pending: collections.deque[Future[list[Any]]] = collections.deque()
        self._pool: ThreadPoolExecutor | None = None
        self._current: list[Any] = []
        self._pos = 0

    def _submit(self) -> None:
        while len(self._pending) < self._ahead and self._chunks is not None:
            chunk = next(self._chunks, None)
            if chunk is None:
                self._chunks = None
                break
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self._ahead, thread_name_prefix=THREAD_PREFIX)
            self._pending.append(self._pool.submit(fetch_chunk, self._dataset, chunk, self._skip))

    def __next__(self) -> Any:
        if self._pos == len(self._current):
            self._submit()
            if not self._pending:
                self.close()
                raise StopIteration
            fut = self._pending.popleft()
            try:
                self._current, self._pos = fut.result(), 0
            except BaseException:
                self.close()
                raise
            self._submit()
        item = self._current[self._pos]
        self._current[self._pos] = None  # the consumer owns it now
        self._pos += 1
        return item

    def close(self) -> None:
        """Stop fetching ahead: cancel queued chunks, wait for running ones, join the threads."""
        pool, self._pool = self._pool, None
        self._chunks = None
        for fut in self._pending:
            fut.cancel()
        self._pending.clear()
        self._current, self._pos = [], 0
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # interpreter shutdown: nothing left to join
            self.close()
