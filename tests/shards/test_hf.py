"""Tables written by Hugging Face `datasets` (issue 12) convert with the CLI: an `Image()`
column (a struct {bytes, path}) or a plain binary column becomes `COL.EXT` by its magic
bytes and decodes as the same pixels; a `ClassLabel` is the label; a folder of Parquet files
and a `save_to_disk` folder are one table; an unsupported column is one line and no output."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from PIL import Image

from seta_stream.shards import read_samples, scan_index
from seta_stream.shards.magic import sniff

datasets = pytest.importorskip("datasets")

N = 20
NAMES = ["cat", "dog", "eel"]


@pytest.fixture
def shard(script: Callable[..., ModuleType]) -> ModuleType:
    return script("tools/shard.py", "shard_cli_hf")


def _pixels(i: int) -> np.ndarray:
    return np.random.default_rng(i).integers(0, 256, (8, 8, 3), dtype=np.uint8)


def _encoded(i: int, fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(_pixels(i)).save(buf, format=fmt)
    return buf.getvalue()


def _image_dataset(*, with_paths: bool) -> Any:  # a datasets.Dataset
    images: list[object] = (
        [{"bytes": _encoded(i, "PNG"), "path": f"img{i:02d}.png"} for i in range(N)]
        if with_paths
        else [Image.fromarray(_pixels(i)) for i in range(N)]
    )
    features = datasets.Features(
        {"image": datasets.Image(), "label": datasets.ClassLabel(names=NAMES)}
    )
    return datasets.Dataset.from_dict(
        {"image": images, "label": [i % 3 for i in range(N)]}, features=features
    )


def _check(out: Path, *, paths: bool) -> None:
    manifest = json.loads((out / "dataset.json").read_text())
    assert manifest["fields"] == ["image.png", "label.cls"]
    assert manifest["extra"]["classes"] == NAMES
    got = list(read_samples(out, range(N), decode=True))
    for i, s in enumerate(got):
        assert s["image.png"].dtype == np.uint8
        np.testing.assert_array_equal(s["image.png"], _pixels(i))
        assert s["label.cls"] == i % 3
    index = scan_index(out).collect()
    assert index["label"].to_list() == [i % 3 for i in range(N)]
    want = [f"img{i:02d}.png" for i in range(N)] if paths else [None] * N
    assert index["image_path"].to_list() == want


@pytest.mark.parametrize("fmt", ["tar", "arrow"])
def test_parquet_file(shard: ModuleType, tmp_path: Path, fmt: str) -> None:
    _image_dataset(with_paths=True).to_parquet(str(tmp_path / "t.parquet"))
    out = tmp_path / "out"
    argv = ["convert", str(tmp_path / "t.parquet"), str(out), "--label", "label"]
    assert shard.main([*argv, "--format", fmt]) == 0
    _check(out, paths=True)


def test_save_to_disk_folder(shard: ModuleType, tmp_path: Path) -> None:
    _image_dataset(with_paths=False).save_to_disk(str(tmp_path / "saved"), num_shards=2)
    assert len(list((tmp_path / "saved").glob("data-*.arrow"))) == 2
    assert shard.main(["convert", str(tmp_path / "saved"), str(tmp_path / "out")]) == 0
    _check(tmp_path / "out", paths=False)


def test_parquet_folder_in_name_order(shard: ModuleType, tmp_path: Path) -> None:
    ds = _image_dataset(with_paths=True)
    (tmp_path / "data").mkdir()
    for part in range(3):  # contiguous thirds, as the Hub names them
        piece = ds.shard(3, part, contiguous=True)
        piece.to_parquet(str(tmp_path / "data" / f"train-{part:05d}-of-00003.parquet"))
    assert shard.main(["convert", str(tmp_path / "data"), str(tmp_path / "out")]) == 0
    _check(tmp_path / "out", paths=True)


def test_binary_columns_named_by_magic(shard: ModuleType, tmp_path: Path) -> None:
    blobs = [b"\x00\x01not a file type", b"\x02\x03neither"]
    ds = datasets.Dataset.from_dict(
        {
            "photo": [_encoded(0, "JPEG"), _encoded(1, "WEBP")],
            "blob": blobs,
            "label": [0, 1],
        },
        features=datasets.Features(
            {
                "photo": datasets.Value("binary"),
                "blob": datasets.Value("binary"),
                "label": datasets.Value("int64"),
            }
        ),
    )
    ds.to_parquet(str(tmp_path / "b.parquet"))
    assert shard.main(["convert", str(tmp_path / "b.parquet"), str(tmp_path / "out")]) == 0
    got = list(read_samples(tmp_path / "out", range(2), decode=True))
    assert sorted(got[0]) == ["__index__", "__key__", "blob.bin", "label.cls", "photo.jpg"]
    assert "photo.webp" in got[1] and got[1]["photo.webp"].shape == (8, 8, 3)
    assert got[0]["photo.jpg"].shape == (8, 8, 3) and got[0]["photo.jpg"].dtype == np.uint8
    assert [g["blob.bin"] for g in got] == blobs


def test_sniff() -> None:
    assert [sniff(_encoded(0, f)) for f in ("PNG", "JPEG", "WEBP", "GIF")] == [
        "png",
        "jpg",
        "webp",
        "gif",
    ]
    assert sniff(b"") == "bin" and sniff(b"RIFF\0\0\0\0WAVEfmt ") == "wav"


def _unsupported(path: Path) -> None:
    features = datasets.Features(
        {"frames": datasets.List(datasets.Image()), "label": datasets.Value("int64")}
    )
    frames = [[{"bytes": _encoded(i, "PNG"), "path": None}] for i in range(3)]
    ds = datasets.Dataset.from_dict({"frames": frames, "label": [0, 1, 2]}, features=features)
    ds.to_parquet(str(path))


def test_unsupported_column_one_line_no_output(
    shard: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _unsupported(tmp_path / "bad.parquet")
    capsys.readouterr()
    out = tmp_path / "new" / "out"
    assert shard.main(["convert", str(tmp_path / "bad.parquet"), str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "column 'frames'" in err and "List(Struct" in err
    assert not (tmp_path / "new").exists()


def test_failed_convert_leaves_dst_as_it_was(
    shard: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _image_dataset(with_paths=True).to_parquet(str(tmp_path / "t.parquet"))
    from seta_stream.shards.tables import TableSource

    load = TableSource.load

    def failing(self: TableSource, i: int) -> object:
        if i == N - 1:
            raise OSError("disk gone")
        return load(self, i)

    monkeypatch.setattr(TableSource, "load", failing)
    argv = ["convert", str(tmp_path / "t.parquet"), "--samples-per-shard", "4"]
    assert shard.main([*argv, str(tmp_path / "fresh")]) == 1
    assert not (tmp_path / "fresh").exists()
    (tmp_path / "kept").mkdir()
    (tmp_path / "kept" / "mine.txt").write_text("x")
    assert shard.main([*argv, str(tmp_path / "kept")]) == 1
    assert [p.name for p in (tmp_path / "kept").iterdir()] == ["mine.txt"]
