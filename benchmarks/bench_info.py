"""What every benchmark's JSON carries: the run's provenance and the statistic of its rounds.

`run_info()`: git commit (and whether the tree had local changes), load average, CPUs,
platform, Python, numpy, torch threads. `rounds_summary(seconds)`: the median of the timed
rounds (the figure a table shows), their best, worst and spread, and every round.
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True,
                              timeout=30, check=True)  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip()


def run_info() -> dict[str, Any]:
    """Where and on what code a benchmark ran (call at its start and keep `loadavg` at its end)."""
    status = _git("status", "--porcelain", "--untracked-files=no")
    info: dict[str, Any] = {
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": None if status is None else bool(status),
        "loadavg": os.getloadavg(),
        "cpu_count": os.cpu_count(),
        "sched_cpus": len(os.sched_getaffinity(0)),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "numpy": np.__version__,
    }
    torch = sys.modules.get("torch")
    if torch is not None:
        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    return info


def rounds_summary(seconds: list[float]) -> dict[str, Any]:
    """The median of the timed rounds (the table's figure), best, worst, spread, every round."""
    if not seconds:
        raise ValueError("no timed rounds")
    med = statistics.median(seconds)
    return {"median_s": med, "best_s": min(seconds), "worst_s": max(seconds),
            "spread": (max(seconds) - min(seconds)) / med if med > 0 else 0.0,
            "rounds_s": list(seconds)}  # fmt: skip
