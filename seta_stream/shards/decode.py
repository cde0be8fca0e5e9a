"""Field decoding: safe by default.

Fields are keyed by their member extension (`x.npy`, `cls`, `jpg`); the decoder is chosen by
the last dot-part. A `.zst` suffix means the member was compressed on its own with zstd: it is
decompressed (up to a size limit) and the suffix is dropped. Pickle is refused unless asked for.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
import zstandard

from seta_stream.errors import DecodeError

MAX_DECOMPRESSED = 1 << 30  # a member may expand to at most 1 GiB unless the caller allows more
IMAGE_EXTS = frozenset(
    ("png", "jpg", "jpeg", "ppm", "pgm", "pbm", "pnm", "webp", "bmp", "gif", "tif", "tiff")
)
PICKLE_EXTS = frozenset(("pickle", "pkl", "pyd"))

_dctx = zstandard.ZstdDecompressor()


def unzst(
    name: str, data: bytes, *, where: str, limit: int = MAX_DECOMPRESSED
) -> tuple[str, bytes]:
    """Strip `.zst` from a field name and decompress its data; other fields pass through."""
    if not name.endswith(".zst"):
        return name, data
    try:
        params = zstandard.get_frame_parameters(data)
        if params.content_size > limit:
            raise DecodeError(
                f"{where} field {name!r}: decompresses to {params.content_size} bytes, over the "
                f"limit of {limit} (raise it with max_decompressed=...)"
            )
        return name[:-4], _dctx.decompress(data, max_output_size=limit)
    except zstandard.ZstdError as e:
        raise DecodeError(f"{where} field {name!r}: corrupt zstd data ({e})") from e


_NPY_MAGIC = b"\x93NUMPY"
_npy_headers: dict[bytes, tuple[np.dtype[Any], tuple[int, ...], bool, int]] = {}


def _npy(data: bytes) -> Any:
    """`np.load` for one array without its per-call header parsing (`ast.literal_eval`).

    Shards hold many arrays of the same dtype and shape, so a parsed header is cached by its
    bytes; the cache is bounded. Object arrays are refused, as `np.load(allow_pickle=False)`.
    """
    if data[:6] != _NPY_MAGIC:
        raise ValueError("not an .npy file (bad magic)")
    if data[6] == 1:
        start, hlen = 10, int.from_bytes(data[8:10], "little")
    else:
        start, hlen = 12, int.from_bytes(data[8:12], "little")
    header = data[start : start + hlen]
    parsed = _npy_headers.get(header)
    if parsed is None:
        arr = np.load(io.BytesIO(data), allow_pickle=False)  # full check once per header
        fortran = bool(arr.flags.f_contiguous and not arr.flags.c_contiguous)
        parsed = (arr.dtype, arr.shape, fortran, arr.size)
        if len(_npy_headers) < 4096:
            _npy_headers[header] = parsed
        return arr
    dtype, shape, fortran, count = parsed
    body = memoryview(data)[start + hlen :]
    if len(body) != count * dtype.itemsize:
        raise ValueError(f"npy body of {len(body)} bytes, header says {count} x {dtype}")
    arr = np.frombuffer(body, dtype=dtype, count=count).copy()  # writable, owns its memory
    return arr.reshape(shape, order="F" if fortran else "C")


_PIL_FORMATS = {"jpg": "JPEG", "jpeg": "JPEG", "png": "PNG", "webp": "WEBP", "bmp": "BMP",
                "gif": "GIF", "tif": "TIFF", "tiff": "TIFF", "ppm": "PPM", "pgm": "PPM",
                "pbm": "PPM", "pnm": "PPM"}  # fmt: skip


def _image(data: bytes, ext: str = "") -> Any:
    """uint8 array (H, W) or (H, W, C), writable (torch's collate warns on read-only ones)."""
    from PIL import Image

    hint = _PIL_FORMATS.get(ext)
    try:  # the format from the extension first: skips Pillow's probing of every plugin
        img = Image.open(io.BytesIO(data), formats=[hint] if hint else None)
    except Exception:
        img = Image.open(io.BytesIO(data))  # a mislabelled file: let Pillow find its format
    with img:
        if img.mode in ("L", "RGB", "RGBA"):
            return np.array(img)
        return np.array(img.convert("RGB"))  # palette, CMYK, 16-bit: to 8-bit RGB


def _pickle(data: bytes) -> Any:
    import pickle

    return pickle.loads(data)


DECODERS: dict[str, Callable[[bytes], Any]] = {
    "npy": _npy,
    "json": json.loads,
    "txt": bytes.decode,
    "text": bytes.decode,
    "cls": lambda b: int(b),
    "cls2": lambda b: int(b),
    "index": lambda b: int(b),
    "id": lambda b: int(b),
    **{ext: partial(_image, ext=ext) for ext in IMAGE_EXTS},
}


def decode_fields(
    sample: dict[str, Any], *, where: str, allow_pickle: bool = False
) -> dict[str, Any]:
    """Decode every field of a raw sample in place-order; keys starting with `__` pass through."""
    out: dict[str, Any] = {}
    for name, value in sample.items():
        if name.startswith("__") or not isinstance(value, bytes | bytearray | memoryview):
            out[name] = value
            continue
        ext = name.rsplit(".", 1)[-1]
        fn = DECODERS.get(ext)
        if fn is None and ext in PICKLE_EXTS:
            if not allow_pickle:
                raise DecodeError(
                    f"{where} field {name!r}: pickle is refused by default (it can run code); "
                    "pass allow_pickle=True only for data you trust"
                )
            fn = _pickle
        if fn is None:
            out[name] = bytes(value)
            continue
        try:
            out[name] = fn(bytes(value))
        except Exception as e:
            raise DecodeError(f"{where} field {name!r}: cannot decode as {ext} ({e})") from e
    return out
