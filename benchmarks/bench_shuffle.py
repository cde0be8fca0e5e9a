#!/usr/bin/env python
"""Shuffle quality of an epoch's order, against a perfect shuffle and webdataset's recipe.

    python benchmarks/bench_shuffle.py [--samples 100000] [--shards 100] [--out ...] [--smoke]

The order is a pure function of the plan (no I/O), so this measures exactly what SeTaStream
yields: one rank, `--workers` DataLoader workers whose batches the loader interleaves. Two
layouts of the same data: labels i.i.d. over the shards (a dataset converted with
`--shuffle`), and labels sorted (ImageFolder converted without `--shuffle`: class after
class). Metrics: how often two neighbours come from the same shard / the same class, and the
mean number of distinct classes in a batch — each beside a perfect random permutation.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from seta_stream.plan import World, read_order, split, yield_order

CLASSES = 10


def ours(open_shards: int, window: int, workers: int, batch: int) -> Callable[..., np.ndarray]:
    def order(ids: np.ndarray, shard: np.ndarray, offset: np.ndarray, seed: int) -> np.ndarray:
        first = np.searchsorted(shard, np.arange(int(shard[-1]) + 2))  # ids in shard order
        full = read_order(ids, first, seed=seed, epoch=1, open_shards=open_shards)
        streams = []
        for w in range(workers):
            world = World(worker=w, num_workers=workers)
            part = split(full, world)
            streams.append(
                part[yield_order(part, seed=seed, epoch=1, world=world, shuffle_window=window)]
            )
        return _interleave(streams, batch)

    return order


def _interleave(streams: list[np.ndarray], batch: int) -> np.ndarray:
    """The DataLoader's order: batch j comes from worker j % workers while it has data."""
    chunks = [[s[i : i + batch] for i in range(0, len(s), batch)] for s in streams]
    out = []
    for j in range(max(len(c) for c in chunks)):
        out += [c[j] for c in chunks if j < len(c)]
    return np.concatenate(out)


def webdataset_like(buffer: int) -> Callable[..., np.ndarray]:
    """`WebDataset(urls, shardshuffle=True).shuffle(buffer)`: shard order, then a buffer."""

    def order(ids: np.ndarray, shard: np.ndarray, offset: np.ndarray, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        shards = rng.permutation(np.unique(shard))
        stream = np.concatenate([ids[shard[ids] == s] for s in shards])
        out, buf = [], []
        for x in stream.tolist():  # webdataset's reservoir: fill, then swap out a random one
            buf.append(x)
            if len(buf) >= buffer:
                k = int(rng.integers(len(buf)))
                buf[k], buf[-1] = buf[-1], buf[k]
                out.append(buf.pop())
        rng.shuffle(buf)
        return np.array(out + buf, np.int64)

    return order


def perfect(ids: np.ndarray, shard: np.ndarray, offset: np.ndarray, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).permutation(ids)


def metrics(
    order: np.ndarray, shard: np.ndarray, label: np.ndarray, batch: int
) -> dict[str, float]:
    n = len(order) // batch * batch
    per_batch = label[order[:n]].reshape(-1, batch)
    distinct = np.mean([len(np.unique(b)) for b in per_batch])
    return {
        "same_shard_neighbours": float(np.mean(shard[order[1:]] == shard[order[:-1]])),
        "same_class_neighbours": float(np.mean(label[order[1:]] == label[order[:-1]])),
        "classes_per_batch": float(distinct),
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--samples", type=int, default=100_000)
    p.add_argument("--shards", type=int, default=100)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="benchmarks/out/shuffle.json")
    p.add_argument("--smoke", action="store_true", help="10k samples, a second")
    args = p.parse_args(argv)
    n = 10_000 if args.smoke else args.samples
    per_shard = -(-n // args.shards)
    shard = np.arange(n) // per_shard
    offset = np.arange(n) % per_shard
    layouts = {
        "labels iid": np.random.default_rng(1).integers(0, CLASSES, n),
        "labels sorted": np.arange(n) * CLASSES // n,
    }
    contestants: dict[str, Callable[..., np.ndarray]] = {
        "perfect permutation": perfect,
        "seta_stream (4 open shards, window 1024)": ours(4, 1024, args.workers, args.batch),
        "seta_stream (16 open shards, window 8192)": ours(16, 8192, args.workers, args.batch),
        "webdataset shardshuffle + shuffle(1000)": webdataset_like(1000),
    }
    ids = np.arange(n, dtype=np.int64)
    rows: list[dict[str, Any]] = []
    for layout, label in layouts.items():
        for name, fn in contestants.items():
            order = fn(ids, shard, offset, args.seed)
            if not np.array_equal(np.sort(order), ids):
                raise AssertionError(f"{name}: not a permutation")
            rows.append(
                {"layout": layout, "order": name, **metrics(order, shard, label, args.batch)}
            )
    print(f"{n:,} samples in {args.shards} shards, batch {args.batch}, {args.workers} workers\n")
    print("| layout | order | same-shard neighbours | same-class neighbours | classes per batch |")
    print("|---|---|--:|--:|--:|")
    for r in rows:
        print(
            f"| {r['layout']} | {r['order']} | {r['same_shard_neighbours']:.3f} "
            f"| {r['same_class_neighbours']:.3f} | {r['classes_per_batch']:.2f} |"
        )
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(
            {
                "samples": n,
                "shards": args.shards,
                "batch": args.batch,
                "workers": args.workers,
                "python": platform.python_version(),
                "rows": rows,
            },
            f,
            indent=1,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
