"""A local cache of fetched byte ranges, for datasets read again epoch after epoch.

One file per cached range, `<cache_dir>/<dataset fingerprint>/<shard>/<start>-<end>`, written
under a temporary name and renamed (a reader never sees half a file; DataLoader workers share
the folder safely). A hit refreshes the file's mtime; when a process's view of the folder's
size passes `max_bytes`, it deletes the least recently used files down to 80 % of it. Each
process rescans the folder at most once per `max_bytes / 8` bytes it writes, so the folder
stays within about `max_bytes * (1 + processes / 8)` even with many processes writing at once.

The key includes the dataset's fingerprint (its manifest's checksum), so re-sharded or
re-indexed data never hits stale entries.
"""

from __future__ import annotations

import contextlib
import os
import threading
import uuid
from pathlib import Path

_EVICT_TO = 0.8


class RangeCache:
    """Byte ranges of a dataset's shards on local disk, bounded in total size."""

    def __init__(self, folder: str | os.PathLike[str], *, max_bytes: int, fingerprint: str):
        self.root = Path(folder) / fingerprint[:32]
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._written_since_scan = 0
        self._size = self._scan_size()
        self.hits = self.misses = self.evicted = 0

    def _file(self, shard: int, start: int, end: int) -> Path:
        return self.root / f"{shard:06d}" / f"{start}-{end}"

    def get(self, shard: int, start: int, end: int) -> bytes | None:
        path = self._file(shard, start, end)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            with self._lock:
                self.misses += 1
            return None
        if len(data) != end - start:  # cannot happen through put(); a damaged entry: drop it
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            with self._lock:
                self.misses += 1
            return None
        with contextlib.suppress(FileNotFoundError):
            os.utime(path)  # least recently used = oldest mtime
        with self._lock:
            self.hits += 1
        return data

    def put(self, shard: int, start: int, end: int, data: bytes) -> None:
        if len(data) > self.max_bytes * (1 - _EVICT_TO):
            return  # one entry would flush most of the cache
        path = self._file(shard, start, end)
        path.parent.mkdir(exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
        with self._lock:
            self._size += len(data)
            self._written_since_scan += len(data)
            due = self._size > self.max_bytes or self._written_since_scan > self.max_bytes // 8
            if due:
                self._written_since_scan = 0
        if due:
            self._evict()

    def _entries(self) -> list[tuple[float, int, Path]]:
        out = []
        for shard_dir in self.root.iterdir():
            for entry in os.scandir(shard_dir):
                if entry.name.startswith("."):
                    continue
                with contextlib.suppress(FileNotFoundError):
                    st = entry.stat()
                    out.append((st.st_mtime, st.st_size, Path(entry.path)))
        return out

    def _scan_size(self) -> int:
        return sum(size for _, size, _ in self._entries())

    def _evict(self) -> None:
        entries = sorted(self._entries())
        total = sum(size for _, size, _ in entries)
        target = int(self.max_bytes * _EVICT_TO)
        freed = 0
        for _, size, path in entries if total > self.max_bytes else ():
            if total - freed <= target:
                break
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                freed += size
                self.evicted += 1
        with self._lock:
            self._size = total - freed

    def size(self) -> int:
        """Bytes in the cache folder now (a scan)."""
        return self._scan_size()
