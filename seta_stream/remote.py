"""Object-store reads: exact byte ranges, coalesced, retried, checked.

Everything here is fsspec in, bytes out; no per-cloud code. A read is a list of `Span`s (file,
start, end); `coalesce` merges spans of one file whose gap is at most `RemoteOptions.gap`
bytes, and `fetch_spans` asks the filesystem for all of them at once (`fs.cat_ranges`, which
async filesystems — s3fs, gcsfs, HTTP — run concurrently), never through a buffered file
object whose read-ahead would pull the bytes of pruned samples.

**Retries.** A span that fails with a transient error (HTTP 5xx, 408, 429, a reset or cut
connection, a timeout, a short body) is fetched again, alone, after an exponential backoff with
jitter; the others keep their bytes. Permanent errors (missing file, access denied, other 4xx)
raise at once. After the last retry the error names the URL and the byte range. A span is
only ever returned once, whole, so a retry can neither duplicate nor drop a sample.

**Servers that ignore Range.** A body whose length differs from the range asked for is never
used as is. When it is exactly the whole file (a server that ignored the Range header and sent
a 200), `ignored_range="raise"` (default) reports it, naming the URL; `"slice"` takes the
asked-for bytes out of it (correct, but every read then transfers the whole file).
"""

from __future__ import annotations

import os
import random
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, TypeVar

from seta_stream.errors import SeTaStreamError

T = TypeVar("T")
KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30

DEFAULT_GAP = 64 * KiB
"""Spans of one file closer than this are fetched as one request (the gap bytes are read and
dropped): at typical object-store latencies (10-50 ms) and bandwidths (50-500 MB/s per
request), 64 KiB costs ~0.1-1 ms of transfer, far less than one more request."""

_PERMANENT = (
    FileNotFoundError,
    PermissionError,
    IsADirectoryError,
    NotADirectoryError,
    ValueError,
    TypeError,
    KeyError,
    AttributeError,
    NotImplementedError,
    SeTaStreamError,
)
_TRANSIENT_STATUS = frozenset({408, 425, 429})


@dataclass(frozen=True, kw_only=True)
class RemoteOptions:
    """How remote shards are read (local files are always read with `os.pread`).

    Args:
        gap: spans of one file whose gap is at most this many bytes are one request...
        max_waste: ...as long as the request's gap bytes stay at most this fraction of the
            bytes it was made for, so what is transferred stays within `1 + max_waste` times
            the selected samples' bytes (0.1: at most 10 % more), whatever the sample size.
        max_request: a coalesced request stops growing at this size (a single larger sample
            is still one request).
        chunk_samples, chunk_bytes: the read order is fetched in chunks of at most this many
            samples and bytes; `prefetch` chunks are in flight ahead of the consumer, so
            memory holds about `prefetch * chunk_bytes` of fetched samples at most.
        prefetch: chunks fetched ahead, each on a `seta_stream-fetch` thread; the spans of
            one chunk are fetched concurrently by the filesystem.
        retries: attempts after the first for a span that failed with a transient error.
        backoff, backoff_max: the wait before retry k is `backoff * 2**k` seconds (at most
            `backoff_max`), times a random factor in [0.5, 1].
        ignored_range: what to do with a server that ignores Range ("raise" or "slice").
        cache_dir, cache_bytes: a local cache of fetched samples for repeated epochs, kept
            under about `cache_bytes` (least recently used evicted); None: no cache.
    """

    gap: int = DEFAULT_GAP
    max_waste: float = 0.1
    max_request: int = 16 * MiB
    chunk_samples: int = 128
    chunk_bytes: int = 64 * MiB
    prefetch: int = 4
    retries: int = 5
    backoff: float = 0.1
    backoff_max: float = 5.0
    ignored_range: Literal["raise", "slice"] = "raise"
    cache_dir: str | None = None
    cache_bytes: int = 10 * GiB

    def __post_init__(self) -> None:
        minimum = {"gap": 0, "max_request": 1, "chunk_samples": 1, "chunk_bytes": 1}
        minimum |= {"prefetch": 1, "retries": 0, "cache_bytes": 1}
        for name, low in minimum.items():
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise SeTaStreamError(f"RemoteOptions({name}={value!r}): must be an int >= {low}")
        for name in ("backoff", "backoff_max", "max_waste"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not 0 <= value < float("inf"):
                raise SeTaStreamError(f"RemoteOptions({name}={value!r}): must be a number >= 0")
        if self.ignored_range not in ("raise", "slice"):
            raise SeTaStreamError(
                f"RemoteOptions(ignored_range={self.ignored_range!r}): use 'raise' or 'slice'"
            )
        if self.cache_dir is not None and not isinstance(self.cache_dir, str | os.PathLike):
            raise SeTaStreamError(f"RemoteOptions(cache_dir={self.cache_dir!r}): must be a path")

    def wait(self, attempt: int) -> float:
        """Seconds to sleep before retry number `attempt` (1-based)."""
        return min(self.backoff * 2 ** (attempt - 1), self.backoff_max) * random.uniform(0.5, 1)


class Span(NamedTuple):
    """Bytes [start, end) of the file at `path` (a full fsspec path)."""

    path: str
    start: int
    end: int


class Request(NamedTuple):
    """One ranged request and the spans it serves (each lies inside it)."""

    span: Span
    parts: tuple[int, ...]  # indexes into the list of spans given to `coalesce`


def coalesce(
    spans: Sequence[Span], *, gap: int, max_request: int, max_waste: float = 1.0
) -> list[Request]:
    """Merge spans of one file whose gap is <= `gap` into requests of <= `max_request` bytes
    (a span larger than that is a request of its own), as long as a request's gap bytes stay
    <= `max_waste` times its useful bytes. Overlapping spans merge too."""
    order = sorted(range(len(spans)), key=lambda k: (spans[k].path, spans[k].start))
    out: list[Request] = []
    cur: Span | None = None
    parts: list[int] = []
    useful = waste = 0
    for k in order:
        s = spans[k]
        if cur is not None and s.path == cur.path:
            hole = max(0, s.start - cur.end)
            more = max(0, s.end - max(s.start, cur.end))
            if (
                hole <= gap
                and max(s.end, cur.end) - cur.start <= max_request
                and waste + hole <= max_waste * (useful + more)
            ):
                cur = Span(cur.path, cur.start, max(cur.end, s.end))
                parts.append(k)
                useful, waste = useful + more, waste + hole
                continue
        if cur is not None:
            out.append(Request(cur, tuple(parts)))
        cur, parts = s, [k]
        useful, waste = s.end - s.start, 0
    if cur is not None:
        out.append(Request(cur, tuple(parts)))
    return out


def is_transient(error: BaseException) -> bool:
    """True for errors a retry may cure: 5xx/408/429, resets, cut bodies, timeouts."""
    status = getattr(error, "status", None) or getattr(error, "status_code", None)
    if isinstance(status, int):
        return status >= 500 or status in _TRANSIENT_STATUS
    if _is_botocore_config_error(error):
        return False
    return not isinstance(error, _PERMANENT) and isinstance(error, Exception)


def _is_botocore_config_error(error: BaseException) -> bool:
    """botocore's own errors are configuration (no credentials, no region, bad parameters)
    except its connection, timeout and cut-body ones."""
    botocore = sys.modules.get("botocore.exceptions")
    if botocore is None or not isinstance(error, botocore.BotoCoreError):
        return False
    network = (botocore.ConnectionError, botocore.HTTPClientError, botocore.IncompleteReadError)
    return not isinstance(error, network)


class BadBody(OSError):
    """A response body of another length than the range asked for (transient: retried)."""


class Fetched(NamedTuple):
    data: list[bytes]
    bytes_received: int  # response bodies, whole files sent by a server ignoring Range included
    requests: int  # requests made, retries included
    retried: int  # spans fetched more than once


def fetch_spans(
    fs: Any,
    spans: Sequence[Span],
    opts: RemoteOptions,
    *,
    sizes: Mapping[str, int] | None = None,
    label: Callable[[str], str] = str,
) -> Fetched:
    """The bytes of every span, in order: concurrent ranged requests, transient failures retried.

    `sizes` (file size per path, when known) lets a whole-file body from a server that ignored
    Range be recognised; `label` turns a path into the URL named in errors.
    """
    if not spans:
        return Fetched([], 0, 0, 0)
    out: list[bytes | None] = [None] * len(spans)
    todo = list(range(len(spans)))
    received = requests = retried = 0
    errors: dict[int, BaseException] = {}
    for attempt in range(opts.retries + 1):
        if attempt:
            retried += len(todo)
            time.sleep(opts.wait(attempt))
        paths = [spans[k].path for k in todo]
        got = fs.cat_ranges(
            paths, [spans[k].start for k in todo], [spans[k].end for k in todo], on_error="return"
        )
        requests += len(todo)
        failed = []
        for k, body in zip(todo, got, strict=True):
            if isinstance(body, BaseException):
                if not is_transient(body):
                    raise _error(spans[k], body, attempt + 1, label) from body
                errors[k] = body
                failed.append(k)
                continue
            received += len(body)
            data = _checked_body(spans[k], bytes(body), sizes, opts, label)
            if data is None:
                errors[k] = BadBody(
                    f"{len(body)} bytes for a range of {spans[k].end - spans[k].start}"
                )
                failed.append(k)
            else:
                out[k] = data
        todo = failed
        if not todo:
            return Fetched(out, received, requests, retried)  # type: ignore[arg-type]  # all set
    k = todo[0]
    raise _error(spans[k], errors[k], opts.retries + 1, label) from errors[k]


def _checked_body(
    span: Span, body: bytes, sizes: Mapping[str, int] | None, opts: RemoteOptions, label: Any
) -> bytes | None:
    want = span.end - span.start
    if len(body) == want:
        return body
    size = None if sizes is None else sizes.get(span.path)
    if size is not None and len(body) == size and want < size:
        if opts.ignored_range == "slice":
            return body[span.start : span.end]
        raise SeTaStreamError(
            f"{label(span.path)}: asked for bytes {span.start}-{span.end - 1} and the server "
            f"sent the whole file ({size} bytes): it ignores HTTP Range requests, so every read "
            "would transfer the whole shard. Use a server or gateway that supports Range, or "
            "pass RemoteOptions(ignored_range='slice') to accept the cost"
        )
    return None  # a short or odd body: retried


def _error(span: Span, error: BaseException, attempts: int, label: Any) -> SeTaStreamError:
    what = f"{type(error).__name__}: {error}"
    return SeTaStreamError(
        f"{label(span.path)}: reading bytes {span.start}-{span.end - 1} failed after "
        f"{attempts} attempt(s): {what}"
    )


def with_retries(fn: Callable[[], T], opts: RemoteOptions, what: str) -> T:
    """`fn()`, retried on transient errors like a span (for whole-file reads and uploads)."""
    for attempt in range(opts.retries + 1):
        try:
            return fn()
        except Exception as e:
            if not is_transient(e) or attempt == opts.retries:
                if isinstance(e, SeTaStreamError | FileNotFoundError):
                    raise
                raise SeTaStreamError(
                    f"{what} failed after {attempt + 1} attempt(s): {type(e).__name__}: {e}"
                ) from e
        time.sleep(opts.wait(attempt + 1))
    raise AssertionError("unreachable")  # pragma: no cover


class RangeFile:
    """A read-only, seekable file whose reads are exact ranged requests of at least `min_read`
    bytes (the surplus kept for the next read).

    For `tarfile` over a remote shard: before each header it reads the byte in front of it (a
    truncation check) and then the 512-byte header, and seeks over member data; with the
    default `min_read` of 513 that is one request per member, and indexing a remote tar
    transfers 513 bytes per member plus the end-of-archive block, nothing of the members' data.
    """

    def __init__(
        self, fs: Any, path: str, size: int, opts: RemoteOptions, *, label: str, min_read: int = 513
    ) -> None:
        self._fs, self._path, self._size, self._opts = fs, path, size, opts
        self._label = label
        self._min_read = min_read
        self._pos = 0
        self._buf_start, self._buf = 0, b""
        self.bytes_received = 0
        self.requests = 0

    def read(self, n: int = -1, /) -> bytes:
        end = self._size if n is None or n < 0 else min(self._size, self._pos + n)
        if end <= self._pos:
            return b""
        lo, hi = self._buf_start, self._buf_start + len(self._buf)
        if not lo <= self._pos or end > hi:
            fetch_end = min(self._size, max(end, self._pos + self._min_read))
            got = fetch_spans(
                self._fs,
                [Span(self._path, self._pos, fetch_end)],
                self._opts,
                sizes={self._path: self._size},
                label=lambda _: self._label,
            )
            self.bytes_received += got.bytes_received
            self.requests += got.requests
            self._buf_start, self._buf = self._pos, got.data[0]
        data = self._buf[self._pos - self._buf_start : end - self._buf_start]
        self._pos = end
        return data

    def seek(self, offset: int, whence: int = os.SEEK_SET, /) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def close(self) -> None:
        """Nothing to release: every read was a request of its own."""

    def __enter__(self) -> RangeFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
