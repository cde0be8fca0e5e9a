"""tools/ray_convert_demo.py, small, on the session's Ray cluster: it checks its own claims
(byte-identical to single-process convert, every sample streamed once) and exits 0."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.ray


def test_demo_runs_and_checks_itself(
    ray_cluster: Any, script: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ctx = ray_cluster.data.DataContext.get_current()
    old = ctx.execution_options.preserve_order
    try:
        demo = script("tools/ray_convert_demo.py", "ray_convert_demo")
        out = tmp_path / "demo"
        assert demo.main(["--rows", "400", "--samples-per-shard", "100", "--out", str(out)]) == 0
    finally:
        ctx.execution_options.preserve_order = old
    text = capsys.readouterr().out
    assert "byte-identical" in text and "each once: True" in text
    assert "400 samples in 4 shards" in text
    assert sorted(p.name for p in (out / "ray").glob("*.tar")) == [
        f"shard-t{t:06d}-000000.tar" for t in range(4)
    ]
