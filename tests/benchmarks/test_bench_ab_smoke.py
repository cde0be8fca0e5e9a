"""The A/B benchmark runs against a commit in a temporary worktree and leaves none behind."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _worktrees() -> list[str]:
    out = subprocess.run(["git", "-C", str(ROOT), "worktree", "list", "--porcelain"],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    return [line for line in out.splitlines() if line.startswith("worktree ")]


def test_smoke_run_alternates_and_reports(script, tmp_path: Path, capsys) -> None:
    bench = script("benchmarks/bench_ab.py")
    before = _worktrees()
    out = tmp_path / "ab.json"
    argv = ["--old", "HEAD", "--samples", "2000", "--rounds", "2", "--out", str(out)]
    assert bench.main(argv) == 0
    data = json.loads(out.read_text())
    for kind in ("read", "update"):
        sides = data["us_per_sample"][kind]
        assert len(sides["old"]) == len(sides["new"]) == 2
        assert all(v > 0 for v in sides["old"] + sides["new"])
    assert _worktrees() == before  # the old side's worktree is removed
    table = bench.report(data)
    assert "| read |" in table and "| update |" in table
