"""Field decoding: safe by default.

Fields are keyed by their member extension (`x.npy`, `cls`, `jpg`); the decoder is chosen by
the last dot-part. A `.zst` suffix means the member was compressed on its own with zstd: it is
decompressed (up to a size limit) and the suffix is dropped. Pickle is refused unless asked for.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from typing import Any

import numpy as np
import zstandard

from seta_stream.errors import DecodeError

MAX_DECOMPRESSED = 1 << 30  # a member may expand to at most 1 GiB unless the caller allows more
IMAGE_EXTS = frozenset("png jpg jpeg ppm pgm pbm pnm webp bmp gif tif tiff".split())
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


def _npy(data: bytes) -> Any:
    return np.load(io.BytesIO(data), allow_pickle=False)


def _image(data: bytes) -> Any:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        if img.mode not in ("L", "RGB", "RGBA"):
            img = img.convert("RGB")  # noqa: PLW2901 - palette/CMYK/16-bit -> 8-bit RGB
        return np.asarray(img)


def _pickle(data: bytes) -> Any:
    import pickle

    return pickle.loads(data)  # noqa: S301 - only reached when the caller opted in


DECODERS: dict[str, Callable[[bytes], Any]] = {
    "npy": _npy,
    "json": json.loads,
    "txt": bytes.decode,
    "text": bytes.decode,
    "cls": lambda b: int(b),
    "cls2": lambda b: int(b),
    "index": lambda b: int(b),
    "id": lambda b: int(b),
    **dict.fromkeys(IMAGE_EXTS, _image),
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
