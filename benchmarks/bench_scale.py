#!/usr/bin/env python
"""Large for real: open, select, update, read and close at 10M, 100M and 1B samples.

    python benchmarks/bench_scale.py [--sizes 1e7 1e8] [--per-shard 10000]
        [--workdir /work/scale] [--out benchmarks/out/scale.json] [--upgrade] [--ranks 8]
        [--smoke]

**Data.** A synthetic tar dataset of N samples in today's layout (version 2): one real
WebDataset tar shard of `--per-shard` samples (two members a sample: `KEY.bin.npy`,
`KEY.cls.npy`, written by `seta_stream.shards.convert`) and its per-shard index file, each
hard-linked N / per-shard times under new names, and a manifest listing them all. Every shard
is a real tar that `tar` and `webdataset` read; keys repeat across shards (allowed: a
sample's identity is its id). Disk: one shard (~20 MB at 10k samples) and one index file per
60,000 shards (ext4 allows 65,000 links to a file) + the manifest (~150 B a shard); the loss
table is what grows (<= 40 B a sample). With `--upgrade` the same N is also written in the
version-1 layout (one `index.parquet`, streamed a shard's rows at a time) and
`tools/shard.py upgrade` is timed on it.

**Steps**, each N in one fresh child process (`torch.set_num_threads(1)`); RSS over the
import baseline (the child's RSS after `import seta_stream, torch`), peaks from a thread
sampling /proc/self/statm every 5 ms; DataLoader workers' USS (private clean + dirty,
/proc/PID/smaps_rollup) after their 4th batch:
open `SeTaStream(policy=SeTa, losses=DIR)` (a new loss table); `set_epoch(0)`; first 4
batches (batch 256) with 0 and 2 workers; N loss updates through `update()` (batches of
4096 ids, shuffled within blocks of 1M ids, then `flush`);
`set_epoch(1)` with SeTa over a loss for every sample; the same updates again; `set_epoch(2)`
(ends epoch 1: two epochs of history); `close()`; the loss table's bytes on disk / N; open
again (the table exists: the usual start of a run).
With `--ranks R`: `torchrun --standalone --nproc_per_node=R` (gloo), each rank opens the
dataset (`Full`, no loss table), runs `set_epoch(0)` and reads its first batch: total RSS
of the R ranks and the slowest rank's time to its first batch.

Prints a Markdown table, writes JSON (`--out`). `--smoke`: N = 20k, seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT), str(HERE)]

DEFAULT_OUT = HERE / "out" / "scale.json"
MB = 2**20
BATCH, UPDATE_BATCH = 256, 4096
LINKS_PER_FILE = 60_000


# ---------------------------------------------------------------- data


def make_dataset(root: Path, n: int, per_shard: int, *, v1: bool = False) -> dict[str, Any]:
    """An N-sample version-2 tar dataset at `root` (see the module doc); `v1`: also write the
    version-1 layout (index.parquet + manifest version 1) as `root/dataset.v1.json`."""
    import numpy as np

    from seta_stream.shards import ConvertOptions, Manifest, convert
    from seta_stream.shards.manifest import write_manifest
    from seta_stream.shards.shardindex import shard_index_name
    from seta_stream.shards.sources import NpzSource
    from seta_stream.storage import Store

    if n % per_shard:
        raise ValueError(f"N={n} is not a multiple of --per-shard {per_shard}")
    t0 = time.perf_counter()
    root.mkdir(parents=True, exist_ok=True)
    seed = root / "seed"
    npz = root / "seed.npz"
    rng = np.random.default_rng(0)
    np.savez(npz, bin=rng.integers(0, 255, (per_shard, 16), dtype=np.uint8),
             cls=np.arange(per_shard) % 10)  # fmt: skip
    one = convert(NpzSource(str(npz)), seed, ConvertOptions(samples_per_shard=per_shard,
                                                            progress=False))  # fmt: skip
    npz.unlink()
    info = one.shards[0]
    shards = []
    (root / "index").mkdir(exist_ok=True)
    for s in range(n // per_shard):
        name = f"shard-{s:07d}.tar"
        copy = seed / f"copy{s // LINKS_PER_FILE}"  # ext4 allows 65,000 links to one file
        for src, dst in ((info.name, name), (shard_index_name(info.name), shard_index_name(name))):
            if not (copy / src).exists():
                (copy / src).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(seed / src, copy / src)
            if not (root / dst).exists():
                os.link(copy / src, root / dst)
        entry = {"name": name, "bytes": info.bytes, "samples": info.samples}
        shards.append({**entry, "index_sha256": info.index_sha256})
    body = {**one.to_dict(), "shards": shards, "num_samples": n}
    manifest = Manifest.from_json(json.dumps(body), source="bench_scale")
    store = Store(str(root))
    write_manifest(store, manifest)
    out = {"n": n, "shards": len(shards), "make_s": time.perf_counter() - t0}
    if v1:
        out["make_v1_s"] = _write_v1(root, manifest, seed, info.name)
    return out


def _write_v1(root: Path, manifest: Any, seed: Path, shard0: str) -> float:
    """index.parquet (one row group a shard, sample ids and shard numbers filled in) and a
    version-1 manifest, streamed: one shard's rows in memory at a time."""
    import hashlib

    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from seta_stream.shards.shardindex import shard_index_name

    t0 = time.perf_counter()
    rows = pq.read_table(seed / shard_index_name(shard0))
    k = rows.num_rows
    path = root / "index.parquet"
    writer = None
    for s in range(len(manifest.shards)):
        t = rows.add_column(0, "sample_id", pa.array(np.arange(s * k, (s + 1) * k, dtype=np.int64)))
        t = t.add_column(2, "shard", pa.array(np.full(k, s, np.int32)))
        if writer is None:
            writer = pq.ParquetWriter(path, t.schema, compression="zstd")
        writer.write_table(t)
    assert writer is not None
    writer.close()
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(8 << 20):
            digest.update(chunk)
    body = manifest.to_dict()
    body.update(version=1, index={"name": "index.parquet", "sha256": digest.hexdigest()})
    for sh in body["shards"]:
        sh.pop("index_sha256", None)
    (root / "dataset.v1.json").write_text(json.dumps(body))
    return time.perf_counter() - t0


# ---------------------------------------------------------------- process figures


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def uss(pid: int) -> int:
    total = 0
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("Private_Clean", "Private_Dirty"):
                total += int(value.split()[0]) * 1024
    return total


def kids() -> list[int]:
    pid = os.getpid()
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(c) for c in f.read().split()]


class Peak:
    """The highest RSS of this process while a step runs (sampled every 5 ms)."""

    def __init__(self) -> None:
        self.high = rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-rss", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            self.high = max(self.high, rss())

    def reset(self) -> None:
        self.high = rss()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


def step(out: dict[str, Any], name: str, peak: Peak, base: int, fn: Callable[[], Any]) -> Any:
    peak.reset()
    before = rss()
    t0 = time.perf_counter()
    value = fn()
    seconds = time.perf_counter() - t0
    now = rss()
    peak.high = max(peak.high, now)
    out[name] = {"s": seconds, "rss_over_base": now - base, "peak_over_base": peak.high - base}
    out[name]["rss_added"] = now - before
    print(f"  {name}: {seconds:.2f} s, peak +{(peak.high - base) / MB:,.0f} MB", file=sys.stderr)
    return value


# ---------------------------------------------------------------- the child


def child_run(p: dict[str, Any]) -> dict[str, Any]:
    import numpy as np
    import torch

    torch.set_num_threads(1)
    from torch.utils.data import DataLoader

    from seta_stream import SeTa, SeTaStream

    base = rss()
    peak = Peak()
    out: dict[str, Any] = {"n": p["n"], "base_rss": base}
    policy = SeTa(epochs=100, prune_ratio=0.3, num_groups=5, window=0.5)
    losses = Path(p["losses"])
    open_ = lambda: SeTaStream(p["root"], policy=policy, losses=losses, seed=0)  # noqa: E731
    stream = step(out, "open", peak, base, open_)
    step(out, "set_epoch_0", peak, base, lambda: stream.set_epoch(0))

    def first_batches(workers: int) -> None:
        loader = DataLoader(stream, batch_size=BATCH, num_workers=workers)
        it = iter(loader)
        for _ in range(4):
            next(it)
        if workers:
            out[f"worker_uss_{workers}"] = [uss(k) for k in kids()]
        del it

    step(out, "first4_w0", peak, base, lambda: first_batches(0))
    step(out, "first4_w2", peak, base, lambda: first_batches(2))
    n = p["n"]
    rng = np.random.default_rng(1)
    chunk = rng.lognormal(0.0, 1.0, 1 << 20).astype(np.float32)
    block = 1 << 20  # ids come shuffled within blocks of 1M, as a read order brings them:

    def updates() -> None:  # a few open shards, samples shuffled within a window
        for b0 in range(0, n, block):
            perm = b0 + rng.permutation(min(block, n - b0))
            for a in range(0, len(perm), UPDATE_BATCH):
                ids = perm[a : a + UPDATE_BATCH]
                stream.update(ids, chunk[a : a + len(ids)] + np.float32(b0 % 7))
        assert stream.table is not None
        stream.table.flush()

    step(out, "updates_1", peak, base, updates)
    step(out, "set_epoch_1_seta", peak, base, lambda: stream.set_epoch(1))
    out["kept_1"] = len(stream) / n
    step(out, "updates_2", peak, base, updates)
    step(out, "set_epoch_2", peak, base, lambda: stream.set_epoch(2))
    step(out, "close", peak, base, stream.close)
    again = step(out, "reopen", peak, base, open_)  # the usual case: the table exists
    again.close()
    peak.close()
    out["losses_bytes"] = sum(f.stat().st_size for f in losses.rglob("*") if f.is_file())
    out["losses_bytes_per_sample"] = out["losses_bytes"] / n
    out["index_loads_main"] = stream.dataset.index.loads
    return out


def child_upgrade(p: dict[str, Any]) -> dict[str, Any]:
    from seta_stream.shards import upgrade

    root = Path(p["root"])
    v2 = (root / "dataset.json").read_text()
    (root / "dataset.json").write_text((root / "dataset.v1.json").read_text())
    base = rss()
    peak = Peak()
    out: dict[str, Any] = {"n": p["n"], "base_rss": base}
    try:
        step(out, "upgrade", peak, base, lambda: upgrade(str(root)))
    finally:
        peak.close()
    from seta_stream.shards import read_samples

    now = json.loads((root / "dataset.json").read_text())
    out["version_after"] = now["version"]
    ids = [0, p["n"] // 2, p["n"] - 1]
    got = [r["bin.npy"] for r in read_samples(str(root), ids)]
    (root / "dataset.json").write_text(v2)  # the generated version-2 manifest back
    want = [r["bin.npy"] for r in read_samples(str(root), ids)]
    if now["version"] != 2 or got != want:
        raise AssertionError("the upgraded dataset reads other samples than version 2")
    return out


RANK_SCRIPT = """
import json, os, sys, time, resource
t0 = time.perf_counter()
import torch
torch.set_num_threads(1)
import torch.distributed as dist
dist.init_process_group("gloo")
from seta_stream import Full, SeTaStream
stream = SeTaStream(sys.argv[1], policy=Full(), losses=None, seed=0)
stream.set_epoch(0)
loader = torch.utils.data.DataLoader(stream, batch_size=256, num_workers=0)
next(iter(loader))
first = time.perf_counter() - t0
with open("/proc/self/statm") as f:
    rss = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
dist.barrier()
with open(os.path.join(sys.argv[2], f"rank{dist.get_rank()}.json"), "w") as f:
    json.dump({"first_batch_s": first, "rss": rss, "peak": peak}, f)
stream.close()
dist.destroy_process_group()
"""


def run_ranks(root: Path, ranks: int, tmp: Path) -> dict[str, Any]:
    script = tmp / "rank.py"
    script.write_text(RANK_SCRIPT)
    res = tmp / "ranks"
    res.mkdir()
    torchrun = Path(sys.executable).parent / "torchrun"
    cmd = [str(torchrun), "--standalone", f"--nproc_per_node={ranks}", str(script), str(root),
           str(res)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, timeout=3600)
    wall = time.perf_counter() - t0
    got = [json.loads((res / f"rank{r}.json").read_text()) for r in range(ranks)]
    return {
        "ranks": ranks,
        "wall_s": wall,
        "first_batch_s_max": max(g["first_batch_s"] for g in got),
        "rss_total": sum(g["rss"] for g in got),
        "peak_total": sum(g["peak"] for g in got),
    }


CHILDREN = {"run": child_run, "upgrade": child_upgrade}


def in_child(kind: str, params: dict[str, Any], timeout: float = 6 * 3600) -> dict[str, Any]:
    """Run a child step in a fresh interpreter; a hung child fails after `timeout` seconds."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        result = Path(f.name)
    try:
        cmd = [sys.executable, __file__, "--child", kind, json.dumps(params), str(result)]
        subprocess.run(cmd, check=True, timeout=timeout)
        return json.loads(result.read_text())
    finally:
        result.unlink(missing_ok=True)


# ---------------------------------------------------------------- report

# step, label, memory figure shown, targets at 100M and 1B (seconds, MB over the baseline)
ROWS = (
    ("open", "`SeTaStream(...)` open (new loss table)", "rss_added", (2, 200), (5, 500)),
    ("set_epoch_0", "`set_epoch(0)` (no losses yet)", "peak_over_base", None, None),
    ("first4_w0", "first 4 batches, 0 workers", None, (5, None), (10, None)),
    ("first4_w2", "first 4 batches, 2 workers", None, (5, None), (10, None)),
    ("updates_1", "N loss updates through `update()` + flush", "peak_over_base", (60, None),
     (600, None)),
    ("set_epoch_1_seta", "`set_epoch(1)`, SeTa over a loss for every sample", "peak_over_base",
     (60, 2500), (600, 16000)),
    ("set_epoch_2", "`set_epoch(2)` (ends epoch 1: history, snapshot)", "peak_over_base", None,
     None),
    ("close", "`close()`", "peak_over_base", (60, None), (600, None)),
    ("reopen", "`SeTaStream(...)` open (existing loss table)", "rss_added", (2, 200),
     (5, 500)),
)  # fmt: skip


def _target(t: tuple[float, float | None] | None) -> str:
    if t is None:
        return ""
    sec, mb = t
    return f"≤ {sec:g} s" + (f", ≤ {mb:,.0f} MB" if mb else "")


def table(results: list[dict[str, Any]]) -> str:
    """The Markdown table of a run's results (also from a saved JSON: `--report`)."""
    head = "| step | " + " | ".join(f"N = {r['n']:,}" for r in results)
    lines = [head + " | target 100M | target 1B |", "|---|" + "--:|" * len(results) + "---|---|"]
    for key, label, mem, t100m, t1b in ROWS:
        cells = []
        for r in results:
            m = r["run"][key]
            cell = f"{m['s']:.2f} s"
            if mem:
                cell += f", {'+' if m[mem] >= 0 else ''}{m[mem] / MB:,.0f} MB"
            cells.append(cell)
        targets = f" | {_target(t100m)} | {_target(t1b)} |"
        lines.append(f"| {label} | " + " | ".join(cells) + targets)
    cells = [f"{max(r['run'].get('worker_uss_2') or [0]) / MB:,.0f} MB" for r in results]
    lines.append("| DataLoader worker USS (max of 2) | " + " | ".join(cells)
                 + " | ≤ 300 MB | ≤ 500 MB |")  # fmt: skip
    cells = [f"{r['run']['losses_bytes_per_sample']:.1f} B" for r in results]
    lines.append("| loss table on disk after 2 epochs, per sample | " + " | ".join(cells)
                 + " | ≤ 40 B | ≤ 40 B |")  # fmt: skip
    extra = (
        ("upgrade", "`tools/shard.py upgrade` (version 1 → 2)",
         lambda u: f"{u['upgrade']['s']:.1f} s, "
                   f"peak +{u['upgrade']['peak_over_base'] / MB:,.0f} MB"),
        ("ranks", "torchrun, `Full`, 0 workers each",
         lambda g: f"{g['ranks']} ranks: {g['rss_total'] / MB:,.0f} MB RSS in all, "
                   f"first batch {g['first_batch_s_max']:.1f} s"),
    )  # fmt: skip
    for key, label, fmt in extra:
        if any(key in r for r in results):
            cells = [fmt(r[key]) if key in r else "-" for r in results]
            lines.append(f"| {label} | " + " | ".join(cells) + " | | |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--child"]:
        kind, params, result = argv[1:]
        Path(result).write_text(json.dumps(CHILDREN[kind](json.loads(params))))
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=float, nargs="+", default=[1e7, 1e8])
    p.add_argument("--per-shard", type=int, default=10_000)
    p.add_argument("--workdir", default=None, help="where datasets and tables go (deleted)")
    p.add_argument("--out", default=str(DEFAULT_OUT))
    p.add_argument("--upgrade", action="store_true", help="also time the v1 -> v2 upgrade")
    p.add_argument("--ranks", type=int, default=0, help="torchrun this many ranks (0: skip)")
    p.add_argument("--keep", action="store_true", help="keep the datasets")
    p.add_argument("--smoke", action="store_true", help="N = 20k, 1k a shard")
    p.add_argument("--report", nargs="+", metavar="JSON", help="print the table of saved runs")
    args = p.parse_args(argv)
    if args.report:  # several files: their results side by side, in the order given
        print(table([r for f in args.report for r in json.loads(Path(f).read_text())["results"]]))
        return 0
    sizes = [20_000] if args.smoke else [int(s) for s in args.sizes]
    per_shard = 1_000 if args.smoke else args.per_shard
    work = Path(tempfile.mkdtemp(prefix="bench_scale-", dir=args.workdir))
    results = []
    limit = 600 if args.smoke else 6 * 3600  # seconds a child may take (a smoke run takes ~10)
    try:
        for n in sizes:
            print(f"N = {n:,}", file=sys.stderr)
            root = work / f"n{n}"
            made = make_dataset(root, n, per_shard, v1=args.upgrade)
            r: dict[str, Any] = {"n": n, "data": made}
            params = {"root": str(root), "n": n, "losses": str(work / "losses")}
            r["run"] = in_child("run", params, limit)
            shutil.rmtree(work / "losses", ignore_errors=True)
            if args.upgrade:
                r["upgrade"] = in_child("upgrade", {"root": str(root), "n": n}, limit)
            if args.ranks:
                r["ranks"] = run_ranks(root, args.ranks, Path(tempfile.mkdtemp(dir=work)))
            results.append(r)
            if not args.keep:
                shutil.rmtree(root, ignore_errors=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    machine = {"cpus": os.cpu_count(), "python": platform.python_version(),
               "loadavg": os.getloadavg(), "torch_threads": 1}  # fmt: skip
    report = {"config": vars(args), "machine": machine, "results": results}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1))
    print(table(results))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
