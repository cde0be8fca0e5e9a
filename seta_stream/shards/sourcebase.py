"""What every conversion source is: a `Sample`, the `Source` base class, and the pieces the
source types share (the label column names looked for, reading a source file)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from seta_stream.errors import SourceError

LABEL_NAMES = ("label", "labels", "y", "target", "targets")


@dataclass(frozen=True, kw_only=True)
class Sample:
    key: str
    fields: list[tuple[str, bytes]]
    meta: dict[str, Any] = field(default_factory=dict)


class Source:
    """Base: subclasses set `description`, `metadata_columns`, `extra` and implement load()."""

    description = "source"
    fields: tuple[str, ...] = ()  # every field name a sample may have (Arrow needs the schema)
    metadata_columns: tuple[str, ...] = ()
    extra: dict[str, Any] = {}  # noqa: RUF012 - read-only default, replaced by subclasses

    def __len__(self) -> int:
        raise NotImplementedError

    def load(self, i: int) -> Sample:
        raise NotImplementedError

    def load_many(self, ids: Sequence[int]) -> list[Sample]:
        """Samples `ids` in order (a source that can fetch them together overrides this)."""
        return [self.load(i) for i in ids]


def read_file(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise SourceError(f"{path}: cannot read source file ({e.strerror})") from e
