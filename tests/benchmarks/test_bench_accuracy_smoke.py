"""The accuracy benchmark still runs (--smoke: 2k samples, 2 epochs, 1 seed): two recipes in
two processes, SeTa and the DynamicRandom matched to its saving; in one process Full, SeTa,
Static matched to it and a policy that cannot be built, which does not stop the grid;
--resume trains nothing twice; --report and the plot read the JSON."""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path

import pytest

KEYS = {"seta", "random_seta"}
RECIPES = ("adam_const", "sgd_step")


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_smoke_grid_in_two_processes_resume_report_plot(script, tmp_path: Path, capsys) -> None:
    bench = script("benchmarks/bench_accuracy.py")
    out, jsonl = tmp_path / "accuracy.json", tmp_path / "accuracy.jsonl"
    argv = ["--smoke", "--workdir", str(tmp_path / "work"), "--out", str(out), "--jobs", "2",
            "--recipes", ",".join(RECIPES), "--policies", ",".join(sorted(KEYS))]  # fmt: skip
    assert bench.main(argv) == 0
    data = json.loads(out.read_text())
    grid = data["grid"]
    assert (grid["sizes"], grid["epochs"], grid["seeds"]) == ([2000], 2, 1)
    assert data["machine"]["torch_threads_per_run"] == 1
    assert data["machine"]["cpu_count"] >= 1 and len(data["machine"]["loadavg_end"]) == 3
    budget = 2000 * grid["epochs"]
    assert len(data["runs"]) == len(KEYS) * len(RECIPES) == len(_lines(jsonl))
    for recipe in RECIPES:
        runs = {r["policy"]: r for r in data["runs"] if r["recipe"] == recipe}
        assert set(runs) == KEYS
        for r in runs.values():
            assert r["status"] == "ok" and 0.0 <= r["accuracy"] <= 1.0
            assert abs(r["saved"] - (1 - r["forwarded"] / budget)) < 1e-12
            kept = [row["kept"] for row in r["curriculum"]]
            assert abs(sum(kept) * 2000 - r["forwarded"]) < 1e-6  # the loss table agrees
        # the paper recipe at 2 epochs: 90% in the clustered epoch 0 and in the annealing one
        assert runs["seta"]["forwarded"] == int(0.9 * 2000) * 2
        # matched to SeTa's saving; DynamicRandom prunes in 1 of the 2 epochs
        ratio = runs["random_seta"]["params"]["prune_ratio"]
        assert math.isclose(ratio, 2 * runs["seta"]["saved"])
        assert abs(runs["random_seta"]["saved"] - runs["seta"]["saved"]) < 1e-3
    groups = {g["recipe"]: g for g in data["groups"]}
    assert set(groups) == set(RECIPES)
    seta = next(r for r in groups["sgd_step"]["rows"] if r["policy"] == "seta")
    assert seta["vs_random"]["exceeds"] is None  # one seed: no spread to compare against
    assert seta["vs_full"] is None and groups["sgd_step"]["verdict"] == {}  # no Full here
    printed = capsys.readouterr().out
    assert "### sgd_step (lr 0.05), 2,000 train" in printed
    assert "| DynamicRandom (SeTa's saving) |" in printed
    progress = re.findall(r"^\[\d/4\] \S+: acc .* ETA ", printed, re.M)
    assert len(progress) == len(data["runs"])  # a line per finished run

    # --resume: everything is in the JSONL, nothing is trained again
    assert bench.main([*argv, "--resume"]) == 0
    assert len(_lines(jsonl)) == len(data["runs"])
    assert f"{len(data['runs'])} already in" in capsys.readouterr().out
    # --report prints the same tables from the JSON alone
    assert bench.main(["--report", str(out)]) == 0
    report = capsys.readouterr().out
    assert "### adam_const (lr 0.003)" in report and "Target met" in report

    png = tmp_path / "accuracy.png"
    assert script("benchmarks/plot_accuracy.py").main(["--json", str(out), "--out", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_one_process_full_static_and_a_policy_that_fails(script, tmp_path: Path, capsys) -> None:
    bench = script("benchmarks/bench_accuracy.py")
    bench.REPB = {"name": "no_such_policy", "prune_ratio": 0.3}  # what an old package meets
    out = tmp_path / "a.json"
    argv = ["--smoke", "--workdir", str(tmp_path / "work"), "--out", str(out), "--recipes",
            "adamw_cosine", "--policies", "full,seta,static_seta,repb,random_repb"]  # fmt: skip
    assert bench.main(argv) == 0
    data = json.loads(out.read_text())
    runs = {r["policy"]: r for r in data["runs"]}
    assert runs["full"]["status"] == "ok" and runs["full"]["forwarded"] == 2000 * 2
    assert runs["static_seta"]["params"]["prune_ratio"] == runs["seta"]["saved"]
    assert abs(runs["static_seta"]["saved"] - runs["seta"]["saved"]) < 1e-3
    (group,) = data["groups"]
    assert set(group["verdict"]) == {"seta"}  # the failed RePB has no row
    assert group["verdict"]["seta"]["saves_30pct"] is False  # 10% at 2 epochs
    assert runs["repb"]["status"] == "failed"
    assert "unknown policy name 'no_such_policy'" in runs["repb"]["error"]
    assert runs["random_repb"]["error"].startswith("its source run 'repb' failed")
    assert "2 failed run(s)" in capsys.readouterr().out


def test_recipes_matched_ratios_and_grid_checks(script) -> None:
    bench = script("benchmarks/bench_accuracy.py")
    demo = script("tools/demo.py")
    # sgd_step: x0.1 at 50% and 75% of the epochs; cosine over progress; Adam constant
    assert [demo.lr_at("sgd_step", 0.1, e, 0.0, 8) for e in (0, 3, 4, 5, 6, 7)] == pytest.approx(
        [0.1, 0.1, 0.01, 0.01, 0.001, 0.001]
    )
    assert demo.lr_at("adamw_cosine", 0.01, 4, 0.5, 8) == pytest.approx(0.005)
    assert demo.lr_at("adam_const", 0.003, 7, 0.99, 8) == 0.003
    # 16 epochs: 14 prune (annealing from epoch 14); DynamicRandom's ratio grows by 16/14
    assert bench.matched_ratio("static_seta", 0.4, 16) == 0.4
    assert bench.matched_ratio("random_infobatch", 0.35, 16) == pytest.approx(0.4)
    assert bench.matched_ratio("random_seta", 0.85, 16) == bench.MAX_PRUNE
    with pytest.raises(ValueError, match="matched to 'seta': list it too"):
        bench.Grid(policies=("full", "random_seta"))
    with pytest.raises(ValueError, match="recipes="):
        bench.Grid(recipes=("rmsprop",))
    grid = bench.Grid(seeds=1, recipes=("sgd_step",))
    order = [t.policy for t in grid.tasks()]
    assert order.index("full") > max(order.index(k) for k in ("seta", "infobatch", "repb"))
    assert order.index("random_seta") > order.index("full")
    # the runner starts the longest chains first: RePB (then its baseline), ..., Full, and a
    # baseline only once its source is done
    runner = bench.Runner(grid, {}, "unused.jsonl", 2)
    todo = grid.tasks()
    first = [runner._next_ready(todo, block=False).policy for _ in range(5)]
    assert first == ["repb", "seta_target", "infobatch", "seta", "full"]
    assert runner._next_ready(todo, block=False) is None  # the baselines wait
    seta = next(t for t in grid.tasks() if t.policy == "seta")
    runner.runs[seta] = {"status": "ok", "saved": 0.4}
    assert {runner._next_ready(todo, block=False).policy for _ in range(2)} == {
        "random_seta",
        "static_seta",
    }


def test_mnist1d_generates_without_matplotlib(script, monkeypatch) -> None:
    """The offline benchmark machine has no matplotlib; mnist1d imports it but never plots."""
    bench = script("benchmarks/bench_accuracy.py")
    for name in [m for m in sys.modules if m.split(".")[0] == "mnist1d"]:
        monkeypatch.delitem(sys.modules, name)
    for name in ("matplotlib", "matplotlib.pyplot"):
        monkeypatch.setitem(sys.modules, name, None)  # `import matplotlib` fails
    bench._import_mnist1d()
    data = sys.modules["mnist1d.data"]
    args = data.get_dataset_args()
    args.num_samples, args.train_split = 50, 0.8
    assert data.make_dataset(args)["x"].shape == (40, 40)
    assert not hasattr(sys.modules["mnist1d.utils"].plt, "plot")  # it got the placeholder
    assert sys.modules["matplotlib"] is None  # which is gone again
