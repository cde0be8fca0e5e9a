"""fsspec in, exact byte ranges out. No per-cloud code lives here.

A `Store` is a dataset root (a local folder or any fsspec URL). Local files are read with
`os.pread` on cached file descriptors (no read-ahead, no Python file object per sample); remote
files with exact ranged requests (`seta_stream.remote`: `fs.cat_ranges`, coalesced, retried),
never a buffered file object whose read-ahead would fetch bytes of samples nobody asked for.

Credentials and endpoints go in `storage_options` (passed to fsspec as is), or come from the
environment the filesystem reads (s3fs: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
`AWS_ENDPOINT_URL`, ...). A forked DataLoader worker gets a filesystem of its own.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import threading
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import fsspec
from fsspec.core import url_to_fs
from fsspec.implementations.local import LocalFileSystem

from seta_stream.remote import Fetched, RemoteOptions, Span, fetch_spans, with_retries

# Object stores publish an upload whole when it completes (S3 PutObject and multipart, GCS,
# Azure block blobs): a reader sees the old object or the new one, never part of one.
_ATOMIC_PUT = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss"})


class Store:
    """A folder on local disk or behind an fsspec URL, read and written by byte range."""

    def __init__(
        self,
        url: str | os.PathLike[str],
        storage_options: Mapping[str, Any] | None = None,
        *,
        remote: RemoteOptions | None = None,
    ):
        self.url = os.fspath(url)
        self.storage_options = dict(storage_options or {})
        self.remote = remote if remote is not None else RemoteOptions()
        fs, root = url_to_fs(self.url, **self.storage_options)
        self._fs: fsspec.AbstractFileSystem = fs
        self.root: str = root.rstrip("/") or root
        self.is_local = isinstance(fs, LocalFileSystem)
        protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
        self.protocol: str = protocol
        self._fds: dict[str, int] = {}
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._fs_pid = self._pid

    def __getstate__(self) -> dict[str, Any]:
        # File descriptors do not survive pickling (DataLoader workers, spawn): reopen lazily.
        return {"url": self.url, "storage_options": self.storage_options, "remote": self.remote}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(  # type: ignore[misc]
            state["url"], state["storage_options"], remote=state.get("remote")
        )

    def __repr__(self) -> str:
        return f"Store({self.url!r})"

    @property
    def fs(self) -> fsspec.AbstractFileSystem:
        """The filesystem; a forked process makes its own (async ones are not fork-safe)."""
        if self._fs_pid != os.getpid():
            with self._lock:
                if self._fs_pid != os.getpid():
                    self._fs = url_to_fs(self.url, **self.storage_options)[0]
                    self._fs_pid = os.getpid()
        return self._fs

    def path(self, name: str) -> str:
        """The full path of a file in this store (a local path or the fs-specific path)."""
        if self.is_local:
            return os.path.join(self.root, name)
        return posixpath.join(self.root, name)

    def url_of(self, path: str) -> str:
        """A full path of this store's filesystem as a URL, for messages."""
        return path if self.is_local or "://" in path else f"{self.protocol}://{path}"

    def exists(self, name: str) -> bool:
        return bool(self._retry(lambda: self.fs.exists(self.path(name)), f"checking {name}"))

    def size(self, name: str) -> int:
        if self.is_local:
            return os.stat(self.path(name)).st_size
        return int(self._retry(lambda: self.fs.size(self.path(name)), f"size of {name}"))

    def read_bytes(self, name: str) -> bytes:
        return bytes(self._retry(lambda: self.fs.cat_file(self.path(name)), f"reading {name}"))

    def read_range(self, name: str, start: int, length: int) -> bytes:
        """`length` bytes at `start` (fewer only past the end of the file: callers check)."""
        if self.is_local:
            return os.pread(self._fd(name), length, start)
        return self.read_spans([(name, start, start + length)]).data[0]

    def read_into(self, name: str, start: int, view: memoryview) -> int:
        """Fill `view` from local file `name` at `start`; the bytes read (fewer only at its end)."""
        if not self.is_local:
            raise ValueError(f"{self.url}: read_into reads local files only")
        return os.preadv(self._fd(name), [view], start)

    def read_spans(
        self, spans: Sequence[tuple[str, int, int]], *, sizes: Mapping[str, int] | None = None
    ) -> Fetched:
        """Bytes [start, end) of each named file: concurrent exact ranges, retried (remote)."""
        full = [Span(self.path(n), s, e) for n, s, e in spans]
        by_path = None if sizes is None else {self.path(n): b for n, b in sizes.items()}
        return fetch_spans(self.fs, full, self.remote, sizes=by_path, label=self.url_of)

    def _retry(self, fn: Any, what: str) -> Any:
        if self.is_local:
            return fn()
        return with_retries(fn, self.remote, f"{self.url}: {what}")

    def _fd(self, name: str) -> int:
        if self._pid != os.getpid():  # forked DataLoader worker: the parent's fds are shared state
            self._fds, self._pid = {}, os.getpid()
        fd = self._fds.get(name)
        if fd is None:
            with self._lock:
                fd = self._fds.get(name)
                if fd is None:
                    fd = os.open(self.path(name), os.O_RDONLY)
                    self._fds[name] = fd
        return fd

    def open(self, name: str, mode: str = "rb") -> Any:
        return self.fs.open(self.path(name), mode)

    def glob(self, pattern: str) -> list[str]:
        """Names (relative to the root) of the files matching `pattern`, sorted."""
        found = self._retry(lambda: self.fs.glob(self.path(pattern)), f"listing {pattern}")
        return sorted(posixpath.basename(p.rstrip("/")) for p in found)

    def makedirs(self) -> None:
        self.fs.makedirs(self.root, exist_ok=True)

    def tmp_name(self, name: str) -> str:
        """A temporary name beside `name` that no reader takes for a finished file."""
        head, _, tail = name.rpartition("/")
        return (
            f"{head}/.{tail}.tmp-{uuid.uuid4().hex[:12]}"
            if head
            else (f".{name}.tmp-{uuid.uuid4().hex[:12]}")
        )

    def create(self, name: str) -> tuple[Any, str]:
        """Open `name` for writing so that readers see it only whole: `(file, written)`.

        Object stores get the final name (an upload is published when `close()` completes
        it); other filesystems a temporary name. Finish with `close()` then
        `commit(written, name)`, or give up with `abort(file, written)`.
        """
        written = name if self.protocol in _ATOMIC_PUT else self.tmp_name(name)
        return self.open(written, "wb"), written

    def abort(self, f: Any, written: str) -> None:
        """Drop a file opened by `create()`: nothing of it is published."""
        discard = getattr(f, "discard", None)
        if self.protocol in _ATOMIC_PUT and discard is not None:
            discard()  # aborts the upload (S3 multipart, GCS resumable) instead of completing it
            f.closed = True  # never flushed, hence never published, when garbage-collected
            return
        f.close()
        self.remove(written)

    def commit(self, tmp: str, name: str) -> None:
        """Publish a file written under a temporary name (atomic rename on local disk)."""
        if tmp == name:
            return
        if self.is_local:
            os.replace(self.path(tmp), self.path(name))
        else:
            self._retry(lambda: self.fs.mv(self.path(tmp), self.path(name)), f"renaming {tmp}")

    def write_atomic(self, name: str, data: bytes) -> None:
        """Write a whole file so that no reader ever sees it half-written."""
        if self.protocol in _ATOMIC_PUT:
            self._retry(lambda: self.fs.pipe_file(self.path(name), data), f"writing {name}")
            return
        tmp = self.tmp_name(name)
        if self.is_local:
            os.makedirs(os.path.dirname(self.path(tmp)), exist_ok=True)
        with self.open(tmp, "wb") as f:
            f.write(data)
            if self.is_local:
                f.flush()
                os.fsync(f.fileno())
        self.commit(tmp, name)

    def upload_atomic(self, local: str | os.PathLike[str], name: str) -> None:
        """Copy a local file to `name` so that no reader ever sees it half-written."""
        if self.protocol in _ATOMIC_PUT:
            self._retry(lambda: self.fs.put_file(os.fspath(local), self.path(name)), name)
            return
        tmp = self.tmp_name(name)
        self._retry(lambda: self.fs.put_file(os.fspath(local), self.path(tmp)), name)
        self.commit(tmp, name)

    def download(self, name: str, local: str | os.PathLike[str]) -> None:
        """Copy `name` to a local file (whole), retried on transient errors."""
        self._retry(lambda: self.fs.get_file(self.path(name), os.fspath(local)), name)

    def remove(self, name: str) -> None:
        if self.exists(name):
            self.fs.rm(self.path(name))

    def close(self) -> None:
        with self._lock:
            fds, self._fds = self._fds, {}
        if self._pid == os.getpid():
            for fd in fds.values():
                os.close(fd)

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # interpreter shutdown: nobody left to tell
            self.close()
