"""One exception hierarchy for everything seta_stream raises on bad input or bad state.

Every error names what it is about (file, member, sample id, byte offset) in its message, so a
user can find the bad byte without a debugger.
"""

from __future__ import annotations


class SeTaStreamError(Exception):
    """Base class of every error seta_stream raises on purpose."""


class ShardFormatError(SeTaStreamError):
    """A shard is malformed: truncated, a corrupt header, a member outside the file."""


class ManifestError(SeTaStreamError):
    """`dataset.json` or `index.parquet` is missing, of an unknown version, or inconsistent."""


class ChecksumError(ManifestError):
    """A shard's bytes do not match the checksum recorded in the manifest."""


class SourceError(SeTaStreamError):
    """The input of a conversion is missing, unreadable or not in a supported layout."""


class DecodeError(SeTaStreamError):
    """A member could not be decoded (or its decoder is refused, e.g. pickle by default)."""


class LossTableError(SeTaStreamError):
    """The loss table is locked, of another dataset, of an unknown version, or given bad input."""


class NonFiniteLossError(LossTableError):
    """A loss update held NaN or inf (and the table was told to raise on them)."""


class PolicyError(SeTaStreamError):
    """A selection policy was configured with invalid parameters or given invalid scores."""
