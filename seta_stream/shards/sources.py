"""What `tools/shard.py convert` reads: folders, tables, `.npz` arrays and existing tar shards.

A source is a picklable list of samples: `len(source)` and `load(i) -> Sample`, so a
conversion can shuffle, split into parts and hand chunks to worker processes by index.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from seta_stream.errors import SourceError
from seta_stream.shards.wdsname import is_skipped, split_name

LABEL_NAMES = ("label", "labels", "y", "target", "targets")


@dataclass(frozen=True, kw_only=True)
class Sample:
    key: str
    fields: list[tuple[str, bytes]]
    meta: dict[str, Any] = field(default_factory=dict)


class Source:
    """Base: subclasses set `description`, `metadata_columns`, `extra` and implement load()."""

    description = "source"
    fields: tuple[str, ...] = ()  # every field name a sample may have (Arrow needs the schema)
    metadata_columns: tuple[str, ...] = ()
    extra: dict[str, Any] = {}  # noqa: RUF012 - read-only default, replaced by subclasses

    def __len__(self) -> int:
        raise NotImplementedError

    def load(self, i: int) -> Sample:
        raise NotImplementedError


def _read_file(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise SourceError(f"{path}: cannot read source file ({e.strerror})") from e


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
            key=key, fields=[(ext, _read_file(os.path.join(self.root, r))) for ext, r in files]
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
            files = sorted(e.name for e in os.scandir(os.path.join(root, name)) if e.is_file())
            self.samples += [(c, os.path.join(name, f)) for f in files if not f.startswith(".")]
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
        data = _read_file(os.path.join(self.root, rel))
        return Sample(
            key=key,
            fields=[((ext or "bin").lower(), data), ("cls", str(label).encode())],
            meta={"label": label},
        )


def _walk(root: str) -> list[str]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel_dir = os.path.relpath(dirpath, root)
        for f in sorted(filenames):
            out.append(f if rel_dir == "." else f"{rel_dir}/{f}".replace(os.sep, "/"))
    return sorted(out)


def is_image_folder(root: str) -> bool:
    entries = list(os.scandir(root))
    dirs = [e for e in entries if e.is_dir()]
    if not dirs or any(e.is_file() for e in entries if not e.name.startswith(".")):
        return False
    return all(
        all(sub.is_file() for sub in os.scandir(d.path)) and any(os.scandir(d.path)) for d in dirs
    )


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
    """Existing WebDataset tar shards (re-sharding); samples grouped as webdataset does."""

    def __init__(self, paths: Sequence[str]):
        from seta_stream.shards.tarindex import scan_tar

        self.paths = list(paths)
        if not self.paths:
            raise SourceError("no .tar files given")
        self.samples: list[tuple[int, str, list[tuple[str, int, int]]]] = []
        for t, path in enumerate(self.paths):
            with open(path, "rb") as f:
                scan = scan_tar(f, name=path, size=os.fstat(f.fileno()).st_size)
            for s in scan.samples:
                self.samples.append((t, s.key, [(m[0], m[1], m[2]) for m in s.members]))
        self.fields = tuple(sorted({m[0] for _, _, ms in self.samples for m in ms}))
        self.description = f"{len(self.paths)} tar shards ({len(self.samples)} samples)"

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, i: int) -> Sample:
        t, key, members = self.samples[i]
        with open(self.paths[t], "rb") as f:
            fields = [(ext, os.pread(f.fileno(), size, off)) for ext, off, size in members]
        return Sample(key=key, fields=fields)


def open_source(
    src: str, *, layout: str = "auto", label: str | None = None, **table: Any
) -> Source:
    """Pick the source type from what `src` is (override folders with `layout`)."""
    from seta_stream.shards.tables import TableSource

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
