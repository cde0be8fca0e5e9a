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

__all__ = [
    "ChecksumError",
    "DecodeError",
    "LossTableError",
    "ManifestError",
    "PolicyError",
    "SeTaStreamError",
    "ShardFormatError",
    "SourceError",
]
__version__ = "0.1.0"
