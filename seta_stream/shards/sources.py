"""What `tools/shard.py convert` reads: folders, tables, `.npz` arrays and existing tar shards.

A source is a picklable list of samples: `len(source)` and `load(i) -> Sample`, so a
conversion can shuffle, split into parts and hand chunks to worker processes by index.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from seta_stream.errors import SourceError
from seta_stream.shards.manifest import MANIFEST_NAME
from seta_stream.shards.skipped import report_skipped, skipped_files
from seta_stream.shards.sourcebase import (
    LABEL_NAMES,
    FieldLabelSource,
    Sample,
    Source,
    read_file,
)
from seta_stream.shards.tarsource import TarSource, is_url, remote_tars
from seta_stream.shards.wdsname import (
    empty_field_message,
    is_skipped,
    packed_archive,
    packed_archive_message,
    split_name,
)
from seta_stream.storage import Store


class FilesSource(FieldLabelSource):
    """A folder of `KEY.EXT` files grouped by key, WebDataset style (nested folders allowed)."""

    def __init__(self, root: str, *, strict: bool = False, label: str | None = None):
        self.root = root
        self.description = f"folder of key-grouped files {root}"
        groups: dict[str, list[tuple[str, str]]] = {}
        for rel in _walk(root, strict=strict):
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
        self.use_label(label)

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, i: int) -> Sample:
        key, files = self.samples[i]
        fields = [(ext, read_file(os.path.join(self.root, r))) for ext, r in files]
        return self.sample(key, fields, f"{self.root}: sample {key!r}")


class ImageFolderSource(Source):
    """`root/CLASS/FILE.EXT`: a `cls` field and a `label` column from the sorted class names."""

    metadata_columns = ("label",)

    def __init__(self, root: str, *, strict: bool = False):
        self.root = root
        self.classes = sorted(e.name for e in os.scandir(root) if e.is_dir())
        self.description = f"image folder {root} ({len(self.classes)} classes)"
        self.extra = {"classes": self.classes}
        self.samples: list[tuple[int, str]] = []
        for c, name in enumerate(self.classes):
            self.samples += [(c, os.path.join(name, f)) for f in _class_files(root, name, strict)]
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


def _walk(root: str, *, strict: bool) -> list[str]:
    """Every file under `root` (relative, `/`-separated, sorted) for `FilesSource`.

    A compressed archive or a `KEY.` name (empty field) is refused; the files that name no
    sample field (no `KEY.EXT` name, WebDataset meta paths) are named in one warning (an error
    with `strict`).
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
    report_skipped(root, unused, "no KEY.EXT name or a WebDataset meta path", strict=strict)
    return out


def _class_files(root: str, name: str, strict: bool) -> list[str]:
    """The files of class folder `root/name` for `ImageFolderSource`, sorted; hidden files
    are left out with a warning (an error with `strict`), a compressed archive is refused."""
    files = sorted(e.name for e in os.scandir(os.path.join(root, name)) if e.is_file())
    _refuse_packed(os.path.join(root, name), files)
    hidden = [f for f in files if f.startswith(".")]
    report_skipped(os.path.join(root, name), hidden, "hidden files", strict=strict)
    return [f for f in files if not f.startswith(".")]


def _refuse_packed(root: str, rels: list[str]) -> None:
    packed = [r for r in rels if packed_archive(r)]
    if packed:
        more = f" (and {len(packed) - 1} more)" if len(packed) > 1 else ""
        raise SourceError(packed_archive_message(os.path.join(root, packed[0])) + more)


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


def open_source(
    src: str,
    *,
    layout: str = "auto",
    label: str | None = None,
    storage_options: Mapping[str, Any] | None = None,
    strict: bool = False,
    **table: Any,
) -> Source:
    """Pick the source type from what `src` is (override folders with `layout`).

    A folder holding `dataset.json` is a seta_stream dataset: re-sharded through its index,
    its metadata columns kept. A folder of Parquet files, or one `datasets.Dataset.save_to_disk`
    wrote, is one table. An fsspec URL (`s3://…`) must name tar shards: a `.tar`, a glob, or a
    folder of them.

    `label`: the table column or `.npz` array, or for tars and key-grouped files the field
    (e.g. `cls`), holding integer class labels; it becomes the `label` metadata column.
    Nothing is left out without a word: the files of a folder that are not used are named in a
    warning (logger `seta_stream`), an error with `strict=True`; archives are refused.
    """
    from seta_stream.shards.tableread import table_folder_kind
    from seta_stream.shards.tables import TableSource

    if is_url(src):
        if layout not in ("auto", "tars"):
            raise SourceError(f"{src}: a remote source is read as tar shards, not {layout!r}")
        folder = not any(ch in src for ch in "*?[") and not src.endswith(".tar")
        if folder and Store(src, storage_options).exists(MANIFEST_NAME):
            return _dataset_source(src, label, strict, storage_options)
        paths = remote_tars(src, storage_options)
        if folder:
            _report_leftovers(
                src, [p.rstrip("/").rpartition("/")[2] for p in paths], strict, storage_options
            )
        return TarSource(paths, storage_options=storage_options, label=label)
    p = Path(src)
    if any(ch in src for ch in "*?["):
        paths = (
            sorted(str(x) for x in Path().glob(src))
            if not p.is_absolute()
            else sorted(str(x) for x in Path(p.anchor).glob(str(p.relative_to(p.anchor))))
        )
        _warn_dataset_tars(paths)
        return TarSource(paths, label=label)
    if not p.exists():
        raise SourceError(f"{src}: no such file or folder")
    if p.is_dir():
        tars = sorted(str(x) for x in p.glob("*.tar"))
        if layout in ("auto", "tars") and (p / MANIFEST_NAME).is_file():
            return _dataset_source(src, label, strict, None)
        if layout == "auto" and not tars and table_folder_kind(p):  # datasets' exports
            return TableSource(src, label=label, **table)
        if layout == "tars" or (layout == "auto" and tars and not is_image_folder(src)):
            _report_leftovers(src, [os.path.basename(t) for t in tars], strict)
            return TarSource(tars, label=label)
        if layout == "imagefolder" or (layout == "auto" and is_image_folder(src)):
            return ImageFolderSource(src, strict=strict)
        return FilesSource(src, strict=strict, label=label)
    suffix = p.suffix.lower()
    if suffix == ".npz":
        return NpzSource(src, label=label)
    if suffix == ".tar":
        _warn_dataset_tars([src])
        return TarSource([src], label=label)
    if suffix in (".parquet", ".csv", ".jsonl", ".ndjson"):
        return TableSource(src, label=label, **table)
    raise SourceError(
        f"{src}: unknown source type {suffix!r} (folder, .npz, .parquet, .csv, .jsonl, .tar)"
    )


def _dataset_source(
    src: str, label: str | None, strict: bool, storage_options: Mapping[str, Any] | None
) -> Source:
    """A seta_stream dataset as the source; the files beside its shards are named."""
    from seta_stream.shards.datasetsource import DatasetSource

    source = DatasetSource(src, label=label, storage_options=storage_options)
    shards = [s.name for s in source.dataset.manifest.shards]
    _report_leftovers(src, shards, strict, storage_options)
    return source


def _warn_dataset_tars(paths: list[str]) -> None:
    """Tars of a seta_stream dataset named one by one are read as plain tars: say that its
    metadata columns are not carried over (the folder as the source keeps them)."""
    from seta_stream.shards.manifest import read_manifest

    for folder in sorted({os.path.dirname(os.path.abspath(t)) for t in paths}):
        if not os.path.isfile(os.path.join(folder, MANIFEST_NAME)):
            continue
        columns = read_manifest(Store(folder)).metadata_columns
        if columns:
            logging.getLogger("seta_stream").warning(
                "%s: tars of a seta_stream dataset named one by one are read as plain tars, "
                "without its metadata columns %s; give the folder as the source to keep them",
                folder,
                list(columns),
            )


def _report_leftovers(
    src: str, used: list[str], strict: bool, storage_options: Mapping[str, Any] | None = None
) -> None:
    """Name the files of folder `src` beside the shards it is read from (`skipped`'s rule)."""
    report_skipped(src, skipped_files(Store(src, storage_options), used), strict=strict)
