"""The default decoders give what the reference libraries give."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from seta_stream.errors import DecodeError
from seta_stream.shards.decode import decode_fields

dtypes = st.sampled_from(["<f4", ">f8", "<i8", "u1", "?", "<c8", "<U3", "|S2"]).map(np.dtype)


@settings(max_examples=200, deadline=None)
@given(
    arr=hnp.arrays(dtypes, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)),
    fortran=st.booleans(),
)
def test_npy_matches_np_load(arr: np.ndarray, fortran: bool) -> None:
    if fortran:
        arr = np.asfortranarray(arr)
    buf = io.BytesIO()
    np.save(buf, arr)
    for _ in range(2):  # the second call takes the cached-header path
        got = decode_fields({"x.npy": buf.getvalue()}, where="s")["x.npy"]
        want = np.load(io.BytesIO(buf.getvalue()))
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)
        assert got.flags.writeable


def test_truncated_npy_body() -> None:
    buf = io.BytesIO()
    np.save(buf, np.arange(10.0))
    decode_fields({"x.npy": buf.getvalue()}, where="s")
    with pytest.raises(DecodeError, match=r"sample 4 field 'x.npy'"):
        decode_fields({"x.npy": buf.getvalue()[:-8]}, where="sample 4")


def test_images_text_json_cls() -> None:
    buf = io.BytesIO()
    Image.fromarray(np.arange(12, dtype=np.uint8).reshape(3, 4)).save(buf, format="PNG")
    out = decode_fields(
        {
            "__key__": "k",
            "png": buf.getvalue(),
            "txt": b"hi",
            "json": b'{"a": 1}',
            "cls": b"7",
            "raw": b"\x00",
        },
        where="s",
    )
    assert out["png"].shape == (3, 4) and out["png"][2, 3] == 11
    assert (out["txt"], out["json"], out["cls"], out["raw"], out["__key__"]) == (
        "hi",
        {"a": 1},
        7,
        b"\x00",
        "k",
    )
