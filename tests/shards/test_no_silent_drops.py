"""Issue 12, no silent drops: what `index`, `convert` and `verify` leave out or cannot check
is named (a warning, a note, an error), and `--strict` / `--require-checksums` make it fail."""

from __future__ import annotations

import io
import logging
import tarfile
from pathlib import Path
from types import ModuleType

import pytest

from seta_stream.errors import SeTaStreamError, ShardFormatError, SourceError
from seta_stream.shards import Dataset, index_tars, open_source, verify
from seta_stream.shards.maintain import NO_CHECKSUMS


@pytest.fixture(scope="module")
def shard(script) -> ModuleType:
    return script("tools/shard.py", "shard_cli_no_silent_drops")


def _tar(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _samples(n: int, prefix: str = "s") -> dict[str, bytes]:
    return {f"{prefix}{i:03d}.{ext}": f"{i}-{ext}".encode() for i in range(n) for ext in ("a", "b")}


def _cut_off(path: Path, members: dict[str, bytes]) -> int:
    """A tar that ends right after its last member, without the end-of-archive zero blocks."""
    _tar(path, members)
    with tarfile.open(path) as tar:
        last = tar.getmembers()[-1]
    end = last.offset_data + -(-last.size // 512) * 512
    with open(path, "r+b") as f:
        f.truncate(end)
    return end


def _folder(tmp_path: Path) -> Path:
    root = tmp_path / "ds"
    root.mkdir()
    _tar(root / "part-0.tar", _samples(3))
    _tar(root / "part-1.tar", _samples(2, "t"))
    (root / "more.tgz").write_bytes(b"\x1f\x8b not really")
    (root / "notes.txt").write_text("hello")
    return root


# 1. index / convert name every file they skip; --strict refuses; archives are refused


def test_index_names_skipped_files(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = _folder(tmp_path)
    with caplog.at_level(logging.WARNING, logger="seta_stream"):
        m = index_tars(str(root), progress=False)
    assert m.num_samples == 5
    assert m.extra["skipped_files"] == {"count": 2, "first": ["more.tgz", "notes.txt"]}
    (message,) = [r.getMessage() for r in caplog.records]
    assert "2 file(s) skipped" in message and "more.tgz" in message and "notes.txt" in message
    assert "extract it" in message
    # a second index of the same folder does not count its own dataset.json / index/
    assert index_tars(str(root), progress=False).extra["skipped_files"]["count"] == 2


def test_index_strict_refuses_skipped_files_before_writing(tmp_path: Path) -> None:
    root = _folder(tmp_path)
    with pytest.raises(SeTaStreamError, match=r"2 file\(s\) skipped.*more\.tgz, notes\.txt"):
        index_tars(str(root), progress=False, strict=True)
    assert not (root / "dataset.json").exists() and not (root / "index").exists()


def test_index_clean_folder_records_nothing_skipped(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    root.mkdir()
    _tar(root / "part-0.tar", _samples(2))
    m = index_tars(str(root), progress=False, strict=True)
    assert "skipped_files" not in m.extra


def test_index_folder_of_only_an_archive_says_what_to_run(tmp_path: Path) -> None:
    (tmp_path / "data.tar.gz").write_bytes(b"\x1f\x8b")
    with pytest.raises(SeTaStreamError, match=r"data\.tar\.gz: a compressed archive.*extract it"):
        index_tars(str(tmp_path), progress=False)


def test_cli_index_prints_skipped_and_strict_fails(
    shard: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = _folder(tmp_path)
    assert shard.main(["index", str(root), "--strict"]) == 1
    err = capsys.readouterr().err
    assert "error:" in err and "more.tgz" in err and not (root / "dataset.json").exists()
    assert shard.main(["index", str(root)]) == 0
    err = capsys.readouterr().err
    assert "shard.py index: warning:" in err and "more.tgz" in err and "notes.txt" in err


def test_convert_folder_refuses_an_archive(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "k1.json").write_text("{}")
    (src / "k2.json").write_text("{}")
    (src / "batch.tar.gz").write_bytes(b"\x1f\x8b")
    with pytest.raises(SourceError, match=r"batch\.tar\.gz: a compressed archive.*extract it"):
        open_source(str(src))


def test_convert_image_folder_refuses_an_archive(tmp_path: Path) -> None:
    for cls in ("cat", "dog"):
        (tmp_path / "src" / cls).mkdir(parents=True)
        (tmp_path / "src" / cls / "1.jpg").write_bytes(b"jpg")
    (tmp_path / "src" / "dog" / "more.zip").write_bytes(b"PK")
    with pytest.raises(SourceError, match=r"more\.zip: a compressed archive"):
        open_source(str(tmp_path / "src"))


def test_convert_folder_names_unused_files(
    shard: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for k in ("k1", "k2"):
        (src / f"{k}.json").write_text("{}")
    (src / "README").write_text("no key")
    dst = tmp_path / "out"
    assert shard.main(["convert", str(src), str(dst), "--strict"]) == 1
    err = capsys.readouterr().err
    assert "README" in err and "(refused: strict)" in err and not dst.exists()
    assert shard.main(["convert", str(src), str(dst)]) == 0
    err = capsys.readouterr().err
    assert "shard.py convert: warning:" in err and "1 file(s) skipped" in err and "README" in err
    assert Dataset.open(dst).num_samples == 2


def test_convert_folder_of_tars_names_the_rest(
    shard: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = _folder(tmp_path)
    assert shard.main(["convert", str(root), str(tmp_path / "o1"), "--strict"]) == 1
    assert "more.tgz" in capsys.readouterr().err and not (tmp_path / "o1").exists()
    assert shard.main(["convert", str(root), str(tmp_path / "o2")]) == 0
    err = capsys.readouterr().err
    assert "warning:" in err and "more.tgz, notes.txt" in err and "extract it" in err
    assert Dataset.open(tmp_path / "o2").num_samples == 5


# 2. verify says what it could not check


def test_verify_notes_missing_checksums(
    shard: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "ds"
    root.mkdir()
    _tar(root / "part-0.tar", _samples(2))
    index_tars(str(root), progress=False)
    result = verify(str(root), progress=False)
    assert result == [] and result.notes == [NO_CHECKSUMS]
    assert NO_CHECKSUMS == "no checksums recorded: checked sizes and headers only"
    strict = verify(str(root), progress=False, require_checksums=True)
    assert len(strict) == 1 and NO_CHECKSUMS in strict[0]
    assert shard.main(["verify", str(root)]) == 0
    assert NO_CHECKSUMS in capsys.readouterr().out
    assert shard.main(["verify", str(root), "--require-checksums"]) == 1
    assert NO_CHECKSUMS in capsys.readouterr().out


def test_verify_with_checksums_has_no_note(shard: ModuleType, tmp_path: Path) -> None:
    root = tmp_path / "ds"
    root.mkdir()
    _tar(root / "part-0.tar", _samples(2))
    index_tars(str(root), progress=False, checksum=True)
    result = verify(str(root), progress=False, require_checksums=True)
    assert result == [] and result.notes == []
    assert shard.main(["verify", str(root), "--require-checksums"]) == 0


# 3. a tar without the end-of-archive zero blocks


def test_cut_off_tar_warns_with_file_and_byte(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "ds"
    root.mkdir()
    end = _cut_off(root / "part-0.tar", _samples(3))
    with caplog.at_level(logging.WARNING, logger="seta_stream"):
        m = index_tars(str(root), progress=False)
    assert m.num_samples == 3
    (message,) = [r.getMessage() for r in caplog.records]
    assert "part-0.tar" in message and f"ends at byte {end}" in message
    assert "no end-of-archive marker" in message
    assert any("no end-of-archive marker" in n for n in verify(str(root), progress=False).notes)


def test_cut_off_tar_strict_is_an_error(
    shard: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "ds"
    root.mkdir()
    _tar(root / "part-0.tar", _samples(2))
    end = _cut_off(root / "part-1.tar", _samples(2, "t"))
    with pytest.raises(ShardFormatError, match=rf"part-1\.tar: .*ends at byte {end}.*strict"):
        index_tars(str(root), progress=False, strict=True)
    assert not (root / "dataset.json").exists()
    assert shard.main(["index", str(root), "--strict"]) == 1
    assert f"ends at byte {end}" in capsys.readouterr().err
    assert shard.main(["index", str(root)]) == 0
    err = capsys.readouterr().err
    assert "warning:" in err and "part-1.tar" in err and f"ends at byte {end}" in err


def test_terminated_tar_gives_no_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = tmp_path / "ds"
    root.mkdir()
    _tar(root / "part-0.tar", _samples(2))
    with caplog.at_level(logging.WARNING, logger="seta_stream"):
        index_tars(str(root), progress=False, strict=True)
    assert caplog.records == []


# 4. KEY. (empty field name): one rule, refused at index time


def test_empty_field_name_refused_at_index(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    root.mkdir()
    _tar(root / "part-0.tar", {"k1.a": b"1", "k1.": b"2"})
    with pytest.raises(ShardFormatError, match=r"part-0\.tar: member 'k1\.' at byte 1024: .*empty"):
        index_tars(str(root), progress=False)
    assert not (root / "dataset.json").exists()


def test_empty_field_name_refused_in_a_folder_to_convert(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "k1.json").write_text("{}")
    (tmp_path / "src" / "k2.").write_text("x")
    with pytest.raises(SourceError, match=r"k2\.: the name 'k2\.' ends in '\.'.*k2\.bin"):
        open_source(str(tmp_path / "src"))
