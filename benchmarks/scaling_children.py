#!/usr/bin/env python
"""The child processes of bench_scaling.py: each measurement in a fresh interpreter.

    python benchmarks/scaling_children.py KIND PARAMS_JSON RESULT_JSON

`in_child(kind, params)` runs `CHILDREN[kind](params)` in a new process and returns its JSON
result, so every figure (peak RSS above all) is that run's alone: `convert` (shards from an
npz), `read` (open, a Full epoch, a SeTa epoch), `select` (SeTa on N scores) and `longrun`
(E epochs of SeTa + loss table, figures after each). Memory figures come from /proc:
RSS/RssAnon/RssFile (`status`), USS = private clean + dirty and PSS (`smaps_rollup`), and the
peak from `getrusage`.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

BATCH = 256
SETA_EPOCHS = 100  # the scaling SeTa epoch (1) is far from annealing


# ---------------------------------------------------------------- process figures


def proc_mem(pid: int | str = "self") -> dict[str, int]:
    """Bytes: rss, rss_anon, rss_file (/proc/PID/status) and uss, pss (smaps_rollup)."""
    out: dict[str, int] = {}
    names = {"VmRSS": "rss", "RssAnon": "rss_anon", "RssFile": "rss_file", "VmHWM": "hwm"}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in names:
                out[names[key]] = int(value.split()[0]) * 1024
    rollup = {"Pss": 0, "Private_Clean": 0, "Private_Dirty": 0}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in rollup:
                rollup[key] = int(value.split()[0]) * 1024
    out["pss"], out["uss"] = rollup["Pss"], rollup["Private_Clean"] + rollup["Private_Dirty"]
    return out


def children(pid: int | None = None) -> list[int]:
    pid = pid or os.getpid()
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(c) for c in f.read().split()]


def open_fds(pid: int | str = "self") -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def folder_bytes(path: str | Path) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


# ---------------------------------------------------------------- children


def child_convert(p: dict[str, Any]) -> dict[str, Any]:
    """Write the npz (untimed), convert it to tar shards (timed); the npz is then deleted."""
    from bench_convert import make_npz

    from seta_stream.shards import ConvertOptions, Dataset, convert
    from seta_stream.shards.sources import NpzSource

    ds = Path(p["dataset"])
    ds.parent.mkdir(parents=True, exist_ok=True)
    npz, x, y = make_npz(ds.parent, p["n"], p["seed"])
    del x, y
    opts = ConvertOptions(samples_per_shard=p["per_shard"], progress=False)
    t0 = time.perf_counter()
    convert(NpzSource(str(npz)), ds, opts)
    seconds = time.perf_counter() - t0
    npz.unlink()
    with closing(Dataset.open(str(ds))) as d:
        shard_bytes = d.manifest.total_bytes
    return {
        "convert_s": seconds,
        "shard_bytes": shard_bytes,
        "index_bytes": folder_bytes(ds / "index"),  # the per-shard index files
        "meta_bytes": folder_bytes(ds) - shard_bytes,
        "convert_peak_rss": peak_rss(),
    }


def _timed_epoch(stream: Any, epoch: int) -> dict[str, Any]:
    """set_epoch(epoch), then one pass through a 0-worker DataLoader: times and samples."""
    from bench_stream import _drain
    from torch.utils.data import DataLoader

    t0 = time.perf_counter()
    stream.set_epoch(epoch)
    t1, c1 = time.perf_counter(), time.process_time()
    n = _drain(DataLoader(stream, batch_size=BATCH, num_workers=0))
    t2, c2 = time.perf_counter(), time.process_time()
    return {
        "set_epoch_s": t1 - t0,
        "epoch_s": t2 - t1,
        "epoch_cpu_s": c2 - c1,  # steadier than wall time on a shared machine
        "samples": n,
        "samples_per_s": n / (t2 - t1),
    }


def child_read(p: dict[str, Any]) -> dict[str, Any]:
    """Open, one Full epoch, then a SeTa epoch at keep ~0.5 over uniform random losses."""
    import torch

    from seta_stream import Full, SeTa, SeTaStream

    torch.set_num_threads(1)
    ds, work, n = p["dataset"], Path(p["work"]), p["n"]
    mem = {"baseline": proc_mem()}
    t0 = time.perf_counter()
    stream = SeTaStream(ds, policy=Full(), losses=None, seed=p["seed"], workdir=str(work))
    out: dict[str, Any] = {"open_s": time.perf_counter() - t0}
    mem["after_open"] = proc_mem()
    out["full"] = _timed_epoch(stream, 0)
    mem["after_full_epoch"] = proc_mem()
    stream.close()
    policy = SeTa(epochs=SETA_EPOCHS, num_groups=10, window=0.5)
    losses = work / "losses"
    with SeTaStream(ds, policy=policy, losses=losses, seed=p["seed"], workdir=str(work)) as s:
        s.set_epoch(0)
        t0 = time.perf_counter()
        rng = np.random.default_rng(p["seed"])
        for start in range(0, n, 4096):
            ids = np.arange(start, min(start + 4096, n))
            s.update(ids, rng.uniform(0.1, 2.0, len(ids)).astype(np.float32))
        assert s.table is not None
        s.table.flush()
        update_s = time.perf_counter() - t0
        out["seta"] = {**_timed_epoch(s, 1), "update_all_s": update_s}
        out["seta"]["kept_fraction"] = out["seta"]["samples"] / n
        mem["after_seta_epoch"] = proc_mem()
    out["seta"]["loss_table_bytes"] = folder_bytes(losses)
    return {**out, "mem": mem, "peak_rss": peak_rss()}


def _scores(n: int, seed: int) -> np.ndarray:
    """lognormal(0, 1) float32, made in 1M chunks so that the peak is the array's own."""
    rng, out = np.random.default_rng(seed), np.empty(n, np.float32)
    for i in range(0, n, 1 << 20):
        out[i : i + (1 << 20)] = rng.lognormal(size=min(1 << 20, n - i))
    return out


def child_select(p: dict[str, Any]) -> dict[str, Any]:
    """SeTa's select on N scores: bench_select's policy, epoch and `_measure`. The RSS peak
    counts the scores themselves (made after `before`); tracemalloc's does not."""
    import bench_select

    before = proc_mem()["rss"]
    scores = _scores(p["n"], p["seed"])
    policy = bench_select._policies()["seta"]
    timed, peak, sel = bench_select._measure(
        lambda: policy.select(scores, bench_select.EPOCH, seed=p["seed"]),
        p["repeat"],
        p.get("warmup", 0),
    )
    rss_peak = peak_rss() - before
    return {
        "n": p["n"],
        "seconds": timed["median_s"],  # the median of the timed runs, as bench_select's
        "seconds_all": timed["rounds_s"],
        "tracemalloc_peak": peak,
        "peak_x_scores": peak / scores.nbytes,
        "rss_peak_above_start": rss_peak,
        "rss_peak_x_scores": rss_peak / scores.nbytes,
        "kept_fraction": float(sel.info["kept_fraction"]),
    }


def _epoch_probe(loss_dir: Path) -> dict[str, Any]:
    kids = children()
    kid_mem = [proc_mem(k) for k in kids]
    return {
        **proc_mem(),
        "fds": open_fds(),
        "workers": len(kids),
        "workers_rss": sum(m["rss"] for m in kid_mem),
        "workers_uss": sum(m["uss"] for m in kid_mem),
        "workers_fds": sum(open_fds(k) for k in kids),
        "loss_table_bytes": folder_bytes(loss_dir),
    }


def child_longrun(p: dict[str, Any]) -> dict[str, Any]:
    """E epochs of SeTa + loss table, random losses fed per batch; figures after each epoch."""
    import torch
    from torch.utils.data import DataLoader

    from seta_stream import SeTa, SeTaStream

    torch.set_num_threads(1)
    w, work = p["workers"], Path(p["work"])
    losses = work / f"losses-w{w}"
    rng = np.random.default_rng(p["seed"])
    difficulty = rng.lognormal(size=p["n"]).astype(np.float32)
    epochs: list[dict[str, Any]] = []
    policy = SeTa(epochs=p["epochs"], num_groups=10, window=0.5)
    with SeTaStream(
        p["dataset"], policy=policy, losses=losses, seed=p["seed"], workdir=str(work)
    ) as stream:
        loader = DataLoader(stream, batch_size=BATCH, num_workers=w, persistent_workers=w > 0)
        for e in range(p["epochs"]):
            t0, n = time.perf_counter(), 0
            stream.set_epoch(e)
            for batch in loader:
                ids = batch["__index__"].numpy()
                stream.update(ids, difficulty[ids] * rng.uniform(0.5, 1.5, len(ids)))
                n += len(ids)
            epochs.append(
                {
                    "epoch": e,
                    "samples": n,
                    "epoch_s": time.perf_counter() - t0,
                    **_epoch_probe(losses),
                }
            )
            print(f"  W={w} epoch {e + 1}/{p['epochs']}: {n} samples", file=sys.stderr)
        del loader  # the last reference: persistent workers shut down here
    return {
        "workers": w,
        "epochs": epochs,
        "after_close": {**proc_mem(), "fds": open_fds()},
        "loss_table_bytes": folder_bytes(losses),
        "peak_rss": peak_rss(),
    }


CHILDREN = {
    "convert": child_convert,
    "read": child_read,
    "select": child_select,
    "longrun": child_longrun,
}


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def in_child(kind: str, params: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
    """Run `CHILDREN[kind](params)` in a fresh interpreter; return its JSON result."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        result = Path(f.name)
    try:
        cmd = [sys.executable, str(Path(__file__).resolve()), kind, json.dumps(params), str(result)]
        t0, c0 = time.perf_counter(), _children_cpu()
        rc = subprocess.run(cmd, timeout=timeout).returncode
        wall, cpu = time.perf_counter() - t0, _children_cpu() - c0
        print(f"  [{kind} child: {wall:.1f} s, {cpu:.1f} CPU s]", file=sys.stderr)
        text = result.read_text()
        if not text:  # the child failed before its result was written
            raise subprocess.CalledProcessError(rc, cmd[:4])
        if rc != 0:  # see main(): the result is complete; only the exit was not clean
            print(
                f"bench_scaling: child {kind} exited with {rc} after writing its result",
                file=sys.stderr,
            )
        return {**json.loads(text), "child_exit_code": rc}
    finally:
        result.unlink(missing_ok=True)


def main(argv: list[str]) -> int:
    kind, params, result = argv
    # Renamed into place once complete: in_child() takes a written result even if the
    # interpreter then dies at exit (pyarrow 26 can abort at shutdown when one of its pool
    # threads drops a Python-backed buffer of `pq.read_table(pa.BufferReader(...))`).
    tmp = Path(result + ".tmp")
    tmp.write_text(json.dumps(CHILDREN[kind](json.loads(params))))
    tmp.replace(result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
