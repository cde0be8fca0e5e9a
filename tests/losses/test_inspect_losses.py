"""tools/inspect_losses.py: the curriculum of a run, printed from its loss table."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import numpy as np
import polars as pl
import pytest

from seta_stream.losses import LossTable

N = 200
TOOL = Path(__file__).parents[2] / "tools" / "inspect_losses.py"


@pytest.fixture(scope="module")
def tool(script) -> ModuleType:
    return script("tools/inspect_losses.py")


@pytest.fixture
def run(tmp_path: Path, tiny_dataset, seta_selection) -> Path:
    """Three SeTa epochs and one full epoch; index.parquet with a label of two classes."""
    rng = np.random.default_rng(0)
    with LossTable(tmp_path / "losses", dataset=tiny_dataset("fp", N)) as table:
        for epoch in range(4):
            table.set_epoch(epoch)
            if epoch < 3:
                selection = seta_selection(N, epoch)
                table.record_selection(epoch, selection)
                ids = selection.ids
            else:
                ids = np.arange(N)
            table.update(ids, rng.gamma(2.0, size=ids.size).astype(np.float32))
            table.end_epoch()
    pl.DataFrame({"sample_id": np.arange(N), "label": np.arange(N) % 2}).write_parquet(
        tmp_path / "index.parquet"
    )
    return tmp_path


def test_prints_the_curriculum(tool: ModuleType, run: Path, seta_selection, capsys) -> None:
    assert tool.main([str(run / "losses")]) == 0
    out = capsys.readouterr().out
    table = tool.curriculum(run / "losses")
    kept = [seta_selection(N, e).ids.size for e in range(3)] + [N]
    assert table["selected"].to_list() == kept
    assert table["saved"][-1] == pytest.approx(1 - sum(kept) / (N * 4))
    assert table["window"].to_list() == ["[0:2)", "[1:3)", "[0:2)", None]
    assert table["phase"].to_list() == ["prune", "prune", "prune", None]
    assert "[1:3)" in out and "prune" in out and f"{1 - sum(kept) / (N * 4):.3f}" in out


def test_kept_fraction_per_class(tool: ModuleType, run: Path, seta_selection, capsys) -> None:
    assert tool.main([str(run / "losses"), "--index", str(run / "index.parquet")]) == 0
    assert "kept fraction per class" in capsys.readouterr().out
    wide = tool.kept_per_class(run / "losses", run / "index.parquet")
    ids = seta_selection(N, 1).ids
    row = wide.filter(pl.col("epoch") == 1)
    assert row["0"][0] == pytest.approx((ids % 2 == 0).sum() / (N / 2))
    assert row["1"][0] == pytest.approx((ids % 2 == 1).sum() / (N / 2))


def test_plot_is_written(tool: ModuleType, run: Path) -> None:
    out = run / "curriculum.png"
    assert tool.main([str(run / "losses"), "--plot", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # matplotlib is a test dependency


def test_errors_exit_1_and_usage_exits_2(tool: ModuleType, tmp_path: Path, capsys) -> None:
    assert tool.main([str(tmp_path / "nothing")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("inspect_losses: no summary files") and err.count("\n") == 1
    with pytest.raises(SystemExit) as info:
        tool.main(["--bogus"])
    assert info.value.code == 2
