"""seta_stream: stream only the samples worth training on.

SeTa pruning (Zhou, Gao, Wang, CVPR 2025) applied at the shard-read level: a pruned sample is
never read from storage and never decoded.
"""

from __future__ import annotations

from seta_stream.errors import (
    ChecksumError,
    DecodeError,
    LossTableError,
    ManifestError,
    PolicyError,
    SeTaStreamError,
    ShardFormatError,
    SourceError,
)
from seta_stream.losses import LossTable
from seta_stream.policies import (
    DynamicRandom,
    Full,
    InfoBatch,
    Policy,
    Selection,
    SeTa,
    Static,
    policy_from_dict,
)
from seta_stream.shards import Dataset, read_samples
from seta_stream.stream import SeTaStream

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
    "Policy",
    "PolicyError",
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
