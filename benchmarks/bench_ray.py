#!/usr/bin/env python
"""Converting and indexing on a local Ray cluster against the single-process tools.

    python benchmarks/bench_ray.py [--samples 20000] [--shards 1000] [--num-cpus 2]
        [--repeat 2] [--out benchmarks/out/ray.json] [--smoke]

Inputs (seeded, in a temporary folder): two Parquet tables of `--samples` rows, MNIST-1D-like
rows (`key`, `label`, `x` float32[40]) and 28x28 grey PNGs (`key`, `label`, `image`).
Contestants on each, 10 shards: `convert` (the code behind `tools/shard.py convert`) with 1
and 2 workers, `seta_stream.ray.ShardSink` on a local Ray cluster of `--num-cpus` CPUs
(repartitioned to whole shards, in order: byte-identical to `convert`, checked here), and
Ray Data's own `write_webdataset` on the same rows. Ray's start-up (`ray.init`) is timed
apart; each contestant's best of `--repeat` runs is shown (the first Ray job also starts its
worker processes). Then `--shards` tars are indexed by the serial `index_tars` and by
`index_shards` on Ray, and the two manifests compared.

Prints Markdown tables (for BENCHMARKS.md) and writes every figure to JSON. Not a test:
the smoke run in tests/benchmarks/ only keeps it from rotting.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from seta_stream.shards import ConvertOptions, convert, index_tars, open_source

DEFAULT_OUT = Path(__file__).resolve().parent / "out" / "ray.json"


def tables(folder: Path, n: int, seed: int = 0) -> dict[str, Path]:
    from PIL import Image

    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    keys = [f"{i:08d}" for i in range(n)]
    x = rng.standard_normal((n, 40)).astype(np.float32)
    pngs = []
    for _ in range(n):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (28, 28), dtype=np.uint8)).save(buf, format="PNG")
        pngs.append(buf.getvalue())
    paths = {"rows": folder / "rows.parquet", "png": folder / "png.parquet"}
    pq.write_table(pa.table({"key": keys, "label": labels, "x": x.tolist()}), paths["rows"])
    pq.write_table(pa.table({"key": keys, "label": labels, "image": pngs}), paths["png"])
    return paths


def _wds_encode(sample: dict[str, Any]) -> dict[str, Any]:
    """The members our sink writes (bytes as they are, `cls` as text, `json`), for Ray's
    webdataset writer, whose default encoder would re-encode PNG bytes through Pillow."""
    out = {}
    for k, v in sample.items():
        if k.startswith("__") or isinstance(v, bytes):
            out[k] = v
        elif k.endswith(".json"):
            out[k] = json.dumps(np.asarray(v).tolist()).encode()
        else:
            out[k] = str(v).encode()
    return out


def _tar_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*.tar"))


def _best(repeat: int, run: Callable[[Path], None], folder: Path) -> float:
    times = []
    for r in range(repeat):
        out = folder / f"run{r}"
        t0 = time.perf_counter()
        run(out)
        times.append(time.perf_counter() - t0)
        if r < repeat - 1:
            shutil.rmtree(out)
    return min(times)


def bench_convert(ray: Any, table: Path, work: Path, n: int, repeat: int) -> list[dict[str, Any]]:
    from seta_stream.ray import ShardSink

    per_shard = max(n // 10, 1)
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True

    def ours(workers: int) -> Callable[[Path], None]:
        opts = ConvertOptions(samples_per_shard=per_shard, workers=workers, progress=False)

        def run(out: Path) -> None:
            convert(open_source(str(table)), out, opts)

        return run

    def sink(out: Path) -> None:
        rows = ray.data.read_parquet(str(table))
        rows = rows.repartition(target_num_rows_per_block=per_shard, strict=True)
        rows.write_datasink(ShardSink(str(out), samples_per_shard=per_shard))

    def ray_wds(out: Path) -> None:
        rows = ray.data.read_parquet(str(table))
        cols = {"key": "__key__", "label": "label.cls", "x": "x.json", "image": "image.png"}
        rows = rows.rename_columns({c: cols[c] for c in rows.schema().names})
        rows.write_webdataset(str(out), min_rows_per_file=per_shard, encoder=_wds_encode)

    contestants = [
        ("seta_stream convert workers=1", ours(1)),
        ("seta_stream convert workers=2", ours(2)),
        ("seta_stream.ray.ShardSink", sink),
        ("ray.data write_webdataset", ray_wds),
    ]
    results = []
    for name, run in contestants:
        folder = work / name.replace(" ", "_").replace("=", "")
        seconds = _best(repeat, run, folder)
        last = folder / f"run{repeat - 1}"
        results.append(
            {
                "contestant": name,
                "samples": n,
                "seconds": seconds,
                "samples_per_s": n / seconds,
                "bytes_per_sample": _tar_bytes(last) / n,
                "shards": len(list(last.rglob("*.tar"))),
                "out": str(last),
            }
        )

    def tars(r: dict[str, Any]) -> list[bytes]:
        return sorted(p.read_bytes() for p in Path(r["out"]).glob("*.tar"))

    ref = tars(results[0])  # convert workers=1; the others of ours are compared with it
    for r in results:
        ours_too = r["contestant"].startswith("seta") and r is not results[0]
        r["byte_identical_to_convert"] = tars(r) == ref if ours_too else None
    for r in results:
        del r["out"]
    return results


def bench_index(ray: Any, table: Path, work: Path, n: int, shards: int) -> dict[str, Any]:
    from seta_stream.ray import index_shards

    src = work / "index-src"
    opts = ConvertOptions(samples_per_shard=max(n // shards, 1), progress=False)
    convert(open_source(str(table)), src, opts)
    times = {}
    for name in ("serial", "ray"):
        folder = work / f"index-{name}"
        folder.mkdir()
        for p in src.glob("*.tar"):
            os.link(p, folder / p.name)
        t0 = time.perf_counter()
        if name == "serial":
            index_tars(str(folder), progress=False)
        else:
            index_shards(str(folder), shards_per_task=max(shards // 10, 1))
        times[name] = time.perf_counter() - t0
    a = (work / "index-serial" / "dataset.json").read_bytes()
    b = (work / "index-ray" / "dataset.json").read_bytes()
    return {
        "shards": len(list(src.glob("*.tar"))),
        "samples": n,
        "serial_s": times["serial"],
        "ray_s": times["ray"],
        "identical_manifest": a == b,
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--samples", type=int, default=20_000)
    p.add_argument("--shards", type=int, default=1000, help="tars to index")
    p.add_argument("--num-cpus", type=int, default=2)
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--smoke", action="store_true", help="tiny run (tests)")
    args = p.parse_args(argv)
    if args.smoke:
        args.samples, args.shards, args.repeat = 200, 20, 1
    import ray
    import ray.data
    import torch

    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    started = not ray.is_initialized()
    try:
        t0 = time.perf_counter()
        if started:
            ray.init(num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False)
        startup = time.perf_counter() - t0
        ray.data.DataContext.get_current().enable_progress_bars = False
        paths = tables(work, args.samples)
        rows = {
            k: bench_convert(ray, v, work / k, args.samples, args.repeat) for k, v in paths.items()
        }
        index = bench_index(ray, paths["rows"], work, args.samples, args.shards)
    finally:
        if started:
            ray.shutdown()
        shutil.rmtree(work, ignore_errors=True)
    print(f"Ray start-up (ray.init, {args.num_cpus} CPUs): {startup:.1f} s\n")
    print("| input | contestant | samples/s | bytes/sample on disk | same bytes as convert |")
    print("|---|---|--:|--:|---|")
    for kind, results in rows.items():
        for r in results:
            same = {True: "yes", False: "NO", None: "–"}[r["byte_identical_to_convert"]]
            print(
                f"| {kind} | {r['contestant']} | {r['samples_per_s']:,.0f} | "
                f"{r['bytes_per_sample']:,.0f} | {same} |"
            )
    print(
        f"\nindex {index['shards']} tars ({index['samples']:,} samples): serial "
        f"{index['serial_s']:.2f} s, Ray {index['ray_s']:.2f} s, "
        f"identical manifest: {index['identical_manifest']}"
    )
    data = {
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "ray_cpus": args.num_cpus,
        },
        "ray_startup_s": startup,
        "convert": [{"input": k, **r} for k, rs in rows.items() for r in rs],
        "index": index,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(data, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
