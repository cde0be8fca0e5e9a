#!/usr/bin/env python
"""The demo: generate MNIST-1D, shard it, and read a pruned subset by byte range.

    python tools/demo.py [--samples 20000] [--out demo_out] [--keep 0.3]

Steps: (1) generate MNIST-1D with the `mnist1d` package (procedural, no download);
(2) convert it with `tools/shard.py convert` into WebDataset tar shards with per-member zstd;
(3) print `tools/shard.py info`; (4) read a random `keep` fraction of the samples by id and
show that only their bytes were read.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np

from seta_stream.shards import Dataset, read_samples


def make_mnist1d(path: str, samples: int, seed: int) -> None:
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples = int(samples / args.train_split) + 1
    args.seed = seed
    print(f"[1/4] generating MNIST-1D: {args.num_samples:,} samples (mnist1d, seed {seed}) ...")
    t = time.perf_counter()
    d = make_dataset(args)
    x, y = d["x"][:samples].astype(np.float32), d["y"][:samples].astype(np.int64)
    np.savez(path, x=x, y=y)
    np.savez(path.replace(".npz", "-test.npz"), x=d["x_test"].astype(np.float32), y=d["y_test"])
    print(
        f"      {len(x):,} training samples of {x.shape[1]} floats "
        f"in {time.perf_counter() - t:.1f}s"
    )


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--samples", type=int, default=20_000)
    p.add_argument("--out", default="demo_out")
    p.add_argument("--keep", type=float, default=0.3)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    npz = os.path.join(args.out, f"mnist1d-{args.samples}.npz")
    if not os.path.exists(npz):
        make_mnist1d(npz, args.samples, args.seed)
    else:
        print(f"[1/4] MNIST-1D already generated: {npz}")

    import shard  # tools/shard.py, beside this file

    shards = os.path.join(args.out, "mnist1d-shards")
    print(
        f"[2/4] python tools/shard.py convert {npz} {shards} "
        "--samples-per-shard 5000 --compress zstd"
    )
    rc = shard.main(
        ["convert", npz, shards, "--samples-per-shard", "5000", "--compress", "zstd", "--overwrite"]
    )
    if rc:
        return rc
    print(f"[3/4] python tools/shard.py info {shards}")
    shard.main(["info", shards])

    ds = Dataset.open(shards)
    n = ds.num_samples
    ids = np.sort(np.random.default_rng(args.seed).choice(n, int(args.keep * n), replace=False))
    print(
        f"[4/4] reading a random {args.keep:.0%} of the samples by id (what a pruned epoch reads)"
    )
    t = time.perf_counter()
    reader = read_samples(ds, ids, decode=True)
    got = sum(1 for _ in reader)
    dt = time.perf_counter() - t
    total = ds.manifest.total_bytes
    print(f"      {got:,} samples decoded in {dt:.2f}s ({got / dt:,.0f} samples/s)")
    print(
        f"      bytes read: {reader.bytes_read:,} of {total:,} on disk "
        f"({reader.bytes_read / total:.1%}); {n - got:,} pruned samples never read"
    )
    return 0


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    sys.exit(main())
