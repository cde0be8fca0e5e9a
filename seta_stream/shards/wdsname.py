"""WebDataset's rule for turning a tar member path into (sample key, field name).

WebDataset (``webdataset.tariterators``, checked against 1.0.2) decides in two steps:

1. ``tar_file_iterator`` drops *meta* paths before anything else: a path without ``/`` that
   starts and ends with ``__`` (``__meta__``, also ``__`` and ``___``), and any path that the
   regex ``__[^/]*__($|/)`` matches at its start (``__meta__/x.json``). Re's ``$`` also matches
   before a final newline, so ``"__a__\\n"`` is a meta path too.
2. ``group_by_keys`` splits the rest with ``base_plus_ext``, the regex
   ``^((?:.*/|)[^.]+)[.]([^/]*)$``: the key is everything up to the first dot of the last path
   component that does not start with a dot, the extension is everything after that dot, and
   the extension is lower-cased (``lcase=True``). Directory names may hold dots
   (``a.b/c.d/x.JPG`` → ``("a.b/c.d/x", "jpg")``). A path without such a dot (``README``,
   ``.hidden``, ``a.b/c``) has no key; WebDataset ignores it without ending the current sample.
   Quirks of the regex are kept on purpose: when the last component starts with a dot the
   regex falls back to an earlier ``/`` (``dir/.hidden`` → ``("dir/", "hidden")``), and ``.``
   does not match a newline, so a directory part holding a newline falls back the same way.

The same regexes are used here, so the result is the same for every string; the tests compare
both on generated names, through WebDataset's own functions.

One rule of seta_stream's own on top: a name ending in a dot (`KEY.`) gives WebDataset the
field `''`, which no seta_stream reader accepts, so indexing and converting refuse it up
front (`empty_field_message` says why) instead of a read failing later.
"""

from __future__ import annotations

import re

__all__ = [
    "empty_field_message",
    "is_skipped",
    "packed_archive",
    "packed_archive_message",
    "split_name",
]

# Key = optional directory part (greedy, up to some "/") + at least one non-dot character;
# then the first dot; then the extension, which may not contain "/".
_KEY_EXT = re.compile(
    r"""
    ^(
        (?:.*/|)      # directory part: up to a "/" (`.` stops at newlines), or nothing
        [^.]+         # the base name before its first dot
    )
    [.]
    ([^/]*)$          # every extension, e.g. "seg.png" of "x.seg.png"
    """,
    re.VERBOSE,
)

# WebDataset's default `skip_meta`, applied with re.match (anchored at the start only).
_META_DIR = re.compile(r"__[^/]*__($|/)")
_META_AFFIX = "__"


def is_skipped(path: str) -> bool:
    """True when WebDataset drops the tar member `path` as metadata before grouping."""
    if "/" not in path and path.startswith(_META_AFFIX) and path.endswith(_META_AFFIX):
        return True
    return _META_DIR.match(path) is not None


def split_name(path: str) -> tuple[str, str] | None:
    """(key, lower-cased extension) of a member path, or None when it names no sample field.

    Does not apply the meta rule; call `is_skipped` first, as WebDataset does.
    """
    match = _KEY_EXT.match(path)
    if match is None:
        return None
    return match.group(1), match.group(2).lower()


def empty_field_message(path: str) -> str:
    """Why `path` (for which `split_name` gives the field `''`) is refused, and what to do."""
    key = path.rstrip(".") or "KEY"
    return (
        f"the name {path!r} ends in '.', so its field name is empty (WebDataset yields it as"
        f" field ''), which seta_stream cannot read; rename it with an extension, e.g. {key}.bin"
    )


# Archives that hold many files, which a folder to index or convert may hold by mistake: they
# have no per-member byte ranges, and stored whole they would be one opaque sample.
_PACKED = (".tgz", ".tar.gz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".tar.zst", ".zip")


def packed_archive(path: str) -> bool:
    """True when `path` names a compressed tar or a zip (by its name)."""
    return path.lower().endswith(_PACKED)


def packed_archive_message(path: str) -> str:
    """Why the archive `path` is not used, and what to run instead."""
    return (
        f"{path}: a compressed archive, not used (it has no per-member byte ranges and is not"
        " one sample); extract it, then index or convert the .tar (or the files) inside"
    )
