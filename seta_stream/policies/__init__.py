"""Selection policies: pure functions of (scores, epoch, seed) -> the samples to read.

`SeTa` (the method), `RePB` (its authors' bias-corrected follow-up, with loss weights),
`InfoBatch` (baseline with loss weights), `DynamicRandom`, `Static` and `Full`. Each is a
frozen dataclass with `select(scores, epoch, *, seed=0) -> Selection`, a `name` and
`to_dict()`; `policy_from_dict` rebuilds one from its dict. A policy that takes more inputs
than the scores names them in `needs` and takes them as keywords of `select` (RePB).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from seta_stream.errors import PolicyError
from seta_stream.policies.base import Policy, Selection
from seta_stream.policies.infobatch import InfoBatch
from seta_stream.policies.kmeans1d import Partition1D, kmeans1d, kmeans1d_sorted
from seta_stream.policies.repb import RePB
from seta_stream.policies.seta import SeTa
from seta_stream.policies.simple import DynamicRandom, Full, Static

_POLICIES: dict[str, type[Any]] = {
    cls.name: cls for cls in (SeTa, RePB, InfoBatch, DynamicRandom, Static, Full)
}


def policy_from_dict(d: Mapping[str, Any]) -> Policy:
    """Rebuild a policy from `policy.to_dict()` ({"name": ..., **parameters})."""
    params = dict(d)
    name = params.pop("name", None)
    cls = _POLICIES.get(name) if isinstance(name, str) else None
    if cls is None:
        raise PolicyError(f"unknown policy name {name!r}; known: {sorted(_POLICIES)}")
    try:
        policy: Policy = cls(**params)
    except TypeError as e:
        raise PolicyError(f"bad parameters for policy {name!r}: {params!r} ({e})") from e
    return policy


__all__ = [
    "DynamicRandom",
    "Full",
    "InfoBatch",
    "Partition1D",
    "Policy",
    "RePB",
    "SeTa",
    "Selection",
    "Static",
    "kmeans1d",
    "kmeans1d_sorted",
    "policy_from_dict",
]
