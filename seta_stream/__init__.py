"""seta_stream: stream only the samples worth training on.

SeTa pruning (Zhou, Gao, Wang, CVPR 2025) applied at the shard-read level: a pruned sample is
never read from storage and never decoded.

Names are imported on first use, so `import seta_stream.shards` (the conversion tools, spawned
conversion workers) does not pay for importing torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from seta_stream.errors import (
    ChecksumError,
    DecodeError,
    LossTableError,
    ManifestError,
    NonFiniteLossError,
    PolicyError,
    SeTaStreamError,
    ShardFormatError,
    SourceError,
)

if TYPE_CHECKING:
    from seta_stream.losses import LossTable
    from seta_stream.policies import (
        DynamicRandom,
        Full,
        InfoBatch,
        Policy,
        RePB,
        Selection,
        SeTa,
        Static,
        policy_from_dict,
    )
    from seta_stream.remote import RemoteOptions
    from seta_stream.shards import Dataset, read_samples
    from seta_stream.stream import SeTaStream

_LAZY = {
    "Dataset": "seta_stream.shards",
    "DynamicRandom": "seta_stream.policies",
    "Full": "seta_stream.policies",
    "InfoBatch": "seta_stream.policies",
    "LossTable": "seta_stream.losses",
    "Policy": "seta_stream.policies",
    "RePB": "seta_stream.policies",
    "RemoteOptions": "seta_stream.remote",
    "SeTa": "seta_stream.policies",
    "SeTaStream": "seta_stream.stream",
    "Selection": "seta_stream.policies",
    "Static": "seta_stream.policies",
    "policy_from_dict": "seta_stream.policies",
    "read_samples": "seta_stream.shards",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'seta_stream' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "ChecksumError",
    "Dataset",
    "DecodeError",
    "DynamicRandom",
    "Full",
    "InfoBatch",
    "LossTable",
    "LossTableError",
    "ManifestError",
    "NonFiniteLossError",
    "Policy",
    "PolicyError",
    "RePB",
    "RemoteOptions",
    "SeTa",
    "SeTaStream",
    "SeTaStreamError",
    "Selection",
    "ShardFormatError",
    "SourceError",
    "Static",
    "policy_from_dict",
    "read_samples",
]
__version__ = "0.1.0"
