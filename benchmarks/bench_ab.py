#!/usr/bin/env python
"""A/B of the hot paths against an earlier commit: contestants alternate in one run.

    python benchmarks/bench_ab.py --old d38dea4 [--samples 50000] [--rounds 5]
        [--out benchmarks/results/ab.json]

`--old` is checked out in a temporary git worktree; each side converts the same `.npz` (50k
samples of 40 float32 + a label, shards of 10k) with its own `convert` (the old one writes its
own index layout, the new one per-shard index files), then rounds alternate old/new, each a
fresh child process (`torch.set_num_threads(1)`) that measures:

- `read`: a raw epoch (`SeTaStream(policy=Full(), losses=None, decode=None)` through
  `DataLoader(batch_size=256, num_workers=0)`), best of 3 epochs, µs a sample;
- `update`: `SeTaStream.update()` of every sample, 20 passes, in batches of 256 ids (shuffled)
  + `flush`, µs an update, on a new loss table.

Prints medians and spreads (min–max over rounds) and the new/old ratio of medians; writes JSON.
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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

CHILD = r"""
import json, sys, time
import numpy as np, torch
torch.set_num_threads(1)
from seta_stream import Full, SeTaStream
root, losses, kind = sys.argv[1], sys.argv[2], sys.argv[3]
if kind == "read":
    best = float("inf")
    with SeTaStream(root, policy=Full(), losses=None, decode=None) as s:
        s.set_epoch(0)
        for _ in range(3):
            loader = torch.utils.data.DataLoader(s, batch_size=256, num_workers=0,
                                                 collate_fn=lambda b: b)
            t = time.perf_counter(); n = sum(len(b) for b in loader)
            best = min(best, (time.perf_counter() - t) / n)
    print(json.dumps({"us": best * 1e6, "n": n}))
else:
    with SeTaStream(root, policy=Full(), losses=losses) as s:
        s.set_epoch(0)
        n = s.dataset.num_samples
        ids = np.random.default_rng(0).permutation(n)
        v = np.random.default_rng(1).random(n).astype(np.float32)
        t = time.perf_counter()
        for _ in range(20):  # 20 passes: a million updates at 50k samples
            for a in range(0, n, 256):
                s.update(ids[a : a + 256], v[a : a + 256])
        s.table.flush()
        us = (time.perf_counter() - t) / (20 * n) * 1e6
    print(json.dumps({"us": us, "n": n}))
"""

CONVERT = r"""
import sys
from seta_stream.shards import ConvertOptions, convert
from seta_stream.shards.sources import NpzSource
convert(NpzSource(sys.argv[1]), sys.argv[2], ConvertOptions(samples_per_shard=10_000,
                                                           progress=False))
"""


def _run(code_root: Path, script: str, *args: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(code_root), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", script, *args], env=env, cwd=code_root,
                         check=True, capture_output=True, text=True, timeout=1800)  # fmt: skip
    return out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--old", required=True, help="the earlier commit")
    p.add_argument("--samples", type=int, default=50_000)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--out", default=str(HERE / "out" / "ab.json"))
    args = p.parse_args(argv)
    import numpy as np

    work = Path(tempfile.mkdtemp(prefix="bench_ab-"))
    old_tree = work / "old"
    try:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(old_tree),
                        args.old], check=True, capture_output=True)  # fmt: skip
        rng = np.random.default_rng(0)
        npz = work / "src.npz"
        np.savez(npz, x=rng.standard_normal((args.samples, 40)).astype(np.float32),
                 y=rng.integers(0, 10, args.samples))  # fmt: skip
        sides = {"old": old_tree, "new": ROOT}
        for name, tree in sides.items():
            _run(tree, CONVERT, str(npz), str(work / f"ds-{name}"))
        rows: dict[str, dict[str, list[float]]] = {k: {"old": [], "new": []} for k in
                                                    ("read", "update")}  # fmt: skip
        for r in range(args.rounds):
            for kind in rows:
                for name in ("old", "new") if r % 2 == 0 else ("new", "old"):  # alternate
                    losses = work / f"losses-{name}-{kind}-{r}"
                    got = json.loads(_run(sides[name], CHILD, str(work / f"ds-{name}"),
                                          str(losses), kind))  # fmt: skip
                    rows[kind][name].append(got["us"])
                    shutil.rmtree(losses, ignore_errors=True)
                    print(f"round {r} {kind} {name}: {got['us']:.2f} us/sample", file=sys.stderr)
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(old_tree)],
                       capture_output=True)  # fmt: skip
        shutil.rmtree(work, ignore_errors=True)
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True).stdout.strip()  # fmt: skip
    result = {"old": args.old, "new": head, "samples": args.samples, "rounds": args.rounds,
              "loadavg": os.getloadavg(), "us_per_sample": rows}  # fmt: skip
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(report(result))
    return 0


def report(result: dict[str, Any]) -> str:
    """The Markdown table of a saved run (`--report`)."""
    lines = [
        f"| path (µs a sample) | old {result['old']} median (min–max) | "
        f"new {result['new']} median (min–max) | new / old |",
        "|---|--:|--:|--:|",
    ]
    for kind, sides in result["us_per_sample"].items():
        med = {k: statistics.median(v) for k, v in sides.items()}
        cells = [f"{med[k]:.2f} ({min(v):.2f}–{max(v):.2f})" for k, v in sides.items()]
        lines.append(f"| {kind} | {cells[0]} | {cells[1]} | {med['new'] / med['old']:.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--report"]:
        print(report(json.loads(Path(sys.argv[2]).read_text())))
        sys.exit(0)
    sys.exit(main())
