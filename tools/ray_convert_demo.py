#!/usr/bin/env python
"""Convert a Parquet table to shards on Ray, check it against single-process convert, stream it.

    python tools/ray_convert_demo.py [--rows 20000] [--samples-per-shard 2000] [--num-cpus 2]
        [--out ray_demo_out]

Steps: (1) write a generated Parquet table (a key, a label, a 40-float signal as MNIST-1D's
rows and an 8x8 PNG per row); (2) start a local Ray cluster (or join the one in RAY_ADDRESS:
`ray job submit -- python tools/ray_convert_demo.py` runs it unchanged on a cluster), read
the table with Ray Data and write it with `seta_stream.ray.ShardSink`, repartitioned to whole
shards in order; (3) convert the same table with `tools/shard.py convert` in one process and
show that the shards and index files are the same bytes; (4) stream the Ray-written dataset
back with `SeTaStream` (every sample once) and index a copy of its tars with `index_shards`.
Needs the `ray` extra: pip install 'seta_stream[ray]'.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import sys
import time
from collections.abc import Sequence

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import ray
import ray.data
import torch
from PIL import Image
from torch.utils.data import DataLoader

from seta_stream import Full, SeTaStream
from seta_stream.ray import ShardSink, index_shards
from seta_stream.shards import ConvertOptions, convert, open_source


def make_table(path: str, rows: int, seed: int = 0) -> None:
    """MNIST-1D-like rows: a class label, a noisy 40-sample signal and a small PNG of it."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, rows)
    t = np.linspace(0, 1, 40, dtype=np.float32)
    x = np.sin(2 * np.pi * (labels[:, None] + 1) * t) + 0.2 * rng.standard_normal((rows, 40))
    images = []
    for i in range(rows):
        buf = io.BytesIO()
        px = np.clip(x[i, :32].reshape(4, 8) * 60 + 128, 0, 255).astype(np.uint8)
        Image.fromarray(np.repeat(px, 2, axis=0)).save(buf, format="PNG")  # 8x8 grey
        images.append(buf.getvalue())
    table = pa.table(
        {
            "key": [f"{i:08d}" for i in range(rows)],
            "label": labels,
            "x": x.astype(np.float32).tolist(),
            "image": images,
        }
    )
    pq.write_table(table, path, row_group_size=max(rows // 8, 1))


def _same_files(a: str, b: str, names_a: list[str], names_b: list[str]) -> bool:
    for x, y in zip(names_a, names_b, strict=True):
        for sub_x, sub_y in ((x, y), (f"index/{x}.parquet", f"index/{y}.parquet")):
            with open(os.path.join(a, sub_x), "rb") as f, open(os.path.join(b, sub_y), "rb") as g:
                if f.read() != g.read():
                    return False
    return True


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rows", type=int, default=20_000)
    p.add_argument("--samples-per-shard", type=int, default=2_000)
    p.add_argument("--num-cpus", type=int, default=2, help="local cluster size (no RAY_ADDRESS)")
    p.add_argument("--out", default="ray_demo_out")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    shutil.rmtree(args.out, ignore_errors=True)
    os.makedirs(args.out)
    table = os.path.join(args.out, "rows.parquet")
    make_table(table, args.rows)
    print(f"(1) wrote {args.rows:,} rows to {table}")

    t0 = time.perf_counter()
    started = not ray.is_initialized()
    if started:  # RAY_ADDRESS set (`ray job submit`): joins that cluster; else a local one
        local = {} if os.environ.get("RAY_ADDRESS") else {"num_cpus": args.num_cpus}
        ray.init(include_dashboard=False, **local)  # type: ignore[arg-type]
    t1 = time.perf_counter()
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.execution_options.preserve_order = True  # shards in the table's order
        ctx.enable_progress_bars = False
        n = args.samples_per_shard
        sink = ShardSink(os.path.join(args.out, "ray"), samples_per_shard=n)
        rows = ray.data.read_parquet(table)
        rows.repartition(target_num_rows_per_block=n, strict=True).write_datasink(sink)
        t2 = time.perf_counter()
        assert sink.manifest is not None
        m = sink.manifest
        print(
            f"(2) Ray: {m.num_samples:,} samples in {len(m.shards)} shards, "
            f"{m.num_samples / (t2 - t1):,.0f} samples/s (Ray start-up {t1 - t0:.1f} s apart)"
        )
        opts = ConvertOptions(samples_per_shard=n, progress=False)
        ref = convert(open_source(table), os.path.join(args.out, "single"), opts)
        t3 = time.perf_counter()
        same = _same_files(
            os.path.join(args.out, "ray"),
            os.path.join(args.out, "single"),
            [s.name for s in m.shards],
            [s.name for s in ref.shards],
        )
        print(
            f"(3) single-process convert: {ref.num_samples / (t3 - t2):,.0f} samples/s; "
            f"shards and index files {'byte-identical' if same else 'DIFFER'}"
        )
        with SeTaStream(
            os.path.join(args.out, "ray"),
            policy=Full(),
            losses=os.path.join(args.out, "losses"),
            transform=lambda s: {"__index__": s["__index__"], "label": s["label.cls"]},
        ) as stream:
            stream.set_epoch(0)
            ids = np.concatenate(
                [b["__index__"].numpy() for b in DataLoader(stream, batch_size=256)]
            )
        once = np.array_equal(np.sort(ids), np.arange(args.rows))
        tars = os.path.join(args.out, "tars")  # the same tars without index: index them again
        os.makedirs(tars)
        for s in m.shards:
            shutil.copy(os.path.join(args.out, "ray", s.name), tars)
        again = index_shards(tars, shards_per_task=4)
        print(
            f"(4) SeTaStream read {len(ids):,} samples, each once: {once}; "
            f"index_shards on Ray: {again.num_samples:,} samples in {len(again.shards)} shards"
        )
        return 0 if same and once and again.num_samples == args.rows else 1
    finally:
        if started:
            ray.shutdown()


if __name__ == "__main__":
    sys.exit(main())
