"""How fast is each selection policy, and how much memory does it take, at 1M-100M samples?

Every policy's `select` on the same skewed (lognormal) float32 scores, beside one `np.argsort` of
that array (the yardstick of the budget: SeTa within ~3x) and beside scikit-learn's
`KMeans(n_clusters=k)` on the same 1-D scores (the reference implementation's approach; 1M only
by default, it is slow; imported before any timing). Every contestant alike: `--warmup` untimed
runs, then `--repeat` timed runs without tracing; the figure is their median (best, worst and
every run in the JSON); peak memory is the tracemalloc peak of one further run (numpy reports
its buffers to tracemalloc; scikit-learn's C-level scratch memory is not seen). The JSON also
carries the git commit, the load average at start and end, and the machine.

    python benchmarks/bench_select.py                      # 1M and 10M
    python benchmarks/bench_select.py --sizes 1e6 1e7 1e8  # and 100M
    python benchmarks/bench_select.py --smoke              # 10k, a few seconds

Prints a table and writes JSON (`--out`, default benchmarks/out/select.json).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time
import tracemalloc
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_info import rounds_summary, run_info

from seta_stream.policies import (
    DynamicRandom,
    Full,
    InfoBatch,
    Policy,
    SeTa,
    Static,
)
from seta_stream.policies.kmeans1d import inertia, kmeans1d_sorted

K = 10
EPOCH = 3  # a pruning epoch after the first (clustering and a moving window)


def _policies() -> dict[str, Policy]:
    return {
        "seta": SeTa(epochs=100, num_groups=K, window=0.5),
        "seta_r0.3": SeTa(epochs=100, prune_ratio=0.3, num_groups=K, window=0.5),
        "seta_target0.6": SeTa(epochs=100, num_groups=K, target_keep=0.6),
        "infobatch": InfoBatch(epochs=100, prune_ratio=0.5),
        "dynamic_random": DynamicRandom(epochs=100, prune_ratio=0.5),
        "static": Static(prune_ratio=0.5),
        "full": Full(),
    }


def _measure(fn: Callable[[], Any], repeat: int, warmup: int) -> tuple[dict[str, Any], int, Any]:
    """(the timed runs' summary: median, best, every run; tracemalloc peak bytes of one more
    run; its result), after `warmup` untimed runs."""
    for _ in range(warmup):
        fn()
    seconds = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - t0)
    tracemalloc.start()
    try:
        result = fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return rounds_summary(seconds), peak, result


def _sklearn_kmeans(kmeans: Any, scores: np.ndarray) -> float:
    km = kmeans(n_clusters=K, random_state=0).fit(scores.reshape(-1, 1))
    return float(km.inertia_)


def bench_size(n: int, *, repeat: int, warmup: int, sklearn_max: int,
               seed: int) -> list[dict[str, Any]]:  # fmt: skip
    scores = np.random.default_rng(seed).lognormal(size=n).astype(np.float32)
    rows: list[dict[str, Any]] = []
    runs = functools.partial(_measure, repeat=repeat, warmup=warmup)

    def row(name: str, timed: dict[str, Any], peak: int, **extra: Any) -> None:
        rows.append({"n": n, "name": name, "seconds": timed["median_s"], **timed,
                     "peak_bytes": peak, **extra})  # fmt: skip

    timed, peak, _ = runs(lambda: np.argsort(scores))
    argsort_s = timed["median_s"]
    row("np.argsort", timed, peak)
    for name, policy in _policies().items():
        timed, peak, sel = runs(functools.partial(policy.select, scores, EPOCH, seed=seed))
        row(name, timed, peak, kept_fraction=sel.info["kept_fraction"])
    # k-means alone: sort + our 1-D k-means (inertia computed outside the timing)
    sorted_scores = np.sort(scores)
    timed, peak, part = runs(lambda: kmeans1d_sorted(np.sort(scores), K))
    row("kmeans1d (ours)", timed, peak, inertia=inertia(sorted_scores, part.bounds))
    if n <= sklearn_max:
        from sklearn.cluster import KMeans  # the reference's approach; outside every timing

        timed, peak, sk_inertia = runs(lambda: _sklearn_kmeans(KMeans, scores))
        row("sklearn KMeans", timed, peak, inertia=sk_inertia)
    for r in rows:
        r["x_argsort"] = r["seconds"] / argsort_s
        r["peak_x_scores"] = r["peak_bytes"] / scores.nbytes
    return rows


def _table(rows: list[dict[str, Any]]) -> str:
    head = f"{'N':>11} {'what':<16} {'seconds':>9} {'x argsort':>9} {'peak MiB':>9} "
    head += f"{'x scores':>8} {'kept':>6} {'inertia':>14}"
    lines = [head, "-" * len(head)]
    for r in rows:
        kept = f"{r['kept_fraction']:.3f}" if "kept_fraction" in r else ""
        iner = f"{r['inertia']:.6g}" if "inertia" in r else ""
        lines.append(
            f"{r['n']:>11,} {r['name']:<16} {r['seconds']:>9.3f} {r['x_argsort']:>9.2f} "
            f"{r['peak_bytes'] / 2**20:>9.1f} {r['peak_x_scores']:>8.2f} {kept:>6} {iner:>14}"
        )
    return "\n".join(lines)


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", type=float, nargs="+", default=[1e6, 1e7], help="numbers of samples"
    )
    parser.add_argument("--smoke", action="store_true", help="10k samples only, a few seconds")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/select.json"))
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per case (median)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs per case first")
    parser.add_argument(
        "--sklearn-max", type=float, default=1e6, help="largest N for scikit-learn KMeans"
    )
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    sizes = [10_000] if args.smoke else [int(s) for s in args.sizes]
    repeat = 1 if args.smoke else max(1, args.repeat)
    warmup = 0 if args.smoke else max(0, args.warmup)
    info = run_info()
    rows: list[dict[str, Any]] = []
    for n in sizes:
        rows += bench_size(n, repeat=repeat, warmup=warmup, sklearn_max=int(args.sklearn_max),
                           seed=args.seed)  # fmt: skip
        print(_table([r for r in rows if r["n"] == n]), flush=True)
    result = {
        "benchmark": "select",
        "version": 1,
        "k": K,
        "epoch": EPOCH,
        "scores": "lognormal(0, 1) float32",
        "repeat": repeat,
        "warmup": warmup,
        "statistic": f"median of {repeat} timed run(s) after {warmup} warm-up(s), every contestant",
        "machine": {**info, "loadavg_end": os.getloadavg()},
        "sizes": sizes,
        "results": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(args.out.suffix + ".tmp")
    tmp.write_text(json.dumps(result, indent=2))
    tmp.replace(args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
