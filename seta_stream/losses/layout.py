"""On-disk layout of a loss table: paths, the versioned `table.json`, the lock, atomic writes.

```
<table>/
  table.json        kind, version, num_samples, dataset fingerprint, current epoch, per-epoch info,
                    live_encoding ("xor-fill"; absent in tables made before it: plain)
  lock              fcntl.flock target: one writing process at a time
  keys.parquet      sample_id, key: only in tables made before keys were dropped (never written now)
  live/loss.f32.xor, …  the fixed-width live columns, memory-mapped (see columns.py; `loss.f32`, …
                    in plain tables)
  losses.parquet    the latest snapshot
  history/epoch=000012.parquet, summary/epoch=000012.parquet, histogram/epoch=000012.parquet
```
Every file but the live columns is replaced atomically (temp file, fsync, `os.replace`), so a
reader or a process killed at any moment sees the old file or the new one, never half of one.
Temp files end in `.tmp`, so `*.parquet` globs never match them.

A table at a URL (`s3://…`, `gs://…`) keeps this layout in a local folder (`mirror_dir`, or
`local_dir=`) and uploads every file but `live/` and `lock` there (`seta_stream.losses.mirror`).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from seta_stream.errors import LossTableError

TABLE_KIND = "seta_stream.loss_table"
TABLE_VERSION = 1
SUPPORTED_VERSIONS = (1,)

META_NAME = "table.json"
LOCK_NAME = "lock"
KEYS_NAME = "keys.parquet"
SNAPSHOT_NAME = "losses.parquet"
LIVE_DIR = "live"
HISTORY_DIR = "history"
SUMMARY_DIR = "summary"
HISTOGRAM_DIR = "histogram"
TMP_SUFFIX = ".tmp"


def is_url(path: str | os.PathLike[str]) -> bool:
    """True for an fsspec URL other than `file://` (those tables live at a local mirror)."""
    text = os.fspath(path)
    return "://" in text and not text.startswith("file://")


def local_root(path: str | os.PathLike[str]) -> Path:
    """The local directory of a table given as a path or a `file://` URL."""
    text = os.fspath(path)
    if text.startswith("file://"):
        return Path(text[len("file://") :])
    if is_url(text):
        raise LossTableError(
            f"loss table path {text!r} is a URL; open it with LossTable(url, local_dir=...) "
            "(the live table stays local, snapshots and history are uploaded)"
        )
    return Path(text)


def mirror_dir(url: str) -> Path:
    """Where the live columns of the table at `url` are kept by default:
    `$SETA_STREAM_CACHE/losses/<hash of url>` (default `~/.cache/seta_stream`)."""
    base = os.environ.get("SETA_STREAM_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "seta_stream"
    )
    digest = hashlib.sha256(url.rstrip("/").encode()).hexdigest()[:16]
    return Path(base) / "losses" / digest


def epoch_file_name(epoch: int) -> str:
    return f"epoch={epoch:06d}.parquet"


def check_version(found: object, where: Path | str) -> None:
    """Refuse a file written by a format version this code does not know."""
    if found not in SUPPORTED_VERSIONS:
        raise LossTableError(
            f"{where}: loss table format version {found!r} is not supported; this seta_stream "
            f"reads versions {list(SUPPORTED_VERSIONS)}. Upgrade seta_stream or use a new table."
        )


def read_meta(root: Path) -> dict[str, Any]:
    path = root / META_NAME
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise LossTableError(f"no loss table at {root} ({META_NAME} is missing)") from None
    except OSError as e:
        raise LossTableError(f"{path}: unreadable loss table metadata: {e}") from e
    return parse_meta(data, path)


def parse_meta(data: bytes, path: Path | str) -> dict[str, Any]:
    """`table.json` from its bytes, its kind and version checked (`path` names it in errors)."""
    try:
        meta = json.loads(data)
    except ValueError as e:
        raise LossTableError(f"{path}: unreadable loss table metadata: {e}") from e
    if not isinstance(meta, dict) or meta.get("kind") != TABLE_KIND:
        raise LossTableError(f"{path}: not a seta_stream loss table (kind is not {TABLE_KIND!r})")
    check_version(meta.get("version"), path)
    return meta


def new_meta(num_samples: int, **extra: Any) -> dict[str, Any]:
    """`table.json` of a new table (epoch 0, no dataset yet), with `extra` keys
    (`live_encoding`: how the live columns store values, see columns.py; absent: plain)."""
    meta = {"kind": TABLE_KIND, "version": TABLE_VERSION, "num_samples": num_samples}
    return {**meta, "fingerprint": None, "epoch": 0, "max_epoch": 0, "epochs": {}, **extra}


def write_meta(root: Path, meta: dict[str, Any]) -> None:
    data = json.dumps(meta, indent=1, sort_keys=True).encode()
    with atomic_path(root / META_NAME) as tmp:
        tmp.write_bytes(data)


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temp path beside `target`; on success fsync it and rename it over `target`."""
    tmp = target.with_name(f"{target.name}.{os.getpid()}-{secrets.token_hex(4)}{TMP_SUFFIX}")
    try:
        yield tmp
        fsync_path(tmp)
        os.replace(tmp, target)
        fsync_path(target.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def remove_stale_temps(root: Path) -> None:
    """Delete temp files left by a process killed in the middle of an atomic write."""
    for folder in (
        root,
        root / LIVE_DIR,
        root / HISTORY_DIR,
        root / SUMMARY_DIR,
        root / HISTOGRAM_DIR,
    ):
        for stale in folder.glob(f"*{TMP_SUFFIX}") if folder.is_dir() else ():
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()


class WriterLock:
    """An exclusive `fcntl.flock` on `<table>/lock`, released on `release()` or process death."""

    def __init__(self, root: Path) -> None:
        path = root / LOCK_NAME
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise LossTableError(
                f"loss table {root} is already open for writing (holder pid {holder}); only one "
                "process writes a table. Other DDP ranks open it with LossTable.open_readonly()."
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
