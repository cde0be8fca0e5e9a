#!/usr/bin/env python
"""Accuracy against cost: every selection policy trains the demo's CNN on MNIST-1D, per recipe.

    python benchmarks/bench_accuracy.py [--sizes 50000[,24000]] [--test 10000] [--epochs 16]
        [--seeds 4] [--recipes adamw_cosine,adam_const,sgd_step] [--policies KEY,...]
        [--jobs N] [--resume] [--jsonl RUNS.jsonl] [--out benchmarks/results/accuracy.json]
        [--workdir benchmarks/out/accuracy-data] [--smoke]
    python benchmarks/bench_accuracy.py --report benchmarks/results/accuracy.json

Reuses tools/demo.py: MNIST-1D from the `mnist1d` package (generated once per train size,
cached with its shards in `--workdir`/n<size>), tar shards with per-member zstd, the MNIST-1D
paper's small 1-D CNN, the demo's training loop (batch 128, DataLoader with 0 workers), one
torch thread per run. Recipes (`RECIPE_LR`; demo.make_optimizer / demo.lr_at):

- adamw_cosine: AdamW lr 0.01, weight decay 1e-4, per-step cosine over the pruned epochs'
  lengths (the demo's);
- adam_const: Adam lr 0.003, constant;
- sgd_step: SGD lr 0.05, momentum 0.9, weight decay 5e-4, ×0.1 at 50% and at 75% of the
  epochs.

Policies (`POLICIES`): Full; SeTa with the paper's CIFAR recipe (prune_ratio 0.1, 5 groups,
window 0.9); SeTa with `target_keep=0.6`; InfoBatch (prune_ratio 0.5); RePB (built by
`policy_from_dict(REPB | {"epochs": E})`: edit `REPB` to change it; if the installed package
does not know it, its runs are recorded as failed and the grid goes on); DynamicRandom at the
saving each pruned policy measured on the same recipe, size and seed; Static at SeTa's. Equal
saving: Static prunes r every epoch, so r = s; DynamicRandom uses all samples in its
annealing epochs, so r = s · E / pruning epochs. A seed fixes the model initialisation and the
policy's randomness.

`--jobs N` trains N runs at once in N worker processes (fresh Pythons, one torch and one
polars thread each); a matched baseline starts once the run it is matched to has finished. Every
finished run is appended to the JSONL at once (a killed grid keeps what it finished);
`--resume` skips the runs already there. At the end one JSON (grid, machine, every run,
summaries, verdicts) is written to `--out` and the tables printed; `--report FILE.json`
prints them again without running anything (accuracy_report.py).
`python benchmarks/plot_accuracy.py` draws the JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tools"), str(ROOT / "benchmarks")]

import accuracy_report as report  # noqa: E402  # benchmarks/accuracy_report.py: tables
import demo  # noqa: E402  # tools/demo.py: data, model, training loop
import inspect_losses  # noqa: E402  # tools/inspect_losses.py: per-epoch curriculum
import torch  # noqa: E402

from seta_stream import DynamicRandom, Full, InfoBatch, Policy, SeTa, Static  # noqa: E402
from seta_stream.policies import policy_from_dict  # noqa: E402
from seta_stream.policies.base import is_annealing  # noqa: E402

RECIPE_LR = {"adamw_cosine": 0.01, "adam_const": 0.003, "sgd_step": 0.05}
SETA_RECIPE: dict[str, Any] = {"prune_ratio": 0.1, "num_groups": 5, "window": 0.9}
TARGET_KEEP = 0.6
INFOBATCH_RATIO = 0.5
# + epochs; 0.4 x (13 pruning epochs of 16) ~ 32.5% of samples saved, the issue's >= 30%
REPB: dict[str, Any] = {"name": "repb", "prune_ratio": 0.4}
MAX_PRUNE = 0.9  # keep is floored at 0.1 by every policy
# the share of N·E a policy forwards at 16 epochs, roughly: only to order the runs
KEEP_GUESS = {"full": 1.0, "seta": 0.56, "seta_target": 0.65, "infobatch": 0.65, "repb": 0.7}
# key -> the pruned policy whose measured saving it is matched to (None: independent)
POLICIES: dict[str, str | None] = {
    "full": None,
    "seta": None,
    "seta_target": None,
    "infobatch": None,
    "repb": None,
    "random_seta": "seta",
    "random_seta_target": "seta_target",
    "random_infobatch": "infobatch",
    "random_repb": "repb",
    "static_seta": "seta",
}


@dataclass(frozen=True, kw_only=True)
class Grid:
    """What every run shares, and what varies: recipes × sizes × seeds × policies."""

    sizes: tuple[int, ...] = (50_000,)
    test: int = 10_000
    epochs: int = 16
    batch_size: int = 128
    seeds: int = 4
    recipes: tuple[str, ...] = demo.RECIPES
    policies: tuple[str, ...] = tuple(POLICIES)
    data_seed: int = 0
    workdir: str = "benchmarks/out/accuracy-data"
    lr: dict[str, float] = field(default_factory=lambda: dict(RECIPE_LR))

    def __post_init__(self) -> None:
        for name in ("test", "epochs", "batch_size", "seeds"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r}: must be an int >= 1")
        if not self.sizes or any(n < 1 for n in self.sizes):
            raise ValueError(f"sizes={self.sizes!r}: must be one or more ints >= 1")
        for name, given, known in (
            ("recipes", self.recipes, demo.RECIPES),
            ("policies", self.policies, tuple(POLICIES)),
        ):
            bad = [g for g in given if g not in known]
            if bad or not given:
                raise ValueError(f"{name}={list(given)!r}: choose from {list(known)}")
        for key in self.policies:
            source = POLICIES[key]
            if source is not None and source not in self.policies:
                raise ValueError(f"policy {key!r} is matched to {source!r}: list it too")
        if self.data_seed < 0:
            raise ValueError(f"data_seed={self.data_seed!r}: must be >= 0")

    def tasks(self) -> list[Task]:
        """Every run; within a (recipe, size, seed) the pruned policies come before Full."""
        order = sorted(self.policies, key=lambda k: (POLICIES[k] is not None, k == "full"))
        return [
            Task(recipe=r, train=n, seed=s, policy=k)
            for n in self.sizes
            for s in range(self.seeds)
            for r in self.recipes
            for k in order
        ]


@dataclass(frozen=True, kw_only=True)
class Task:
    recipe: str
    train: int
    seed: int
    policy: str

    @property
    def name(self) -> str:
        return f"{self.recipe}-n{self.train}-{self.policy}-s{self.seed}"

    def source(self) -> Task | None:
        """The run whose saving this one is matched to."""
        src = POLICIES[self.policy]
        return None if src is None else Task(**{**asdict(self), "policy": src})


@dataclass(frozen=True, kw_only=True)
class Data:
    train: str  # shard folder
    test: str


def _import_mnist1d() -> None:
    """Import mnist1d. Its package imports matplotlib.pyplot for a plotting helper only; where
    matplotlib is not installed (the offline benchmark machine: 17 MiB of wheels saved) an
    empty placeholder stands in during the import: data generation never plots."""
    try:
        import mnist1d.data
    except ModuleNotFoundError as e:
        if e.name not in ("matplotlib", "matplotlib.pyplot"):
            raise
        import types

        names = ("matplotlib", "matplotlib.pyplot")
        before = {m: sys.modules[m] for m in names if m in sys.modules}
        sys.modules.update({m: types.ModuleType(m) for m in names})
        try:
            import mnist1d.data  # noqa: F401
        finally:
            for m in names:
                del sys.modules[m]
            sys.modules.update(before)  # as found: `import matplotlib` fails again


def prepare_data(grid: Grid, train: int) -> Data:
    """Generate MNIST-1D of `train` + `grid.test` samples once and shard it (cached)."""
    folder = os.path.join(grid.workdir, f"n{train}")  # the test split differs per size
    os.makedirs(folder, exist_ok=True)
    _import_mnist1d()
    npz = demo.make_mnist1d(folder, train, grid.test, grid.data_seed)
    dirs = (f"mnist1d-train-{train}", f"mnist1d-test-{grid.test}")
    out = [os.path.join(folder, d) for d in dirs]
    for src, dst in zip(npz, out, strict=True):
        if os.path.exists(os.path.join(dst, "dataset.json")):
            print(f"      shards already there: {dst}")
        elif demo.shard_npz(src, dst):
            raise RuntimeError(f"converting {src} to {dst} failed (see the message above)")
    return Data(train=out[0], test=out[1])


def pruning_epochs(epochs: int, anneal: float = 0.875) -> int:
    return sum(not is_annealing(e, epochs, anneal) for e in range(epochs))


def matched_ratio(key: str, saved: float, epochs: int) -> float:
    """The prune ratio at which `key` (Static or DynamicRandom) saves `saved` of N·E."""
    if key.startswith("static"):
        return min(MAX_PRUNE, max(0.0, saved))
    pruning = pruning_epochs(epochs)
    return min(MAX_PRUNE, max(0.0, saved * epochs / pruning if pruning else 0.0))


def make_policy(
    key: str, epochs: int, matched: float | None = None, repb: dict[str, Any] | None = None
) -> Policy:
    """The policy of `key`; `matched` is the prune ratio of a matched baseline; `repb` the
    parameters of RePB (default `REPB`)."""
    if key == "full":
        return Full()
    if key == "seta":
        return SeTa(epochs=epochs, **SETA_RECIPE)
    if key == "seta_target":
        return SeTa(epochs=epochs, **SETA_RECIPE, target_keep=TARGET_KEEP)
    if key == "infobatch":
        return InfoBatch(epochs=epochs, prune_ratio=INFOBATCH_RATIO)
    if key == "repb":
        return policy_from_dict({**(REPB if repb is None else repb), "epochs": epochs})
    if matched is None:
        raise ValueError(f"policy {key!r} needs the prune ratio it is matched at")
    if key.startswith("random_"):
        return DynamicRandom(epochs=epochs, prune_ratio=matched)
    if key.startswith("static_"):
        return Static(prune_ratio=matched)
    raise ValueError(f"unknown policy key {key!r}; known: {list(POLICIES)}")


def run_one(
    task: Task, grid: Grid, data: Data, matched: float | None, repb: dict[str, Any] | None = None
) -> dict[str, Any]:
    """One training run through demo.train; a failure is returned as a record, not raised."""
    torch.set_num_threads(1)
    record: dict[str, Any] = {
        **asdict(task),
        "test": grid.test,
        "epochs": grid.epochs,
        "batch_size": grid.batch_size,
        "data_seed": grid.data_seed,
        "lr": grid.lr[task.recipe],
        "matched_to": POLICIES[task.policy],
    }
    try:
        policy = make_policy(task.policy, grid.epochs, matched, repb)
        args = argparse.Namespace(
            seed=task.seed, lr=grid.lr[task.recipe], epochs=grid.epochs, recipe=task.recipe,
            batch_size=grid.batch_size, out=os.path.dirname(data.train), quiet=True,
        )  # fmt: skip
        r = demo.train(task.name, policy, data.train, data.test, args)
        curriculum = inspect_losses.curriculum(Path(r["losses"]))
    except Exception as e:  # one failed run (e.g. RePB not installed) must not stop the grid
        return {**record, "status": "failed", "error": f"{type(e).__name__}: {e}",
                "traceback": traceback.format_exc(limit=-3)}  # fmt: skip
    return {
        **record,
        "status": "ok",
        "params": policy.to_dict(),
        "accuracy": r["accuracy"],
        "forwarded": r["forwarded"],
        "saved": 1 - r["forwarded"] / (task.train * grid.epochs),
        "bytes_read": r["bytes_read"],
        "wall_s": r["wall_s"],
        "losses": r["losses"],
        "curriculum": curriculum.to_dicts(),
    }


def _run_spec(spec_path: str) -> None:
    """One run described by SPEC.json; its record goes to SPEC.json.out (atomically)."""
    with open(spec_path) as f:
        spec = json.load(f)
    fields: dict[str, Any] = {
        k: tuple(v) if isinstance(v, list) else v for k, v in spec["grid"].items()
    }
    grid = Grid(**fields)
    task, data = Task(**spec["task"]), Data(**spec["data"])
    record = run_one(task, grid, data, spec["matched"], spec["repb"])
    with open(spec_path + ".tmp", "w") as f:
        json.dump(record, f)
    os.replace(spec_path + ".tmp", spec_path + ".out")


def _worker() -> int:
    """`--worker`: runs the SPEC.json paths read from stdin, one a line, until stdin closes."""
    torch.set_num_threads(1)
    while line := sys.stdin.readline():
        _run_spec(line.strip())
    return 0


def _same_grid(record: dict[str, Any], grid: Grid) -> bool:
    shared = ("test", "epochs", "batch_size", "data_seed")
    return all(record.get(k) == getattr(grid, k) for k in shared) and record.get(
        "lr"
    ) == grid.lr.get(record.get("recipe", ""))


def load_finished(path: str, grid: Grid) -> dict[Task, dict[str, Any]]:
    """The successful runs of this grid already in the JSONL (later lines win)."""
    done: dict[Task, dict[str, Any]] = {}
    if not os.path.exists(path):
        return done
    with open(path) as f:
        for line in f:
            if not line.strip():
                continue
            r = json.loads(line)
            if r.get("status") == "ok" and _same_grid(r, grid):
                done[Task(recipe=r["recipe"], train=r["train"], seed=r["seed"],
                          policy=r["policy"])] = r  # fmt: skip
    return done


CHILD_ENV = {**os.environ, "POLARS_MAX_THREADS": "1", "OMP_NUM_THREADS": "1"}


class Runner:
    """Runs the tasks, `jobs` at a time; matched baselines wait for their source run."""

    def __init__(self, grid: Grid, data: dict[int, Data], jsonl: str, jobs: int) -> None:
        self.grid, self.data, self.jsonl, self.jobs = grid, data, jsonl, jobs
        self.runs: dict[Task, dict[str, Any]] = {}
        self.t0 = time.perf_counter()
        self.done_here = 0

    def run(self, tasks: list[Task], finished: dict[Task, dict[str, Any]]) -> list[dict]:
        self.runs.update({t: r for t, r in finished.items() if t in tasks})
        todo = [t for t in tasks if t not in self.runs]
        self.total = len(todo)
        print(f"{len(tasks)} runs: {len(tasks) - len(todo)} already in {self.jsonl}, "
              f"{len(todo)} to train with {self.jobs} process(es)", flush=True)  # fmt: skip
        if self.jobs == 1:
            while todo:
                task = self._next_ready(todo)
                assert task is not None  # blocking: raises when nothing can start
                self._finish(run_one(task, self.grid, self.data[task.train], self._ratio(task)))
        elif todo:
            self._run_parallel(todo)
        return [self.runs[t] for t in tasks if t in self.runs]

    def _run_parallel(self, todo: list[Task]) -> None:
        """`jobs` worker processes (`--worker`, fresh Pythons: torch is imported once each, and
        no fork of a process whose polars pool would deadlock the child), each fed one run at
        a time. A worker that dies is recorded as a failed run and replaced."""
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker"]

        def spawn() -> subprocess.Popen[str]:
            return subprocess.Popen(cmd, stdin=subprocess.PIPE, text=True, env=CHILD_ENV)

        workers: list[subprocess.Popen[str]] = []
        busy: dict[int, tuple[Task, str]] = {}  # worker index -> (run, spec file)
        with tempfile.TemporaryDirectory(prefix="bench-accuracy-") as tmp:
            try:
                for _ in range(self.jobs):
                    workers.append(spawn())
                while todo or busy:
                    for i, w in enumerate(workers):
                        if i in busy or not todo:
                            continue
                        if w.poll() is not None:  # died between runs: replace it
                            w = workers[i] = spawn()
                        task = self._next_ready(todo, block=not busy)
                        if task is None:
                            break
                        busy[i] = (task, self._spec(tmp, task))
                        assert w.stdin is not None  # opened with stdin=PIPE
                        w.stdin.write(busy[i][1] + "\n")
                        w.stdin.flush()
                    time.sleep(0.1)
                    for i, (task, spec) in list(busy.items()):
                        if os.path.exists(spec + ".out"):
                            with open(spec + ".out") as f:
                                self._finish(json.load(f))
                        elif workers[i].poll() is not None:
                            self._finish(self._died(task, workers[i].returncode))
                            workers[i] = spawn()
                        else:
                            continue
                        del busy[i]
            finally:
                for w in workers:
                    if w.stdin is not None:
                        w.stdin.close()  # the worker's loop ends
                for w in workers:
                    try:
                        w.wait(timeout=60)
                    except subprocess.TimeoutExpired:
                        w.kill()
                        w.wait()

    def _spec(self, tmp: str, task: Task) -> str:
        spec = os.path.join(tmp, f"{task.name}.json")
        with open(spec, "w") as f:
            json.dump({"task": asdict(task), "grid": asdict(self.grid),
                       "data": asdict(self.data[task.train]), "matched": self._ratio(task),
                       "repb": REPB}, f)  # fmt: skip
        return spec

    def _died(self, task: Task, code: int | None) -> dict[str, Any]:
        return {**asdict(task), "status": "failed", "matched_to": POLICIES[task.policy],
                "error": f"its process ended without a result (exit code {code})"}  # fmt: skip

    def _ready(self, task: Task) -> bool:
        src = task.source()
        return src is None or src in self.runs

    def _chain(self, task: Task) -> float:
        """The estimated work of a run and of the longest run waiting for it (N·E units)."""
        waiting = [k for k in self.grid.policies if POLICIES[k] == task.policy]
        own = KEEP_GUESS[POLICIES[task.policy] or task.policy]
        return task.train * (own + (own if waiting else 0.0))

    def _next_ready(self, todo: list[Task], block: bool = True) -> Task | None:
        """The ready run with the longest chain first (a pruned policy and its matched
        baselines, then Full, then the baselines): the grid ends on short runs."""
        ready = [t for t in todo if self._ready(t)]
        if not ready:
            if block:
                raise RuntimeError(f"no task can start: {[t.name for t in todo]}")
            return None
        task = max(ready, key=self._chain)  # ties: the first in grid order
        todo.remove(task)
        return task

    def _ratio(self, task: Task) -> float | None:
        src = task.source()
        if src is None:
            return None
        r = self.runs[src]
        if r["status"] != "ok":
            return None  # make_policy fails the run: its source failed
        return matched_ratio(task.policy, r["saved"], self.grid.epochs)

    def _finish(self, r: dict[str, Any]) -> None:
        task = Task(recipe=r["recipe"], train=r["train"], seed=r["seed"], policy=r["policy"])
        if r["status"] != "ok" and POLICIES[task.policy] is not None:
            src = self.runs.get(task.source() or task)
            if src is not None and src["status"] != "ok":
                r["error"] = f"its source run {src['policy']!r} failed: {src['error']}"
        self.runs[task] = r
        with open(self.jsonl, "a") as f:
            f.write(json.dumps(r) + "\n")
        self.done_here += 1
        elapsed = time.perf_counter() - self.t0
        left = elapsed / self.done_here * (self.total - self.done_here)
        what = (
            f"acc {r['accuracy']:.2%}, saved {r['saved']:.1%}, {r['wall_s']:.0f} s"
            if r["status"] == "ok"
            else f"FAILED: {r['error']}"
        )
        print(f"[{self.done_here}/{self.total}] {task.name}: {what} | elapsed "
              f"{elapsed / 60:.1f} min, ETA {left / 60:.1f} min", flush=True)  # fmt: skip


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                             text=True, timeout=10, check=True)  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def machine_info(jobs: int) -> dict[str, Any]:
    return {
        "cpu_count": os.cpu_count(),
        "jobs": jobs,
        "loadavg_start": os.getloadavg(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads_per_run": 1,
        "polars_threads_per_run": 1 if jobs > 1 else None,
        "dataloader_workers": 0,
        "git_commit": _git_commit(),
    }


def _csv(kind: type) -> Any:
    return lambda s: tuple(kind(x) for x in s.split(",") if x.strip())


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    d = Grid()
    p.add_argument("--train", type=int, help="one train size (same as --sizes N)")
    p.add_argument("--sizes", type=_csv(int), help=f"train sizes, default {d.sizes[0]}")
    p.add_argument("--test", type=int)
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--seeds", type=int)
    p.add_argument("--recipes", type=_csv(str), default=d.recipes)
    p.add_argument("--policies", type=_csv(str), default=d.policies)
    p.add_argument("--jobs", type=int, default=1, help="runs trained at once (processes)")
    p.add_argument("--workdir", default=d.workdir, help="cached data, shards and loss tables")
    p.add_argument("--out", default="benchmarks/results/accuracy.json")
    p.add_argument("--jsonl", help="finished runs, one per line (default: --out as .jsonl)")
    p.add_argument("--resume", action="store_true", help="skip the runs already in --jsonl")
    p.add_argument("--report", metavar="JSON", help="print the tables of a result; no runs")
    p.add_argument("--smoke", action="store_true", help="2k samples, 2 epochs, 1 seed")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)  # for --jobs N
    return p


def _grid(a: argparse.Namespace) -> Grid:
    small = a.smoke
    sizes = a.sizes or ((a.train,) if a.train else ((2_000,) if small else Grid.sizes))
    return Grid(
        sizes=sizes,
        test=a.test or (1_000 if small else Grid.test),
        epochs=a.epochs or (2 if small else Grid.epochs),
        seeds=a.seeds or (1 if small else Grid.seeds),
        batch_size=a.batch_size, recipes=a.recipes, policies=a.policies, workdir=a.workdir,
    )  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    p = _parser()
    a = p.parse_args(argv)
    if a.worker:
        return _worker()
    if a.report:
        result = report.load(a.report, "bench_accuracy")
        if result is None:
            return 1
        print(report.render(result))
        return 0
    try:
        grid = _grid(a)
    except ValueError as e:
        p.error(str(e))
    if a.jobs < 1:
        p.error(f"--jobs={a.jobs}: must be >= 1")
    jsonl = a.jsonl or str(Path(a.out).with_suffix(".jsonl"))
    for path in (a.out, jsonl):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if not a.resume and os.path.exists(jsonl):
        os.remove(jsonl)  # a fresh grid; --resume keeps it
    torch.set_num_threads(1)
    print(f"torch.set_num_threads(1) in each of {a.jobs} process(es); DataLoader with 0 workers")
    print(f"grid: {json.dumps(asdict(grid))}", flush=True)
    machine = machine_info(a.jobs)
    data = {n: prepare_data(grid, n) for n in grid.sizes}
    t0 = time.perf_counter()
    runs = Runner(grid, data, jsonl, a.jobs).run(grid.tasks(), load_finished(jsonl, grid))
    machine["loadavg_end"] = os.getloadavg()
    machine["grid_wall_s"] = time.perf_counter() - t0
    result = {"grid": asdict(grid), "machine": machine, "runs": runs}
    result["groups"] = report.summarise_all(runs)
    print()
    print(report.render(result))
    with open(a.out, "w") as f:
        json.dump(result, f, indent=1)
    print(f"\nwrote {a.out} (runs also in {jsonl})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
