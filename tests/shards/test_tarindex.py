"""`scan_tar` against WebDataset on tars written by GNU tar, Python's tarfile and TarWriter.

Every valid tar is checked three ways: the samples (keys, field names, order) equal what
`webdataset.WebDataset` yields; the bytes at each member's (data_offset, size) equal
WebDataset's bytes; and the slice [offset, offset + length) of each sample, parsed alone by
WebDataset's own tar iterator, gives exactly that sample. Bad tars must raise ShardFormatError
naming the file and the byte offset.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import signal
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path

import fsspec
import pytest
import webdataset as wds
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from webdataset.tariterators import group_by_keys, tar_file_iterator

from seta_stream.errors import ShardFormatError
from seta_stream.shards.tarindex import TarScan, scan_tar

pytestmark = pytest.mark.webdataset  # it reads with webdataset (tests/conftest.py)

TAR = shutil.which("tar") or "/usr/bin/tar"
BIG = 3 * 1024 * 1024 + 17
_MTIME = 1_700_000_000

# (kind, name, payload): payload is the data of a file or the target of a link.
Entry = tuple[str, str, bytes | str]

BASE: list[Entry] = [
    ("dir", "a.b", ""),
    ("dir", "a.b/c.d", ""),
    ("file", "a.b/c.d/x.jpg", b"jpeg bytes"),
    ("file", "a.b/c.d/x.cls", b""),  # zero-length
    ("sym", "a.b/c.d/x.txt", "x.jpg"),  # not a sample member, does not end sample x
    ("file", "a.b/c.d/x.json", b'{"a": 1}'),
    ("hard", "y.jpg", "a.b/c.d/x.jpg"),
    ("file", "__meta__", b"meta"),
    ("file", "__info__/x.json", b"{}"),
    ("file", "README", b"no extension"),
    ("file", "k.a", b"k first"),
    ("file", "m.a", b"m"),
    ("file", "k.b", b"k again"),  # non-adjacent key: another sample
    ("file", "s.seg.PNG", b"upper-case extension"),
    ("file", "p" * 90 + "/" + "q" * 50 + ".bin", b"needs the ustar prefix"),
    ("file", "ünïcødé/画像.JPG", b"utf-8 name"),
    ("file", "big.npy", os.urandom(BIG)),
    ("file", "big.cls", b"7"),
]
LONG: list[Entry] = [
    ("file", "L" * 120 + ".jpg", b"over 100"),
    ("file", "d" * 100 + "/" + "e" * 100 + "/" + "f" * 80 + ".png", b"over 255"),
    ("file", "/abs/x.json", b"absolute"),
    ("hard", "zz_hard.jpg", "L" * 120 + ".jpg"),  # a long link target: GNU `K` header
    ("sym", "zz_sym.txt", "t" * 150),
]


def _write_tarfile(path: Path, entries: list[Entry], fmt: int) -> None:
    with tarfile.open(path, "w", format=fmt, encoding="utf-8") as tf:
        for kind, name, payload in entries:
            info = tarfile.TarInfo(name)
            info.mtime = _MTIME
            if kind == "file":
                assert isinstance(payload, bytes)
                info.size = len(payload)
                tf.addfile(info, io.BytesIO(payload))
                continue
            info.type = {"dir": tarfile.DIRTYPE, "sym": tarfile.SYMTYPE, "hard": tarfile.LNKTYPE}[
                kind
            ]
            info.mode = 0o755
            assert isinstance(payload, str)
            info.linkname = payload
            tf.addfile(info)


def _make_tree(root: Path, entries: list[Entry]) -> None:
    for kind, name, payload in entries:
        target = root / name.lstrip("/")
        if kind == "dir":
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        assert isinstance(payload, (bytes, str))
        if kind == "file":
            assert isinstance(payload, bytes)
            target.write_bytes(payload)
        elif kind == "sym":
            assert isinstance(payload, str)
            target.symlink_to(payload)
        else:
            assert isinstance(payload, str)
            os.link(root / payload, target)


def _gnu_tar(path: Path, root: Path, *args: str, dot: bool = False) -> None:
    top = ["."] if dot else sorted(os.listdir(root))
    cmd = [TAR, *args, "--sort=name", "--mtime=@0", "--owner=0", "--group=0", "--numeric-owner"]
    subprocess.run([*cmd, "-cf", str(path), "-C", str(root), *top], check=True)


def _wds(path: Path) -> list[dict[str, bytes | str]]:
    ds = wds.WebDataset(str(path), shardshuffle=False, empty_check=False)
    return [{k: v for k, v in s.items() if k in ("__key__",) or not k.startswith("__")} for s in ds]


def _scan(path: Path, **kw: bool) -> TarScan:
    with open(path, "rb") as f:
        return scan_tar(f, name=str(path), size=path.stat().st_size, **kw)


def _slice_sample(blob: bytes) -> list[dict[str, bytes | str]]:
    files = ({**f, "__url__": "slice"} for f in tar_file_iterator(io.BytesIO(blob)))
    return [{k: v for k, v in s.items() if k != "__url__"} for s in group_by_keys(files)]


def check_matches_webdataset(path: Path) -> TarScan:
    scan = _scan(path)
    expected = _wds(path)
    assert [s.key for s in scan.samples] == [e["__key__"] for e in expected]
    fd = os.open(path, os.O_RDONLY)
    try:
        for sample, want in zip(scan.samples, expected, strict=True):
            got: dict[str, bytes | str] = {"__key__": sample.key}
            for ext, off, size in sample.members:
                got[ext] = os.pread(fd, size, off)
            assert list(got) == list(want)  # same fields, same order
            assert got == want
            assert sample.offset % 512 == 0
            assert sample.length % 512 == 0
            assert sample.offset + sample.length <= scan.end_offset <= scan.size
            blob = os.pread(fd, sample.length, sample.offset)
            assert _slice_sample(blob) == [want]
    finally:
        os.close(fd)
    ends = [s.offset + s.length for s in scan.samples]
    assert all(e <= s.offset for e, s in zip(ends, scan.samples[1:], strict=False))
    return scan


def _raw_header(
    name: bytes,
    size: int,
    typeflag: bytes = b"0",
    *,
    extra: Callable[[bytearray], None] | None = None,
) -> bytes:
    """One ustar header block built by hand, with a correct checksum."""
    h = bytearray(512)
    h[0 : len(name)] = name
    h[100:108] = b"0000644\x00"
    h[108:116] = h[116:124] = b"0000000\x00"
    h[124:136] = b"%011o\x00" % size
    h[136:148] = b"%011o\x00" % _MTIME
    h[156:157] = typeflag
    h[257:265] = b"ustar\x0000"
    if extra is not None:
        extra(h)
    h[148:156] = b" " * 8
    h[148:156] = b"%06o\x00 " % sum(h)
    return bytes(h)


def _padded(data: bytes) -> bytes:
    return data + b"\x00" * (-len(data) % 512)


def _pax_member(path: str, data: bytes) -> bytes:
    """A pax `x` header carrying `path` verbatim (even NUL bytes), then the member."""
    value = path.encode("utf-8", "surrogateescape")
    body = b" path=" + value + b"\n"
    n = len(body) + 1  # the record's length counts its own digits
    while len(str(n)) + len(body) != n:
        n += 1
    record = str(n).encode() + body
    return (
        _raw_header(b"PaxHeaders/x", len(record), b"x")
        + _padded(record)
        + _raw_header(b"placeholder.bin", len(data))
        + _padded(data)
    )


def _archive(*parts: bytes) -> bytes:
    return b"".join(parts) + b"\x00" * 1024


def _file_member(name: str, data: bytes) -> bytes:
    return _raw_header(name.encode(), len(data)) + _padded(data)


# ---------------------------------------------------------------- valid tars, many writers


@pytest.mark.parametrize(
    ("fmt", "entries"),
    [
        (tarfile.USTAR_FORMAT, BASE),
        (tarfile.GNU_FORMAT, BASE + LONG),
        (tarfile.PAX_FORMAT, BASE + LONG),
    ],
    ids=["ustar", "gnu", "pax"],
)
def test_python_tarfile_formats(tmp_path: Path, fmt: int, entries: list[Entry]) -> None:
    path = tmp_path / "shard.tar"
    _write_tarfile(path, entries, fmt)
    scan = check_matches_webdataset(path)
    keys = [s.key for s in scan.samples]
    assert keys[:4] == ["a.b/c.d/x", "k", "m", "k"]
    assert [m.ext for m in scan.samples[0].members] == ["jpg", "cls", "json"]
    assert "s" in keys
    assert any(m.ext == "seg.png" for s in scan.samples for m in s.members)
    assert scan.num_members == len(entries)
    big = next(s for s in scan.samples if s.key == "big")
    assert big.members[0].size == BIG
    if fmt == tarfile.USTAR_FORMAT:  # the 145-char path really sits in the prefix field
        raw = path.read_bytes()
        at = raw.index(b"q" * 50 + b".bin\x00")
        assert at % 512 == 0  # the name field holds only the last part...
        assert raw[at + 345 : at + 435] == b"p" * 90  # ...and the prefix field the rest
    else:
        assert "/abs/x" in keys
        assert "d" * 100 + "/" + "e" * 100 + "/" + "f" * 80 in keys


@pytest.mark.parametrize(("fmt", "dot"), [("gnu", False), ("pax", False), ("gnu", True)])
def test_gnu_tar(tmp_path: Path, fmt: str, dot: bool) -> None:
    root = tmp_path / "root"
    root.mkdir()
    entries = [e for e in BASE + LONG if not e[1].startswith("/")]
    _make_tree(root, entries)
    path = tmp_path / "shard.tar"
    _gnu_tar(path, root, f"--format={fmt}", dot=dot)
    raw = path.read_bytes()
    assert (b"././@LongLink" in raw) is (fmt == "gnu")
    scan = check_matches_webdataset(path)
    keys = [s.key for s in scan.samples]
    top = "./" if dot else ""
    assert top + "a.b/c.d/x" in keys
    assert top + "d" * 100 + "/" + "e" * 100 + "/" + "f" * 80 in keys
    assert top + "ünïcødé/画像" in keys
    # GNU tar stores the second name of a hard link as a link entry, skipped like a symlink
    assert top + "y" not in keys
    assert top + "zz_hard" not in keys


def test_webdataset_tarwriter(tmp_path: Path) -> None:
    path = tmp_path / "shard.tar"
    with wds.TarWriter(str(path)) as sink:
        for i in range(20):
            sink.write({"__key__": f"s{i:03d}", "x.npy": os.urandom(i * 100), "cls": str(i)})
        sink.write({"__key__": "dir.with.dots/s", "txt": "t"})
    scan = check_matches_webdataset(path)
    assert len(scan.samples) == 21
    assert scan.samples[-1].key == "dir.with.dots/s"
    assert [m.ext for m in scan.samples[0].members] == ["cls", "x.npy"]


def test_checksum_and_reads_headers_only(tmp_path: Path) -> None:
    path = tmp_path / "shard.tar"
    entries: list[Entry] = [("file", f"s{i}.bin", os.urandom(2 << 20)) for i in range(4)]
    _write_tarfile(path, entries, tarfile.GNU_FORMAT)
    with open(path, "rb", buffering=0) as raw:
        counted = _CountingFile(raw)
        scan = scan_tar(counted, name="shard.tar")
    # 5 header blocks (4 members and the end marker, each with the byte before it, which
    # tarfile reads to check the file is long enough) and the zero tail; never the 8 MiB of data
    assert counted.bytes_read <= 5 * 513 + (scan.size - scan.end_offset)
    assert scan.sha256 is None
    assert _scan(path, checksum=True).sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


class _CountingFile:
    """An unbuffered file that counts the bytes read through it."""

    def __init__(self, raw: io.FileIO) -> None:
        self._f = raw
        self.bytes_read = 0

    def read(self, n: int = -1, /) -> bytes:
        data = self._f.read(n)
        assert data is not None
        self.bytes_read += len(data)
        return data

    def seek(self, offset: int, whence: int = 0, /) -> int:
        return self._f.seek(offset, whence)

    def tell(self) -> int:
        return self._f.tell()


def test_fsspec_files(tmp_path: Path) -> None:
    path = tmp_path / "shard.tar"
    _write_tarfile(path, BASE + LONG, tarfile.PAX_FORMAT)
    local = _scan(path)
    with fsspec.open(f"file://{path}", "rb") as f:
        assert scan_tar(f, name="file") == _with_name(local, "file")
    fs = fsspec.filesystem("memory")
    fs.pipe("/shard.tar", path.read_bytes())
    with fs.open("/shard.tar", "rb") as f:
        assert scan_tar(f, name="mem") == _with_name(local, "mem")


def _with_name(scan: TarScan, name: str) -> TarScan:
    return TarScan(
        name=name,
        size=scan.size,
        num_members=scan.num_members,
        end_offset=scan.end_offset,
        samples=scan.samples,
        sha256=None,
    )


def test_end_of_archive_variants(tmp_path: Path) -> None:
    """A missing or lone end marker is what tar and WebDataset accept; extra zeros are fine."""
    members = _file_member("a.x", b"1") + _file_member("b.x", b"22")
    for blob, end in [
        (members, len(members)),  # no end marker, EOF at a block boundary
        (members + b"\x00" * 512, len(members)),  # lone zero block
        (members + b"\x00" * 20480, len(members)),  # record padding
    ]:
        path = tmp_path / "t.tar"
        path.write_bytes(blob)
        scan = check_matches_webdataset(path)
        assert [s.key for s in scan.samples] == ["a", "b"]
        assert scan.end_offset == end


def test_empty_archive(tmp_path: Path) -> None:
    path = tmp_path / "empty.tar"
    with tarfile.open(path, "w"):
        pass
    scan = _scan(path)
    assert scan.samples == ()
    assert scan.num_members == 0
    assert scan.end_offset == 0


def test_odd_but_valid_names(tmp_path: Path) -> None:
    path = tmp_path / "t.tar"
    path.write_bytes(_archive(_file_member("a..b.jpg", b"1"), _file_member("/abs/..x.c", b"2")))
    scan = check_matches_webdataset(path)
    assert [s.key for s in scan.samples] == ["a", "/abs/"]


# ---------------------------------------------------------------- bad tars


def _expect_error(path: Path, *fragments: str) -> ShardFormatError:
    with pytest.raises(ShardFormatError) as info:
        _scan(path)
    message = str(info.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message, message
    return info.value


@pytest.fixture
def three(tmp_path: Path) -> tuple[Path, list[tarfile.TarInfo]]:
    path = tmp_path / "good.tar"
    entries: list[Entry] = [
        ("file", "a.jpg", b"A" * 3000),
        ("file", "L" * 150 + ".jpg", b"long"),
        ("file", "c.jpg", b"C" * 700),
    ]
    _write_tarfile(path, entries, tarfile.GNU_FORMAT)
    with tarfile.open(path) as tf:
        return path, tf.getmembers()


def _cut(src: Path, n: int) -> Path:
    dst = src.with_name(f"cut{n}.tar")
    dst.write_bytes(src.read_bytes()[:n])
    return dst


def test_truncated_inside_header(three: tuple[Path, list[tarfile.TarInfo]]) -> None:
    path, infos = three
    c = infos[2].offset
    _expect_error(_cut(path, c + 100), f"byte {c}", "truncated", "L" * 150)
    # inside the GNU long-name header pair of the second member
    b = infos[1].offset
    _expect_error(_cut(path, b + 512 + 512 + 10), f"byte {b}")


def test_truncated_inside_data_and_padding(three: tuple[Path, list[tarfile.TarInfo]]) -> None:
    path, infos = three
    a = infos[0]
    _expect_error(_cut(path, a.offset_data + 1000), "'a.jpg'", f"byte {a.offset}", "truncated")
    _expect_error(_cut(path, a.offset_data + 3000), "'a.jpg'", "truncated")  # cut in padding
    c = infos[2]
    _expect_error(_cut(path, c.offset_data + 700), "'c.jpg'", "truncated")


def test_cut_at_member_boundary_is_a_shorter_shard(
    three: tuple[Path, list[tarfile.TarInfo]],
) -> None:
    path, infos = three
    scan = check_matches_webdataset(_cut(path, infos[2].offset))
    assert [s.key for s in scan.samples] == ["a", "L" * 150]


def test_corrupt_checksum_mid_archive(three: tuple[Path, list[tarfile.TarInfo]]) -> None:
    path, infos = three
    raw = bytearray(path.read_bytes())
    c = infos[2].offset
    raw[c + 1] ^= 0x20  # flip a bit in the name: the checksum no longer matches
    path.write_bytes(bytes(raw))
    assert len(_wds(path)) == 2  # webdataset silently stops here
    _expect_error(path, f"byte {c}", "checksum", "L" * 150)


def test_data_after_end_marker(three: tuple[Path, list[tarfile.TarInfo]], tmp_path: Path) -> None:
    path, _ = three
    cat = tmp_path / "cat.tar"
    cat.write_bytes(path.read_bytes() * 2)
    _expect_error(cat, f"byte {path.stat().st_size}", "end-of-archive")


def test_zeroed_header_mid_archive(three: tuple[Path, list[tarfile.TarInfo]]) -> None:
    path, infos = three
    raw = bytearray(path.read_bytes())
    b = infos[1].offset
    raw[b : b + 512] = bytes(512)
    path.write_bytes(bytes(raw))
    _expect_error(path, f"marker at byte {b}")


def test_empty_file_compressed_and_size_mismatch(
    three: tuple[Path, list[tarfile.TarInfo]], tmp_path: Path
) -> None:
    empty = tmp_path / "empty.tar"
    empty.write_bytes(b"")
    _expect_error(empty, "empty file")
    path, _ = three
    gz = tmp_path / "x.tar.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    _expect_error(gz, "gzip")
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"not a tar" * 100)
    _expect_error(junk, "byte 0")
    with open(path, "rb") as f, pytest.raises(ShardFormatError, match="expected 5 bytes"):
        scan_tar(f, name="x", size=5)


@pytest.mark.parametrize("fmt", ["gnu", "pax"])
def test_gnu_tar_sparse_member(tmp_path: Path, fmt: str) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "a.txt").write_bytes(b"plain")
    with open(root / "hole.bin", "wb") as f:
        f.write(b"A" * 4096)
        f.seek(4 << 20)
        f.write(b"B" * 4096)
        f.truncate(8 << 20)
    path = tmp_path / "sparse.tar"
    _gnu_tar(path, root, f"--format={fmt}", "--sparse")
    with tarfile.open(path) as tf:
        hole = tf.getmember("hole.bin")
    assert hole.sparse is not None, "tar did not store hole.bin as sparse"
    _expect_error(path, "'hole.bin'", f"byte {hole.offset}", "sparse")


def test_hand_made_old_gnu_sparse(tmp_path: Path) -> None:
    def sparse_map(h: bytearray) -> None:
        h[257:265] = b"ustar  \x00"  # GNU magic: the prefix area holds the sparse map
        h[386:398] = b"%011o\x00" % 0
        h[398:410] = b"%011o\x00" % 512
        h[483:495] = b"%011o\x00" % 4096  # real size

    path = tmp_path / "s.tar"
    sparse = _raw_header(b"s.bin", 512, b"S", extra=sparse_map) + b"Z" * 512
    path.write_bytes(_archive(_file_member("a.x", b"1"), sparse))
    _expect_error(path, "'s.bin'", "byte 1024", "sparse")


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("../evil.jpg", "'..'"),
        ("a/../../b.jpg", "'..'"),
        ("a/..", "'..'"),
        ("a\x00b.jpg", "NUL"),
    ],
)
def test_refused_names(tmp_path: Path, name: str, fragment: str) -> None:
    path = tmp_path / "t.tar"
    path.write_bytes(_archive(_file_member("ok.x", b"1"), _pax_member(name, b"evil")))
    _expect_error(path, fragment, "byte 1024")


def test_duplicate_field_in_sample(tmp_path: Path) -> None:
    path = tmp_path / "t.tar"
    parts = [_file_member("k.jpg", b"1"), _file_member("k.JPG", b"2")]
    path.write_bytes(_archive(*parts))
    with pytest.raises(ValueError, match="duplicate"):
        _wds(path)
    _expect_error(path, "'k.JPG'", "byte 1024", "'jpg'")


def test_reserved_field_name(tmp_path: Path) -> None:
    path = tmp_path / "t.tar"
    path.write_bytes(_archive(_file_member("k.jpg", b"1"), _file_member("k.__key__", b"2")))
    with pytest.raises(ValueError, match="duplicate"):
        _wds(path)  # webdataset refuses this one too
    _expect_error(path, "'k.__key__'", "byte 1024", "reserved")


def test_global_pax_header_renaming_members(tmp_path: Path) -> None:
    path = tmp_path / "t.tar"
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT, pax_headers={"path": "x.y"}) as tf:
        tf.addfile(tarfile.TarInfo("a.jpg"))
    _expect_error(path, "global pax header", "path")


# ---------------------------------------------------------------- fuzz


def _small_tar() -> bytes:
    """GNU long name, pax UTF-8 name, a directory, a zero-length member; ~6 KiB."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tf:
        members = [("a.jpg", b"x" * 700), ("L" * 120 + ".cls", b"1"), ("c.txt", b"")]
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        d = tarfile.TarInfo("dir")
        d.type = tarfile.DIRTYPE
        tf.addfile(d)
        tf.format = tarfile.PAX_FORMAT
        info = tarfile.TarInfo("ü" * 60 + ".json")
        info.size = 3
        tf.addfile(info, io.BytesIO(b"{ }"))
        end = tf.offset
    return buf.getvalue()[:end] + b"\x00" * 1024


SMALL = _small_tar()


class _Hang(Exception):
    pass


def _alarm(signum: int, frame: object) -> None:
    raise _Hang


HEADERS = [o for o in range(0, len(SMALL), 512) if SMALL[o + 257 : o + 262] == b"ustar"]


def _fix_checksum(blob: bytearray, at: int) -> None:
    block = blob[at : at + 512]
    block[148:156] = b" " * 8
    blob[at + 148 : at + 156] = b"%06o\x00 " % sum(block)


@settings(max_examples=400, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(HEADERS),
    st.lists(st.tuples(st.integers(0, 1023), st.integers(0, 255)), min_size=1, max_size=6),
    st.booleans(),
    st.one_of(st.none(), st.integers(0, len(SMALL))),
)
def test_mutations_raise_only_shard_format_error(
    header: int, edits: list[tuple[int, int]], fix: bool, cut: int | None
) -> None:
    """Edit bytes in and after one header (re-checksummed or not), maybe cut the file."""
    blob = bytearray(SMALL)
    for at, value in edits:
        blob[min(header + at, len(blob) - 1)] = value
    if fix:  # get past the checksum into the field parsers
        _fix_checksum(blob, header)
    data = bytes(blob if cut is None else blob[:cut])
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, 5.0)  # a hang fails the test instead of blocking it
    try:
        scan = scan_tar(io.BytesIO(data), name="fuzz.tar")
    except ShardFormatError as e:
        error: ShardFormatError | None = e
    else:
        error = None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    if error is not None:
        assert str(error).startswith("fuzz.tar: ")
        return
    previous_end = 0
    for sample in scan.samples:
        assert sample.offset >= previous_end
        previous_end = sample.offset + sample.length
        assert previous_end <= len(data)
        for _, off, size in sample.members:
            assert sample.offset < off
            assert off + size <= previous_end


def test_fuzz_seed_is_valid() -> None:
    assert len(HEADERS) == 7
    scan = scan_tar(io.BytesIO(SMALL), name="seed.tar")
    assert [s.key for s in scan.samples] == ["a", "L" * 120, "c", "ü" * 60]
