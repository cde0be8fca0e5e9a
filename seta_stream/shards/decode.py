"""Field decoding: safe by default.

Fields are keyed by their member extension (`x.npy`, `cls`, `jpg`); the decoder is chosen by
the last dot-part. A `.zst` suffix means the member was compressed on its own with zstd: it is
decompressed (up to a size limit) and the suffix is dropped. Pickle is refused unless asked for.
"""

from __future__ import annotations

import io
import json
import math
import threading
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

_local = threading.local()  # a ZstdDecompressor must not be used by two threads at once
_FEED = 256  # compressed bytes per step when the output size is unknown: <= 8 MiB out per step


def _dctx() -> zstandard.ZstdDecompressor:
    d: zstandard.ZstdDecompressor | None = getattr(_local, "dctx", None)
    if d is None:
        d = _local.dctx = zstandard.ZstdDecompressor()
    return d


def unzst(
    name: str, data: bytes, *, where: str, limit: int = MAX_DECOMPRESSED
) -> tuple[str, bytes]:
    """Strip `.zst` from a field name and decompress its data; other fields pass through.

    At most `limit` bytes come out: a frame that declares more is refused before anything is
    decompressed, one that does not declare its size is decompressed in small steps and
    stopped past the limit. Truncated frames and trailing bytes are errors.
    """
    if not name.endswith(".zst"):
        return name, data
    try:
        size = zstandard.get_frame_parameters(data).content_size
        if size != zstandard.CONTENTSIZE_UNKNOWN and size > limit:
            raise DecodeError(
                f"{where} field {name!r}: decompresses to {size} bytes, over the "
                f"limit of {limit} (raise it with max_decompressed=...)"
            )
        if size != zstandard.CONTENTSIZE_UNKNOWN:
            try:  # one frame that declares its size: one call
                return name[:-4], _dctx().decompress(data, allow_extra_data=False)
            except zstandard.ZstdError as e:
                if "unused data" not in str(e):
                    raise
        return name[:-4], _stepwise(data, limit, f"{where} field {name!r}")
    except zstandard.ZstdError as e:
        raise DecodeError(f"{where} field {name!r}: corrupt zstd data ({e})") from e


def _stepwise(data: bytes, limit: int, what: str) -> bytes:
    """Every frame of `data`, fed a few bytes at a time so a bomb stops near `limit`."""
    out = bytearray()
    view = memoryview(data)
    pos = 0
    while pos < len(data):
        obj = _dctx().decompressobj()
        while not obj.eof and pos < len(data):
            step = view[pos : pos + _FEED]
            pos += len(step)
            out += obj.decompress(step)
            if len(out) > limit:
                raise DecodeError(
                    f"{what}: decompresses to more than the limit of {limit} bytes "
                    "(raise it with max_decompressed=...)"
                )
        if not obj.eof:
            raise DecodeError(f"{what}: zstd data ends inside a frame (truncated member)")
        pos -= len(obj.unused_data)
    return bytes(out)


_NPY_MAGIC = b"\x93NUMPY"
_npy_headers: dict[bytes, tuple[np.dtype[Any], tuple[int, ...], bool, int]] = {}
_NPY_READERS = {1: np.lib.format.read_array_header_1_0, 2: np.lib.format.read_array_header_2_0}


def npy_header(data: bytes) -> tuple[int, np.dtype[Any], tuple[int, ...], bool, int]:
    """An .npy file's (body start, dtype, shape, Fortran order, element count), parsed with
    numpy's own (size-limited, literal-only) parser and cached by the header's bytes (shards
    hold many arrays of one dtype and shape; the cache is bounded). Object arrays are refused.
    """
    if data[:6] != _NPY_MAGIC or len(data) < 10:
        raise ValueError("not an .npy file (bad magic)")
    version = data[6]
    start = 10 if version == 1 else 12
    hlen = int.from_bytes(data[8:start], "little")
    header = data[start : start + hlen]
    parsed = _npy_headers.get(header)
    if parsed is None:
        read = _NPY_READERS.get(version)
        if read is None:
            raise ValueError(f"npy format version {version}.{data[7]} is not supported")
        shape, fortran, dtype = read(io.BytesIO(data[8:]))
        if dtype.hasobject:
            raise ValueError("npy of Python objects refused (it would need pickle)")
        parsed = (dtype, shape, fortran, math.prod(shape))
        if len(_npy_headers) < 4096:
            _npy_headers[header] = parsed
    return (start + hlen, *parsed)


def _npy(data: bytes) -> Any:
    """`np.load(allow_pickle=False)` for one array, checked before anything is allocated:
    the body must hold exactly shape x itemsize bytes (`npy_header`), so an absurd shape is
    refused without allocating."""
    body_at, dtype, shape, fortran, count = npy_header(data)
    body = memoryview(data)[body_at:]
    if len(body) != count * dtype.itemsize:
        raise ValueError(f"npy body of {len(body)} bytes, header says {shape} x {dtype}")
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
        limit = Image.MAX_IMAGE_PIXELS  # Pillow only warns up to twice this; we refuse
        if limit is not None and img.width * img.height > limit:
            raise ValueError(
                f"{img.width}x{img.height} pixels, over the limit of {limit} "
                "(PIL.Image.MAX_IMAGE_PIXELS; raise it for images you trust)"
            )
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
