"""Fuzz targets that read datasets: the index reader, the decoders, and end-to-end reads."""

from __future__ import annotations

import dataclasses
import io
import random
import shutil
from pathlib import Path
from typing import Any

import fuzz_mutate as fm
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import zstandard
from fuzz_targets import Wrong, check, make_dataset
from PIL import Image

from seta_stream.errors import ChecksumError, SeTaStreamError
from seta_stream.shards import Dataset
from seta_stream.shards.decode import PICKLE_EXTS, decode_fields, unzst
from seta_stream.shards.index import SampleIndex
from seta_stream.shards.manifest import read_manifest
from seta_stream.shards.reader import read_samples
from seta_stream.shards.shardindex import LazyIndex, shard_index_name
from seta_stream.storage import Store


class IndexTarget:
    """A shard's index file, edited as a table or mutated as Parquet, loaded the way a reader
    loads it (`LazyIndex.shard`: parse, types, ranges against the manifest) with its checksum
    not recorded; then opened with the real manifest, whose sha256 must refuse any index
    file other than the one it names."""

    name = "index"

    def __init__(self, work: Path) -> None:
        self.sets = []
        for fmt in ("tar", "arrow"):
            live = make_dataset(work / "i", fmt=fmt)
            manifest = read_manifest(Store(live))
            info = manifest.shards[0]
            shards = (dataclasses.replace(info, index_sha256=None), *manifest.shards[1:])
            unchecked = dataclasses.replace(manifest, shards=shards)  # checks past the checksum
            path = live / shard_index_name(info.name)
            original = path.read_bytes()
            table = pq.read_table(io.BytesIO(original))
            self.sets.append((live, path, unchecked, table, original))

    def one(self, rng: random.Random) -> None:
        k = 0 if rng.random() < 0.7 else 1
        live, path, unchecked, table, original = self.sets[k]
        for _ in range(rng.randint(1, 3)):
            table = _edit_table(rng, table)
        buf = io.BytesIO()
        pq.write_table(table, buf)
        data = buf.getvalue()
        if rng.random() < 0.2:
            data = fm.mutate(rng, data)
        try:
            self._load(k, data)
        finally:  # accepted by the loader or not, the open path must refuse it
            path.write_bytes(data)
            try:
                Dataset.open(live).index.shard(0)
                check(data == original, f"{unchecked.format}: an edited index was opened")
            except ChecksumError:
                pass
            finally:
                path.write_bytes(original)

    def _load(self, k: int, data: bytes) -> None:
        live, path, unchecked, _, original = self.sets[k]
        path.write_bytes(data)
        try:
            LazyIndex(Store(live), unchecked).shard(0)
        finally:
            path.write_bytes(original)

    def corpus(self) -> list[bytes]:
        return [self.sets[0][4]]

    def raw(self, data: bytes) -> None:
        self._load(0, data)


_NUMBERS = (-1, 0, 1, 511, 512, 2**31, 2**62, 2**63 - 1, -(2**63))


def _edit_table(rng: random.Random, t: pa.Table) -> pa.Table:
    """One hostile edit: a number, a member, a swap, a row order, a type, a null, a column."""
    n, op = t.num_rows, rng.randrange(9)
    rows = t.to_pylist()
    try:
        return _edit_rows(rng, t, rows, n, op)
    except (KeyError, TypeError):  # an earlier edit dropped or retyped what this one needs
        return t


def _edit_rows(rng: random.Random, t: pa.Table, rows: list[dict[str, Any]], n: int,
               op: int) -> pa.Table:  # fmt: skip
    if op <= 2 and n:  # a number: hostile, another row's, or shifted by a block
        cols = [c for c in ("shard", "offset", "length", "sample_id") if c in t.column_names]
        col = rng.choice(cols or ["offset"])  # none left: KeyError, the edit is skipped
        r = rng.randrange(n)
        v = rng.choice((*_NUMBERS, rows[rng.randrange(n)][col], rows[r][col] + 512))
        rows[r][col] = v if col != "shard" else int(np.clip(v, -(2**31), 2**31 - 1))
    elif op == 3 and n:  # a member's offset, size or name
        r = rng.randrange(n)
        ms = rows[r]["members"]
        if ms:
            m = rng.choice(ms)
            what = rng.choice(("offset", "size", "name"))
            v = rng.choice(("x.pickle", "x.npy.zst", "../x.npy", "")) if what == "name" else None
            m[what] = v if what == "name" else rng.choice((*_NUMBERS, m[what] + 512, m[what] - 1))
            if rng.random() < 0.3:
                ms.append(dict(m))
    elif op == 4 and n > 1:  # two samples' byte ranges swapped, keys kept
        a, b = rng.sample(range(n), 2)
        for col in {"shard", "offset", "length", "members"} & set(t.column_names):
            rows[a][col], rows[b][col] = rows[b][col], rows[a][col]
    elif op == 5 and n > 1:  # rows reordered, duplicated or dropped (ids renumbered or not)
        rows = rng.choice((rows[::-1], rows + rows[:1], rows[1:], rng.sample(rows, n)))
        if rng.random() < 0.5:
            for k, row in enumerate(rows):
                row["sample_id"] = k
    elif op == 6:  # a column of another type
        col = rng.choice(t.column_names)
        typ = rng.choice((pa.float64(), pa.string(), pa.int8(), pa.int32(), pa.binary()))
        try:
            return t.set_column(t.column_names.index(col), col, t[col].cast(typ, safe=False))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return t.drop_columns([col])
    elif op == 7 and n:  # a null
        col = rng.choice(t.column_names)
        rows[rng.randrange(n)][col] = None
    elif op == 8:
        return t.drop_columns([rng.choice(t.column_names)])
    try:
        return pa.Table.from_pylist(rows, schema=t.schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        return t


def _npy(arr: Any) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def _image(mode: str, fmt: str) -> bytes:
    buf = io.BytesIO()
    img = Image.new(mode, (7, 5), color=3 if mode in ("L", "P") else (10, 20, 30)[: len(mode)])
    img.save(buf, format=fmt)
    return buf.getvalue()


def seed_fields() -> list[tuple[str, bytes]]:
    """One or more valid values per decoder, and zstd bombs (limit used: 1 MiB)."""
    arrays = [np.arange(12, dtype=np.float32).reshape(3, 4), np.arange(6, dtype=np.int64),
              np.asfortranarray(np.ones((2, 3, 2), np.uint8)), np.array(True),
              np.zeros(2, dtype=[("a", "<i4"), ("b", "<f8")]), np.array(["ab", "c"])]  # fmt: skip
    out = [("x.npy", _npy(a)) for a in arrays]
    out += [
        ("a.json", b'{"a": [1, 2.5, {"b": null}], "c": "\\u00e9"}'),
        ("t.txt", "héllo".encode()),
    ]
    out += [("cls", b"7"), ("c.cls", b"-3"), ("id", b"12"), ("x.bin", b"\x00\x01")]
    out += [("x.pickle", b"\x80\x04K\x01."), ("x.pkl", b"")]
    for mode, fmt, ext in (("RGB", "PNG", "png"), ("L", "PNG", "png"), ("P", "PNG", "png"),
                           ("RGBA", "PNG", "png"), ("RGB", "JPEG", "jpg"), ("RGB", "BMP", "bmp"),
                           ("L", "GIF", "gif"), ("RGB", "PPM", "ppm"), ("RGB", "TIFF", "tiff"),
                           ("RGB", "WEBP", "webp")):  # fmt: skip
        out.append((f"img.{ext}", _image(mode, fmt)))
    z = zstandard.ZstdCompressor()
    nosize = zstandard.ZstdCompressor(write_content_size=False)
    out += [("x.npy.zst", z.compress(out[0][1])), ("t.txt.zst", nosize.compress(b"hi" * 100))]
    out += [("x.npy.zst", z.compress(out[1][1]) + z.compress(b""))]  # two frames
    out += [
        ("b.bin.zst", z.compress(bytes(2 << 20))),
        ("b.bin.zst", nosize.compress(bytes(3 << 20))),
    ]
    return out


_LIMIT = 1 << 20
_SHAPES = ("(10**12,)", "(1000000000000,)", "(4294967296, 4294967296)", "(-1,)", "()", "(0,)")
_DESCRS = ("'|O'", "'<U999999999'", "'<f8'", "'V0'", "[('a', '<f8', (1000000000,))]", "'>i2'")


def _npy_header(rng: random.Random) -> bytes:
    descr, shape = rng.choice(_DESCRS), rng.choice(_SHAPES)
    fortran = rng.choice(("False", "True", "1", "None"))
    h = f"{{'descr': {descr}, 'fortran_order': {fortran}, 'shape': {shape}, }}".encode()
    h += b" " * (63 - (10 + len(h)) % 64) + b"\n"
    body = rng.choice((b"", b"\x00" * 8, rng.randbytes(64)))
    return b"\x93NUMPY\x01\x00" + len(h).to_bytes(2, "little") + h + body


class DecodeTarget:
    """`unzst` (1 MiB limit) then `decode_fields` on mutated values of every decoder."""

    name = "decode"

    def __init__(self, work: Path) -> None:
        self.seeds = seed_fields()
        self.decoded = [self._decode(n, d) for n, d in self.seeds]

    def _decode(self, name: str, data: bytes) -> dict[str, Any] | None:
        if name.rsplit(".", 1)[-1] in PICKLE_EXTS:
            return None  # refused: the error is the expected outcome
        try:
            name, data = unzst(name, data, where="seed", limit=_LIMIT)
        except SeTaStreamError:
            return None  # a bomb: refused
        return decode_fields({name: data}, where="seed")

    def one(self, rng: random.Random) -> None:
        k = rng.randrange(len(self.seeds))
        name, data = self.seeds[k]
        p = rng.random()
        if p < 0.1:
            data = _npy_header(rng)
            name = "x.npy"
        elif p < 0.2:
            name = rng.choice([n for n, _ in self.seeds])
        elif p < 0.97:
            data = fm.mutate(rng, data)
        if p >= 0.97 and self.decoded[k] is not None:
            check(_same(self._decode(name, data), self.decoded[k]), f"{name}: decoded differently")
            return
        self.raw(name.encode() + b"\x00" + data)

    def corpus(self) -> list[bytes]:
        return [name.encode() + b"\x00" + data for name, data in self.seeds]

    def raw(self, data: bytes) -> None:
        name, _, value = data.partition(b"\x00")
        field = name.decode("utf-8", "replace") or "x"
        if field.rsplit(".", 1)[-1] in PICKLE_EXTS:  # never unpickle fuzz data: must refuse
            try:
                decode_fields({field: value}, where="fuzz")
            except SeTaStreamError:
                return
            raise Wrong(f"{field}: pickle decoded without allow_pickle")
        field, value = unzst(field, value, where="fuzz", limit=_LIMIT)
        check(len(value) <= _LIMIT, "decompressed past the limit")
        decode_fields({field: value}, where="fuzz")


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return bool(np.array_equal(a, b)) and np.asarray(a).dtype == np.asarray(b).dtype
    return bool(a == b)


class ReadTarget:
    """A dataset whose shard bytes were mutated after indexing, read end to end (decoded)."""

    name = "read"

    def __init__(self, work: Path) -> None:
        self.sets = []
        for k, compress in enumerate((None, "zstd")):
            src = make_dataset(work / "r", compress=compress)
            live = work / f"live{k}"
            shutil.copytree(src, live)
            ds = Dataset.open(live)
            orig = {i: ds.read(i, decode=True) for i in range(ds.num_samples)}
            names = [s.name for s in ds.manifest.shards]
            shards = [(live / n).read_bytes() for n in names]
            index = ds.index.gather(np.arange(ds.num_samples))  # every row, in id order
            self.sets.append((live, index, names, shards, orig))

    def one(self, rng: random.Random) -> None:
        live, index, names, shards, orig = self.sets[rng.randrange(len(self.sets))]
        s = rng.randrange(len(names))
        seed = shards[s]
        p = rng.random()
        if p < 0.6:
            data = fm.mutate(rng, seed, same_length=True)
        elif p < 0.9:
            data = fm.corrupt_header(rng, seed)
        else:
            data = fm.mutate(rng, seed)
        (live / names[s]).write_bytes(data)
        try:
            self.check(live, index, s, seed, data, orig, rng)
        finally:
            (live / names[s]).write_bytes(seed)

    def check(self, live: Path, index: SampleIndex, s: int, seed: bytes, data: bytes,
              orig: dict[int, dict[str, Any]], rng: random.Random) -> None:  # fmt: skip
        first = fm.first_diff(seed, data)
        last = len(seed) - fm.first_diff(seed[::-1], data[::-1]) if len(seed) == len(data) else -1
        ids = list(range(index.num_samples))
        rng.shuffle(ids)
        ds = Dataset.open(live)
        for got in read_samples(ds, ids, decode=True):
            i = got["__index__"]
            a, b = int(index.offset[i]), int(index.offset[i] + index.length[i])
            touched = int(index.shard[i]) == s and (last < 0 or (a < last and first < b))
            if not touched:
                check(_same(got, orig[i]), f"sample {i}: bytes outside the edit read differently")
        ds.close()

    def raw(self, data: bytes) -> None:
        raise NotImplementedError("the read target runs under the mutation engine only")
