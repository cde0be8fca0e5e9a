#!/usr/bin/env python
"""How fast is our read path against LitData, MosaicML Streaming and webdataset, and the machine?

    python benchmarks/bench_peers.py [--samples 100000] [--workers 0,2] [--rounds 3]
        [--warmup 1] [--modes raw,decoded] [--readers limits,webdataset,peers,ours,batched]
        [--keeps 1.0,0.7,0.5,0.3] [--data DIR] [--out benchmarks/out/peers.json] [--smoke]

Peers need the benchmark environment: `bash benchmarks/peers_env.sh` (.venv-bench); without
them their rows say "not installed". Data: bench_stream's 32x32 RGB PNGs + class, converted
to our tar shards (10k per shard), then the same samples' bytes written by `litdata.optimize`
(`png` bytes + `cls` int, its default chunking) and by `streaming.MDSWriter` (columns
`png: bytes`, `cls: int`, default shard size). Every reader goes through one harness:
`DataLoader(reader, batch_size=256, num_workers=W, persistent_workers=W>0, fork)` and one
collate that makes a list of (PNG bytes or uint8 array, int label). Mode `raw` yields the PNG
bytes; mode `decoded` wraps every reader with one function (Pillow PNG -> uint8 array) run
where the reader runs (a DataLoader worker when W > 0). Readers: `webdataset.WebDataset` on our
tar shards (shardshuffle=100; whole shards per worker: 10 shards at 100k, 5+5 over 2 workers,
an uneven split stated in the row); `litdata.StreamingDataset(shuffle=True)` and
`streaming.StreamingDataset(shuffle=True)` iterated; the same two read by `ds[i]` (their
random-access API) through a map-style wrapper and a sampler doing SeTaStream's keep-0.3 work
(`peers_lib.PlanSubset`): each epoch the very ids our `DynamicRandom` keep-0.3 row reads (same
policy, seed and epoch), in our plan's order rule (shards in a seeded random order, ascending
within a shard; not copied: the plan's few-open-shards interleave and bounded shuffle, which
move a sample only a little); SeTaStream with `Full()` and `DynamicRandom` at keep
0.7/0.5/0.3 (as in bench_stream); "SeTaStream batched": its batched mode (`batch_size=256` in
the stream, `DataLoader(batch_size=None)`, the collate `collate_columns`: PNG column and int64
labels; decoded: the same decode per sample, over the batch's column), alternating with the
per-sample rows in the same rounds; its `vs_per_sample` is its speed over the per-sample Full
row's (best and median rounds). `--readers` picks row groups, `--keeps` our keeps. Limits
(W=0): a sequential read of each format's files, and the decode function alone over in-memory
PNG bytes of the same samples (the first 20,000).

Method (bench_stream's): every file is read once (page cache warm), the readers of one
(W, mode) are built, then run in rounds of one epoch each, order rotated every round, the
first `--warmup` rounds untimed, the same for every contestant; figures are the median of
the timed rounds (best and every round in the JSON, with the git commit and the load average at
start and end). One round at 100k samples is ~6 min on 2 quiet cores (decode-bound: ~6
epochs' worth of decodes per W); the default 1 warm-up + 3 rounds, ~25 min. Building the data
(~2 min at 100k) is skipped by a later run with the same `--data DIR`. Bytes read: the kernel's
`rchar` of the reading processes (this one at W=0, its DataLoader workers at W>0) over the
epoch; reads through mmap (LitData's) are not counted there. Decode calls: a counter in
shared memory that the decode function increments in whichever process runs it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

import bench_stream as bs  # noqa: E402  # data set, Contestant, rounds, CPU time, machine
import torch  # noqa: E402
from peers_lib import (  # noqa: E402  # the shared harness, the peers' imports and writers
    DECODES,
    Indexed,
    Mapped,
    PlanSubset,
    collate,
    collate_columns,
    decode_batch,
    decode_item,
    decode_png,
    import_litdata,
    import_streaming,
    reader_rchar,
    samples,
    write_litdata,
    write_mds,
)
from torch.utils.data import DataLoader, Sampler  # noqa: E402

from seta_stream import DynamicRandom, Full, SeTaStream  # noqa: E402

DEFAULT_OUT = HERE / "out" / "peers.json"
OURS, WDS = "SeTaStream", "webdataset.WebDataset"
BATCHED = "SeTaStream batched"  # SeTaStream(batch_size=...) with DataLoader(batch_size=None)
LIT, MDS = "litdata.StreamingDataset", "streaming.StreamingDataset"
MODES = ("raw", "decoded")
READERS = ("limits", "webdataset", "peers", "ours", "batched")
MARKER = ("samples", "samples_per_shard", "seed")  # what a kept data set (--data) depends on


@dataclass(frozen=True, kw_only=True)
class PeersConfig:
    samples: int = 100_000
    samples_per_shard: int = 10_000
    workers: tuple[int, ...] = (0, 2)
    modes: tuple[str, ...] = MODES
    keeps: tuple[float, ...] = (1.0, 0.7, 0.5, 0.3)
    batched_keeps: tuple[float, ...] = (1.0,)  # our batched mode's rows
    readers: tuple[str, ...] = READERS  # which groups of rows run
    subset: float = 0.3  # the random-access rows' fraction (ours at this keep: the same ids)
    rounds: int = 3  # 100k x every reader x 2 W x 2 modes: one round is ~6 min on 2 cores
    warmup: int = 1  # untimed, for every contestant alike
    decode_limit_samples: int = 20_000
    batch_size: int = 256
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.subset <= 1:
            raise ValueError(f"subset={self.subset}: must be in (0, 1]")
        if not self.modes or not set(self.modes) <= set(MODES):
            raise ValueError(f"modes={self.modes}: each one of {MODES}")
        if not self.readers or not set(self.readers) <= set(READERS):
            raise ValueError(f"readers={self.readers}: each one of {READERS}")
        if self.decode_limit_samples < 1:
            raise ValueError(f"decode_limit_samples={self.decode_limit_samples}: must be >= 1")
        self.stream()  # bench_stream validates the rest (sizes, keeps, workers, rounds)

    def stream(self) -> bs.BenchConfig:
        return bs.BenchConfig(samples=self.samples, samples_per_shard=self.samples_per_shard,
                              keeps=self.keeps, workers=self.workers, epochs=self.rounds,
                              warmup=self.warmup, batch_size=self.batch_size,
                              seed=self.seed)  # fmt: skip


def loader_contestant(
    reader: str, dataset: Any, cfg: PeersConfig, w: int, mode: str, *,
    sampler: Sampler[int] | None = None, keep: float = 1.0,
    before_epoch: Callable[[int], None] = lambda e: None,
    extras: Callable[[], dict[str, Any]] = dict, close: Callable[[], None] = lambda: None,
    batched: bool = False,
) -> bs.Contestant:  # fmt: skip
    """One reader through the shared DataLoader; each epoch counts bytes read, decode calls.
    `batched`: the reader yields whole batches (`batch_size=None`, `collate_columns`)."""
    loader = DataLoader(dataset, batch_size=None if batched else cfg.batch_size, num_workers=w,
                        sampler=sampler, persistent_workers=w > 0,
                        collate_fn=collate_columns if batched else collate,
                        multiprocessing_context="fork" if w else None)  # fmt: skip
    count: Callable[[Any], int] = (lambda b: len(b[1])) if batched else len
    box: dict[str, Any] = {"loader": loader}
    seen: dict[str, Any] = {}

    def epoch(e: int) -> int:
        before_epoch(e)
        r0, d0 = reader_rchar(w), sum(DECODES)
        n = sum(map(count, box["loader"]))
        r1 = reader_rchar(w)
        seen["bytes_read"] = sum(r1[p] - r0.get(p, 0) for p in r1)  # new: started now
        seen["decode_calls"] = sum(DECODES) - d0
        return n

    def close_all() -> None:
        box.clear()  # the last reference: persistent workers shut down here
        close()

    return bs.Contestant(reader=reader, workers=w, decode=mode == "decoded", keep=keep,
                         epoch=epoch, extras=lambda: {**seen, **extras()},
                         close=close_all)  # fmt: skip


def peer_rows(name: str, make: Callable[[], Any], cfg: PeersConfig, w: int,
              mode: str) -> list[bs.Contestant]:  # fmt: skip
    """`name` iterated, and by `ds[i]` over our keep-`subset` selection in our plan's order."""
    fn = decode_item if mode == "decoded" else None
    sub = f"{name} ds[i], SeTaStream's {cfg.subset:.0%} in plan order"
    note = {"bytes_read_note": "mmap"} if name == LIT else {}  # rchar does not see mmap reads
    it = loader_contestant(f"{name} iter", Mapped(make(), fn), cfg, w, mode,
                           extras=lambda: note)  # fmt: skip
    ra = loader_contestant(sub, Indexed(make(), cfg.samples, fn), cfg, w, mode,
                           sampler=PlanSubset(cfg.samples, cfg.subset, cfg.seed,
                                              cfg.samples_per_shard, bs.POLICY_EPOCHS),
                           keep=cfg.subset, extras=lambda: note)  # fmt: skip
    return [it, ra]


def make_peers(built: dict[str, Any], cfg: PeersConfig, w: int, mode: str) -> list[bs.Contestant]:
    out: list[bs.Contestant] = []
    lit, mds = built.get("litdata"), built.get("streaming")
    if lit is not None:
        where = str(built["litdata_dir"])
        out += peer_rows(LIT, lambda: lit.StreamingDataset(where, shuffle=True, seed=cfg.seed),
                         cfg, w, mode)  # fmt: skip
    if mds is not None:
        local = str(built["streaming_dir"])
        kw = {
            "local": local,
            "shuffle": True,
            "shuffle_seed": cfg.seed,
            "batch_size": cfg.batch_size,
        }
        out += peer_rows(MDS, lambda: mds.StreamingDataset(**kw), cfg, w, mode)
    return out


# ---------------------------------------------------------------- ours, webdataset, limits


def ours(shards: Path, work: Path, cfg: PeersConfig, keep: float, w: int,
         mode: str) -> bs.Contestant:  # fmt: skip
    policy = Full() if keep == 1.0 else DynamicRandom(epochs=bs.POLICY_EPOCHS, prune_ratio=1 - keep)
    stream = SeTaStream(shards, policy=policy, losses=work / f"losses-k{keep}-w{w}-{mode}",
                        seed=cfg.seed, decode=None, workdir=str(work))  # fmt: skip
    fn = decode_item if mode == "decoded" else None
    return loader_contestant(OURS, Mapped(stream, fn), cfg, w, mode, keep=keep,
                             before_epoch=stream.set_epoch, close=stream.close)  # fmt: skip


def ours_batched(shards: Path, work: Path, cfg: PeersConfig, keep: float, w: int,
                 mode: str) -> bs.Contestant:  # fmt: skip
    """SeTaStream's batched mode: batches of `cfg.batch_size` built in the reader."""
    policy = Full() if keep == 1.0 else DynamicRandom(epochs=bs.POLICY_EPOCHS, prune_ratio=1 - keep)
    stream = SeTaStream(shards, policy=policy, losses=work / f"losses-b-k{keep}-w{w}-{mode}",
                        seed=cfg.seed, decode=None, workdir=str(work),
                        batch_size=cfg.batch_size)  # fmt: skip
    fn = decode_batch if mode == "decoded" else None
    return loader_contestant(BATCHED, Mapped(stream, fn), cfg, w, mode, keep=keep,
                             before_epoch=stream.set_epoch, close=stream.close,
                             batched=True)  # fmt: skip


def webdataset(shards: Path, cfg: PeersConfig, w: int, mode: str) -> bs.Contestant:
    import webdataset as wds

    urls = [str(p) for p in sorted(shards.glob("*.tar"))]
    pipe = wds.WebDataset(urls, shardshuffle=100, seed=cfg.seed, empty_check=False)
    split = bs.shard_split(len(urls), w)  # whole shards per worker: an imbalance is stated
    return loader_contestant(WDS, Mapped(pipe, decode_item if mode == "decoded" else None),
                             cfg, w, mode, extras=lambda: split)  # fmt: skip


def read_limit(fmt: str, where: Path, n: int) -> bs.Contestant:
    """One sequential pass over a format's files, no decode."""
    paths = sorted(p for p in where.rglob("*") if p.is_file())
    seen: dict[str, Any] = {}

    def epoch(e: int) -> int:
        seen["bytes_read"] = 0
        t0 = time.perf_counter()
        for p in paths:
            with open(p, "rb", buffering=0) as f:
                while chunk := f.read(1 << 20):
                    seen["bytes_read"] += len(chunk)
        seen["mb_per_s"] = seen["bytes_read"] / (time.perf_counter() - t0) / 1e6
        return n

    return bs.Contestant(reader=f"limit: sequential read, {fmt}", workers=0, decode=False,
                         epoch=epoch, extras=lambda: dict(seen))  # fmt: skip


def decode_limit(shards: Path, cfg: PeersConfig) -> bs.Contestant:
    """The decode function alone over in-memory PNG bytes of the first samples."""
    pngs = [s["png"] for s in samples(shards, 0, min(cfg.samples, cfg.decode_limit_samples))]
    seen: dict[str, Any] = {}

    def epoch(e: int) -> int:
        d0 = sum(DECODES)
        for b in pngs:
            decode_png(b)
        seen["decode_calls"] = sum(DECODES) - d0
        return len(pngs)

    return bs.Contestant(reader="limit: decode alone, in memory", workers=0, decode=True,
                         epoch=epoch, extras=lambda: dict(seen))  # fmt: skip


# ---------------------------------------------------------------- the run


def disk_bytes(where: Path) -> int:
    return sum(p.stat().st_size for p in where.rglob("*") if p.is_file())


def build(data: Path, cfg: PeersConfig) -> dict[str, Any]:
    """Our shards (bench_stream's data), then the same samples in each installed peer's format;
    what `data` already holds for the same config (`--data`) is reused."""
    marker, want = data / "built.json", {k: getattr(cfg, k) for k in MARKER}
    if marker.exists() and (have := json.loads(marker.read_text())) != want:
        raise ValueError(f"--data {data} holds {have}, not {want}: use another folder")
    data.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps(want))
    built: dict[str, Any] = {}
    t0 = time.perf_counter()
    if not (data / "shards" / "dataset.json").exists():
        bs.build_dataset(data, cfg.stream())
    shards = data / "shards"
    built["formats"] = {"tar (ours, webdataset)": shards}
    _progress(f"tar shards: {time.perf_counter() - t0:.1f} s")
    writers: dict[str, Callable[[Any, Path], Path]] = {
        "litdata": lambda lib, out: write_litdata(lib, shards, out, cfg.samples,
                                                  cfg.samples_per_shard),
        "streaming": lambda lib, out: write_mds(lib, shards, out, cfg.samples),
    }  # fmt: skip
    for key, importer in (("litdata", import_litdata), ("streaming", import_streaming)):
        lib, how = importer()
        built[key], built[f"{key}_version"] = lib, how
        if lib is None:
            continue
        t0, out = time.perf_counter(), data / key
        if not (out / "index.json").exists():
            shutil.rmtree(out, ignore_errors=True)  # a run stopped half-way
            writers[key](lib, out)
        built[f"{key}_dir"] = out
        built["formats"]["litdata chunks" if key == "litdata" else "MDS shards"] = out
        _progress(f"{how}: {time.perf_counter() - t0:.1f} s")
    return built


def group(built: dict[str, Any], work: Path, cfg: PeersConfig, w: int, mode: str,
          cs: list[bs.Contestant]) -> None:  # fmt: skip
    """The readers of one (W, mode), appended to `cs` one by one."""
    shards, want = built["formats"]["tar (ours, webdataset)"], set(cfg.readers)
    if w == 0 and mode == "raw" and "limits" in want:
        cs += [read_limit(fmt, where, cfg.samples) for fmt, where in built["formats"].items()]
    if w == 0 and mode == "decoded" and "limits" in want:
        cs.append(decode_limit(shards, cfg))
    if "webdataset" in want:
        cs.append(webdataset(shards, cfg, w, mode))
    if "peers" in want:
        cs += make_peers(built, cfg, w, mode)
    for keep in cfg.keeps if "ours" in want else ():
        cs.append(ours(shards, work, cfg, keep, w, mode))
    for keep in cfg.batched_keeps if "batched" in want else ():
        cs.append(ours_batched(shards, work, cfg, keep, w, mode))


def measure(built: dict[str, Any], work: Path, cfg: PeersConfig) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for where in built["formats"].values():  # the page cache: every file read once
        read_limit("", where, 0).epoch(0)
    for w in cfg.workers:
        for mode in cfg.modes:
            _progress(f"W={w}, {mode}:")
            t0, cs = time.perf_counter(), list[bs.Contestant]()
            try:  # built inside the try, so that a failure still closes those already made
                group(built, work, cfg, w, mode, cs)
                bs.interleave(cs, cfg.stream())
                rows += [{**bs.row(c), "mode": mode} for c in cs]
            finally:
                for c in cs:
                    c.close()
            _progress(f"  {time.perf_counter() - t0:.0f} s")
    for name, key in ((LIT, "litdata"), (MDS, "streaming")):
        if built.get(key) is None:
            rows.append({"reader": name, "status": built[f"{key}_version"]})
    return rows


def add_ratios(rows: list[dict[str, Any]], per_sample_disk: dict[str, float]) -> None:
    """Speed over webdataset's, epoch time over our Full epoch's, both at the same W and mode."""

    def find(reader: str, r: dict[str, Any]) -> dict[str, Any] | None:
        return next((x for x in rows if x["reader"] == reader and x.get("keep") == 1.0
                     and x.get("workers") == r["workers"] and x.get("mode") == r["mode"]),
                    None)  # fmt: skip

    for r in rows:
        if "status" in r:
            continue
        r["disk_bytes_per_sample"] = next(
            (v for k, v in per_sample_disk.items() if _format_of(r["reader"]) == k), None
        )
        if r.get("bytes_read") is not None:
            r["bytes_read_per_sample"] = r["bytes_read"] / r["samples"]
        wds, full = find(WDS, r), find(OURS, r)
        if wds is not None:
            r["vs_webdataset"] = r["samples_per_s"] / wds["samples_per_s"]
        if r["reader"] == BATCHED and full is not None and r["keep"] == 1.0:
            r["vs_per_sample"] = full["epoch_s"] / r["epoch_s"]  # medians
            r["vs_per_sample_best"] = full["epoch_s_best"] / r["epoch_s_best"]
        if full is not None and not r["reader"].startswith("limit"):
            r["epoch_vs_full"] = r["epoch_s"] / full["epoch_s"]
        if r["reader"] == OURS and r["keep"] < 1.0:
            r["target"] = r["keep"] + 0.05
            r["meets_target"] = r["epoch_vs_full"] <= r["target"]


def _format_of(reader: str) -> str:
    if reader.startswith(LIT) or reader.endswith("litdata chunks"):
        return "litdata chunks"
    if reader.startswith(MDS) or reader.endswith("MDS shards"):
        return "MDS shards"
    return "tar (ours, webdataset)"


# ---------------------------------------------------------------- report


def _f(v: Any, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| reader (API) | W | data | keep | samples | epoch s | samples/s | CPU µs/sample "
             "| vs webdataset | epoch / our full (target) | bytes read / sample | disk B / sample "
             "| decode calls |",
             "|---|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]  # fmt: skip
    for r in rows:
        if "status" in r:
            lines.append(f"| {r['reader']} | | | | {r['status']} |" + " |" * 8)
            continue
        ratio = _f(r.get("epoch_vs_full"), ".3f")
        if "vs_per_sample" in r:
            ratio = (f"{r['vs_per_sample']:.2f}x per-sample (best rounds "
                     f"{r['vs_per_sample_best']:.2f}x)")  # fmt: skip
        if "target" in r:
            ratio += f" (≤{r['target']:.2f} {'ok' if r['meets_target'] else 'MISS'})"
        speed = f"{r['samples_per_s']:,.0f} (best {r['samples'] / r['epoch_s_best']:,.0f})"
        if "mb_per_s" in r:
            speed += f" ({r['mb_per_s']:,.0f} MB/s)"
        lines.append(
            f"| {r['reader']}{f' ({note})' if (note := r.get('imbalance')) else ''} "
            f"| {r['workers']} | {r['mode']} | {r['keep']} | {r['samples']:,} "
            f"| {r['epoch_s']:.3f} | {speed} | {r['cpu_us_per_sample']:.1f} "
            f"| {_f(r.get('vs_webdataset'), '.2f')} | {ratio} "
            f"| {r.get('bytes_read_note') or _f(r.get('bytes_read_per_sample'), ',.0f')} "
            f"| {_f(r.get('disk_bytes_per_sample'), ',.0f')} | {_f(r.get('decode_calls'), ',')} |"
        )
    return "\n".join(lines)


def _progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench_peers.py", description=__doc__.split("\n")[0])
    p.add_argument("--samples", type=int, default=None, help="PNG samples (default 100000)")
    p.add_argument("--samples-per-shard", type=int, default=None, help="default 10000")
    p.add_argument("--workers", default="0,2", help="DataLoader workers, comma-separated")
    p.add_argument("--modes", default="raw,decoded", help="raw, decoded or both")
    p.add_argument("--readers", default=",".join(READERS),
                   help=f"row groups to run, comma-separated, of {','.join(READERS)}")  # fmt: skip
    p.add_argument("--keeps", default="1.0,0.7,0.5,0.3", help="our per-sample rows' keeps")
    p.add_argument("--rounds", type=int, default=None, help="timed rounds (default 3)")
    p.add_argument("--warmup", type=int, default=None, help="untimed rounds first (default 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--workdir", type=Path, default=None, help="where temporary files go")
    p.add_argument("--data", type=Path, default=None,
                   help="build the data sets here and keep them, for the next run")  # fmt: skip
    p.add_argument("--smoke", action="store_true",
                   help="500 samples, 250 per shard, 1 round, no warm-up")  # fmt: skip
    return p


def _config(args: argparse.Namespace) -> PeersConfig:
    return PeersConfig(
        samples=args.samples or (500 if args.smoke else 100_000),
        samples_per_shard=args.samples_per_shard or (250 if args.smoke else 10_000),
        workers=tuple(int(w) for w in args.workers.split(",")),
        modes=tuple(m.strip() for m in args.modes.split(",")),
        readers=tuple(r.strip() for r in args.readers.split(",")),
        keeps=tuple(float(k) for k in args.keeps.split(",")),
        rounds=args.rounds or (1 if args.smoke else 3),
        warmup=args.warmup if args.warmup is not None else (0 if args.smoke else 1),
        decode_limit_samples=500 if args.smoke else 20_000,
        seed=args.seed,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        cfg = _config(args)
    except ValueError as e:
        print(f"bench_peers.py: error: {e}", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    machine, t0 = bs.machine_info(), time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_peers-", dir=args.workdir) as tmp:
        work = Path(tmp)
        try:
            built = build(args.data or work, cfg)
        except ValueError as e:
            print(f"bench_peers.py: error: {e}", file=sys.stderr)
            return 2
        disk = {fmt: disk_bytes(where) for fmt, where in built["formats"].items()}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the peers' advice (e.g. num_canonical_nodes)
            rows = measure(built, work, cfg)
    add_ratios(rows, {fmt: b / cfg.samples for fmt, b in disk.items()})
    peers = {k: built[f"{k}_version"] for k in ("litdata", "streaming")}
    machine["loadavg_end"] = os.getloadavg()
    result = {"config": asdict(cfg), "machine": machine, "peers": peers, "bytes_on_disk": disk,
              "rows": rows, "wall_s": time.perf_counter() - t0}  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"torch.set_num_threads(1); {machine['sched_cpus']} CPUs, load "
          f"{machine['loadavg'][0]:.2f}; {cfg.samples:,} samples; batch {cfg.batch_size}; "
          f"median of {cfg.rounds} interleaved round(s) after {cfg.warmup} warm-up; peers: "
          f"{'; '.join(peers.values())}\n")  # fmt: skip
    print(table(rows))
    print(f"\nwrote {args.out} ({result['wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
