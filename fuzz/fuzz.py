#!/usr/bin/env python
"""Seeded mutation fuzzer of the shard readers: nothing but project errors, no hang.

    python fuzz/fuzz.py --inputs 100000 [--target tar|manifest|index|decode|read|all]
        [--seed N] [--json OUT] [--time-limit S] [--replay TARGET:I]
    python fuzz/fuzz.py --atheris --target tar|manifest|index|decode -- [libFuzzer flags]

Targets (fuzz/fuzz_targets.py, fuzz/fuzz_readers.py): the tar indexer (`scan_tar`, now and
then `index_tars` + reads), the manifest parser, the index reader (`read_index_table` +
`SampleIndex.from_shard_table` + `check_index`, then reads with the index it accepted), the
decoders (`unzst` + `decode_fields`) and end-to-end reads of shards mutated after indexing.

Input `i` of a target is generated from `random.Random(f"{seed}:{target}:{i}")`, so any input
can be replayed alone (`--replay tar:1234`). An outcome is `ok` (success, data checked),
`error` (a `SeTaStreamError`), `wrong` (a success with wrong data), `escape` (any other
exception) or `hang` (over `--time-limit` seconds). A table and JSON list per target the
inputs, inputs/s, distinct error types and message prefixes, escapes, wrong, hangs and the
slowest input; the first few escapes are kept with their tracebacks.

Exit status: 0 when nothing escaped, hung or returned wrong data; 1 otherwise; 2 on bad usage.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import re
import signal
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE), HERE]

import torch  # noqa: E402 - after the path set-up above
from tqdm import tqdm  # noqa: E402

from seta_stream.errors import SeTaStreamError  # noqa: E402

TARGETS = ("tar", "manifest", "index", "decode", "read")
KEEP = 5  # examples kept per kind of escape


class Hang(BaseException):
    """Raised by SIGALRM in the fuzzed code (BaseException: no `except Exception` eats it)."""


@dataclass
class Tally:
    target: str
    inputs: int = 0
    seconds: float = 0.0
    ok: int = 0
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    escapes: int = 0
    wrong: int = 0
    hangs: int = 0
    max_seconds: float = 0.0
    slowest: int = -1
    examples: list[dict[str, Any]] = field(default_factory=list)

    def row(self) -> dict[str, Any]:
        d = asdict(self)
        d["errors"] = dict(self.errors.most_common())
        d["error_types"] = len({k.split(":", 1)[0] for k in self.errors})
        d["inputs_per_s"] = round(self.inputs / self.seconds, 1) if self.seconds else 0.0
        return d


_DIGITS = re.compile(r"\d+")


def _prefix(e: BaseException) -> str:
    """Error type and the first words of its message (numbers and quotes blurred)."""
    text = str(e).split(": ", 1)[-1] if isinstance(e, SeTaStreamError) else str(e)
    text = _DIGITS.sub("N", re.sub(r"'[^']*'", "'…'", text))[:48]
    return f"{type(e).__name__}: {text}"


def make_targets(names: Sequence[str], work: Path) -> dict[str, Any]:
    from fuzz_readers import DecodeTarget, IndexTarget, ReadTarget
    from fuzz_targets import ManifestTarget, TarTarget

    kinds = {"tar": TarTarget, "manifest": ManifestTarget, "index": IndexTarget,
             "decode": DecodeTarget, "read": ReadTarget}  # fmt: skip
    return {n: kinds[n](work / n) for n in names}


def _alarm(signum: int, frame: object) -> None:
    raise Hang


def run_one(target: Any, seed: int, i: int, tally: Tally, limit: float) -> None:
    from fuzz_targets import Wrong

    rng = random.Random(f"{seed}:{target.name}:{i}")
    kind: str = "ok"
    err: BaseException | None = None
    start = time.perf_counter()
    signal.setitimer(signal.ITIMER_REAL, limit)
    try:
        target.one(rng)
    except Hang as e:
        kind, err = "hang", e
    except SeTaStreamError as e:
        kind, err = "error", e
    except Wrong as e:
        kind, err = "wrong", e
    except Exception as e:
        kind, err = "escape", e
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    took = time.perf_counter() - start
    if took > limit and kind != "hang":
        kind = "hang"
    tally.inputs += 1
    tally.seconds += took
    if took > tally.max_seconds:
        tally.max_seconds, tally.slowest = took, i
    if kind == "ok":
        tally.ok += 1
    elif kind == "error" and err is not None:
        tally.errors[_prefix(err)] += 1
    else:
        attr = {"hang": "hangs", "wrong": "wrong", "escape": "escapes"}[kind]
        setattr(tally, attr, getattr(tally, attr) + 1)
        same = [
            x for x in tally.examples if x["kind"] == kind and x["what"] == _prefix(err or Hang())
        ]
        if len(same) < KEEP:
            tally.examples.append({
                "kind": kind, "input": i, "replay": f"--seed {seed} --replay {target.name}:{i}",
                "what": _prefix(err or Hang()),
                "traceback": "".join(traceback.format_exception(err))[-3000:] if err else "",
            })  # fmt: skip


def table(tallies: Sequence[Tally]) -> str:
    head = ("target", "inputs", "inputs/s", "ok", "errors", "types", "prefixes", "escapes",
            "wrong", "hangs", "max s")  # fmt: skip
    rows: list[tuple[str, ...]] = [head]
    for t in tallies:
        r = t.row()
        counts = [t.inputs, round(r["inputs_per_s"]), t.ok, sum(t.errors.values())]
        counts += [r["error_types"], len(t.errors), t.escapes, t.wrong, t.hangs]
        rows.append((t.target, *map(str, counts), f"{t.max_seconds:.3f}"))
    widths = [max(len(row[c]) for row in rows) for c in range(len(head))]
    return "\n".join(
        "  ".join(v.rjust(w) for v, w in zip(row, widths, strict=True)) for row in rows
    )


def fuzz(names: Sequence[str], inputs: int, seed: int, limit: float, progress: bool) -> list[Tally]:
    """`inputs` spread evenly over the targets, interleaved; one tally per target."""
    with tempfile.TemporaryDirectory(prefix="seta_fuzz-") as work:
        targets = make_targets(names, Path(work))
        tallies = {n: Tally(n) for n in names}
        previous = signal.signal(signal.SIGALRM, _alarm)
        bar = tqdm(total=inputs, unit="input", desc="fuzz", disable=not progress)
        try:
            for k in range(inputs):
                name = names[k % len(names)]
                run_one(targets[name], seed, k // len(names), tallies[name], limit)
                bar.update(1)
        finally:
            bar.close()
            signal.signal(signal.SIGALRM, previous)
        return list(tallies.values())


def replay(spec: str, seed: int) -> int:
    """Run one input and let whatever it raises propagate (a traceback to debug)."""
    name, _, i = spec.partition(":")
    with tempfile.TemporaryDirectory(prefix="seta_fuzz-") as work:
        target = make_targets([name], Path(work))[name]
        try:
            target.one(random.Random(f"{seed}:{name}:{int(i)}"))
        except SeTaStreamError as e:
            print(f"project error (fine): {type(e).__name__}: {e}")
    return 0


def _instrument(atheris: Any, prefixes: tuple[str, ...]) -> None:
    """Coverage for the functions and methods of the modules named (torch is too big)."""
    import inspect

    for name, mod in list(sys.modules.items()):
        if not name.startswith(prefixes):
            continue
        for obj in list(vars(mod).values()):
            if getattr(obj, "__module__", None) != name:
                continue
            funcs = vars(obj).values() if inspect.isclass(obj) else [obj]
            for f in funcs:
                if inspect.isfunction(f):
                    atheris.instrument_func(f)


def run_atheris(name: str, argv: list[str]) -> int:
    """Coverage-guided: libFuzzer's bytes go to the target's `raw(data)`."""
    import atheris  # optional: pip install atheris
    from fuzz_targets import Wrong

    with tempfile.TemporaryDirectory(prefix="seta_fuzz-") as work:
        target = make_targets([name], Path(work))[name]
        _instrument(atheris, ("seta_stream.shards", "tarfile", "json", "PIL.PngImagePlugin"))

        def one(data: bytes) -> None:
            try:
                target.raw(data)
            except SeTaStreamError:
                return
            except Wrong:
                raise

        corpus = Path(work) / "corpus"  # the target's seed inputs, for libFuzzer to grow
        corpus.mkdir()
        for k, seed in enumerate(target.corpus()):
            (corpus / f"seed{k}").write_bytes(seed)
        atheris.Setup([sys.argv[0], *argv, str(corpus)], one)
        atheris.Fuzz()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--inputs", type=int, default=10_000, help="total inputs over the targets")
    p.add_argument("--target", choices=(*TARGETS, "all"), default="all")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--time-limit", type=float, default=5.0, help="seconds per input")
    p.add_argument("--json", type=Path, help="write the figures here")
    p.add_argument("--replay", metavar="TARGET:I", help="run one input, traceback and all")
    p.add_argument("--atheris", action="store_true", help="coverage-guided (atheris) instead")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("rest", nargs="*", help="after --: libFuzzer flags (with --atheris)")
    args = p.parse_args(argv)
    if args.inputs < 1 or args.time_limit <= 0:
        p.error("--inputs and --time-limit must be positive")
    torch.set_num_threads(1)
    # Pillow warns on many corrupt images (and raises right after): noise in a fuzz run
    warnings.filterwarnings("ignore", module="PIL")
    if args.replay:
        return replay(args.replay, args.seed)
    names = list(TARGETS) if args.target == "all" else [args.target]
    if args.atheris:
        if len(names) != 1 or names[0] == "read":
            p.error("--atheris runs one of tar, manifest, index, decode")
        return run_atheris(names[0], args.rest)
    start = time.perf_counter()
    tallies = fuzz(names, args.inputs, args.seed, args.time_limit, not args.no_progress)
    wall = time.perf_counter() - start
    print(table(tallies))
    print(f"{sum(t.inputs for t in tallies)} inputs in {wall:.1f} s (seed {args.seed})")
    bad = [t for t in tallies if t.escapes or t.hangs or t.wrong]
    for t in bad:
        for ex in t.examples:
            print(f"{t.target} {ex['kind']}: {ex['what']}  ({ex['replay']})", file=sys.stderr)
    if args.json:
        report = {"seed": args.seed, "inputs": args.inputs, "wall_s": round(wall, 2)}
        report |= {"time_limit_s": args.time_limit, "targets": [t.row() for t in tallies]}
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
