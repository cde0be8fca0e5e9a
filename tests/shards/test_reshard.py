"""Issue 12, re-sharding: converting tar shards or an existing dataset keeps the per-sample
metadata columns of the source index and honours `--label FIELD`; `open_source` names the
files of a folder it leaves out, as the CLI does (it is the CLI's own rule)."""

from __future__ import annotations

import io
import logging
import tarfile
from pathlib import Path
from types import ModuleType

import polars as pl
import pytest
import webdataset as wds

from seta_stream.errors import SourceError
from seta_stream.shards import ConvertOptions, Dataset, convert, open_source, scan_index
from seta_stream.shards.datasetsource import DatasetSource
from seta_stream.shards.sources import TarSource

QUIET = ConvertOptions(progress=False)


@pytest.fixture(scope="module")
def shard(script) -> ModuleType:
    return script("tools/shard.py", "shard_cli_reshard")


def _wds_tars(root: Path, n: int = 20, cls: object = None) -> Path:
    """`n` samples in webdataset's own writer, 7 to a shard: `cls` = i % 3 (or `cls(i)`)."""
    root.mkdir()
    with wds.ShardWriter(str(root / "in-%03d.tar"), maxcount=7, verbose=0) as w:
        for i in range(n):
            value = i % 3 if cls is None else cls(i)  # type: ignore[operator]
            w.write({"__key__": f"k{i:03d}", "txt": f"text {i}", "cls": value})
    return root


def _labels(path: Path) -> list[object]:
    return scan_index(path).sort("key").select("label").collect()["label"].to_list()


# 1. --label FIELD on tar shards


def test_cli_reshard_tars_with_label(
    shard: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = _wds_tars(tmp_path / "in")
    out = tmp_path / "out"
    assert (
        shard.main(["convert", str(src), str(out), "--label", "cls", "--samples-per-shard", "6"])
        == 0
    )
    assert "wrote 20 samples in 4 shards" in capsys.readouterr().out
    assert Dataset.open(out).manifest.metadata_columns == ("label",)
    idx = scan_index(out).collect()
    assert idx.schema["label"].is_integer()
    assert dict(zip(idx["key"], idx["label"], strict=True)) == {
        f"k{i:03d}": i % 3 for i in range(20)
    }
    assert shard.main(["info", str(out)]) == 0
    assert "labels        0: 7, 1: 7, 2: 6" in capsys.readouterr().out


def test_reshard_tars_without_label_has_no_label_column(tmp_path: Path) -> None:
    src = open_source(str(_wds_tars(tmp_path / "in")))
    assert isinstance(src, TarSource) and src.metadata_columns == ()
    convert(src, tmp_path / "out", QUIET)
    assert "label" not in scan_index(tmp_path / "out").collect_schema().names()


def test_label_from_a_single_tar_and_a_glob(tmp_path: Path) -> None:
    root = _wds_tars(tmp_path / "in")
    for src, n in ((str(root / "in-001.tar"), 7), (str(root / "in-00[02].tar"), 13)):
        out = tmp_path / f"out{n}"
        convert(open_source(src, label="cls"), out, QUIET)
        keys = scan_index(out).collect()["key"].to_list()
        assert _labels(out) == [int(k[1:]) % 3 for k in sorted(keys)] and len(keys) == n


def test_label_not_an_integer_names_the_sample(
    shard: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = _wds_tars(tmp_path / "in", cls=lambda i: "cat" if i == 9 else i)
    out = tmp_path / "out"
    assert shard.main(["convert", str(src), str(out), "--label", "cls"]) == 1
    err = capsys.readouterr().err
    assert "in-001.tar: sample 'k009'" in err and "b'cat', not an integer" in err
    assert not out.exists()  # a failed conversion leaves nothing behind
    with pytest.raises(
        SourceError, match=r"in-000.tar: sample 'k000': field 'txt' holds b'text 0'"
    ):
        convert(open_source(str(src), label="txt"), out, QUIET)


def test_label_missing_on_one_sample_names_it(tmp_path: Path) -> None:
    root = tmp_path / "in"
    root.mkdir()
    with tarfile.open(root / "a.tar", "w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in (("s0.cls", b"1"), ("s0.txt", b"x"), ("s1.txt", b"y"), ("s2.cls", b"0")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with pytest.raises(SourceError, match=r"a\.tar: sample 's1': no field 'cls'.*\['txt'\]"):
        convert(open_source(str(root), label="cls"), tmp_path / "out", QUIET)
    assert not (tmp_path / "out").exists()
    with pytest.raises(SourceError, match=r"no sample has the field 'label'.*\['cls', 'txt'\]"):
        open_source(str(root), label="label")


def test_label_on_key_grouped_files(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for i in range(4):
        (src / f"k{i}.cls").write_text(f" {i * 2}\n")
        (src / f"k{i}.txt").write_text("t")
    convert(open_source(str(src), label="cls"), tmp_path / "out", QUIET)
    assert _labels(tmp_path / "out") == [0, 2, 4, 6]


# 2. an existing seta_stream dataset keeps its metadata columns


def _table_dataset(tmp_path: Path, **opts: object) -> Path:
    n = 30
    table = pl.DataFrame(
        {
            "key": [f"s{i:03d}" for i in range(n)],
            "label": [i % 4 for i in range(n)],
            "score": [i / 10 for i in range(n)],
            "caption": [f"caption {i}" for i in range(n)],
            "x": [[float(i), 1.0] for i in range(n)],
        }
    )
    table.write_parquet(tmp_path / "t.parquet")
    out = tmp_path / "first"
    convert(open_source(str(tmp_path / "t.parquet")), out, ConvertOptions(progress=False, **opts))  # type: ignore[arg-type]
    return out


@pytest.mark.parametrize("fmt", ["tar", "arrow"])
def test_reshard_dataset_keeps_metadata_columns(tmp_path: Path, fmt: str) -> None:
    first = _table_dataset(tmp_path, format=fmt, samples_per_shard=8, compress="zstd")
    before = scan_index(first).drop("sample_id", "shard", "offset", "length", "members")
    src = open_source(str(first))
    assert isinstance(src, DatasetSource)
    assert src.metadata_columns == Dataset.open(first).manifest.metadata_columns
    assert {"label", "score", "caption"} <= set(src.metadata_columns)
    again = tmp_path / "again"
    opts = ConvertOptions(samples_per_shard=7, shuffle=True, workers=2, progress=False)
    m = convert(src, again, opts)  # the source pickled into worker processes
    assert len(m.shards) == 5 and m.metadata_columns == src.metadata_columns
    after = scan_index(again).drop("sample_id", "shard", "offset", "length", "members")
    assert after.sort("key").collect().equals(before.sort("key").collect())
    one = Dataset.open(again).read(0, decode=True)  # members were decompressed and re-stored
    assert one["x.json"] == [float(int(one["__key__"][1:])), 1.0]


def test_tars_of_a_dataset_named_one_by_one_say_what_is_lost(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first = _table_dataset(tmp_path, samples_per_shard=8)
    for src in (str(first / "*.tar"), str(first / "shard-000001.tar")):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="seta_stream"):
            assert isinstance(open_source(src), TarSource)
        assert "without its metadata columns ['label', 'score', 'caption']" in caplog.text
        assert "give the folder" in caplog.text


def test_reshard_dataset_label_from_a_field_replaces_the_column(tmp_path: Path) -> None:
    images = tmp_path / "images"
    for c, n in (("ant", 3), ("bee", 2)):
        (images / c).mkdir(parents=True)
        for i in range(n):
            (images / c / f"{i}.txt").write_text(str(10 + i))
    first = tmp_path / "first"
    convert(open_source(str(images)), first, QUIET)
    kept = tmp_path / "kept"
    m = convert(open_source(str(first)), kept, QUIET)
    assert m.extra["classes"] == ["ant", "bee"] and _labels(kept) == [0, 0, 0, 1, 1]
    relabelled = tmp_path / "relabelled"
    m = convert(open_source(str(kept), label="txt"), relabelled, QUIET)
    assert _labels(relabelled) == [10, 11, 12, 10, 11] and "classes" not in m.extra


# 3. open_source names what it leaves out, as the CLI does; strict=True refuses


def _with_leftovers(root: Path) -> Path:
    (root / "notes.txt").write_text("hello")
    (root / "more.tar.gz").write_bytes(b"\x1f\x8b not really")
    return root


def test_open_source_names_files_beside_tars(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = _with_leftovers(_wds_tars(tmp_path / "in"))
    with caplog.at_level(logging.WARNING, logger="seta_stream"):
        src = open_source(str(root))
    assert len(src) == 20
    (record,) = [r for r in caplog.records if r.name == "seta_stream"]
    assert record.levelno == logging.WARNING
    assert "2 file(s) skipped, not .tar shards: more.tar.gz, notes.txt" in record.getMessage()
    assert "extract it" in record.getMessage()
    with pytest.raises(SourceError, match=r"2 file\(s\) skipped.*more\.tar\.gz.*strict"):
        open_source(str(root), strict=True)


def test_open_source_names_files_beside_a_dataset(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first = _table_dataset(tmp_path, samples_per_shard=8)
    with caplog.at_level(logging.WARNING, logger="seta_stream"):
        open_source(str(first), strict=True)  # a clean dataset folder: nothing to say
    assert not caplog.records
    for i in range(7):
        (first / f"extra-{i}.txt").write_text("x")
    with caplog.at_level(logging.WARNING, logger="seta_stream"):
        assert len(open_source(str(first))) == 30
    message = caplog.records[-1].getMessage()
    assert "7 file(s) skipped" in message and "extra-0.txt" in message and "(2 more)" in message
    with pytest.raises(SourceError, match="7 file"):
        open_source(str(first), strict=True)


def test_open_source_strict_on_key_grouped_files(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "k1.json").write_text("{}")
    (src / "README").write_text("no key")
    with pytest.raises(SourceError, match=r"1 file\(s\) skipped, no KEY\.EXT name.*README"):
        open_source(str(src), strict=True)
    assert len(open_source(str(src))) == 1


def test_cli_and_api_say_the_same(
    shard: ModuleType,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    root = _with_leftovers(_wds_tars(tmp_path / "in"))
    with caplog.at_level(logging.WARNING, logger="seta_stream"):
        open_source(str(root))
    api = caplog.records[-1].getMessage()
    assert shard.main(["convert", str(root), str(tmp_path / "out")]) == 0
    assert f"shard.py convert: warning: {api}\n" in capsys.readouterr().err
    assert "label" not in scan_index(tmp_path / "out").collect_schema().names()
