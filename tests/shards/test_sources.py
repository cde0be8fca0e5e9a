"""Every source kind converts: class folders, key-grouped files, tables, tar shards."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import webdataset as wds
from PIL import Image

from seta_stream.errors import SourceError
from seta_stream.shards import (
    ConvertOptions,
    Dataset,
    convert,
    open_source,
    read_samples,
    scan_index,
)
from seta_stream.shards.sources import FilesSource, ImageFolderSource, TarSource
from seta_stream.shards.tables import TableSource

QUIET = ConvertOptions(progress=False)


def _png(value: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((4, 5), value, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def test_image_folder(tmp_path: Path) -> None:
    for cls, n in (("cat", 3), ("dog", 2)):
        (tmp_path / "src" / cls).mkdir(parents=True)
        for i in range(n):
            (tmp_path / "src" / cls / f"img.{i}.PNG").write_bytes(_png(10 * i))
    src = open_source(str(tmp_path / "src"))
    assert isinstance(src, ImageFolderSource)
    m = convert(src, tmp_path / "out", QUIET)
    assert m.extra["classes"] == ["cat", "dog"] and m.metadata_columns == ("label",)
    got = list(read_samples(tmp_path / "out", range(5), decode=True))
    assert [g["cls"] for g in got] == [0, 0, 0, 1, 1]
    assert [g["__key__"] for g in got] == [
        "cat/img_0",
        "cat/img_1",
        "cat/img_2",
        "dog/img_0",
        "dog/img_1",
    ]
    assert got[1]["png"].shape == (4, 5) and got[1]["png"][0, 0] == 10
    assert scan_index(tmp_path / "out").collect()["label"].to_list() == [0, 0, 0, 1, 1]


def test_key_grouped_files(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "a.b").mkdir(parents=True)
    (src / "a.b" / "k1.jpg").write_bytes(b"J1")
    (src / "a.b" / "k1.seg.PNG").write_bytes(b"P1")
    (src / "k2.txt").write_bytes(b"hello")
    (src / "__meta__").write_bytes(b"skip me")
    s = open_source(str(src))
    assert isinstance(s, FilesSource)
    convert(s, tmp_path / "out", QUIET)
    got = list(read_samples(tmp_path / "out", range(2)))
    assert got[0] == {"__key__": "a.b/k1", "__index__": 0, "jpg": b"J1", "seg.png": b"P1"}
    assert got[1] == {"__key__": "k2", "__index__": 1, "txt": b"hello"}


@pytest.mark.parametrize("kind", ["csv", "jsonl", "parquet"])
def test_table_with_path_column(tmp_path: Path, kind: str) -> None:
    (tmp_path / "imgs").mkdir()
    for i in range(4):
        (tmp_path / "imgs" / f"{i}.png").write_bytes(_png(i))
    df = pl.DataFrame(
        {
            "id": [f"s{i}" for i in range(4)],
            "image": [f"imgs/{i}.png" for i in range(4)],
            "label": [1, 0, 1, 2],
            "caption": ["a", "b", "c", "d"],
            "score": [0.5, 1.5, 2.5, 3.5],
        }
    )
    path = tmp_path / f"t.{kind}"
    {"csv": df.write_csv, "jsonl": df.write_ndjson, "parquet": df.write_parquet}[kind](path)
    src = open_source(str(path), key_column="id", path_columns=["image"])
    assert isinstance(src, TableSource)
    convert(src, tmp_path / "out", QUIET)
    got = list(read_samples(tmp_path / "out", range(4), decode=True))
    assert [g["__key__"] for g in got] == ["s0", "s1", "s2", "s3"]
    assert [g["label.cls"] for g in got] == [1, 0, 1, 2]
    assert [g["caption.txt"] for g in got] == ["a", "b", "c", "d"]
    assert [float(g["score.txt"]) for g in got] == [0.5, 1.5, 2.5, 3.5]
    assert got[3]["image.png"][0, 0] == 3
    index = scan_index(tmp_path / "out").collect()
    assert index["label"].to_list() == [1, 0, 1, 2] and index["caption"].to_list() == [
        "a",
        "b",
        "c",
        "d",
    ]


def test_table_key_with_dot_is_refused(tmp_path: Path) -> None:
    pl.DataFrame({"key": ["a.jpg"], "v": [1]}).write_parquet(tmp_path / "t.parquet")
    with pytest.raises(SourceError, match=r"a\.jpg"):
        convert(open_source(str(tmp_path / "t.parquet")), tmp_path / "out", QUIET)


@pytest.mark.webdataset
def test_reshard_webdataset_tars(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    with wds.ShardWriter(str(tmp_path / "in" / "in-%03d.tar"), maxcount=7) as w:
        for i in range(20):
            w.write({"__key__": f"k{i:03d}", "txt": f"text {i}", "cls": i % 3})
    src = open_source(str(tmp_path / "in"))
    assert isinstance(src, TarSource) and len(src) == 20
    convert(src, tmp_path / "out", ConvertOptions(samples_per_shard=5, progress=False))
    ours = list(read_samples(tmp_path / "out", range(20)))
    theirs = list(
        wds.WebDataset(sorted(str(p) for p in (tmp_path / "in").glob("*.tar")), shardshuffle=False)
    )
    assert [o["__key__"] for o in ours] == [t["__key__"] for t in theirs]
    assert [(o["txt"], o["cls"]) for o in ours] == [(t["txt"], t["cls"]) for t in theirs]
    assert len(Dataset.open(tmp_path / "out").manifest.shards) == 4


def test_missing_source(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="nope"):
        open_source(str(tmp_path / "nope"))


def test_missing_file_in_table(tmp_path: Path) -> None:
    pl.DataFrame({"p": ["gone.png"]}).write_csv(tmp_path / "t.csv")
    with pytest.raises(SourceError, match=r"gone\.png"):
        convert(open_source(str(tmp_path / "t.csv"), path_columns=["p"]), tmp_path / "o", QUIET)
