"""A loss table at a URL: the live table stays local, its files are uploaded as they are written.

```python
table = LossTable("s3://bucket/run1/losses", dataset=ds, storage_options={...})
```

The live columns are memory-mapped in a local folder (`local_dir=`, default
`layout.mirror_dir(url)`), so `update()` stays O(1) and never touches the network. Every
other file — `table.json`, `losses.parquet` and the per-epoch `history/`,
`summary/`, `histogram/` files — is uploaded after it is written locally: to object stores
with one PUT (S3, GCS and Azure publish an object only once it is complete), elsewhere under
a temporary name and then renamed. `table.json` always goes last, so the files it refers to
are there before it. No reader of the URL ever sees a half-written file, and
`polars.scan_parquet("s3://bucket/run1/losses/history/*.parquet", storage_options=...)`
watches the curriculum from anywhere.

When: `table.json` on every change of epoch or selection; a snapshot when a selection is
recorded (it carries the selection, for a resume elsewhere), at `end_epoch()` (with the
epoch's history), on `snapshot()`, `sync()` and `close()`.

**Resuming elsewhere.** Opening a URL whose local folder has no table yet downloads the
table's files and rebuilds the live columns from the latest snapshot. Losses given after the
last upload are only in the old machine's local folder: call `table.sync()` (or `snapshot()`)
before a checkpoint that may resume on another machine. An object store has no locks: one
process writes a table URL at a time (the local lock guards only its own folder).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from seta_stream.errors import LossTableError
from seta_stream.losses import layout
from seta_stream.losses.columns import XOR_FILL, LiveColumns
from seta_stream.storage import Store

_FOLDERS = (layout.HISTORY_DIR, layout.SUMMARY_DIR, layout.HISTOGRAM_DIR)


class TableMirror:
    """The remote copy of a loss table's files (everything but `live/` and `lock`)."""

    def __init__(self, url: str, storage_options: Mapping[str, Any] | None = None) -> None:
        self.url = url.rstrip("/")
        self.store = Store(self.url, storage_options)
        self.uploads = 0

    def __repr__(self) -> str:
        return f"TableMirror({self.url!r})"

    def push(self, root: Path, names: Iterable[str]) -> None:
        """Upload `names` (paths relative to `root`, those that exist), then `table.json`."""
        for name in dict.fromkeys(names):
            if name != layout.META_NAME and (root / name).is_file():
                self._upload(root, name)
        if (root / layout.META_NAME).is_file():
            self._upload(root, layout.META_NAME)

    def push_all(self, root: Path) -> None:
        names = [layout.KEYS_NAME, layout.SNAPSHOT_NAME]
        for folder in _FOLDERS:
            if (root / folder).is_dir():
                names += [f"{folder}/{p.name}" for p in sorted((root / folder).glob("*.parquet"))]
        self.push(root, names)

    def _upload(self, root: Path, name: str) -> None:
        try:
            self.store.upload_atomic(root / name, name)
        except OSError as e:
            raise LossTableError(f"uploading {root / name} to {self.url}/{name} failed: {e}") from e
        self.uploads += 1

    def pull(self, root: Path) -> bool:
        """Download the table at the URL into the empty folder `root` and rebuild its live
        columns from the latest snapshot; False when there is no table at the URL."""
        if not self.store.exists(layout.META_NAME):
            return False
        names = [layout.KEYS_NAME, layout.SNAPSHOT_NAME]
        for folder in _FOLDERS:
            names += [f"{folder}/{n}" for n in self.store.glob(f"{folder}/*.parquet")]
        for name in names:
            if name in (layout.KEYS_NAME, layout.SNAPSHOT_NAME) and not self.store.exists(name):
                continue
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            with layout.atomic_path(root / name) as tmp:
                self.store.download(name, tmp)
        meta = layout.parse_meta(self.store.read_bytes(layout.META_NAME), self.store.path("x"))
        restore_live(root, int(meta["num_samples"]))
        meta["live_encoding"] = XOR_FILL  # the local columns are new, whatever the URL's were
        with layout.atomic_path(root / layout.META_NAME) as tmp:  # last: the table is complete
            tmp.write_text(_json(meta))
        return True


def _json(meta: dict[str, Any]) -> str:
    import json

    return json.dumps(meta, indent=1, sort_keys=True)


def restore_live(root: Path, num_samples: int) -> None:
    """Create the live columns (XOR_FILL) from `losses.parquet` (all initial values when there
    is none), a row group at a time."""
    cols = LiveColumns(root, num_samples, create=True, encoding=XOR_FILL)
    try:
        snapshot = root / layout.SNAPSHOT_NAME
        if not snapshot.exists():
            return
        parquet = pq.ParquetFile(snapshot)
        if parquet.metadata.num_rows != num_samples:
            raise LossTableError(
                f"{snapshot}: {parquet.metadata.num_rows} rows for a table of {num_samples} samples"
            )
        names = {"last_epoch": "epoch"}  # snapshot column -> live column
        wanted = ["sample_id", "loss", "visits", "last_epoch", "group", "selected", "weight"]
        if "step" in parquet.schema_arrow.names:  # snapshots before steps: all -1
            wanted.append("step")
        for i in range(parquet.num_row_groups):
            part = parquet.read_row_group(i, columns=wanted)
            ids = part.column("sample_id").to_numpy()
            for column in wanted[1:]:
                live = names.get(column, column)
                values = part.column(column).to_numpy()  # loss: nulls (never seen) -> NaN
                if ids.size and ids[-1] - ids[0] == ids.size - 1:  # consecutive, as written
                    cols.write(live, int(ids[0]), values)
                else:
                    cols.stored[live][ids] = cols.encode(live, values)
        cols.release()
    finally:
        cols.close()


def local_folder(url: str, local_dir: str | os.PathLike[str] | None) -> Path:
    return Path(local_dir) if local_dir is not None else layout.mirror_dir(url)
