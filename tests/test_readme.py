"""The README's Python blocks run as written, in order, on the data its own commands make.

In a temp folder: an image folder `images/` and an `.npz` (`data.npz`) are written, the
README's `tools/shard.py convert` lines for them are run as they stand (found in its bash
blocks), then every ```python block of README.md is executed in one namespace, in order. A
block preceded by `<!-- not run by tests/test_readme.py: WHY -->` is left out (they need an S3
server or a Ray cluster); the test knows how many blocks it runs, so a new block cannot slip
by unnoticed.
"""

from __future__ import annotations

import gc
import io
import re
import shlex
import textwrap
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SKIP = "<!-- not run by tests/test_readme.py:"
RUN, SKIPPED = 7, 2  # python blocks of README.md that run, and that are marked not to
COMMANDS = (  # the README's conversions that make the data its Python blocks read
    "python tools/shard.py convert images/ data/images-train",
    "python tools/shard.py convert data.npz out/ --samples-per-shard",
)
_FENCE = re.compile(r"^( *)```(\w*)\n(.*?)^\1```$", re.M | re.S)


def python_blocks(text: str) -> tuple[list[tuple[int, str]], int]:
    """(line, dedented code) of every ```python block not marked to skip; and how many were."""
    blocks, skipped = [], 0
    for m in _FENCE.finditer(text):
        if m.group(2) != "python":
            continue
        before = text[: m.start()].rstrip().rpartition("\n")[2].strip()
        if before.startswith(SKIP):
            skipped += 1
            continue
        line = text.count("\n", 0, m.start()) + 2
        blocks.append((line, textwrap.dedent(m.group(3))))
    return blocks, skipped


def _command(text: str, prefix: str) -> list[str]:
    """The README's shell line starting with `prefix`, as `tools/shard.py` arguments."""
    lines = [ln for ln in text.splitlines() if ln.startswith(prefix)]
    assert len(lines) == 1, f"README.md: expected one line starting {prefix!r}, got {lines}"
    return shlex.split(lines[0], comments=True)[2:]


def _images(root: Path, classes: int = 3, per_class: int = 100) -> None:
    rng = np.random.default_rng(0)
    for c in range(classes):
        (root / f"class{c}").mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 64, (8, 8, 3), dtype=np.uint8) + np.uint8(60 * c)
            buf = io.BytesIO()
            Image.fromarray(pixels).save(buf, format="PNG")
            (root / f"class{c}" / f"{i:04d}.png").write_bytes(buf.getvalue())


def test_readme_blocks_are_found() -> None:
    blocks, skipped = python_blocks(README.read_text())
    assert (len(blocks), skipped) == (RUN, SKIPPED)
    assert any("SeTaStream(" in code and "set_epoch" in code for _, code in blocks)


# torchdata 0.11's StatefulDataLoader calls torch.set_vital, deprecated in torch 2.13.
@pytest.mark.filterwarnings("ignore:'set_vital' is deprecated:UserWarning")
def test_readme_python_blocks_run_as_written(
    script,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    text = README.read_text()
    shard: ModuleType = script("tools/shard.py", "shard_cli_readme")
    monkeypatch.chdir(tmp_path)
    torch.set_num_threads(1)
    _images(tmp_path / "images")
    x = np.random.default_rng(1).standard_normal((42_001, 4)).astype(np.float32)
    np.savez(tmp_path / "data.npz", x=x, y=np.arange(42_001) % 10)
    for prefix in COMMANDS:
        assert shard.main(_command(text, prefix)) == 0, prefix
    capsys.readouterr()
    namespace: dict[str, object] = {"__name__": "readme"}
    try:
        for line, code in python_blocks(text)[0]:
            exec(compile(code, f"{README}:{line}", "exec"), namespace)  # the README's own code
        printed = capsys.readouterr().out
        assert "'samples_selected'" in printed  # the training block's stats()
        # what the blocks computed: 20 epochs trained, a table carried over to the re-sharded set
        assert namespace["epoch"] == 19 and int(namespace["steps"]) > 0  # type: ignore[call-overload]
        assert len(namespace["moved"]) == len(namespace["old"]) > 0  # type: ignore[arg-type]
    finally:  # the blocks' loaders keep persistent workers (forked from this process) alive
        namespace.clear()
        gc.collect()
