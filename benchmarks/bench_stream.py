#!/usr/bin/env python
"""Does a pruned epoch cost only what it reads, and how fast is the read path against webdataset?

    python benchmarks/bench_stream.py [--samples 50000] [--epochs 3] [--workers 0 2]
        [--out benchmarks/out/stream.json] [--profile] [--smoke]

Data (seeded, in a temp folder): 32x32 RGB PNGs (noise over a class-coloured square) and their
class, in one source tar converted by `seta_stream.shards.convert` to tar shards (`png` + `cls`,
5k per shard: 10 shards at 50k, so webdataset's split of shards over 2 workers is 5+5; a
shard count that does not divide evenly is stated in the row, e.g. "shards 3+2"). Every
reader decodes PNG -> uint8 numpy with Pillow, so epochs are bound by
read + decode. Readers, each through `DataLoader(batch_size=256, num_workers=W,
persistent_workers=W>0)`: SeTaStream with `Full()` (keep 1.0) and `DynamicRandom(prune_ratio=
1-keep)` (a fresh uniform subset each epoch; annealing only from epoch 87 of 100), its loss
table in the temp folder, `set_epoch` inside the epoch's time; `webdataset.WebDataset` on the
same shards with `.decode("rgb8")`, `shardshuffle=100`, its default split of shards over
workers; both again without decode. Limits: Pillow decode of the same PNG bytes in a tight
loop (up to 10k), one sequential read of the shard files, the DataLoader alone fed pre-decoded
items of the same shape (batching, and with workers the pickling between processes).

Method: the readers of one W are built first (persistent workers started), then run in rounds
of one epoch each, order rotated every round, the first `--warmup` rounds untimed, so a shared
machine's load drift hits all alike. Each epoch records wall and CPU seconds (this process and
its DataLoader workers, from /proc; CPU time barely depends on other processes' load).
An epoch's figure is the median of its timed rounds (default 3 after 1 warm-up, the same for
every contestant; the best and every round are in the JSON, with the git commit and the load
average at start and end). `epoch / full`: that over keep 1.0's; the target is <= keep + 0.05.
`torch.set_num_threads(1)`. Prints a Markdown table and writes JSON; the smoke run in
tests/benchmarks/ keeps it from rotting.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import statistics
import sys
import tarfile
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import closing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# `pyarrow.parquet.read_table` imports pyarrow.dataset on its first call (an index or loss-table
# read inside a reader's first epoch): imported here, outside every timed region.
import pyarrow.dataset  # noqa: F401

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch
from bench_info import run_info
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from seta_stream import DynamicRandom, Full, SeTaStream
from seta_stream.shards import ConvertOptions, Dataset, convert, open_source, read_samples

DEFAULT_OUT = Path(__file__).resolve().parent / "out" / "stream.json"
OURS, WDS = "SeTaStream", "webdataset.WebDataset"
POLICY_EPOCHS = 100  # DynamicRandom prunes while epoch + 1 <= 100 * 0.875
DECODE_LIMIT_SAMPLES = 10_000
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, kw_only=True)
class BenchConfig:
    samples: int = 50_000
    samples_per_shard: int = 5_000
    image_size: int = 32
    keeps: tuple[float, ...] = (1.0, 0.7, 0.5, 0.3)
    workers: tuple[int, ...] = (0, 2)
    epochs: int = 3
    warmup: int = 1
    batch_size: int = 256
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("samples", "samples_per_shard", "image_size", "epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)}: must be >= 1")
        if not self.warmup >= 0 or self.warmup + self.epochs >= POLICY_EPOCHS * 0.875:
            raise ValueError(f"warmup={self.warmup}, epochs={self.epochs}: need warmup >= 0 "
                             f"and warmup + epochs < {POLICY_EPOCHS * 0.875:.0f}")  # fmt: skip
        if 1.0 not in self.keeps or not all(0.1 <= k <= 1 for k in self.keeps):
            raise ValueError(f"keeps={self.keeps}: each in [0.1, 1], and 1.0 among them")
        if not self.workers or not all(0 <= w <= 2 for w in self.workers):
            raise ValueError(f"workers={self.workers}: each in 0..2 (2 shared cores)")


# ---------------------------------------------------------------- dataset


def make_source(path: Path, n: int, size: int, seed: int, classes: int = 10) -> Path:
    """One source tar of `NNNNNNNNN.png` + `.cls` members (one file: this disk creates small
    files at ~1 ms each): RGB noise over a square whose colour and size depend on the class."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    palette = rng.integers(0, 256, (classes, 3))
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for i in range(n):
            c = i % classes
            img = rng.integers(0, 48, (size, size, 3)) + 96
            a, b = rng.integers(0, size // 2, 2)
            w = size // 3 + c
            img[a : a + w, b : b + w] = palette[c] // 2 + img[a : a + w, b : b + w] // 2
            png = io.BytesIO()
            Image.fromarray(img.astype(np.uint8), mode="RGB").save(png, format="PNG")
            for ext, data in (("png", png.getvalue()), ("cls", str(c).encode())):
                info = tarfile.TarInfo(f"{i:09d}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


def build_dataset(work: Path, cfg: BenchConfig) -> Path:
    """The source tar converted by `seta_stream.shards.convert` into `samples_per_shard` shards."""
    src = make_source(work / "source.tar", cfg.samples, cfg.image_size, cfg.seed)
    opts = ConvertOptions(samples_per_shard=cfg.samples_per_shard, progress=False)
    convert(open_source(str(src)), work / "shards", opts)
    src.unlink()
    return work / "shards"


# ---------------------------------------------------------------- contestants


@dataclass(kw_only=True, eq=False)
class Contestant:
    """One reader setup: `epoch(e)` runs epoch e and returns the samples it yielded."""

    reader: str
    workers: int
    decode: bool
    epoch: Callable[[int], int]
    keep: float = 1.0
    extras: Callable[[], dict[str, Any]] = dict
    close: Callable[[], None] = lambda: None
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    samples: int = 0


def _loader(dataset: Any, cfg: BenchConfig, workers: int) -> DataLoader[Any]:
    return DataLoader(
        dataset, batch_size=cfg.batch_size, num_workers=workers, persistent_workers=workers > 0
    )


def _drain(loader: Iterable[dict[str, Any]]) -> int:
    return sum(len(batch["__key__"]) for batch in loader)


def ours(ds: Path, work: Path, cfg: BenchConfig, keep: float, w: int, decode: bool) -> Contestant:
    policy = Full() if keep == 1.0 else DynamicRandom(epochs=POLICY_EPOCHS, prune_ratio=1 - keep)
    losses = work / f"losses-k{keep}-w{w}-d{int(decode)}"
    stream = SeTaStream(ds, policy=policy, losses=losses, seed=cfg.seed,
                        decode="default" if decode else None, workdir=str(work))  # fmt: skip
    box = {"loader": _loader(stream, cfg, w)}
    plan: list[float] = []

    def epoch(e: int) -> int:
        t0 = time.perf_counter()
        stream.set_epoch(e)
        plan.append(time.perf_counter() - t0)
        return _drain(box["loader"])

    def extras() -> dict[str, Any]:
        st = stream.stats()
        return {"policy": policy.name, "set_epoch_s": statistics.median(plan),
                "decode_calls": st["samples_decoded"],
                **{k: st[k] for k in ("bytes_read", "bytes_selected", "samples_read")}}  # fmt: skip

    def close() -> None:
        box.clear()  # the last reference: persistent workers shut down here
        stream.close()

    return Contestant(reader=OURS, workers=w, decode=decode, keep=keep, epoch=epoch,
                      extras=extras, close=close)  # fmt: skip


def webdataset(ds: Path, cfg: BenchConfig, w: int, decode: bool) -> Contestant:
    import webdataset as wds

    urls = [str(p) for p in sorted(ds.glob("*.tar"))]
    pipe = wds.WebDataset(urls, shardshuffle=100, seed=cfg.seed, empty_check=False)
    box = {"loader": _loader(pipe.decode("rgb8") if decode else pipe, cfg, w)}
    seen: dict[str, Any] = {"bytes_read": None}  # OS-counted, this process only (W=0)
    seen.update(shard_split(len(urls), w))

    def epoch(e: int) -> int:
        before = _rchar()
        n = _drain(box["loader"])
        seen["bytes_read"] = _rchar() - before if w == 0 else None
        return n

    return Contestant(reader=WDS, workers=w, decode=decode, epoch=epoch,
                      extras=lambda: dict(seen), close=box.clear)  # fmt: skip


def shard_split(shards: int, workers: int) -> dict[str, Any]:
    """How a reader that hands whole shards to its workers (webdataset) splits `shards`:
    shards per worker, and a note when they differ (one worker reads more than another)."""
    per = [len(range(i, shards, max(workers, 1))) for i in range(max(workers, 1))]
    note = None if len(set(per)) == 1 else "shards " + "+".join(map(str, per))
    return {"shards_per_worker": per, "imbalance": note}


class _InMemory(IterableDataset[dict[str, Any]]):
    """Pre-decoded items, repeated: what the DataLoader alone costs at this item shape."""

    def __init__(self, items: list[dict[str, Any]], n: int):
        super().__init__()
        self.items, self.n = items, n

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        w, k = (info.id, info.num_workers) if info is not None else (0, 1)
        for i in range(w * self.n // k, (w + 1) * self.n // k):
            yield dict(self.items[i % len(self.items)])


def loader_limit(ds: Path, work: Path, cfg: BenchConfig, w: int) -> Contestant:
    with SeTaStream(ds, policy=Full(), losses=None, workdir=str(work)) as s:
        s.set_epoch(0)
        items, n = [item for _, item in zip(range(256), s, strict=False)], s.dataset.num_samples
    box = {"loader": _loader(_InMemory(items, n), cfg, w)}
    return Contestant(reader="limit: DataLoader, pre-decoded items", workers=w, decode=True,
                      epoch=lambda e: _drain(box["loader"]), close=box.clear)  # fmt: skip


def decode_limit(ds: Path) -> Contestant:
    from PIL import Image

    with closing(Dataset.open(ds)) as d:
        ids = range(min(d.num_samples, DECODE_LIMIT_SAMPLES))
        pngs = [s["png"] for s in read_samples(d, ids)]

    def epoch(e: int) -> int:
        for b in pngs:
            with Image.open(io.BytesIO(b)) as img:
                np.asarray(img)
        return len(pngs)

    return Contestant(reader="limit: Pillow decode loop", workers=0, decode=True, epoch=epoch)


def read_limit(ds: Path) -> Contestant:
    with closing(Dataset.open(ds)) as d:
        paths, n = [d.store.path(s.name) for s in d.manifest.shards], d.num_samples
    seen: dict[str, Any] = {}

    def epoch(e: int) -> int:
        seen["bytes_read"] = 0
        for p in paths:
            with open(p, "rb", buffering=0) as f:
                while chunk := f.read(1 << 20):
                    seen["bytes_read"] += len(chunk)
        return n

    return Contestant(reader="limit: sequential file read", workers=0, decode=False,
                      epoch=epoch, extras=lambda: dict(seen))  # fmt: skip


# ---------------------------------------------------------------- timing


def _rchar() -> int:
    with open("/proc/self/io", "rb") as f:
        return int(next(line for line in f if line.startswith(b"rchar:")).split()[1])


def cpu_seconds() -> float:
    """CPU seconds of this process and of its live children (the DataLoader workers)."""
    total, pid = time.process_time(), os.getpid()
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        kids = f.read().split()
    for kid in kids:
        try:
            with open(f"/proc/{kid}/stat") as f:
                stat = f.read().rsplit(")", 1)[1].split()
        except OSError:  # exited meanwhile
            continue
        total += (int(stat[11]) + int(stat[12])) / CLK_TCK  # utime + stime
    return total


def interleave(cs: list[Contestant], cfg: BenchConfig) -> None:
    """Rounds of one epoch per contestant, order rotated each round; the first `warmup`
    rounds untimed."""
    for r in range(cfg.warmup + cfg.epochs):
        for c in cs[r % len(cs) :] + cs[: r % len(cs)]:
            t0, c0 = time.perf_counter(), cpu_seconds()
            c.samples = c.epoch(r)
            wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
            if r >= cfg.warmup:
                c.wall.append(wall)
                c.cpu.append(cpu)
        print(f"  round {r + 1}/{cfg.warmup + cfg.epochs} done", file=sys.stderr)


def row(c: Contestant) -> dict[str, Any]:
    """The figures are medians of the timed rounds; best rounds and every round beside them."""
    sec, cpu = statistics.median(c.wall), statistics.median(c.cpu)
    return {"reader": c.reader, "workers": c.workers, "decode": c.decode, "keep": c.keep,
            "samples": c.samples, "rounds": len(c.wall), "epoch_s": sec,
            "epoch_s_best": min(c.wall), "epoch_s_all": c.wall, "cpu_s": cpu,
            "cpu_s_best": min(c.cpu), "cpu_s_all": c.cpu, "samples_per_s": c.samples / sec,
            "cpu_us_per_sample": cpu / c.samples * 1e6, **c.extras()}  # fmt: skip


def measure(ds: Path, work: Path, cfg: BenchConfig, w: int) -> list[dict[str, Any]]:
    cs: list[Contestant] = []
    try:  # built one by one, so that a failure still closes those already made
        if w == 0:
            cs += [decode_limit(ds), read_limit(ds)]
        cs.append(loader_limit(ds, work, cfg, w))
        cs += [ours(ds, work, cfg, keep, w, True) for keep in cfg.keeps]
        cs.append(webdataset(ds, cfg, w, True))
        cs.append(ours(ds, work, cfg, 1.0, w, False))
        cs.append(webdataset(ds, cfg, w, False))
        interleave(cs, cfg)
        return [row(c) for c in cs]
    finally:
        for c in cs:
            c.close()


def profile_epoch(ds: Path, work: Path, cfg: BenchConfig, top: int = 15) -> list[dict[str, Any]]:
    """cProfile of a warm 0-worker full epoch of SeTaStream: the `top` functions by tottime."""
    c = ours(ds, work, cfg, 1.0, 0, True)
    try:
        c.epoch(0)
        prof = cProfile.Profile()
        prof.runcall(c.epoch, 1)
    finally:
        c.close()
    items = pstats.Stats(prof).stats.items()  # type: ignore[attr-defined]
    rows = [{"function": f"{os.path.basename(file)}:{line}({fn})", "ncalls": nc, "tottime": tt,
             "cumtime": ct} for (file, line, fn), (_, nc, tt, ct, _) in items]  # fmt: skip
    return sorted(rows, key=lambda r: -r["tottime"])[:top]


# ---------------------------------------------------------------- report


def add_ratios(rows: list[dict[str, Any]], disk_bytes: int) -> None:
    """Epoch time and CPU over keep 1.0's, bytes over disk, speed-up over webdataset."""

    def find(reader: str, r: dict[str, Any]) -> dict[str, Any] | None:
        return next((x for x in rows if x["reader"] == reader and x["workers"] == r["workers"]
                     and x["decode"] == r["decode"] and x["keep"] == 1.0), None)  # fmt: skip

    for r in rows:
        r["bytes_on_disk"] = disk_bytes
        r["bytes_fraction"] = None if r.get("bytes_read") is None else r["bytes_read"] / disk_bytes
        full, wds = find(OURS, r), find(WDS, r)
        if r["reader"] != OURS or full is None:
            continue
        r["ratio_to_full"] = r["epoch_s"] / full["epoch_s"]
        r["cpu_ratio_to_full"] = r["cpu_s"] / full["cpu_s"]
        r["bytes_vs_full"] = r["bytes_read"] / full["bytes_read"]
        r["target"] = r["keep"] + 0.05
        r["meets_target"] = r["ratio_to_full"] <= r["target"]
        r["cpu_meets_target"] = r["cpu_ratio_to_full"] <= r["target"]
        if wds is not None and r["keep"] == 1.0:
            r["vs_webdataset"] = wds["epoch_s"] / r["epoch_s"]
            r["cpu_vs_webdataset"] = wds["cpu_s"] / r["cpu_s"]


def _f(v: Any, spec: str, suffix: str = "") -> str:
    return "-" if v is None else format(v, spec) + suffix


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| reader | W | data | keep | samples | epoch s | samples/s | CPU µs/sample | epoch / full "
        "(target) | CPU / full | bytes read / on disk | decode calls | vs webdataset (CPU) |",
        "|---|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in rows:
        ratio = "-"
        if r.get("ratio_to_full") is not None:
            ratio = f"{r['ratio_to_full']:.3f} (≤{r['target']:.2f} "
            ratio += ("ok" if r["meets_target"] else "MISS") + ")"
        vs = r.get("vs_webdataset")
        vs_s = "-" if vs is None else f"{vs:.2f}x ({r['cpu_vs_webdataset']:.2f}x)"
        reader = r["reader"] + (f" ({r['imbalance']})" if r.get("imbalance") else "")
        lines.append(
            f"| {reader} | {r['workers']} | {'PNG' if r['decode'] else 'raw'} | {r['keep']} "
            f"| {r['samples']:,} | {r['epoch_s']:.3f} | {r['samples_per_s']:,.0f} "
            f"| {r['cpu_us_per_sample']:.1f} | {ratio} | {_f(r.get('cpu_ratio_to_full'), '.3f')} "
            f"| {_f(r.get('bytes_fraction'), '.3f')} | {_f(r.get('decode_calls'), ',')} | {vs_s} |"
        )
    return "\n".join(lines)


def profile_table(prof: list[dict[str, Any]]) -> str:
    lines = ["| function | calls | tottime s | cumtime s |", "|---|--:|--:|--:|"]
    lines += [f"| `{p['function']}` | {p['ncalls']:,} | {p['tottime']:.3f} | {p['cumtime']:.3f} |"
              for p in prof]  # fmt: skip
    return "\n".join(lines)


def machine_info() -> dict[str, Any]:
    """run_info() (git commit, load average, CPUs, versions) and the readers' versions."""
    import PIL
    import webdataset

    return {**run_info(), "pillow": PIL.__version__, "webdataset": webdataset.__version__}


# ---------------------------------------------------------------- main


def run(cfg: BenchConfig, work: Path, profile: bool) -> dict[str, Any]:
    t0 = time.perf_counter()
    ds = build_dataset(work, cfg)
    with closing(Dataset.open(ds)) as d:
        disk = d.manifest.total_bytes
    out: dict[str, Any] = {"bytes_on_disk": disk, "build_s": time.perf_counter() - t0}
    print(f"dataset built in {out['build_s']:.1f} s", file=sys.stderr)
    rows = []
    for w in cfg.workers:
        print(f"W={w}:", file=sys.stderr)
        rows += measure(ds, work, cfg, w)
    add_ratios(rows, disk)
    out["rows"] = rows
    if profile:
        out["profile"] = profile_epoch(ds, work, cfg)
    return out


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench_stream.py", description=__doc__.split("\n")[0])
    p.add_argument("--samples", type=int, default=None, help="PNG samples (default 50000)")
    p.add_argument("--samples-per-shard", type=int, default=None, help="default 5000")
    p.add_argument("--epochs", type=int, default=None, help="timed rounds (default 3)")
    p.add_argument("--warmup", type=int, default=None, help="untimed rounds first (default 1)")
    p.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--profile", action="store_true", help="cProfile a 0-worker full epoch")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--workdir", type=Path, default=None, help="where the data set is made")
    p.add_argument("--smoke", action="store_true",
                   help="2000 samples, 500 per shard, 1 round, no warm-up")  # fmt: skip
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        cfg = BenchConfig(
            samples=args.samples or (2000 if args.smoke else 50_000),
            samples_per_shard=args.samples_per_shard or (500 if args.smoke else 5_000),
            epochs=args.epochs or (1 if args.smoke else 3),
            warmup=args.warmup if args.warmup is not None else (0 if args.smoke else 1),
            workers=tuple(args.workers),
            seed=args.seed,
        )
    except ValueError as e:
        print(f"bench_stream.py: error: {e}", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    machine = machine_info()
    t0 = time.perf_counter()
    with (
        tempfile.TemporaryDirectory(prefix="bench_stream-", dir=args.workdir) as tmp,
        warnings.catch_warnings(),
    ):
        # The webdataset side decodes with np.asarray(PIL image), read-only; torch warns once
        # per process when default_collate wraps one. Forked DataLoader workers inherit this.
        warnings.filterwarnings("ignore", "The given NumPy array is not writable", UserWarning)
        result = run(cfg, Path(tmp), args.profile)
    machine["loadavg_end"] = os.getloadavg()
    result = {"config": asdict(cfg), "machine": machine, **result,
              "wall_s": time.perf_counter() - t0}  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"torch.set_num_threads(1); {machine['sched_cpus']} CPUs, load "
          f"{machine['loadavg'][0]:.2f}; {cfg.samples:,} samples, {result['bytes_on_disk']:,} "
          f"shard bytes; batch {cfg.batch_size}; median of {cfg.epochs} interleaved round(s) "
          f"after {cfg.warmup} warm-up\n")  # fmt: skip
    print(table(result["rows"]))
    if "profile" in result:
        print("\ncProfile, SeTaStream W=0 full epoch, top 15 by tottime:\n")
        print(profile_table(result["profile"]))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
