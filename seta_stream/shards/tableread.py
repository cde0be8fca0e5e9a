"""Reading a table source into polars: one file (.parquet, .csv, .jsonl), a folder of Parquet
files (as Hugging Face `datasets` exports them or the Hub stores them: one table, the files in
name order), or a folder written by `datasets.Dataset.save_to_disk` (Arrow stream files
`data-*.arrow` listed in `state.json`). The `datasets` feature types, where the files carry
them, come back too (they name a `ClassLabel`'s classes).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from seta_stream.errors import SourceError

TABLE_SUFFIXES = (".parquet", ".csv", ".jsonl", ".ndjson")
_READERS: dict[str, Any] = {
    ".parquet": pl.read_parquet,
    ".csv": pl.read_csv,
    ".jsonl": pl.read_ndjson,
    ".ndjson": pl.read_ndjson,
}


def table_folder_kind(path: str | os.PathLike[str]) -> str | None:
    """`"saved"` for a `save_to_disk` folder, `"parquet"` for a folder of Parquet files."""
    p = Path(path)
    if (p / "state.json").is_file() or (p / "dataset_dict.json").is_file():
        return "saved"
    if any(p.glob("*.parquet")):
        return "parquet"
    return None


def read_table(path: str) -> tuple[pl.DataFrame, dict[str, Any]]:
    """The table at `path` (a file or a folder) and its `datasets` features (or `{}`)."""
    if os.path.isdir(path):
        if table_folder_kind(path) == "saved":
            return _read_saved(path)
        return _read_parquet_files(path, sorted(str(x) for x in Path(path).glob("*.parquet")))
    if path.lower().endswith(".parquet"):
        return _read_parquet_files(path, [path])
    ext = os.path.splitext(path)[1].lower()
    try:
        return _READERS[ext](path), {}
    except Exception as e:
        raise SourceError(f"{path}: cannot read table ({e})") from e


def _read_parquet_files(where: str, files: list[str]) -> tuple[pl.DataFrame, dict[str, Any]]:
    frames = []
    for file in files:
        try:
            frames.append(pl.read_parquet(file))
        except Exception as e:
            raise SourceError(f"{file}: cannot read table ({e})") from e
    try:
        df = pl.concat(frames, how="vertical") if len(frames) > 1 else frames[0]
    except pl.exceptions.PolarsError as e:
        raise SourceError(
            f"{where}: its Parquet files do not share one schema ({e}); convert them one by one"
        ) from e
    return df, _features(pq.read_schema(files[0]).metadata)


def _read_saved(path: str) -> tuple[pl.DataFrame, dict[str, Any]]:
    folder = Path(path)
    if (folder / "dataset_dict.json").is_file():
        splits = json.loads((folder / "dataset_dict.json").read_text()).get("splits", [])
        raise SourceError(
            f"{path}: a DatasetDict of splits {splits}; convert one split's folder, "
            f"e.g. {folder / (splits[0] if splits else 'train')}"
        )
    state = json.loads((folder / "state.json").read_text())
    names = [d["filename"] for d in state.get("_data_files", [])]
    files = [folder / n for n in names] or sorted(folder.glob("data-*.arrow"))
    if not files:
        raise SourceError(f"{path}: a save_to_disk folder without data-*.arrow files")
    tables = []
    for file in files:
        try:
            with pa.memory_map(str(file)) as src:
                tables.append(pa.ipc.open_stream(src).read_all())
        except (OSError, pa.ArrowInvalid) as e:
            raise SourceError(f"{file}: cannot read as an Arrow stream ({e})") from e
    try:
        table = pa.concat_tables(tables)
    except pa.ArrowInvalid as e:
        raise SourceError(f"{path}: its Arrow files do not share one schema ({e})") from e
    features = _features(table.schema.metadata)
    info = folder / "dataset_info.json"
    if not features and info.is_file():
        features = json.loads(info.read_text()).get("features") or {}
    df = pl.from_arrow(table)
    assert isinstance(df, pl.DataFrame)  # a Table always makes a DataFrame
    return df, features


def _features(metadata: dict[bytes, bytes] | None) -> dict[str, Any]:
    """The `datasets` features stored in a file's schema metadata, or `{}`."""
    raw = (metadata or {}).get(b"huggingface")
    if raw is None:
        return {}
    try:
        features = json.loads(raw)["info"]["features"]
    except (ValueError, KeyError, TypeError):
        return {}
    return features if isinstance(features, dict) else {}


def class_names(features: dict[str, Any], column: str) -> list[str] | None:
    """The class names of `column` if `datasets` declared it a `ClassLabel`."""
    f = features.get(column)
    if isinstance(f, dict) and f.get("_type") == "ClassLabel" and isinstance(f.get("names"), list):
        return [str(n) for n in f["names"]]
    return None
