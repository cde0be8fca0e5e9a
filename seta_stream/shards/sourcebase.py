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


def field_label(fields: Sequence[tuple[str, bytes]], field: str, where: str) -> int:
    """The integer class label that sample field `field` holds (`label=` of a tar source, as
    webdataset's `cls` field: decimal text such as `b"3"`), or a `SourceError` naming `where`."""
    data = next((d for f, d in fields if f == field), None)
    if data is None:
        raise SourceError(
            f"{where}: no field {field!r} for the label (label={field!r}); "
            f"its fields are {[f for f, _ in fields]}"
        )
    try:
        return int(data.decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        raise SourceError(
            f"{where}: field {field!r} holds {data[:40]!r}, not an integer; label={field!r} "
            "needs a class number in decimal text (as webdataset's .cls)"
        ) from None


def check_label_field(label: str | None, fields: Sequence[str], where: str) -> None:
    """Refuse `label=` up front when no sample of the source has that field."""
    if label is not None and label not in fields:
        raise SourceError(
            f"{where}: no sample has the field {label!r} (label={label!r}); "
            f"the fields are {sorted(fields)}"
        )


class FieldLabelSource(Source):
    """A source whose samples are sets of fields (tars, key-grouped files): `label=FIELD`
    makes the integer in field `FIELD` of each sample the `label` metadata column."""

    label: str | None = None

    def use_label(self, label: str | None) -> None:
        """Call once `fields` and `description` are set."""
        check_label_field(label, self.fields, self.description)
        self.label = label
        self.metadata_columns = ("label",) if label else ()

    def sample(self, key: str, fields: list[tuple[str, bytes]], where: str) -> Sample:
        """The sample, with its label when asked for (`where` names it in an error)."""
        if self.label is None:
            return Sample(key=key, fields=fields)
        return Sample(
            key=key, fields=fields, meta={"label": field_label(fields, self.label, where)}
        )
