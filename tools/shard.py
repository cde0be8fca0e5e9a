#!/usr/bin/env python
"""Convert, index, verify, merge and describe sharded datasets.

    python tools/shard.py convert SRC DST [--format tar|arrow] [--samples-per-shard N]
        [--max-shard-bytes B] [--compress zstd[:LEVEL]] [--workers N] [--shuffle --seed S]
        [--part I/N] [--overwrite] [--label COLUMN_OR_FIELD] [--strict]
    python tools/shard.py index DIR_OR_TARS... [--checksum] [--strict] [--ray [--shards-per-task N]]
    python tools/shard.py verify DIR [--require-checksums]
    python tools/shard.py merge DIR
    python tools/shard.py upgrade DIR
    python tools/shard.py info DIR

DIR, SRC and DST may be fsspec URLs (s3://bucket/ds, gs://…, http(s):// to read). Credentials
and endpoint come from the environment (AWS_ACCESS_KEY_ID, AWS_ENDPOINT_URL, …) or from
`-o KEY=VALUE` storage options (repeatable; VALUE parsed as JSON when it can be, e.g.
`-o endpoint_url=http://127.0.0.1:9000 -o anon=true`).

Nothing is left out without a word: files in a folder that `index` or `convert` does not use,
and a tar without an end-of-archive marker (a cut-off upload), are named in a warning on
stderr; `--strict` makes them errors. `verify` says what it could not check ("no checksums
recorded: …"); `--require-checksums` makes that a failure.

Exit status: 0 on success, 1 on a known error (one line on stderr), 2 on bad usage.
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import os
import posixpath
import sys
from collections.abc import Sequence

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from seta_stream.errors import SeTaStreamError
from seta_stream.shards import (
    ConvertOptions,
    Dataset,
    Manifest,
    convert,
    index_tars,
    merge,
    open_source,
    upgrade,
    verify,
)
from seta_stream.shards.datasetsource import index_columns


def _size(text: str) -> int:
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    t = text.strip().lower().removesuffix("b").removesuffix("i")
    try:
        return int(float(t[:-1]) * units[t[-1]]) if t and t[-1] in units else int(t)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 256M, 1G, 1000000)") from e


def _part(text: str) -> tuple[int, int]:
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"not a part: {text!r} (use I/N, e.g. 0/8)") from e
    return i, n


def _option(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"not a storage option: {text!r} (use KEY=VALUE)")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


def _is_url(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="shard.py", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("convert", help="convert a folder, table, .npz or tar shards")
    c.add_argument(
        "src",
        help="folder (key-grouped files or class sub-folders), .parquet/.csv/"
        ".jsonl table, .npz, .tar file, folder of tars or a glob of tars",
    )
    c.add_argument("dst", help="output folder or fsspec URL")
    c.add_argument("--format", choices=("tar", "arrow"), default="tar")
    c.add_argument("--samples-per-shard", type=int, default=10_000)
    c.add_argument("--max-shard-bytes", type=_size, default=None)
    c.add_argument("--compress", default=None, help="zstd or zstd:LEVEL, per member")
    c.add_argument("--workers", type=int, default=1)
    c.add_argument("--shuffle", action="store_true")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--part", type=_part, default=None, help="I/N: convert part I of N")
    c.add_argument("--overwrite", action="store_true")
    c.add_argument("--layout", choices=("auto", "files", "imagefolder", "tars"), default="auto")
    c.add_argument("--key-column", default=None, help="table column holding sample keys")
    c.add_argument(
        "--path-column",
        action="append",
        default=[],
        dest="path_columns",
        help="table column of file paths to read in (repeatable)",
    )
    c.add_argument(
        "--label",
        default=None,
        help="what holds the integer class labels, kept as the index's `label` column: a "
        "table column, an .npz array, or a sample field of tars/files (e.g. cls)",
    )
    i = sub.add_parser("index", help="index existing WebDataset tar shards in place")
    i.add_argument("paths", nargs="+", help="a folder of .tar shards, or .tar files in one folder")
    i.add_argument("--checksum", action="store_true", help="also sha256 every shard (reads data)")
    i.add_argument(
        "--ray",
        action="store_true",
        help="scan on Ray, one task per group of shards (the cluster of RAY_ADDRESS, else a "
        "local one); needs pip install 'seta_stream[ray]'",
    )
    i.add_argument("--shards-per-task", type=int, default=64, help="with --ray (default 64)")
    for command in (c, i):
        command.add_argument(
            "--strict",
            action="store_true",
            help="fail on a skipped file or a tar without an end-of-archive marker",
        )
    for name, text in (
        ("verify", "check checksums and index against shards"),
        ("merge", "join the parts of a `convert --part` run"),
        ("upgrade", "give a version-1 dataset per-shard index files (version 2)"),
        ("info", "samples, shards, bytes, fields, label counts"),
    ):
        sub.add_parser(name, help=text).add_argument("dir")
    sub.choices["verify"].add_argument(
        "--require-checksums",
        action="store_true",
        help="fail when the manifest records no shard checksums (only sizes and headers checked)",
    )
    for command in sub.choices.values():
        command.add_argument(
            "-o",
            "--storage-option",
            type=_option,
            action="append",
            default=[],
            dest="storage_options",
            metavar="KEY=VALUE",
            help="fsspec storage option for URLs (repeatable)",
        )
    return p


def _info(root: str, storage_options: dict[str, object]) -> None:
    ds = Dataset.open(root, storage_options=storage_options)
    m = ds.manifest
    print(f"dataset       {root}")
    print(
        f"format        {m.format} (manifest v{m.version}, compression {m.compression or 'none'})"
    )
    print(f"samples       {m.num_samples:,}")
    print(f"shards        {len(m.shards):,}")
    print(
        f"bytes         {m.total_bytes:,} ({m.total_bytes / max(m.num_samples, 1):,.0f} per sample)"
    )
    print(f"fields        {', '.join(m.fields)}")
    if m.metadata_columns:
        print(f"metadata      {', '.join(m.metadata_columns)}")
    if "label" in m.metadata_columns:
        counts: collections.Counter[object] = collections.Counter()
        for table in index_columns(ds, ["label"]):  # one file's label column at a time
            counts.update(table["label"].to_pylist())
        print("labels        " + ", ".join(f"{k}: {v:,}" for k, v in sorted(counts.items())))
    print(f"fingerprint   {m.fingerprint}")


class _Warnings(logging.Handler):
    """Prints the `seta_stream` logger's warnings on stderr, as the CLI's own, and keeps them."""

    def __init__(self, cmd: str) -> None:
        super().__init__(logging.WARNING)
        self.cmd = cmd
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        self.seen.append(message)
        print(f"shard.py {self.cmd}: warning: {message}", file=sys.stderr)


def _index(args: argparse.Namespace, so: dict[str, object]) -> tuple[str, Manifest]:
    """Index a folder (or URL) of tars, or named tar files in one folder."""
    paths: list[str] = args.paths
    remote = _is_url(paths[0])
    names: list[str] | None = None
    if len(paths) == 1 and ((remote and not paths[0].endswith(".tar")) or os.path.isdir(paths[0])):
        root = paths[0]
    else:
        split = posixpath.split if remote else lambda p: os.path.split(os.path.abspath(p))
        dirs = {split(p)[0] for p in paths}
        if len(dirs) != 1:
            raise SeTaStreamError(f"tar files must share one folder, got {sorted(dirs)}")
        root = dirs.pop()
        names = [split(p)[1] for p in paths]
    if not args.ray:
        return root, index_tars(
            root, names, checksum=args.checksum, strict=args.strict, storage_options=so
        )
    try:
        from seta_stream.ray import index_shards
    except ImportError as e:
        raise SeTaStreamError(f"--ray needs Ray: pip install 'seta_stream[ray]' ({e})") from e
    m = index_shards(
        root,
        names,
        shards_per_task=args.shards_per_task,
        checksum=args.checksum,
        strict=args.strict,
        storage_options=so,
    )
    return root, m


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    log = logging.getLogger("seta_stream")
    handler = _Warnings(args.cmd)
    log.addHandler(handler)
    try:
        return _run(args, handler)
    finally:
        log.removeHandler(handler)


def _run(args: argparse.Namespace, warnings: _Warnings) -> int:
    so = dict(args.storage_options)
    try:
        if args.cmd == "convert":
            opts = ConvertOptions(
                format=args.format,
                samples_per_shard=args.samples_per_shard,
                max_shard_bytes=args.max_shard_bytes,
                compress=args.compress,
                workers=args.workers,
                shuffle=args.shuffle,
                seed=args.seed,
                part=args.part,
                overwrite=args.overwrite,
            )
            src = open_source(
                args.src,
                layout=args.layout,
                label=args.label,
                storage_options=so,
                strict=args.strict,
                **({"key_column": args.key_column} if args.key_column else {}),
                **({"path_columns": args.path_columns} if args.path_columns else {}),
            )
            if args.strict and warnings.seen:
                raise SeTaStreamError(
                    f"{len(warnings.seen)} warning(s) above, refused (--strict); nothing written"
                )
            m = convert(src, args.dst, opts, storage_options=so)
            print(
                f"wrote {m.num_samples:,} samples in {len(m.shards)} shards "
                f"({m.total_bytes:,} bytes) to {args.dst}"
            )
        elif args.cmd == "index":
            root, m = _index(args, so)
            print(f"indexed {m.num_samples:,} samples in {len(m.shards)} shards under {root}")
        elif args.cmd == "verify":
            problems = verify(
                args.dir, storage_options=so, require_checksums=args.require_checksums
            )
            for line in problems.notes:
                print(f"note: {line}")
            for line in problems:
                print(line)
            if problems:
                print(f"{len(problems)} problem(s) in {args.dir}", file=sys.stderr)
                return 1
            print(f"ok: {args.dir}")
        elif args.cmd == "merge":
            m = merge(args.dir, storage_options=so)
            print(f"merged {m.num_samples:,} samples in {len(m.shards)} shards under {args.dir}")
        elif args.cmd == "upgrade":
            m, changed = upgrade(args.dir, storage_options=so)
            if not changed:
                print(f"{args.dir}: already version {m.version}; nothing to do")
            else:
                print(
                    f"upgraded {args.dir} to version {m.version}: {len(m.shards)} index files in "
                    "index/; the old index.parquet is left in place (nothing reads it now; "
                    "delete it once no tool of yours does)"
                )
        else:
            _info(args.dir, so)
    except (SeTaStreamError, OSError) as e:
        print(f"shard.py {args.cmd}: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
