"""Naming the files a conversion or an index leaves out, one rule for every caller.

`index_tars`, `open_source` (and so `tools/shard.py convert`) and the folder sources all say
what they skip the same way: one line with the count and the first `SHOWN` names (logger
`seta_stream`), or, with `strict=True`, that line as an error.
"""

from __future__ import annotations

import logging
import posixpath
import re
from collections.abc import Sequence

from seta_stream.errors import SourceError
from seta_stream.shards.wdsname import packed_archive, packed_archive_message
from seta_stream.storage import Store

SHOWN = 5  # skipped files named in a message; the count says how many more
NOT_TARS = "not .tar shards"
_OWN = re.compile(r"^(dataset\.json|dataset\.part-\d{5}-of-\d{5}\.json|index\.parquet)$")


def skipped_files(store: Store, used: Sequence[str]) -> list[str]:
    """The files directly in `store`'s folder that are neither in `used` nor seta_stream's own
    (`dataset.json`, part manifests, `index.parquet`, temporary `.NAME.tmp-…` files); sorted.
    Folders are not listed (`index/` is ours; shards are never looked for in sub-folders)."""
    keep = set(used)
    out = []
    for entry in store.fs.ls(store.root, detail=True):
        name = posixpath.basename(str(entry["name"]).rstrip("/"))
        if entry.get("type") == "directory" or name in keep or _OWN.match(name):
            continue
        if name.startswith(".") and ".tmp-" in name:
            continue
        out.append(name)
    return sorted(out)


def skipped_message(root: str, skipped: Sequence[str], why: str = NOT_TARS) -> str:
    """One line naming the files of `root` left out: the count, the first few, why, and a hint
    for a compressed archive among them."""
    shown = ", ".join(skipped[:SHOWN]) + (
        f", … ({len(skipped) - SHOWN} more)" if len(skipped) > SHOWN else ""
    )
    message = f"{root}: {len(skipped)} file(s) skipped, {why}: {shown}"
    packed = [n for n in skipped if packed_archive(n)]
    if packed:
        message += f"; {packed_archive_message(packed[0])}"
    return message


def report_skipped(
    root: str, skipped: Sequence[str], why: str = NOT_TARS, *, strict: bool = False
) -> None:
    """Warn (logger `seta_stream`) about the files of `root` left out, or with `strict` refuse
    them (`SourceError`); nothing when none were."""
    if not skipped:
        return
    message = skipped_message(root, skipped, why)
    if strict:
        raise SourceError(f"{message} (refused: strict)")
    logging.getLogger("seta_stream").warning("%s", message)
