"""Field decoding a column at a time (the batched read path), by the rules of `decode_fields`.

A raw column is a uint8 array `(B, n)` when every sample has the field with the same size `n`,
else a list of bytes (None: the sample lacks the field). `.npy` columns whose rows share one
header become one array `(B, *shape)` by a single view over the rows' bodies; class-like text
(`cls`, `id`, ...) of one width becomes an int64 array without a Python int per sample.
Other decoders run per value; arrays of one shape and dtype are then stacked, numbers become
one array, anything else stays a list.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from seta_stream.errors import DecodeError
from seta_stream.shards.decode import DECODERS, PICKLE_EXTS, _pickle, npy_header

RawColumn = np.ndarray | list[Any]
_INT_EXTS = frozenset(("cls", "cls2", "index", "id"))


def decode_column(
    name: str, col: RawColumn, *, where: Callable[[int], str], allow_pickle: bool
) -> tuple[Any, dict[int, Exception]]:
    """Field `name`'s column decoded, and the rows whose value failed (row -> error).
    `where(row)` names a row's sample in error messages."""
    ext = name.rsplit(".", 1)[-1]
    fn = DECODERS.get(ext)
    if fn is None and ext in PICKLE_EXTS:
        if not allow_pickle:
            return col, {
                k: DecodeError(
                    f"{where(k)} field {name!r}: pickle is refused by default (it can run "
                    "code); pass allow_pickle=True only for data you trust"
                )
                for k in range(len(col))
            }
        fn = _pickle
    if fn is None:
        return (col if isinstance(col, np.ndarray) else [_bytes(v) for v in col]), {}
    if isinstance(col, np.ndarray):
        fast = _npy_rows(col) if ext == "npy" else _int_rows(col) if ext in _INT_EXTS else None
        if fast is not None:
            return fast, {}
        values: list[Any] = [row.tobytes() for row in col]
    else:
        values = col
    out: list[Any] = [None] * len(values)
    failed: dict[int, Exception] = {}
    for k, v in enumerate(values):
        if v is None:
            continue
        try:
            out[k] = fn(_bytes(v))
        except Exception as e:
            err = DecodeError(f"{where(k)} field {name!r}: cannot decode as {ext} ({e})")
            err.__cause__ = e
            failed[k] = err
    return stack_or_list(out), failed


def _bytes(v: Any) -> Any:
    return bytes(v) if isinstance(v, bytearray | memoryview) else v


def _npy_rows(col: np.ndarray) -> np.ndarray | None:
    """Rows that are .npy files with one header: one array (B, *shape); else None."""
    if len(col) == 0:
        return None
    try:
        body_at, dtype, shape, fortran, count = npy_header(col[0].tobytes())
    except ValueError:
        return None  # the per-value path names the bad row
    if fortran or col.shape[1] - body_at != count * dtype.itemsize:
        return None
    if not (col[:, :body_at] == col[0, :body_at]).all():
        return None
    body = np.ascontiguousarray(col[:, body_at:])  # a copy: writable, owns its memory
    return body.view(dtype).reshape((len(col), *shape))


def _int_rows(col: np.ndarray) -> np.ndarray | None:
    """Rows of ASCII digits of one width (<= 18): their values as int64; else None."""
    if col.shape[1] == 0 or col.shape[1] > 18 or len(col) == 0:
        return None
    digits = col.astype(np.int64) - 48
    if not ((digits >= 0) & (digits <= 9)).all():
        return None  # signs, spaces, newlines: int() per value
    return digits @ (10 ** np.arange(col.shape[1] - 1, -1, -1, dtype=np.int64))


def stack_or_list(values: list[Any]) -> Any:
    """Arrays (numpy or torch) of one shape and dtype stacked; ints, floats or bools as one
    numpy array; anything else (mixed, strings, None for a missing value) the list itself."""
    if not values:
        return values
    first = values[0]
    kind = type(first)
    if any(type(v) is not kind for v in values):
        return values
    if kind is np.ndarray:
        if all(v.shape == first.shape and v.dtype == first.dtype for v in values):
            return np.stack(values)
        return values
    if kind is int:
        try:
            return np.array(values, np.int64)
        except OverflowError:
            return values
    if kind is float:
        return np.array(values, np.float64)
    if kind is bool:
        return np.array(values, bool)
    if kind.__module__ == "torch" and kind.__name__ == "Tensor":
        import torch

        if all(v.shape == first.shape and v.dtype == first.dtype for v in values):
            return torch.stack(values)
    return values
