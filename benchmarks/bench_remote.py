#!/usr/bin/env python
"""Over HTTP with per-request latency: samples/s and bytes sent, SeTaStream vs WebDataset.

    python benchmarks/bench_remote.py [--samples 2000] [--latency-ms 20] [--workers 0 2]
        [--out benchmarks/out/remote.json] [--smoke]

Data (seeded, in a temp folder): image-sized samples — `bin` of random bytes (incompressible,
like JPEG), sizes log-uniform from 20 to 300 KiB — and a `cls`, converted to tar shards
(200 per shard). A local HTTP/1.0 server (tests/remote/servers.py: Range support, sleeps
`--latency-ms` before every response, counts response-body bytes) serves them on 127.0.0.1.

Readers, one epoch each over `DataLoader(batch_size=32, num_workers=W)`, decode off (raw
bytes: the figure is the transfer, not the decoder):
- SeTaStream keep 1.0 (`Full()`) and keep 0.3 (`Static(prune_ratio=0.7)`), over
  `http://…/ds`: ranged requests, coalesced, fetched ahead (`RemoteOptions()` defaults).
- `webdataset.WebDataset` on the same shard URLs (it streams each shard with one GET through
  `curl`), keep 1.0; and keep 0.3 by dropping 70 % of the samples after reading them
  (`.select`), which is all a streaming reader without an index can do.

Each reader runs `--rounds` epochs (best is reported); bytes and requests are the server's
counts for one epoch. Prints a Markdown table and writes JSON; the smoke run in
tests/benchmarks/ keeps it from rotting.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch
from torch.utils.data import DataLoader

from seta_stream import Full, SeTaStream, Static
from seta_stream.shards import ConvertOptions, convert, open_source

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "benchmarks" / "out" / "remote.json"
KEEP = 0.3


@dataclass(frozen=True, kw_only=True)
class Config:
    samples: int = 2000
    samples_per_shard: int = 200
    min_kib: int = 20
    max_kib: int = 300
    latency_ms: float = 20.0
    workers: tuple[int, ...] = (0, 2)
    rounds: int = 2
    batch_size: int = 32
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("samples", "samples_per_shard", "min_kib", "max_kib", "rounds"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)}: must be >= 1")
        if self.latency_ms < 0 or any(w < 0 for w in self.workers):
            raise ValueError("latency and worker counts must be >= 0")


def _servers() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "bench_remote_servers", ROOT / "tests" / "remote" / "servers.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


def build(work: Path, cfg: Config) -> Path:
    src = work / "src"
    src.mkdir()
    rng = np.random.default_rng(cfg.seed)
    sizes = np.exp(rng.uniform(np.log(cfg.min_kib), np.log(cfg.max_kib), cfg.samples)) * 1024
    for i, size in enumerate(sizes.astype(int)):
        (src / f"{i:07d}.bin").write_bytes(rng.bytes(int(size)))
        (src / f"{i:07d}.cls").write_text(str(i % 10))
    out = work / "www" / "ds"
    opts = ConvertOptions(samples_per_shard=cfg.samples_per_shard, progress=False)
    convert(open_source(str(src)), out, opts)
    return out


def _count(loader: Any) -> int:
    return sum(len(batch["__key__"]) for batch in loader)


Reader = tuple[Callable[[], int], Callable[[], None]]  # (one epoch -> samples, close)


def seta(url: str, work: Path, cfg: Config, keep: float, w: int) -> Reader:
    policy = Full() if keep == 1.0 else Static(prune_ratio=round(1 - keep, 6))
    losses = None if keep == 1.0 else work / f"losses-{keep}-{w}"
    stream = SeTaStream(url, policy=policy, losses=losses, decode=None, seed=cfg.seed,
                        workdir=str(work))  # fmt: skip
    stream.set_epoch(0)
    loader = DataLoader(stream, batch_size=cfg.batch_size, num_workers=w)
    return (lambda: _count(loader)), stream.close


def wds(url: str, names: list[str], cfg: Config, keep: float, w: int) -> Reader:
    import webdataset

    urls = [f"{url}/{n}" for n in names]
    pipe = webdataset.WebDataset(urls, shardshuffle=False, empty_check=False)
    if keep < 1.0:
        pipe = pipe.select(lambda s: zlib.crc32(s["__key__"].encode()) % 1000 < keep * 1000)
    loader = DataLoader(pipe, batch_size=cfg.batch_size, num_workers=w)
    return (lambda: _count(loader)), (lambda: None)


def measure(epoch: Callable[[], int], server: Any, rounds: int) -> dict[str, Any]:
    best: dict[str, Any] | None = None
    for _ in range(rounds):
        server.stats.reset()
        t0 = time.perf_counter()
        n = epoch()
        dt = time.perf_counter() - t0
        got = {"samples": n, "epoch_s": dt, "samples_per_s": n / dt,
               "bytes_sent": server.stats.body_bytes, "requests": server.stats.gets}  # fmt: skip
        if best is None or dt < best["epoch_s"]:
            best = got
    assert best is not None
    return best


def run(cfg: Config, work: Path) -> dict[str, Any]:
    ds = build(work, cfg)
    names = sorted(p.name for p in ds.glob("*.tar"))
    total = sum((ds / n).stat().st_size for n in names)
    servers = _servers()
    server = servers.RangeHTTPServer(ds.parent)
    server.set(servers.Faults(latency=cfg.latency_ms / 1000))
    url = f"{server.url}/ds"
    rows = []
    try:
        for w in cfg.workers:
            for reader, keep in (("SeTaStream", 1.0), ("SeTaStream", KEEP),
                                 ("webdataset.WebDataset", 1.0),
                                 ("webdataset.WebDataset", KEEP)):  # fmt: skip
                if reader == "SeTaStream":
                    epoch, close = seta(url, work, cfg, keep, w)
                else:
                    epoch, close = wds(url, names, cfg, keep, w)
                try:
                    r = measure(epoch, server, cfg.rounds)
                finally:
                    close()
                rows.append({"reader": reader, "keep": keep, "workers": w, **r})
                print(f"  {reader} keep {keep} W={w}: {r['samples_per_s']:.0f} samples/s, "
                      f"{r['bytes_sent'] / 1e6:.1f} MB", file=sys.stderr)  # fmt: skip
    finally:
        server.stop()
    full = {(r["reader"], r["workers"]): r["bytes_sent"] for r in rows if r["keep"] == 1.0}
    for r in rows:
        r["bytes_vs_full"] = r["bytes_sent"] / max(full[r["reader"], r["workers"]], 1)
    return {"shard_bytes": total, "rows": rows}


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| reader | W | keep | samples | samples/s | MB sent | sent / keep-1.0 | GETs |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['reader']} | {r['workers']} | {r['keep']} | {r['samples']} | "
            f"{r['samples_per_s']:.0f} | {r['bytes_sent'] / 1e6:.1f} | "
            f"{r['bytes_vs_full']:.2f} | {r['requests']} |"
        )
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench_remote.py", description=__doc__.split("\n")[0])
    p.add_argument("--samples", type=int, default=None, help="default 2000")
    p.add_argument("--latency-ms", type=float, default=None, help="per request (default 20)")
    p.add_argument("--workers", type=int, nargs="+", default=None, help="default 0 2")
    p.add_argument("--rounds", type=int, default=None, help="epochs per reader (default 2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--workdir", type=Path, default=None, help="where the data set is made")
    p.add_argument("--smoke", action="store_true",
                   help="120 samples of 4-40 KiB, 2 ms latency, W=0, 1 round")  # fmt: skip
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    smoke = args.smoke
    try:
        cfg = Config(
            samples=args.samples or (120 if smoke else 2000),
            samples_per_shard=40 if smoke else 200,
            min_kib=4 if smoke else 20,
            max_kib=40 if smoke else 300,
            latency_ms=args.latency_ms if args.latency_ms is not None else (2 if smoke else 20),
            workers=tuple(args.workers or ((0,) if smoke else (0, 2))),
            rounds=args.rounds or (1 if smoke else 2),
            seed=args.seed,
        )
    except ValueError as e:
        print(f"bench_remote.py: error: {e}", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_remote-", dir=args.workdir) as tmp:
        result = run(cfg, Path(tmp))
    machine = {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "torch_threads": torch.get_num_threads(),
    }
    result = {"config": asdict(cfg), "machine": machine, **result}
    result["wall_s"] = time.perf_counter() - t0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    mb = result["shard_bytes"] / 1e6
    print(
        f"{cfg.samples:,} samples ({mb:.0f} MB of shards), HTTP on 127.0.0.1 with "
        f"{cfg.latency_ms:g} ms per request; best of {cfg.rounds} epoch(s)\n"
    )
    print(table(result["rows"]))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
