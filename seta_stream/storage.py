"""fsspec in, exact byte ranges out. No per-cloud code lives here.

A `Store` is a dataset root (a local folder or any fsspec URL). Local files are read with
`os.pread` on cached file descriptors (no read-ahead, no Python file object per sample); remote
files with `fs.cat_file(path, start, end)`, an exact ranged request, never a buffered file
object whose read-ahead would fetch bytes of samples nobody asked for.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import threading
import uuid
from collections.abc import Mapping
from typing import Any

import fsspec
from fsspec.core import url_to_fs
from fsspec.implementations.local import LocalFileSystem


class Store:
    """A folder on local disk or behind an fsspec URL, read and written by byte range."""

    def __init__(
        self, url: str | os.PathLike[str], storage_options: Mapping[str, Any] | None = None
    ):
        self.url = os.fspath(url)
        self.storage_options = dict(storage_options or {})
        fs, root = url_to_fs(self.url, **self.storage_options)
        self.fs: fsspec.AbstractFileSystem = fs
        self.root: str = root.rstrip("/") or root
        self.is_local = isinstance(fs, LocalFileSystem)
        self._fds: dict[str, int] = {}
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def __getstate__(self) -> dict[str, Any]:
        # File descriptors do not survive pickling (DataLoader workers, spawn): reopen lazily.
        return {"url": self.url, "storage_options": self.storage_options}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["url"], state["storage_options"])  # type: ignore[misc]

    def __repr__(self) -> str:
        return f"Store({self.url!r})"

    def path(self, name: str) -> str:
        """The full path of a file in this store (a local path or the fs-specific path)."""
        if self.is_local:
            return os.path.join(self.root, name)
        return posixpath.join(self.root, name)

    def exists(self, name: str) -> bool:
        return bool(self.fs.exists(self.path(name)))

    def size(self, name: str) -> int:
        if self.is_local:
            return os.stat(self.path(name)).st_size
        return int(self.fs.size(self.path(name)))

    def read_bytes(self, name: str) -> bytes:
        return bytes(self.fs.cat_file(self.path(name)))

    def read_range(self, name: str, start: int, length: int) -> bytes:
        """`length` bytes at `start` (fewer only past the end of the file: callers check)."""
        if self.is_local:
            return os.pread(self._fd(name), length, start)
        return bytes(self.fs.cat_file(self.path(name), start=start, end=start + length))

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

    def makedirs(self) -> None:
        self.fs.makedirs(self.root, exist_ok=True)

    def tmp_name(self, name: str) -> str:
        """A temporary name beside `name` that no reader takes for a finished file."""
        return f".{name}.tmp-{uuid.uuid4().hex[:12]}"

    def commit(self, tmp: str, name: str) -> None:
        """Publish a file written under a temporary name (atomic rename on local disk)."""
        if self.is_local:
            os.replace(self.path(tmp), self.path(name))
        else:
            self.fs.mv(self.path(tmp), self.path(name))

    def write_atomic(self, name: str, data: bytes) -> None:
        """Write a whole file so that no reader ever sees it half-written."""
        tmp = self.tmp_name(name)
        with self.open(tmp, "wb") as f:
            f.write(data)
            if self.is_local:
                f.flush()
                os.fsync(f.fileno())
        self.commit(tmp, name)

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
