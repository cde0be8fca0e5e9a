"""What `tools/shard.py convert` reads: folders, tables, `.npz` arrays and existing tar shards.

A source is a picklable list of samples: `len(source)` and `load(i) -> Sample`, so a
conversion can shuffle, split into parts and hand chunks to worker processes by index.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from seta_stream.errors import SourceError
from seta_stream.remote import Request, Span, coalesce
from seta_stream.shards.sourcebase import LABEL_NAMES, Sample, Source, read_file
from seta_stream.shards.tarindex import scan_shard
from seta_stream.shards.wdsname import (
    empty_field_message,
    is_skipped,
    packed_archive,
    packed_archive_message,
    split_name,
)
from seta_stream.storage import Store


class FilesSource(Source):
    """A folder of `KEY.EXT` files grouped by key, WebDataset style (nested folders allowed)."""

    def __init__(self, root: str):
        self.root = root
        self.description = f"folder of key-grouped files {root}"
        groups: dict[str, list[tuple[str, str]]] = {}
        for rel in _walk(root):
            if is_skipped(rel):
                continue
            parts = split_name(rel)
            if parts is None:
                continue
            key, ext = parts
            group = groups.setdefault(key, [])
            if any(e == ext for e, _ in group):
                raise SourceError(f"{os.path.join(root, rel)}: field {ext!r} twice for key {key!r}")
            group.append((ext, rel))
        if not groups:
            raise SourceError(f"{root}: no files named KEY.EXT found")
        self.samples = sorted(groups.items())
        self.fields = tuple(sorted({e for g in groups.values() for e, _ in g}))

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, i: int) -> Sample:
        key, files = self.samples[i]
        return Sample(
            key=key, fields=[(ext, read_file(os.path.join(self.root, r))) for ext, r in files]
        )


class ImageFolderSource(Source):
    """`root/CLASS/FILE.EXT`: a `cls` field and a `label` column from the sorted class names."""

    metadata_columns = ("label",)

    def __init__(self, root: str):
        self.root = root
        self.classes = sorted(e.name for e in os.scandir(root) if e.is_dir())
        self.description = f"image folder {root} ({len(self.classes)} classes)"
        self.extra = {"classes": self.classes}
        self.samples: list[tuple[int, str]] = []
        for c, name in enumerate(self.classes):
            self.samples += [(c, os.path.join(name, f)) for f in _class_files(root, name)]
        if not self.samples:
            raise SourceError(f"{root}: class folders hold no files")
        exts = {(f.rpartition(".")[2] or "bin").lower() for _, f in self.samples}
        self.fields = tuple(sorted(exts | {"cls"}))

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, i: int) -> Sample:
        label, rel = self.samples[i]
        cls_dir, fname = rel.split(os.sep, 1)
        stem, _, ext = fname.rpartition(".")
        key = f"{cls_dir}/{(stem or ext).replace('.', '_')}"
        data = read_file(os.path.join(self.root, rel))
        return Sample(
            key=key,
            fields=[((ext or "bin").lower(), data), ("cls", str(label).encode())],
            meta={"label": label},
        )


def _walk(root: str) -> list[str]:
    """Every file under `root` (relative, `/`-separated, sorted) for `FilesSource`.

    A compressed archive or a `KEY.` name (empty field) is refused; the files that name no
    sample field (no `KEY.EXT` name, WebDataset meta paths) are named in one warning.
    """
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel_dir = os.path.relpath(dirpath, root)
        for f in sorted(filenames):
            out.append(f if rel_dir == "." else f"{rel_dir}/{f}".replace(os.sep, "/"))
    out.sort()
    _refuse_packed(root, out)
    unused = []
    for rel in out:
        parts = None if is_skipped(rel) else split_name(rel)
        if parts is None:
            unused.append(rel)
        elif not parts[1]:
            raise SourceError(f"{os.path.join(root, rel)}: {empty_field_message(rel)}")
    _warn_unused(root, unused, "no KEY.EXT name, or a WebDataset meta path")
    return out


def _class_files(root: str, name: str) -> list[str]:
    """The files of class folder `root/name` for `ImageFolderSource`, sorted; hidden files
    are left out with a warning, a compressed archive is refused."""
    files = sorted(e.name for e in os.scandir(os.path.join(root, name)) if e.is_file())
    _refuse_packed(os.path.join(root, name), files)
    _warn_unused(os.path.join(root, name), [f for f in files if f.startswith(".")], "hidden")
    return [f for f in files if not f.startswith(".")]


def _refuse_packed(root: str, rels: list[str]) -> None:
    packed = [r for r in rels if packed_archive(r)]
    if packed:
        more = f" (and {len(packed) - 1} more)" if len(packed) > 1 else ""
        raise SourceError(packed_archive_message(os.path.join(root, packed[0])) + more)


def _warn_unused(root: str, unused: list[str], why: str) -> None:
    if unused:
        more = f", … ({len(unused) - 5} more)" if len(unused) > 5 else ""
        logging.getLogger("seta_stream").warning(
            "%s: %d file(s) skipped (%s): %s%s", root, len(unused), why, ", ".join(unused[:5]), more
        )


def _entries(path: str) -> list[os.DirEntry[str]]:
    """A folder's entries, its scandir handle closed (an early-exiting any/all would not)."""
    with os.scandir(path) as it:
        return list(it)


def is_image_folder(root: str) -> bool:
    entries = _entries(root)
    dirs = [e for e in entries if e.is_dir()]
    if not dirs or any(e.is_file() for e in entries if not e.name.startswith(".")):
        return False
    for d in dirs:
        subs = _entries(d.path)
        if not subs or not all(sub.is_file() for sub in subs):
            return False
    return True


class NpzSource(Source):
    """An `.npz` of arrays with equal first dimension; sample i stores `NAME.npy` = arr[i]."""

    def __init__(self, path: str, *, label: str | None = None):
        self.path = path
        self._arrays: dict[str, np.ndarray] | None = None
        self._headers: dict[str, bytes] = {}
        arrays = self._load()
        lengths = {k: (a.shape[0] if a.ndim else None) for k, a in arrays.items()}
        if not arrays or None in lengths.values() or len(set(lengths.values())) != 1:
            raise SourceError(f"{path}: arrays need one equal first dimension, got {lengths}")
        self.n = int(next(iter(lengths.values())) or 0)
        self.scalars = tuple(k for k, a in arrays.items() if a.ndim == 1 and a.dtype.kind in "iufb")
        self.label = label or next(
            (k for k in LABEL_NAMES if k in self.scalars and arrays[k].dtype.kind in "iu"), None
        )
        if label and label not in self.scalars:
            raise SourceError(f"{path}: label array {label!r} not among 1-D arrays {self.scalars}")
        self.metadata_columns = self.scalars + (("label",) if self.label else ())
        self.fields = tuple(f"{k}.npy" for k in arrays)
        self.description = f"npz {path} ({self.n} samples, arrays {list(arrays)})"

    def _load(self) -> dict[str, np.ndarray]:
        if self._arrays is None:
            try:
                with np.load(self.path, allow_pickle=False) as z:
                    self._arrays = {k: z[k] for k in z.files}
            except (OSError, ValueError) as e:
                raise SourceError(f"{self.path}: cannot read npz ({e})") from e
        return self._arrays

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_arrays": None}  # workers reload the file, not a pickled copy

    def __len__(self) -> int:
        return self.n

    def _npy(self, name: str, row: Any) -> bytes:
        """`.npy` bytes of one row: the header (the same for every row) is built once."""
        row = np.asarray(row)
        if row.dtype.hasobject:
            raise SourceError(f"{self.path}: array {name!r} holds Python objects; not stored")
        header = self._headers.get(name)
        if header is None:
            buf = io.BytesIO()
            np.lib.format.write_array(buf, row, allow_pickle=False)
            header = buf.getvalue()[: len(buf.getvalue()) - row.nbytes]
            self._headers[name] = header
        return header + row.tobytes()

    def load(self, i: int) -> Sample:
        arrays = self._load()
        fields = [(f"{name}.npy", self._npy(name, arr[i])) for name, arr in arrays.items()]
        meta: dict[str, Any] = {k: arrays[k][i].item() for k in self.scalars}
        if self.label:
            meta["label"] = int(arrays[self.label][i])
        return Sample(key=f"{i:09d}", fields=fields, meta=meta)


class TarSource(Source):
    """Existing WebDataset tar shards (re-sharding); samples grouped as webdataset does.

    Paths may be fsspec URLs (`s3://bucket/shards/a.tar`): their headers are read by exact
    ranged requests, and each sample's members by ranged requests, retried (`Store`).
    """

    def __init__(
        self, paths: Sequence[str], *, storage_options: Mapping[str, Any] | None = None
    ) -> None:
        self.paths = list(paths)
        if not self.paths:
            raise SourceError("no .tar files given")
        self.stores = [_store_of(p, storage_options) for p in self.paths]
        self.samples: list[tuple[int, str, list[tuple[str, int, int]]]] = []
        remote = not all(store.is_local for store, _ in self.stores)
        with ThreadPoolExecutor(16 if remote else 1, thread_name_prefix="seta_stream-scan") as pool:
            scans = list(pool.map(lambda sn: scan_shard(*sn), self.stores))
        for t, scan in enumerate(scans):
            for s in scan.samples:
                self.samples.append((t, s.key, [(m[0], m[1], m[2]) for m in s.members]))
        self.fields = tuple(sorted({m[0] for _, _, ms in self.samples for m in ms}))
        self.description = f"{len(self.paths)} tar shards ({len(self.samples)} samples)"

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, i: int) -> Sample:
        t, key, members = self.samples[i]
        if self.stores[t][0].is_local:
            with open(self.paths[t], "rb") as f:
                fields = [(ext, os.pread(f.fileno(), size, off)) for ext, off, size in members]
            return Sample(key=key, fields=fields)
        return self.load_many([i])[0]

    def load_many(self, ids: Sequence[int]) -> list[Sample]:
        """Remote: all members of `ids` fetched together, neighbours merged into one request."""
        if all(self.stores[self.samples[i][0]][0].is_local for i in ids):
            return [self.load(i) for i in ids]
        spans = [
            Span(f"{t}/{self.stores[t][1]}", off, off + size)
            for t, _, members in (self.samples[i] for i in ids)
            for _, off, size in members
        ]
        data: list[bytes] = [b""] * len(spans)
        by_shard: dict[int, list[Request]] = {}
        for req in coalesce(spans, gap=64 << 10, max_request=64 << 20):
            by_shard.setdefault(int(req.span.path.split("/", 1)[0]), []).append(req)
        for t, reqs in by_shard.items():  # one shard's requests concurrently
            store, name = self.stores[t]
            got = store.read_spans([(name, r.span.start, r.span.end) for r in reqs])
            for req, body in zip(reqs, got.data, strict=True):
                for k in req.parts:
                    data[k] = body[spans[k].start - req.span.start : spans[k].end - req.span.start]
        out, k = [], 0
        for i in ids:
            _, key, members = self.samples[i]
            out.append(Sample(key=key, fields=[(m[0], data[k + j]) for j, m in enumerate(members)]))
            k += len(members)
        return out


def _store_of(path: str, storage_options: Mapping[str, Any] | None) -> tuple[Store, str]:
    """The folder of `path` as a Store, and the file's name in it."""
    if not is_url(path):
        return Store(os.path.dirname(os.path.abspath(path))), os.path.basename(path)
    folder, _, name = path.rstrip("/").rpartition("/")
    return Store(folder, storage_options), name


def is_url(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


def _remote_tars(src: str, storage_options: Mapping[str, Any] | None) -> list[str]:
    """The tar shards an fsspec URL names: one .tar, a glob, or a folder of them."""
    from fsspec.core import url_to_fs

    fs, root = url_to_fs(src, **(storage_options or {}))
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]

    def url(p: str) -> str:
        return p if "://" in p else f"{protocol}://{p}"

    if any(ch in root for ch in "*?["):
        found = sorted(fs.glob(root))
    elif root.endswith(".tar"):
        found = [root]
    else:
        found = sorted(fs.glob(root.rstrip("/") + "/*.tar"))
    if not found:
        raise SourceError(f"{src}: no .tar shards there (remote sources are tar shards)")
    return [url(p) for p in found]


def open_source(
    src: str,
    *,
    layout: str = "auto",
    label: str | None = None,
    storage_options: Mapping[str, Any] | None = None,
    **table: Any,
) -> Source:
    """Pick the source type from what `src` is (override folders with `layout`).

    A folder of Parquet files, or one `datasets.Dataset.save_to_disk` wrote, is one table.

    An fsspec URL (`s3://…`) must name tar shards: a `.tar`, a glob, or a folder of them.
    """
    from seta_stream.shards.tableread import table_folder_kind
    from seta_stream.shards.tables import TableSource

    if is_url(src):
        if layout not in ("auto", "tars"):
            raise SourceError(f"{src}: a remote source is read as tar shards, not {layout!r}")
        return TarSource(_remote_tars(src, storage_options), storage_options=storage_options)
    p = Path(src)
    if any(ch in src for ch in "*?["):
        paths = (
            sorted(str(x) for x in Path().glob(src))
            if not p.is_absolute()
            else sorted(str(x) for x in Path(p.anchor).glob(str(p.relative_to(p.anchor))))
        )
        return TarSource(paths)
    if not p.exists():
        raise SourceError(f"{src}: no such file or folder")
    if p.is_dir():
        tars = sorted(str(x) for x in p.glob("*.tar"))
        if layout == "auto" and not tars and table_folder_kind(p):  # datasets' exports
            return TableSource(src, label=label, **table)
        if layout == "tars" or (layout == "auto" and tars and not is_image_folder(src)):
            return TarSource(tars)
        if layout == "imagefolder" or (layout == "auto" and is_image_folder(src)):
            return ImageFolderSource(src)
        return FilesSource(src)
    suffix = p.suffix.lower()
    if suffix == ".npz":
        return NpzSource(src, label=label)
    if suffix == ".tar":
        return TarSource([src])
    if suffix in (".parquet", ".csv", ".jsonl", ".ndjson"):
        return TableSource(src, label=label, **table)
    raise SourceError(
        f"{src}: unknown source type {suffix!r} (folder, .npz, .parquet, .csv, .jsonl, .tar)"
    )
