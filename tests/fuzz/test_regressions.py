"""One test per escape the fuzzers found (and fixed): each now raises a project error that
names the file, the sample or the field, and the value."""

from __future__ import annotations

import io
import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from seta_stream.errors import DecodeError, ManifestError
from seta_stream.shards import ConvertOptions, convert, open_source
from seta_stream.shards.decode import decode_fields, unzst
from seta_stream.shards.index import SampleIndex, read_index_table, write_index
from seta_stream.shards.manifest import Manifest, read_manifest
from seta_stream.storage import Store

BASE = {"kind": "seta_stream.dataset", "version": 1, "format": "tar", "num_samples": 3,
        "shards": [{"name": "shard-000000.tar", "bytes": 10240, "samples": 3}]}  # fmt: skip


def _manifest(**edits: object) -> bytes:
    return json.dumps({**BASE, **edits}).encode()


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (b"[]", r"m\.json: not a seta_stream manifest \(kind='list'\)"),  # was AttributeError
        (b"[" * 100_000, r"m\.json: not valid JSON \(maximum recursion"),  # was RecursionError
        (_manifest(shards=[{"name": "a", "bytes": 1, "samples": "3"}]),  # was TypeError
         r"m\.json: shards\[0\]: shard 'a' samples must be an integer >= 0, got '3'"),
        (_manifest(index=5), r"m\.json: 'index' must be an object, got 5"),  # was AttributeError
        (_manifest(version=True), r"m\.json: manifest version True is not supported"),
        (_manifest(extra=[1]), r"m\.json: 'extra' must be an object"),
        (_manifest(fields="ab"), r"m\.json: 'fields' must be a list of strings, got 'ab'"),
        (_manifest(shards=[{"name": "a", "bytes": -1, "samples": 0}]),
         r"shard 'a' bytes must be an integer >= 0, got -1"),
        (_manifest(num_samples=2.5), r"num_samples=2\.5 but the shards hold 3"),
    ],
)  # fmt: skip
def test_manifest_escapes(text: bytes, match: str) -> None:
    with pytest.raises(ManifestError, match=match):
        Manifest.from_json(text, source="m.json")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ds")
    rng = np.random.default_rng(0)
    np.savez(root / "s.npz", x=rng.standard_normal((10, 6)).astype(np.float32), y=np.arange(10))
    convert(open_source(str(root / "s.npz")), root / "d", ConvertOptions(samples_per_shard=5,
            progress=False))  # fmt: skip
    return root / "d"


@pytest.fixture(params=["v2", "v1"])
def layout(request: pytest.FixtureRequest, dataset: Path, script) -> tuple[pa.Table, Any]:
    """An index table and the reader of its kind: shard 0's file (v2), or the whole index of
    a version-1 dataset (`tests/shards/v1_dataset.py`); both read from source `i.parquet`."""
    if request.param == "v1":
        store = Store(dataset)
        table = script("tests/shards/v1_dataset.py").v1_table(store, read_manifest(store))
        return table, lambda t: SampleIndex.from_table(t, source="i.parquet")
    table = pq.read_table(dataset / "index" / "shard-000000.tar.parquet")
    return table, lambda t: SampleIndex.from_shard_table(t, source="i.parquet", shard=0)


def test_index_column_of_another_type(layout: tuple[pa.Table, Any]) -> None:
    """Was ValueError/ArrowInvalid from numpy casts: now the column, its type and the file."""
    t, load = layout
    for col, typ in (("offset", pa.string()), ("length", pa.float64()), ("key", pa.int64())):
        at = t.column_names.index(col)
        bad = t.set_column(at, col, t[col].cast(typ, safe=False))
        if col == "key":
            bad = t.set_column(at, "key", pa.array(range(t.num_rows), pa.int64()))
        with pytest.raises(ManifestError, match=rf"i\.parquet: column '{col}' is"):
            load(bad)


def test_index_nulls(layout: tuple[pa.Table, Any]) -> None:
    t, load = layout
    offsets = t["offset"].to_pylist()
    offsets[3] = None
    bad = t.set_column(t.column_names.index("offset"), "offset", pa.array(offsets, pa.int64()))
    with pytest.raises(ManifestError, match=r"i\.parquet: sample 3 has a null 'offset'"):
        load(bad)


@pytest.mark.parametrize("name", ["index/shard-000000.tar.parquet", "index.parquet"])
def test_index_footer_with_a_non_utf8_name(dataset: Path, name: str, script) -> None:
    """Found by atheris: a bit flip in a column name made `column_names` raise
    UnicodeDecodeError; now the index is unreadable, named."""
    if name == "index.parquet":
        buf = io.BytesIO()
        store = Store(dataset)
        write_index(script("tests/shards/v1_dataset.py").v1_table(store, read_manifest(store)), buf)
        data = buf.getvalue()
    else:
        data = (dataset / name).read_bytes()
    data = data.replace(b"offset", b"offs\xf3t")
    with pytest.raises(ManifestError, match=r"i\.parquet: unreadable index \('utf-8' codec"):
        read_index_table(data, source="i.parquet")


def test_index_member_field_name_that_is_a_path(layout: tuple[pa.Table, Any]) -> None:
    t, load = layout
    rows = t.to_pylist()
    rows[2]["members"][0]["name"] = "../../x.npy"
    bad = pa.Table.from_pylist(rows, schema=t.schema)
    with pytest.raises(ManifestError, match=r"member field name '\.\./\.\./x\.npy' is not"):
        load(bad)


def test_zstd_without_content_size() -> None:
    """Streamed zstd frames do not record their size: they were refused as '18446744073709551615
    bytes, over the limit'; now decompressed in steps, and a bomb stops near the limit."""
    z = zstandard.ZstdCompressor(write_content_size=False)
    assert unzst("t.txt.zst", z.compress(b"hi" * 1000), where="s 1") == ("t.txt", b"hi" * 1000)
    with pytest.raises(DecodeError, match=r"s 1 field 'b\.zst': decompresses to more than the"):
        unzst("b.zst", z.compress(bytes(8 << 20)), where="s 1", limit=1 << 20)


def test_zstd_truncated_trailing_and_two_frames() -> None:
    z = zstandard.ZstdCompressor()
    one = z.compress(b"a" * 5000)
    assert unzst("a.zst", one + z.compress(b"b"), where="s")[1] == b"a" * 5000 + b"b"
    with pytest.raises(DecodeError, match=r"s field 'a\.zst': corrupt zstd data"):
        unzst("a.zst", one + b"junk", where="s")
    nosize = zstandard.ZstdCompressor(write_content_size=False).compress(b"a" * 5000)
    with pytest.raises(DecodeError, match="ends inside a frame"):
        unzst("a.zst", nosize[:-3], where="s")


def test_zstd_from_many_threads() -> None:
    """One ZstdDecompressor was shared by every thread (prefetch threads call unzst): not
    thread-safe. Each thread now has its own."""
    z = zstandard.ZstdCompressor()
    values = [bytes([k]) * (50_000 + k) for k in range(8)]
    frames = [z.compress(v) for v in values]
    bad: list[int] = []

    def work(k: int) -> None:
        for _ in range(200):
            if unzst("v.zst", frames[k], where="t")[1] != values[k]:
                bad.append(k)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert bad == []


def _npy(header: str, body: bytes = b"") -> bytes:
    h = header.encode()
    h += b" " * (63 - (10 + len(h)) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(h).to_bytes(2, "little") + h + body


@pytest.mark.parametrize(
    ("shape", "body"),
    [("(8000000000,)", b"x" * 100), ("(1000000000000,)", b""), ("(4294967296, 4294967296)", b"")],
)
def test_npy_absurd_shape_refused_before_allocating(shape: str, body: bytes) -> None:
    """np.load allocated the declared shape (8 GB here) before finding the body short."""
    data = _npy(f"{{'descr': '|u1', 'fortran_order': False, 'shape': {shape}, }}", body)
    with pytest.raises(DecodeError, match=rf"sample 4 field 'x\.npy'.*header says \({shape[1:6]}"):
        decode_fields({"x.npy": data}, where="sample 4")


def test_npy_round_trip_still_exact() -> None:
    for arr in (np.asfortranarray(np.arange(6.0).reshape(2, 3)), np.zeros(2, "<U3"), np.int8(3)):
        buf = io.BytesIO()
        np.save(buf, arr)
        got = decode_fields({"x.npy": buf.getvalue()}, where="s")["x.npy"]
        assert got.dtype == arr.dtype and np.array_equal(got, arr) and got.flags.writeable


def test_image_with_absurd_dimensions_refused_before_decoding() -> None:
    """Found by fuzz/fuzz.py (seed 7, decode:5375): a BMP whose header claims 7 x 16777221
    pixels made Pillow warn, then allocate ~350 MB before finding the file truncated."""
    import warnings

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (7, 5)).save(buf, format="BMP")
    data = bytearray(buf.getvalue())
    data[22:26] = (16777221).to_bytes(4, "little")  # biHeight
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with pytest.raises(DecodeError, match=r"sample 2 field 'a\.bmp'.*7x16777221 pixels, over"):
            decode_fields({"a.bmp": bytes(data)}, where="sample 2")
