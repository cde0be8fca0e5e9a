"""Byte mutators and seed inputs for `fuzz/fuzz.py` (seeded: a `random.Random` in, bytes out).

Mutations: bit flips, interesting bytes, insertion, deletion, truncation, block duplication,
octal digit runs, and tar header field corruption (name with '..', NUL or an absolute path,
size, checksum, typeflag, magic), re-checksummed most of the time so the field parsers run.
"""

from __future__ import annotations

import io
import random
import tarfile
from collections.abc import Sequence

import numpy as np

BLOCK = 512
_INTERESTING = (0, 0xFF, 0x7F, 0x80, ord("0"), ord("7"), ord(" "), ord("/"), ord("."), 10)
# (offset, width) of the ustar header fields
FIELDS = {
    "name": (0, 100),
    "mode": (100, 8),
    "size": (124, 12),
    "chksum": (148, 8),
    "typeflag": (156, 1),
    "linkname": (157, 100),
    "magic": (257, 6),
    "version": (263, 2),
    "prefix": (345, 155),
}
_NAMES = (b"../evil.npy", b"a/../../b.cls", b"x\x00y.txt", b"/abs/k.txt", b"k.__key__",
          b"k.cls", b"dir/", b"__meta__/m.json", b".hidden", b"a.b/c", b"\xff\xfe.txt")  # fmt: skip
_TYPES = b"0125LKxgSDV7M\x00"


def first_diff(a: bytes, b: bytes) -> int:
    """The first offset where `a` and `b` differ (the shorter length when one is a prefix)."""
    n = min(len(a), len(b))
    x = np.frombuffer(a, np.uint8, n) != np.frombuffer(b, np.uint8, n)
    hits = np.flatnonzero(x)
    return int(hits[0]) if len(hits) else (n if len(a) != len(b) else len(a))


def mutate(rng: random.Random, data: bytes, *, same_length: bool = False) -> bytes:
    """1-4 random byte-level edits of `data`."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(4 if same_length else 8)
        pos = rng.randrange(len(out)) if out else 0
        if not out and op < 4:
            continue
        if op == 0:
            out[pos] ^= 1 << rng.randrange(8)
        elif op == 1:
            out[pos] = rng.choice(_INTERESTING) if rng.random() < 0.6 else rng.randrange(256)
        elif op == 2:
            run = rng.randbytes(rng.randint(1, 16))
            out[pos : pos + len(run)] = run[: len(out) - pos]
        elif op == 3:
            digits = bytes(rng.choice(b"01234567 \x00") for _ in range(rng.randint(1, 12)))
            out[pos : pos + len(digits)] = digits[: len(out) - pos]
        elif op == 4:
            out[pos:pos] = rng.randbytes(rng.choice((1, 7, 16, BLOCK)))
        elif op == 5:
            del out[pos : pos + rng.choice((1, 9, 64, BLOCK))]
        elif op == 6:
            out = out[:pos]
        else:
            at = rng.randrange(0, max(len(out), 1), BLOCK)
            out[pos:pos] = out[at : at + BLOCK]
    return bytes(out)


def header_offsets(data: bytes) -> list[int]:
    return [
        o for o in range(0, len(data) - BLOCK + 1, BLOCK) if data[o + 257 : o + 262] == b"ustar"
    ]


def fix_checksum(out: bytearray, at: int) -> None:
    block = out[at : at + BLOCK]
    block[148:156] = b" " * 8
    out[at + 148 : at + 156] = b"%06o\x00 " % sum(block)


def corrupt_header(rng: random.Random, data: bytes) -> bytes:
    """Set one field of one tar header to a hostile value; re-checksum it (80%)."""
    heads = header_offsets(data)
    if not heads:
        return mutate(rng, data)
    at = rng.choice(heads)
    field = rng.choice(list(FIELDS))
    off, width = FIELDS[field]
    value = _field_value(rng, field, width)
    out = bytearray(data)
    out[at + off : at + off + width] = value.ljust(width, b"\x00")[:width]
    if field != "chksum" and rng.random() < 0.8:
        fix_checksum(out, at)
    return bytes(out)


def _field_value(rng: random.Random, field: str, width: int) -> bytes:
    if field in ("name", "linkname", "prefix"):
        return rng.choice(_NAMES) if rng.random() < 0.8 else rng.randbytes(rng.randint(1, width))
    if field == "size":
        n = rng.choice((0, 1, 511, 512, 513, 10**6, 8**11 - 1, rng.randrange(1 << 20)))
        return rng.choice(
            (b"%011o\x00" % n, b"\x80" + n.to_bytes(11, "big"), b"\xff" * 12, b"zz", b"-1")
        )
    if field == "typeflag":
        return bytes([rng.choice(_TYPES)]) if rng.random() < 0.8 else rng.randbytes(1)
    if field == "magic":
        return rng.choice((b"ustar\x00", b"ustar ", b"\x00" * 6, b"USTAR\x00"))
    return rng.randbytes(width)


def random_bytes(rng: random.Random) -> bytes:
    n = rng.choice((0, 1, 100, 511, 512, 1024, 1536, 10240))
    data = bytearray(rng.randbytes(n))
    if n >= BLOCK and rng.random() < 0.5:  # enough of a header to get past the magic test
        data[257:263] = b"ustar\x00"
        fix_checksum(data, 0)
    return bytes(data)


# ---------------------------------------------------------------- seed tars


def _tar(fmt: int, members: Sequence[tuple[str, bytes | None, bytes]], **kw: object) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt, **kw) as tf:  # type: ignore[call-overload]
        for name, kind, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            if kind is not None:
                info.type, info.size = kind, 0
                info.linkname = "k0.cls" if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE) else ""
            tf.addfile(info, io.BytesIO(data) if kind is None else None)
    return buf.getvalue()


def seed_tars() -> list[bytes]:
    """Tars as writers make them: ours, GNU (long names, dirs, links), pax (UTF-8, global
    header), ustar (prefix field)."""
    from seta_stream.shards.writer import TarWriter

    buf = io.BytesIO()
    w = TarWriter(buf)
    rng = np.random.default_rng(0)
    for k in range(6):
        arr = io.BytesIO()
        np.save(arr, rng.standard_normal(k + 3).astype(np.float32))
        w.add(f"s{k:03d}", [("x.npy", arr.getvalue()), ("cls", str(k).encode()), ("txt", b"t" * k)])
    w.finish()
    gnu = [("k0.cls", None, b"1"), ("L" * 120 + ".txt", None, b"long" * 200),
           ("d", tarfile.DIRTYPE, b""), ("k1.cls", tarfile.SYMTYPE, b""),
           ("k2.jpg", None, b"\xff\xd8" * 300), ("k2.cls", tarfile.LNKTYPE, b""),
           ("k3.txt", None, b"")]  # fmt: skip
    pax = [("ü" * 40 + ".txt", None, b"x" * 700), ("a/b.c/k.json", None, b'{"a": 1}'),
           ("k9.cls", None, b"9")]  # fmt: skip
    ustar = [("p" * 90 + "/" + "q" * 60 + ".cls", None, b"3"), ("r.cls", None, b"4" * 513)]
    return [
        buf.getvalue(),
        _tar(tarfile.GNU_FORMAT, gnu),
        _tar(tarfile.PAX_FORMAT, pax, pax_headers={"comment": "global"}),
        _tar(tarfile.USTAR_FORMAT, ustar),
    ]
