"""What a loss table accepts: the dataset and selection shapes it reads, and update() batches.

Conversion and checks here run on the training thread for every `update()`, so they are
vectorised and allocation-light: one copy per array, one reduction for the id range and one
dot product for finiteness.
"""

from __future__ import annotations

import json
from typing import Any, Literal, Protocol

import numpy as np

from seta_stream.errors import LossTableError

NonFinite = Literal["raise", "skip"]
IdArray = np.ndarray[Any, np.dtype[np.int64]]
_CHECK_CHUNK = 1 << 22  # selection checks run on slices of this many ids (no N-sized temps)
LossArray = np.ndarray[Any, np.dtype[np.float32]]


class DatasetLike(Protocol):
    """The dataset a table belongs to (SeTaStream passes its sharded dataset).

    The table stores only the fingerprint, never the keys: join a table's files on
    `sample_id` with the dataset's index (`seta_stream.shards.scan_index`) for them.
    """

    @property
    def fingerprint(self) -> str:
        """A stable hash of the dataset's manifest."""
        ...

    @property
    def num_samples(self) -> int: ...


class SelectionLike(Protocol):
    """One epoch's selection, as a policy returns it."""

    @property
    def ids(self) -> np.ndarray[Any, Any]:
        """Selected sample ids: int64, sorted, unique."""
        ...

    @property
    def weights(self) -> np.ndarray[Any, Any] | None:
        """float32 loss weights aligned with `ids`; None means all 1."""
        ...

    @property
    def groups(self) -> np.ndarray[Any, Any] | None:
        """int8 of length N: each sample's group rank, -1 when not clustered; or None."""
        ...

    @property
    def info(self) -> dict[str, Any]:
        """JSON-serialisable: "phase", "kept_fraction", optionally "groups" and "window"."""
        ...


def _to_numpy(x: Any) -> np.ndarray[Any, Any]:
    """A numpy view of `x` (a copy for a tensor off the CPU); dtype checks come after."""
    if type(x) is np.ndarray:
        return x
    if type(x).__module__.startswith("torch"):
        x = x.detach()
        if not x.is_cpu:
            x = x.cpu()
        try:
            return x.numpy()
        except TypeError:  # bfloat16 and other dtypes numpy lacks
            return x.float().numpy()
    return np.asarray(x)


def as_ids(ids: Any) -> IdArray:
    """A private int64 copy of `ids` (numpy array, torch tensor or sequence of ints)."""
    arr = _to_numpy(ids)
    if arr.dtype.kind not in "iu" and arr.size:
        raise LossTableError(
            f"ids must be integers (int64 sample ids), got dtype {arr.dtype}; "
            "did you swap update(ids, losses)?"
        )
    return np.array(arr, dtype=np.int64, copy=True)


def as_losses(losses: Any) -> LossArray:
    """A private float32 copy of `losses` (any float dtype, numpy or torch on any device)."""
    arr = _to_numpy(losses)
    if arr.dtype.kind != "f" and arr.size:
        raise LossTableError(f"losses must be floating point, got dtype {arr.dtype}")
    return np.array(arr, dtype=np.float32, copy=True)


def check_shapes(ids: IdArray, losses: LossArray) -> None:
    if ids.ndim != 1 or losses.ndim != 1 or ids.shape[0] != losses.shape[0]:
        raise LossTableError(
            f"ids and losses must be 1-D and of equal length, got shapes {ids.shape} and "
            f"{losses.shape} (use reduction='none' for a per-sample loss)"
        )


def check_range(ids: IdArray, num_samples: int) -> None:
    """Raise naming the first id outside [0, num_samples)."""
    # Negative int64 ids become huge uint64 values, so one max() checks both ends.
    if ids.size and ids.view(np.uint64).max() >= num_samples:
        bad_at = int(np.flatnonzero((ids < 0) | (ids >= num_samples))[0])
        raise LossTableError(
            f"sample id {int(ids[bad_at])} (position {bad_at} of the batch) is out of range "
            f"for a table of {num_samples} samples (valid ids: 0..{num_samples - 1})"
        )


def all_finite(losses: LossArray) -> bool:
    """True when every loss is finite.

    A sum of squares is NaN or inf whenever any term is (squares never cancel), and one BLAS
    dot is the cheapest reduction numpy has; only if it overflows is every value checked.
    """
    with np.errstate(over="ignore"):  # an overflow (losses over ~1e19) is answered below
        square_sum = losses.dot(losses)
    return bool(np.isfinite(square_sum)) or bool(np.isfinite(losses).all())


def first_nonfinite(ids: IdArray, losses: LossArray) -> str:
    at = int(np.flatnonzero(~np.isfinite(losses))[0])
    return f"loss {float(losses[at])} for sample id {int(ids[at])} (position {at})"


def check_selection(selection: SelectionLike, num_samples: int) -> tuple[Any, Any, Any, dict]:
    """Validate a selection: (ids int64, weights float32 | None, groups int8 | None, info)."""
    ids = np.asarray(selection.ids)
    if ids.ndim != 1 or ids.dtype.kind not in "iu":
        raise LossTableError(
            f"selection.ids must be a 1-D integer array, got {ids.dtype} {ids.shape}"
        )
    ids = ids.astype(np.int64, copy=False)
    check_range(ids, num_samples)
    if not _strictly_increasing(ids):
        raise LossTableError("selection.ids must be sorted and unique")
    weights = None if selection.weights is None else np.asarray(selection.weights, np.float32)
    if weights is not None and (weights.shape != ids.shape or not all_finite(weights)):
        raise LossTableError(
            f"selection.weights must be finite and aligned with ids ({ids.shape[0]} values), "
            f"got shape {weights.shape}"
        )
    groups = None if selection.groups is None else np.asarray(selection.groups)
    if groups is not None and (groups.shape != (num_samples,) or groups.dtype.kind not in "iu"):
        raise LossTableError(
            f"selection.groups must be an integer array of length {num_samples}, got "
            f"{groups.dtype} {groups.shape}"
        )
    if groups is not None and groups.size and (groups.min() < -1 or groups.max() > 127):
        raise LossTableError("selection.groups must hold group ranks 0..127 or -1 (not clustered)")
    info = dict(selection.info)
    try:
        json.dumps(info)
    except (TypeError, ValueError) as e:
        raise LossTableError(f"selection.info must be JSON-serialisable: {e}") from e
    return ids, weights, None if groups is None else groups.astype(np.int8, copy=False), info


def _strictly_increasing(ids: IdArray) -> bool:
    for start in range(0, ids.size - 1, _CHECK_CHUNK):
        part = ids[start : start + _CHECK_CHUNK + 1]
        if not bool(np.all(part[1:] > part[:-1])):
            return False
    return True
