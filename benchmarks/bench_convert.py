#!/usr/bin/env python
"""How fast does `convert` write shards, and how few bytes does a read by id touch?

    python benchmarks/bench_convert.py [--samples 100000] [--images 20000] [--repeat 3]
        [--warmup 1] [--out benchmarks/out/convert.json] [--smoke]

Inputs (seeded, made in a temporary folder): an `.npz` of MNIST-1D-like samples (`x` float32
(40,), `y` int label) and, unless `--images 0`, an ImageFolder of 28x28 grayscale PNGs.
Contestants on the same input and shard size, side by side: `seta_stream.shards.convert`
(the code behind `tools/shard.py convert`) with 1 and 2 workers and with zstd, against
`webdataset.ShardWriter` fed the already-loaded arrays (it encodes them itself), by default
and with `mtime=0` (no pax header per member).
Then the converted dataset is read by id (a random 10/30/100% of ids, sorted) with
`read_samples`, counting bytes as the reader sees them and as the OS does (`/proc/self/io`
rchar), against a streaming pass of `webdataset.WebDataset` over the webdataset shards: those
written with `mtime=0` (byte for byte the same tar layout as ours: the fair row) and, as a
second row, its default output (a pax header per member).
Every contestant alike: `--warmup` untimed runs, then `--repeat` timed runs; the figure is
their median (every run in the JSON, with the git commit and the load average at start and end).

Prints Markdown tables (for BENCHMARKS.md) and writes every figure to JSON. Not a test:
the smoke run in tests/benchmarks/ only keeps it from rotting.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_info import run_info

from seta_stream.shards import ConvertOptions, Dataset, convert, read_samples
from seta_stream.shards.sources import ImageFolderSource, NpzSource, Source

# webdataset imports torch (seconds); it is imported lazily so that the spawned convert
# workers, which re-import this module as __mp_main__, do not pay for it.

DEFAULT_OUT = Path(__file__).resolve().parent / "out" / "convert.json"
BLOCK = 512
WDS = "webdataset.ShardWriter"


@dataclass(frozen=True, kw_only=True)
class BenchConfig:
    samples: int = 100_000
    images: int = 20_000
    samples_per_shard: int = 10_000
    repeat: int = 3
    warmup: int = 1
    seed: int = 0
    fractions: tuple[float, ...] = (0.1, 0.3, 1.0)

    def __post_init__(self) -> None:
        for name in ("samples", "samples_per_shard", "repeat"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)}: must be >= 1")
        if self.images < 0:
            raise ValueError(f"images={self.images}: must be >= 0 (0 skips the PNG input)")
        if not self.fractions or not all(0 < f <= 1 for f in self.fractions):
            raise ValueError(f"fractions={self.fractions}: each must be in (0, 1]")


# ---------------------------------------------------------------- inputs


def make_npz(folder: Path, n: int, seed: int) -> tuple[Path, np.ndarray, np.ndarray]:
    """MNIST-1D-like: x float32 (n, 40) and y int64 labels in [0, 10)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 40), dtype=np.float32)
    y = rng.integers(0, 10, size=n, dtype=np.int64)
    path = folder / "mnist1d_like.npz"
    np.savez(path, x=x, y=y)
    return path, x, y


def make_images(folder: Path, n: int, seed: int, classes: int = 10) -> Path:
    """`root/CLASS/NNNNNN.png`: 28x28 grayscale noise-and-gradient images."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    root = folder / "images"
    ramp = np.linspace(0, 255, 28, dtype=np.float32)[None, :]
    for c in range(classes):
        (root / f"class{c}").mkdir(parents=True)
    for i in range(n):
        img = (ramp * (i % 7) / 7 + rng.integers(0, 64, (28, 28))).clip(0, 255)
        Image.fromarray(img.astype(np.uint8)).save(root / f"class{i % classes}/{i:06d}.png")
    return root


# ---------------------------------------------------------------- convert


def _timed(
    run: Callable[[Path], None], work: Path, repeat: int, warmup: int
) -> tuple[list[float], Path]:
    """Run `run(dst)` `warmup` untimed then `repeat` timed times into fresh folders; return
    the timed runs' seconds and the last folder."""
    times: list[float] = []
    for r in range(warmup + repeat):
        dst = work.with_name(f"{work.name}-r{r}")
        t0 = time.perf_counter()
        run(dst)
        if r >= warmup:
            times.append(time.perf_counter() - t0)
        if r < warmup + repeat - 1:
            shutil.rmtree(dst)
    return times, dst


def _ours(source: Source, opts: ConvertOptions) -> Callable[[Path], None]:
    def run(dst: Path) -> None:
        convert(source, dst, opts)

    return run


def _wds_npz(x: np.ndarray, y: np.ndarray, per_shard: int, **kw: Any) -> Callable[[Path], None]:
    import webdataset as wds

    def run(dst: Path) -> None:
        dst.mkdir(parents=True)
        pattern = str(dst / "shard-%06d.tar")
        with wds.ShardWriter(pattern, maxcount=per_shard, verbose=0, **kw) as w:
            for i in range(len(x)):
                w.write({"__key__": f"{i:09d}", "x.npy": x[i], "y.cls": int(y[i])})

    return run


def _wds_images(source: ImageFolderSource, per_shard: int) -> Callable[[Path], None]:
    import webdataset as wds

    def run(dst: Path) -> None:
        dst.mkdir(parents=True)
        with wds.ShardWriter(str(dst / "shard-%06d.tar"), maxcount=per_shard, verbose=0) as w:
            for label, rel in source.samples:  # same files, same keys as ImageFolderSource
                cls_dir, fname = rel.split(os.sep, 1)
                data = Path(source.root, rel).read_bytes()
                w.write({"__key__": f"{cls_dir}/{fname[:-4]}", "png": data, "cls": label})

    return run


def tar_overhead(path: Path) -> dict[str, int]:
    """Walk raw tar headers: bytes in pax extended headers, in member headers, and in data."""
    out = {"pax_header_bytes": 0, "member_header_bytes": 0, "data_bytes": 0, "members": 0}
    with open(path, "rb") as f:
        while (hdr := f.read(BLOCK)) and hdr.strip(b"\0"):
            size = int(hdr[124:136].rstrip(b"\0 ") or b"0", 8)
            padded = -(-size // BLOCK) * BLOCK
            if hdr[156:157] in (b"x", b"g"):
                out["pax_header_bytes"] += BLOCK + padded
            else:
                out["member_header_bytes"] += BLOCK
                out["data_bytes"] += size
                out["members"] += 1
            f.seek(padded, os.SEEK_CUR)
    return out


def _disk(dst: Path) -> dict[str, int]:
    tars = sorted(dst.glob("*.tar"))
    shard_bytes = sum(p.stat().st_size for p in tars)
    totals: dict[str, int] = {"shards": len(tars), "shard_bytes": shard_bytes}
    totals["total_bytes"] = sum(p.stat().st_size for p in dst.iterdir() if p.is_file())
    for t in tars:
        for k, v in tar_overhead(t).items():
            totals[k] = totals.get(k, 0) + v
    return totals


def bench_convert(
    name: str, runners: dict[str, Callable[[Path], None]], n: int, work: Path, cfg: BenchConfig
) -> tuple[list[dict[str, Any]], dict[str, Path]]:
    rows: list[dict[str, Any]] = []
    dsts: dict[str, Path] = {}
    for contestant, run in runners.items():
        where = work / f"{name}-{contestant.replace(' ', '_')}"
        times, dst = _timed(run, where, cfg.repeat, cfg.warmup)
        sec = statistics.median(times)
        disk = _disk(dst)
        rows.append(
            {"input": name, "contestant": contestant, "samples": n, "seconds": sec,
             "seconds_all": times, "samples_per_s": n / sec,
             "bytes_per_sample": disk["shard_bytes"] / n, **disk}
        )  # fmt: skip
        dsts[contestant] = dst
    base = next(r for r in rows if r["contestant"] == WDS)
    for r in rows:
        r["speed_vs_webdataset"] = r["samples_per_s"] / base["samples_per_s"]
        r["bytes_vs_webdataset"] = r["shard_bytes"] / base["shard_bytes"]
    return rows, dsts


# ---------------------------------------------------------------- read


def rchar() -> int:
    """Bytes this process has read through read()-like calls (page cache included)."""
    with open("/proc/self/io", "rb") as f:
        for line in f:
            if line.startswith(b"rchar:"):
                return int(line.split()[1])
    raise OSError("/proc/self/io has no rchar line")


def _read_once(dst: Path, ids: np.ndarray, decode: bool) -> dict[str, Any]:
    ds = Dataset.open(dst)  # the manifest; each shard's index file is read (and counted) when
    # the reader first needs it
    before = rchar()
    t0 = time.perf_counter()
    reader = read_samples(ds, ids, decode=decode)
    count = sum(1 for _ in reader)
    sec = time.perf_counter() - t0
    os_bytes = rchar() - before
    ds.close()
    return {"samples": count, "seconds": sec, "shard_bytes": ds.manifest.total_bytes,
            "reader_bytes": reader.bytes_read + ds.index.bytes_read, "os_rchar_bytes": os_bytes,
            "requests": reader.stats.requests}  # fmt: skip


def bench_read(
    label: str, dst: Path, frac: float, decode: bool, *, seed: int, repeat: int, warmup: int
) -> dict[str, Any]:
    """Read a random `frac` of the ids (sorted) `warmup` untimed then `repeat` timed times;
    median time, last run's bytes."""
    with closing(Dataset.open(dst)) as d:
        n = d.num_samples
    size = max(1, round(frac * n))
    ids = np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False))
    runs = [_read_once(dst, ids, decode) for _ in range(warmup + repeat)][warmup:]
    r = runs[-1]
    sec = statistics.median(x["seconds"] for x in runs)
    return {
        "dataset": label, "fraction": frac, "decode": decode, **r, "seconds": sec,
        "seconds_all": [x["seconds"] for x in runs], "samples_per_s": r["samples"] / sec,
        "reader_fraction": r["reader_bytes"] / r["shard_bytes"],
        "os_fraction": r["os_rchar_bytes"] / r["shard_bytes"],
    }  # fmt: skip


def bench_wds_stream(label: str, dst: Path, *, repeat: int, warmup: int) -> dict[str, Any]:
    """webdataset.WebDataset passes over its shards (a by-id read without an index): `warmup`
    untimed, then `repeat` timed; median time, last run's bytes."""
    import webdataset as wds  # outside the timing

    urls = [str(p) for p in sorted(dst.glob("*.tar"))]
    shard_bytes = sum(os.path.getsize(u) for u in urls)
    runs = []
    for _ in range(warmup + repeat):
        before = rchar()
        t0 = time.perf_counter()
        count = sum(1 for _ in wds.WebDataset(urls, shardshuffle=False))
        runs.append((time.perf_counter() - t0, rchar() - before, count))
    runs = runs[warmup:]
    sec = statistics.median(r[0] for r in runs)
    _, os_bytes, count = runs[-1]
    return {
        "dataset": f"{label}, webdataset.WebDataset stream", "fraction": 1.0,
        "decode": False, "samples": count, "seconds": sec, "seconds_all": [r[0] for r in runs],
        "samples_per_s": count / sec, "shard_bytes": shard_bytes, "reader_bytes": None,
        "os_rchar_bytes": os_bytes, "reader_fraction": None,
        "os_fraction": os_bytes / shard_bytes, "requests": None,
    }  # fmt: skip


# ---------------------------------------------------------------- report


def machine_info() -> dict[str, Any]:
    import pyarrow
    import torch
    import webdataset

    torch.set_num_threads(1)
    return {**run_info(), "pyarrow": pyarrow.__version__, "webdataset": webdataset.__version__}


def convert_table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| input | contestant | samples | s (median) | samples/s | vs webdataset | shard bytes "
        "| bytes/sample | pax header bytes |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['input']} | {r['contestant']} | {r['samples']:,} | {r['seconds']:.2f} "
            f"| {r['samples_per_s']:,.0f} | {r['speed_vs_webdataset']:.2f}x "
            f"| {r['shard_bytes']:,} | {r['bytes_per_sample']:,.0f} | {r['pax_header_bytes']:,} |"
        )
    return "\n".join(lines)


def read_table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| dataset | ids read | decode | samples/s | bytes read (reader) | bytes read (OS rchar) "
        "| of shard bytes (OS) |",
        "|---|--:|---|--:|--:|--:|--:|",
    ]
    for r in rows:
        reader = "-" if r["reader_bytes"] is None else f"{r['reader_bytes']:,}"
        lines.append(
            f"| {r['dataset']} | {r['fraction']:.0%} ({r['samples']:,}) | {r['decode']} "
            f"| {r['samples_per_s']:,.0f} | {reader} | {r['os_rchar_bytes']:,} "
            f"| {r['os_fraction']:.1%} |"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------- main


def _npz_part(cfg: BenchConfig, work: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    path, x, y = make_npz(work, cfg.samples, cfg.seed)
    source = NpzSource(str(path))
    base = ConvertOptions(samples_per_shard=cfg.samples_per_shard, progress=False)
    runners = {
        "seta_stream convert workers=1": _ours(source, base),
        "seta_stream convert workers=2": _ours(source, replace(base, workers=2)),
        "seta_stream convert workers=1 zstd": _ours(source, replace(base, compress="zstd")),
        WDS: _wds_npz(x, y, cfg.samples_per_shard),
        # an integer mtime: tarfile then writes no pax header per member (the default is
        # time.time(), a float, whose fraction tarfile keeps in a pax record)
        f"{WDS} mtime=0": _wds_npz(x, y, cfg.samples_per_shard, mtime=0),
    }
    rows, dsts = bench_convert("npz", runners, cfg.samples, work, cfg)
    reads = []
    for label, key in (("seta_stream tar", "seta_stream convert workers=1"),
                       ("seta_stream tar zstd", "seta_stream convert workers=1 zstd")):  # fmt: skip
        for frac in cfg.fractions:
            for decode in (False, True):
                reads.append(bench_read(label, dsts[key], frac, decode, seed=cfg.seed,
                                        repeat=cfg.repeat, warmup=cfg.warmup))  # fmt: skip
    for key in (f"{WDS} mtime=0", WDS):  # the same tar layout as ours first; then the default
        reads.append(bench_wds_stream(f"{key} output", dsts[key], repeat=cfg.repeat,
                                      warmup=cfg.warmup))  # fmt: skip
    return rows, reads


def _image_part(cfg: BenchConfig, work: Path) -> list[dict[str, Any]]:
    source = ImageFolderSource(str(make_images(work, cfg.images, cfg.seed)))
    per_shard = min(cfg.samples_per_shard, max(1, cfg.images // 2))
    base = ConvertOptions(samples_per_shard=per_shard, progress=False)
    runners = {
        "seta_stream convert workers=1": _ours(source, base),
        "seta_stream convert workers=2": _ours(source, replace(base, workers=2)),
        WDS: _wds_images(source, per_shard),
    }
    rows, _ = bench_convert("png folder", runners, cfg.images, work, cfg)
    return rows


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench_convert.py", description=__doc__.split("\n")[0])
    p.add_argument("--samples", type=int, default=None, help="npz samples (default 100000)")
    p.add_argument("--images", type=int, default=None, help="PNG files, 0 to skip (default 20000)")
    p.add_argument("--samples-per-shard", type=int, default=10_000)
    p.add_argument("--repeat", type=int, default=None, help="runs per contestant (median taken)")
    p.add_argument("--warmup", type=int, default=None, help="untimed runs first (default 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--workdir", type=Path, default=None, help="where inputs and outputs go")
    p.add_argument("--smoke", action="store_true", help="2000 samples, 200 images, one run")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        cfg = BenchConfig(
            samples=args.samples or (2000 if args.smoke else 100_000),
            images=args.images if args.images is not None else (200 if args.smoke else 20_000),
            samples_per_shard=500 if args.smoke else args.samples_per_shard,
            repeat=args.repeat or (1 if args.smoke else 3),
            warmup=args.warmup if args.warmup is not None else (0 if args.smoke else 1),
            seed=args.seed,
        )
    except ValueError as e:
        print(f"bench_convert.py: error: {e}", file=sys.stderr)
        return 2
    machine = machine_info()
    with tempfile.TemporaryDirectory(prefix="bench_convert-", dir=args.workdir) as tmp:
        rows, reads = _npz_part(cfg, Path(tmp))
        if cfg.images:
            rows += _image_part(cfg, Path(tmp))
    machine["loadavg_end"] = os.getloadavg()
    result = {"config": asdict(cfg), "machine": machine, "convert": rows, "read": reads}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"torch threads set to {machine['torch_threads']}; {machine['cpu_count']} CPUs, "
          f"load {machine['loadavg'][0]:.2f}; median of {cfg.repeat} run(s) after "
          f"{cfg.warmup} warm-up(s)\n")  # fmt: skip
    print(convert_table(rows) + "\n\n" + read_table(reads))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
