#!/usr/bin/env python
"""What does it take to open a dataset of N tiny samples: LitData, MosaicML Streaming and ours?

    .venv-bench/bin/python benchmarks/bench_open_peers.py [--n 10000000] [--n-litdata N]
        [--n-mds N] [--loaders ours,litdata,mds] [--repeat 3] [--workdir DIR]
        [--out benchmarks/out/open_peers.json] [--keep] [--smoke]

**Data.** N samples of a 16-byte payload (`bin`) and an int label (`cls`). LitData:
`litdata.optimize` (one worker, fork, `chunk_bytes="64MB"`: the 64 MB its processor falls
back to; tasks of 100k samples yielding `{"bin": bytes, "cls": int}`). MosaicML Streaming:
`MDSWriter(columns={"bin": "bytes", "cls": "int"})` at its default `size_limit` (64 MB),
loaded as `streaming.base` (see peers_lib.import_streaming). Both writers run at once, each
in its own child process. Ours: bench_scale's `make_dataset(root, n, per_shard=10_000)`: one
real tar shard of 10k samples and its index file hard-linked N / 10k times, and a manifest;
so our on-disk index bytes are apparent sizes (what a real dataset of N samples holds), not
the blocks the hard links share.

**Measured**, each loader in a fresh child process (`torch.set_num_threads(1)`), `--repeat`
times, the median shown: RSS from /proc/self/statm over the baseline after the imports, and
the peak from a thread sampling statm every 5 ms; (a) constructing the dataset object:
`litdata.StreamingDataset(dir, shuffle=True, seed=0)`, `StreamingDataset(local=dir,
shuffle=True, shuffle_seed=0, batch_size=256)`, `SeTaStream(dir, policy=Full(), losses=None,
decode=None)`, `seta_stream.shards.Dataset.open(dir)`; (b) from there to the first batch of 256
through `DataLoader(num_workers=0)` with a list collate: the peers and SeTaStream iterated
(SeTaStream's time includes `set_epoch(0)`, shown apart too), Dataset by `ds.read(i)` through a
map-style wrapper (ids 0..255); (c) index bytes: LitData `index.json` + the offset table at
the head of each chunk (4 B count + 4 B a sample + 4), MDS `index.json` + the same table at the
head of each shard; ours `dataset.json` + `index/` (per-shard Parquet). The page cache is warm
(the files were just written). Prints a Markdown table, writes JSON; deletes what it built
unless `--keep`. `--smoke`: N = 20k, 1k a shard for ours, one repeat.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

from bench_scale import MB, Peak, make_dataset, rss  # noqa: E402

DEFAULT_OUT = HERE / "out" / "open_peers.json"
BATCH, TASK, PAYLOAD = 256, 100_000, bytes(range(16))
LOADERS = ("ours", "litdata", "mds")
NAMES = {
    "stream": "SeTaStream(dir, policy=Full(), losses=None)",
    "dataset": "seta_stream.shards.Dataset.open(dir)",
    "litdata": "litdata.StreamingDataset(dir)",
    "mds": "streaming.base.StreamingDataset(local=dir)",
}


# ---------------------------------------------------------------- writers (build children)


def _items(task: tuple[int, int]) -> Any:
    for i in range(*task):
        yield {"bin": PAYLOAD, "cls": i % 10}


def build_litdata(out: Path, n: int) -> None:
    from peers_lib import import_litdata

    litdata, _ = import_litdata()
    tasks = [(lo, min(lo + TASK, n)) for lo in range(0, n, TASK)]
    litdata.optimize(fn=_items, inputs=tasks, output_dir=str(out), num_workers=1,
                     chunk_bytes="64MB", start_method="fork")  # fmt: skip


def build_mds(out: Path, n: int) -> None:
    from peers_lib import import_streaming

    streaming, _ = import_streaming()
    with streaming.MDSWriter(out=str(out), columns={"bin": "bytes", "cls": "int"}) as writer:
        for s in _items((0, n)):
            writer.write(s)


def build_peers(work: Path, sizes: dict[str, int]) -> dict[str, dict[str, Any]]:
    """Each peer's writer in its own child, all at once; {peer: {dir, n, build_s, ...}}."""
    procs = {}
    for peer, n in sizes.items():
        out, log = work / peer, work / f"{peer}.log"
        env = {**os.environ, "DATA_OPTIMIZER_CACHE_FOLDER": str(work / "lit-cache"),
               "DATA_OPTIMIZER_DATA_CACHE_FOLDER": str(work / "lit-data-cache")}  # fmt: skip
        cmd = [sys.executable, __file__, "--child", f"build_{peer}",
               json.dumps({"out": str(out), "n": n})]  # fmt: skip
        with open(log, "w") as f:
            procs[peer] = (subprocess.Popen(cmd, stdout=f, stderr=f, env=env), time.perf_counter())
        _progress(f"writing {peer}, N = {n:,} (log: {log})")
    built: dict[str, dict[str, Any]] = {}
    while len(built) < len(procs):  # polled: each writer's own time, whichever ends first
        time.sleep(0.5)
        for peer, (proc, t0) in procs.items():
            if peer in built or proc.poll() is None:
                continue
            if proc.returncode != 0:
                tail = (work / f"{peer}.log").read_text()[-2000:]
                raise RuntimeError(f"the {peer} writer exited {proc.returncode}:\n{tail}")
            out = work / peer
            disk = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
            built[peer] = {"dir": str(out), "n": sizes[peer], "disk_bytes": disk,
                           "build_s": time.perf_counter() - t0}  # fmt: skip
            _progress(f"  {peer}: {built[peer]['build_s']:.0f} s")
    return {peer: built[peer] for peer in procs}


# ---------------------------------------------------------------- index bytes


def index_bytes(kind: str, root: Path) -> dict[str, Any]:
    """The bytes a loader keeps to find samples: its index files, and offset tables in shards."""
    if kind in ("stream", "dataset"):
        idx = [p for p in (root / "index").iterdir() if p.is_file()]
        files = (root / "dataset.json").stat().st_size + sum(p.stat().st_size for p in idx)
        return {"index_bytes": files, "index_files": 1 + len(idx), "in_shard_bytes": 0,
                "shards": len(idx)}  # fmt: skip
    meta = json.loads((root / "index.json").read_text())
    counts = [c["chunk_size"] for c in meta["chunks"]] if kind == "litdata" else [
        s["samples"] for s in meta["shards"]]  # fmt: skip
    names = [c["filename"] for c in meta["chunks"]] if kind == "litdata" else [
        s["raw_data"]["basename"] for s in meta["shards"]]  # fmt: skip
    for name, count in zip(names, counts, strict=True):  # the table's first word: its count
        with open(root / name, "rb") as f:
            if int.from_bytes(f.read(4), "little") != count:
                raise ValueError(f"{root / name}: header count is not index.json's {count}")
    table = sum(4 + 4 * (c + 1) for c in counts)  # count, then N + 1 uint32 offsets
    json_bytes = (root / "index.json").stat().st_size
    return {"index_bytes": json_bytes + table, "index_json_bytes": json_bytes,
            "in_shard_bytes": table, "index_files": 1, "shards": len(counts)}  # fmt: skip


# ---------------------------------------------------------------- the measuring child


def as_list(batch: list[Any]) -> list[Any]:
    return batch


class ByRead:
    """`ds.read(i)` as a map-style dataset (raw bytes, no decode)."""

    def __init__(self, ds: Any):
        self.ds = ds

    def __len__(self) -> int:
        return int(self.ds.num_samples)

    def __getitem__(self, i: int) -> Any:
        return self.ds.read(i)


def _construct(kind: str, root: str) -> tuple[Any, Any]:
    """(dataset object, what the DataLoader reads), constructing as the module doc says."""
    if kind == "stream":
        from seta_stream import Full, SeTaStream

        s = SeTaStream(root, policy=Full(), losses=None, seed=0, decode=None)
        return s, s
    if kind == "dataset":
        from seta_stream.shards import Dataset

        d = Dataset.open(root)
        return d, ByRead(d)
    if kind == "litdata":
        import litdata

        ds = litdata.StreamingDataset(root, shuffle=True, seed=0)
        return ds, ds
    import streaming.base

    ds = streaming.base.StreamingDataset(local=root, shuffle=True, shuffle_seed=0, batch_size=BATCH)
    return ds, ds


def _import(kind: str) -> None:
    """The loader's imports, before the baseline is taken."""
    if kind in ("stream", "dataset"):
        import seta_stream.shards  # noqa: F401
    elif kind == "litdata":
        import litdata  # noqa: F401
    else:
        from peers_lib import import_streaming

        import_streaming()


def child_open(p: dict[str, Any]) -> dict[str, Any]:
    import resource

    t0 = time.perf_counter()
    import torch

    torch.set_num_threads(1)
    from torch.utils.data import DataLoader

    kind = p["kind"]
    _import(kind)
    out: dict[str, Any] = {"import_s": time.perf_counter() - t0, "base_rss": rss()}
    peak = Peak()
    try:
        t0 = time.perf_counter()
        obj, source = _construct(kind, p["root"])
        out["open_s"], now = time.perf_counter() - t0, rss()
        out["open_rss"], out["open_peak"] = (
            now - out["base_rss"],
            max(peak.high, now) - out["base_rss"],
        )
        peak.reset()
        t0 = time.perf_counter()
        if kind == "stream":
            obj.set_epoch(0)
            out["set_epoch_s"] = time.perf_counter() - t0
        batch = next(iter(DataLoader(source, batch_size=BATCH, num_workers=0, collate_fn=as_list)))
        out["first_batch_s"] = time.perf_counter() - t0
        now = rss()
        out["first_rss"], out["first_peak"] = (
            now - out["base_rss"],
            max(peak.high, now) - out["base_rss"],
        )
    finally:
        peak.close()
    out["batch_len"], out["sample_keys"] = len(batch), sorted(batch[0])
    out["len"] = len(source)
    out["ru_maxrss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    if hasattr(obj, "close"):
        obj.close()
    return out


CHILDREN = {
    "open": child_open,
    "build_litdata": lambda p: build_litdata(Path(p["out"]), p["n"]),
    "build_mds": lambda p: build_mds(Path(p["out"]), p["n"]),
}


def in_child(kind: str, params: dict[str, Any], work: Path) -> dict[str, Any]:
    result = work / f"result-{os.getpid()}.json"
    cmd = [sys.executable, __file__, "--child", kind, json.dumps(params), str(result)]
    try:
        subprocess.run(cmd, check=True, timeout=3600, stdout=subprocess.DEVNULL)
        return json.loads(result.read_text())
    finally:
        result.unlink(missing_ok=True)


# ---------------------------------------------------------------- the run


FIGURES = ("open_s", "open_rss", "open_peak", "first_batch_s", "first_rss", "first_peak",
           "set_epoch_s", "import_s", "ru_maxrss")  # fmt: skip


def measure(kind: str, root: Path, n: int, repeat: int, work: Path) -> dict[str, Any]:
    runs = [in_child("open", {"kind": kind, "root": str(root)}, work) for _ in range(repeat)]
    row: dict[str, Any] = {"loader": NAMES[kind], "kind": kind, "n": n, "runs": runs}
    for key in FIGURES:
        if key in runs[0]:
            row[key] = statistics.median(r[key] for r in runs)
    for key in ("batch_len", "sample_keys", "len"):
        row[key] = runs[0][key]
    row.update(index_bytes(kind, root))
    _progress(f"  {NAMES[kind]}, N = {n:,}: open {row['open_s']:.3f} s, +{row['open_rss'] / MB:.0f}"
              f" MB; first batch {row['first_batch_s']:.3f} s")  # fmt: skip
    return row


def run(args: argparse.Namespace, work: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    from peers_lib import import_litdata, import_streaming

    n = 20_000 if args.smoke else args.n
    sizes = {"litdata": args.n_litdata or n, "mds": args.n_mds or n}
    peers: dict[str, Any] = {}
    rows: list[dict[str, Any]] = []
    for peer, importer in (("litdata", import_litdata), ("mds", import_streaming)):
        lib, how = importer()
        peers[peer] = {"version": how}
        if peer not in args.loaders:
            sizes.pop(peer)
        elif lib is None:
            sizes.pop(peer)
            rows.append({"loader": NAMES[peer], "kind": peer, "status": how})
    built = build_peers(work, sizes)
    for peer, info in built.items():
        peers[peer].update(info)
        rows.append(measure(peer, Path(info["dir"]), info["n"], args.repeat, work))
    if "ours" in args.loaders:
        per_shard = 1_000 if args.smoke else args.per_shard
        for size in sorted(set(sizes.values()) or {n}):
            root = work / f"ours-{size}"
            made = make_dataset(root, size, per_shard)
            for kind in ("stream", "dataset"):
                rows.append({**measure(kind, root, size, args.repeat, work), "build": made})
            if not args.keep:
                shutil.rmtree(root)
    return rows, peers


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| loader | N | shards | open s | open RSS MB (peak) | first batch s (peak MB) "
             "| index bytes | of which in shards | index B / sample |",
             "|---|--:|--:|--:|--:|--:|--:|--:|--:|"]  # fmt: skip
    for r in rows:
        if "status" in r:
            lines.append(f"| {r['loader']} | {r['status']} |" + " |" * 7)
            continue
        lines.append(
            f"| {r['loader']} | {r['n']:,} | {r['shards']:,} | {r['open_s']:.3f} "
            f"| {r['open_rss'] / MB:,.1f} ({r['open_peak'] / MB:,.1f}) "
            f"| {r['first_batch_s']:.3f} ({r['first_peak'] / MB:,.1f}) | {r['index_bytes']:,} "
            f"| {r['in_shard_bytes']:,} | {r['index_bytes'] / r['n']:.2f} |"
        )
    return "\n".join(lines)


def _progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench_open_peers.py", description=__doc__.split("\n")[0])
    p.add_argument("--n", type=lambda s: int(float(s)), default=10_000_000, help="samples")
    p.add_argument("--n-litdata", type=lambda s: int(float(s)), default=None, help="default --n")
    p.add_argument("--n-mds", type=lambda s: int(float(s)), default=None, help="default --n")
    p.add_argument("--per-shard", type=int, default=10_000, help="ours: samples a shard")
    p.add_argument("--loaders", default=",".join(LOADERS), help="of ours, litdata, mds")
    p.add_argument("--repeat", type=int, default=None, help="fresh children a loader (3)")
    p.add_argument("--workdir", type=Path, default=None, help="where the datasets go")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--keep", action="store_true", help="keep the datasets")
    p.add_argument("--smoke", action="store_true", help="N = 20k, one repeat")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--child"]:
        result = CHILDREN[argv[1]](json.loads(argv[2]))
        if len(argv) > 3:
            Path(argv[3]).write_text(json.dumps(result))
        return 0
    if argv[:1] == ["--report"]:  # the table of a saved run (benchmarks/results/open_peers.json)
        print(table(json.loads(Path(argv[1]).read_text())["rows"]))
        return 0
    args = _parser().parse_args(argv)
    args.loaders = [x.strip() for x in args.loaders.split(",")]
    args.repeat = args.repeat or (1 if args.smoke else 3)
    if not set(args.loaders) <= set(LOADERS) or args.repeat < 1 or args.n < BATCH:
        print(f"bench_open_peers.py: error: --loaders of {LOADERS}, --repeat >= 1, "
              f"--n >= {BATCH}", file=sys.stderr)  # fmt: skip
        return 2
    t0 = time.perf_counter()
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench_open_peers-", dir=args.workdir))
    try:
        rows, peers = run(args, work)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    machine: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "sched_cpus": len(os.sched_getaffinity(0)),
        "loadavg": os.getloadavg(),
        "torch_threads": 1,
        "python": sys.version.split()[0],
    }
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    result = {"config": config, "machine": machine, "peers": peers, "rows": rows,
              "workdir": str(work), "wall_s": time.perf_counter() - t0}  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"torch.set_num_threads(1); {machine['sched_cpus']} CPUs, load "
          f"{machine['loadavg'][0]:.2f}; median of {args.repeat} fresh process(es); warm page "
          f"cache\n")  # fmt: skip
    print(table(rows))
    print(f"\nwrote {args.out} ({result['wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
