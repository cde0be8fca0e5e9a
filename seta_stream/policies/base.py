"""What every selection policy shares: the `Selection` record, the `Policy` protocol, and helpers.

The helpers restate the arithmetic of the reference implementations (see `SETA_SPEC.md`):
`keep = min(1, max(0.1, 1 - r))`, `floor(N * keep)` as a float64 product, and annealing while
`epoch + 1 > E * δ`. Randomness always comes from a generator seeded by (seed, epoch, salt);
no policy touches the global numpy or torch RNG.
"""

from __future__ import annotations

import dataclasses
import math
import operator
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

import numpy as np

from seta_stream.errors import PolicyError

Phase = Literal["prune", "anneal", "full"]

# Random subsets are drawn per block of this many ids (counts per block from one multivariate
# hypergeometric draw), so the ids come out sorted without an N-sized shuffle or sort.
_SUBSET_BLOCK = 1 << 16
# Elementwise passes over N values run a block at a time, so their masks stay this small.
BLOCK = 1 << 22
# numpy's "marginals" multivariate hypergeometric needs a population below 1e9; one
# hypergeometric split first into two halves (each below 1e9) reaches twice as far.
_MARGINALS_LIMIT = 10**9
_SPLIT_LIMIT = 2 * _MARGINALS_LIMIT - 4 * _SUBSET_BLOCK


@dataclass(frozen=True, kw_only=True, eq=False)
class Selection:
    """The samples a policy picked for one epoch.

    `ids` are int64, sorted and unique. `weights` (float32, aligned with `ids`) multiply each
    sample's training loss; None means every weight is 1. `groups` (int8, length N) holds the
    group rank (0 = easiest) of every sample clustered this epoch and -1 for the others; None
    for policies without groups. `info` is JSON-serialisable: always "phase", "kept_fraction"
    (of N) and "epoch"; SeTa adds "groups" and "window".
    """

    ids: np.ndarray
    weights: np.ndarray | None = None
    groups: np.ndarray | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.ids.dtype != np.int64 or self.ids.ndim != 1:
            raise PolicyError(
                f"Selection.ids must be a 1-D int64 array, got {self.ids.dtype} "
                f"with shape {self.ids.shape}"
            )
        if self.weights is not None and (
            self.weights.dtype != np.float32 or self.weights.shape != self.ids.shape
        ):
            raise PolicyError(
                f"Selection.weights must be float32 with the shape of ids {self.ids.shape}, "
                f"got {self.weights.dtype} with shape {self.weights.shape}"
            )
        if self.groups is not None and (self.groups.dtype != np.int8 or self.groups.ndim != 1):
            raise PolicyError(
                f"Selection.groups must be a 1-D int8 array, got {self.groups.dtype} "
                f"with shape {self.groups.shape}"
            )

    def __len__(self) -> int:
        return int(self.ids.size)


@runtime_checkable
class Policy(Protocol):
    """A pure function of (scores, epoch, seed) -> Selection, plus a name and a dict form."""

    name: ClassVar[str]

    def select(self, scores: np.ndarray, epoch: int, *, seed: int = 0) -> Selection:
        """Pick this epoch's samples from per-sample scores (float32, NaN = never seen)."""
        ...

    def to_dict(self) -> dict[str, Any]:
        """The policy's name and parameters, JSON-serialisable; `policy_from_dict` inverts it."""
        ...


class PolicyMixin:
    """`to_dict` for the policy dataclasses: {"name": ..., **fields}; and `needs`.

    `needs` names the inputs a policy takes besides the scores, as keyword arguments of
    `select`: `"steps"` (int64 per sample: the step of its last loss, -1 never seen) and
    `"selection_counts"` (uint32 per sample: recorded epochs before this one that selected
    it). `SeTaStream` reads only what is named, so a policy that needs nothing costs nothing
    more (the loss table makes the selection counts only for a policy that needs them).
    """

    name: ClassVar[str]
    needs: ClassVar[frozenset[str]] = frozenset()

    def to_dict(self) -> dict[str, Any]:
        if not dataclasses.is_dataclass(self):  # pragma: no cover - every policy is one
            raise TypeError(f"{type(self).__name__} is not a dataclass")
        return {"name": self.name, **dataclasses.asdict(self)}


# ---------------------------------------------------------------------------- validation


def check_epochs(epochs: int) -> None:
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise PolicyError(f"epochs must be an int >= 1, got {epochs!r}")


def check_prune_ratio(prune_ratio: float) -> None:
    if not _is_real(prune_ratio) or not 0.0 <= prune_ratio < 1.0:
        raise PolicyError(f"prune_ratio must be a number in [0, 1), got {prune_ratio!r}")


def check_anneal(anneal: float) -> None:
    if not _is_real(anneal) or not 0.0 < anneal <= 1.0:
        raise PolicyError(f"anneal must be a number in (0, 1], got {anneal!r}")


def check_init_score(init_score: float) -> None:
    if not _is_real(init_score) or not math.isfinite(init_score):
        raise PolicyError(f"init_score must be a finite number, got {init_score!r}")


def _is_real(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_scores(scores: np.ndarray) -> bool:
    """Validate per-sample scores; return whether any is NaN (a sample never seen)."""
    if not isinstance(scores, np.ndarray):
        raise PolicyError(f"scores must be a numpy array, got {type(scores).__name__}")
    if scores.dtype != np.float32 or scores.ndim != 1:
        raise PolicyError(
            f"scores must be a 1-D float32 array (NaN for samples never seen), got "
            f"{scores.dtype} with shape {scores.shape}"
        )
    if scores.size == 0:
        raise PolicyError("scores is empty: a dataset has at least one sample")
    if np.isfinite(scores).all():
        return False
    inf = np.isinf(scores)
    if inf.any():
        first = int(np.flatnonzero(inf)[0])
        raise PolicyError(
            f"scores must be finite or NaN (never seen), but sample {first} has score "
            f"{float(scores[first])}; record a finite loss for it"
        )
    return True


def check_call(epoch: int, seed: int) -> tuple[int, int]:
    """Validate `select`'s epoch and seed (non-negative ints); return them as Python ints."""
    try:
        epoch_i, seed_i = operator.index(epoch), operator.index(seed)
    except TypeError as e:
        raise PolicyError(f"epoch and seed must be ints, got {epoch!r} and {seed!r}") from e
    if isinstance(epoch, bool) or epoch_i < 0:
        raise PolicyError(f"epoch must be an int >= 0, got {epoch!r}")
    if isinstance(seed, bool) or seed_i < 0:
        raise PolicyError(f"seed must be an int >= 0, got {seed!r}")
    return epoch_i, seed_i


# ---------------------------------------------------------------------------- arithmetic


def keep_fraction(prune_ratio: float) -> float:
    """`min(1, max(0.1, 1 - r))`: the fraction kept by random pruning, floored at 0.1."""
    return min(1.0, max(0.1, 1.0 - prune_ratio))


def keep_count(n: int, keep: float) -> int:
    """`floor(n * keep)` on the float64 product, as the reference's `int(n * keep)`.

    The product is not rounded first: `keep_count(2600, 0.7) == 1819` (2600 * 0.7 is
    1819.9999999999998).
    """
    return math.floor(n * keep)


def is_annealing(epoch: int, epochs: int, anneal: float) -> bool:
    """Whether `epoch` is an annealing epoch: `epoch + 1 > epochs * anneal` (float64 product).

    E = 100, δ = 0.57: 100 * 0.57 = 56.99999999999999, so annealing starts at epoch 56.
    """
    return epoch + 1 > epochs * anneal


def fill_unseen(values: np.ndarray, init_score: float) -> np.ndarray:
    """`values` with NaN replaced by `init_score`; a copy only when there is a NaN.

    Checked and filled a block at a time: no N-sized mask beside the copy.
    """
    starts = range(0, values.size, BLOCK)
    if not any(np.isnan(values[s : s + BLOCK]).any() for s in starts):
        return values
    out = values.copy()
    for s in starts:
        part = out[s : s + BLOCK]
        part[np.isnan(part)] = init_score
    return out


# ---------------------------------------------------------------------------- randomness


def epoch_rng(seed: int, epoch: int, salt: int) -> np.random.Generator:
    """A generator seeded by (seed, epoch, salt); the same in every process."""
    return np.random.default_rng(np.random.SeedSequence([seed, epoch, salt]))


def random_subset(rng: np.random.Generator, n: int, m: int) -> np.ndarray:
    """A uniform random subset of `m` of `range(n)`, as sorted int64 ids.

    The ids are cut into blocks of 65,536; one multivariate hypergeometric draw says how many
    each block gives (`_block_counts`), and each block draws its share. That is exactly
    uniform over all m-subsets, needs no N-sized shuffle or sort, and is about 8x faster than
    `rng.choice(n, m, replace=False)` followed by a sort.
    """
    if m >= n:
        return np.arange(n, dtype=np.int64)
    if m <= 0:
        return np.empty(0, dtype=np.int64)
    if n >= _SPLIT_LIMIT:
        return np.flatnonzero(random_mask(rng, n, m)).astype(np.int64, copy=False)
    out = np.empty(m, dtype=np.int64)
    pos = 0
    for start, size, positions, picked in _block_draws(rng, n, m):
        if picked:
            positions.sort()
            local = positions
        else:
            keep = np.ones(size, dtype=bool)
            keep[positions] = False
            local = np.flatnonzero(keep)
        out[pos : pos + local.size] = local + start
        pos += local.size
    return out


def random_mask(rng: np.random.Generator, n: int, m: int) -> np.ndarray:
    """The subset `random_subset(rng, n, m)` would draw, as a bool mask of length n.

    Same draws, so the same subset; N bytes instead of 8 per kept id.
    """
    if m >= n:
        return np.ones(n, dtype=bool)
    mask = np.zeros(n, dtype=bool)
    if m <= 0:
        return mask
    if n >= _SPLIT_LIMIT:  # numpy's hypergeometric cannot split 2e9+ ids; 8 bytes an id
        mask[rng.choice(n, size=m, replace=False)] = True
        return mask
    for start, size, positions, picked in _block_draws(rng, n, m):
        if not picked:
            mask[start : start + size] = True
        mask[positions + start] = picked
    return mask


def _block_draws(
    rng: np.random.Generator, n: int, m: int
) -> Iterator[tuple[int, int, np.ndarray, bool]]:
    """Per block: (start, size, positions, picked): the block's positions picked (True) or
    dropped (False), whichever is the smaller set."""
    sizes = np.full(n // _SUBSET_BLOCK, _SUBSET_BLOCK, dtype=np.int64)
    if n % _SUBSET_BLOCK:
        sizes = np.append(sizes, n % _SUBSET_BLOCK)
    counts = _block_counts(rng, sizes, m)
    for block, (size, count) in enumerate(zip(sizes.tolist(), counts.tolist(), strict=True)):
        start = block * _SUBSET_BLOCK
        if 2 * count <= size:
            yield start, size, rng.choice(size, size=count, replace=False), True
        else:
            yield start, size, rng.choice(size, size=size - count, replace=False), False


def nonempty(ids: np.ndarray, rng: np.random.Generator, n: int) -> np.ndarray:
    """`ids`, or one random sample of `range(n)` when `ids` is empty (floor(keep·N) = 0)."""
    if ids.size:
        return ids
    return np.array([int(rng.integers(n))], dtype=np.int64)


def base_info(phase: Phase, epoch: int, n: int, n_selected: int) -> dict[str, Any]:
    """The `info` keys every policy reports."""
    return {
        "phase": phase,
        "epoch": epoch,
        "kept_fraction": n_selected / n,
        "num_selected": n_selected,
        "num_samples": n,
    }


def _block_counts(rng: np.random.Generator, sizes: np.ndarray, m: int) -> np.ndarray:
    """How many of `m` uniformly drawn ids each block gives: one multivariate hypergeometric
    draw below 1e9 ids; from 1e9 (to `_SPLIT_LIMIT`), one hypergeometric split between two
    halves of the blocks first, then one draw per half (exactly uniform still)."""
    total = int(sizes.sum())
    if sizes.size == 1:
        return np.array([m], dtype=np.int64)
    if total < _MARGINALS_LIMIT:
        return rng.multivariate_hypergeometric(sizes, m, method="marginals")
    half = int(np.searchsorted(np.cumsum(sizes), total // 2))
    left = int(sizes[:half].sum())
    left_m = int(rng.hypergeometric(left, total - left, m)) if m else 0
    return np.concatenate(
        (_block_counts(rng, sizes[:half], left_m), _block_counts(rng, sizes[half:], m - left_m))
    )
