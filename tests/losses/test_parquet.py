"""Snapshot, history and summary files: read by polars with the documented schema."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest

from seta_stream.errors import LossTableError
from seta_stream.losses import LossTable

SNAPSHOT = {
    "sample_id": pl.Int64, "loss": pl.Float32, "visits": pl.UInt32,
    "last_epoch": pl.Int32, "group": pl.Int8, "selected": pl.Boolean, "weight": pl.Float32,
    "step": pl.Int64,
}  # fmt: skip
HISTORY = {
    "epoch": pl.Int32, "sample_id": pl.Int64, "loss": pl.Float32,
    "group": pl.Int8, "selected": pl.Boolean, "weight": pl.Float32, "step": pl.Int64,
}  # fmt: skip
SUMMARY = {
    "epoch": pl.Int32, "phase": pl.String, "group": pl.Int8, "count": pl.Int64,
    "seen": pl.Int64, "loss_min": pl.Float32, "loss_mean": pl.Float64, "loss_max": pl.Float32,
    "selected": pl.Int64, "window_start": pl.Int32, "window_stop": pl.Int32,
    "num_samples": pl.Int64, "kept_fraction": pl.Float64,
}  # fmt: skip
N = 300


def _run_epochs(path: Path, dataset, seta_selection, epochs: int = 3, **options) -> LossTable:
    """A few epochs as SeTaStream drives them; returns the (open) table."""
    rng = np.random.default_rng(0)
    table = LossTable(path, dataset=dataset, chunk_rows=128, **options)
    for epoch in range(epochs):
        table.set_epoch(epoch)
        selection = seta_selection(N, epoch)
        table.record_selection(epoch, selection)
        table.update(selection.ids, rng.gamma(2.0, size=selection.ids.size).astype(np.float32))
        table.end_epoch()
    return table


def test_snapshot_round_trip(tmp_path: Path, tiny_dataset, seta_selection) -> None:
    with _run_epochs(tmp_path / "t", tiny_dataset("fp", N), seta_selection) as table:
        cols = table.columns()
    snap = pl.read_parquet(tmp_path / "t" / "losses.parquet")
    assert dict(snap.schema) == SNAPSHOT
    assert snap["sample_id"].to_list() == list(range(N))
    loss = snap["loss"].to_numpy()  # null (never seen) reads as NaN
    np.testing.assert_array_equal(loss, cols["loss"])
    for name, column in (("visits", "visits"), ("last_epoch", "epoch"), ("group", "group")):
        np.testing.assert_array_equal(snap[name].to_numpy(), cols[column])
    meta = json.loads(
        pq.read_schema(tmp_path / "t" / "losses.parquet").metadata[b"seta_stream.loss_table"]
    )
    assert meta["version"] == 1 and meta["kind"] == "snapshot" and meta["fingerprint"] == "fp"


def test_history_and_summary_scan_as_one_table(
    tmp_path: Path, tiny_dataset, seta_selection
) -> None:
    _run_epochs(tmp_path / "t", tiny_dataset("fp", N), seta_selection).close()
    history = pl.scan_parquet(str(tmp_path / "t" / "history" / "*.parquet")).collect()
    assert dict(history.schema) == HISTORY
    assert history.group_by("epoch").len().sort("epoch")["len"].to_list() == [N, N, N]
    for epoch in range(3):
        expected = seta_selection(N, epoch)
        rows = history.filter(pl.col("epoch") == epoch).sort("sample_id")
        assert np.flatnonzero(rows["selected"].to_numpy()).tolist() == expected.ids.tolist()
        assert rows["group"].to_numpy().tolist() == expected.groups.tolist()

    summary = pl.scan_parquet(str(tmp_path / "t" / "summary" / "*.parquet")).collect()
    assert dict(summary.schema) == SUMMARY
    last = history.filter(pl.col("epoch") == 2)
    expect = (
        last.group_by("group")
        .agg(
            count=pl.len(),
            seen=pl.col("loss").count(),
            loss_min=pl.col("loss").min(),
            loss_mean=pl.col("loss").mean(),
            loss_max=pl.col("loss").max(),
            selected=pl.col("selected").sum().cast(pl.Int64),
        )
        .sort("group")
    )
    got = summary.filter(pl.col("epoch") == 2).sort("group")
    for name in ("group", "count", "seen", "selected", "loss_min", "loss_max"):
        assert got[name].to_list() == expect[name].to_list(), name
    np.testing.assert_allclose(got["loss_mean"].to_numpy(), expect["loss_mean"].to_numpy(), 1e-6)
    assert got["phase"].unique().to_list() == ["prune"]
    assert (got["window_start"].unique().to_list(), got["window_stop"].unique().to_list()) == (
        [0],
        [2],
    )
    assert got["kept_fraction"][0] == pytest.approx(seta_selection(N, 2).ids.size / N)


def test_compact_history_above_the_threshold(tmp_path: Path, tiny_dataset, seta_selection) -> None:
    _run_epochs(tmp_path / "t", tiny_dataset("fp", N), seta_selection, history_full_max=100).close()
    history = pl.read_parquet(tmp_path / "t" / "history" / "epoch=000001.parquet")
    assert history["selected"].all()
    assert history["sample_id"].to_list() == seta_selection(N, 1).ids.tolist()
    hist = pl.scan_parquet(str(tmp_path / "t" / "histogram" / "*.parquet")).collect()
    summary = pl.read_parquet(tmp_path / "t" / "summary" / "epoch=000001.parquet")
    per_group = hist.filter(pl.col("epoch") == 1).group_by("group").agg(pl.col("count").sum())
    joined = summary.join(per_group, on="group", suffix="_hist")
    assert joined["seen"].to_list() == joined["count_hist"].to_list()


def test_epoch_without_selection_records_what_was_seen(tmp_path: Path) -> None:
    with LossTable(tmp_path / "t", num_samples=10) as table:
        table.update(np.array([2, 3]), np.array([1.0, 1.0]))
        table.end_epoch()
    history = pl.read_parquet(tmp_path / "t" / "history" / "epoch=000000.parquet")
    assert np.flatnonzero(history["selected"].to_numpy()).tolist() == [2, 3]
    assert (history["group"] == -1).all()


def test_fingerprint_mismatch_is_an_error(tmp_path: Path, tiny_dataset) -> None:
    LossTable(tmp_path / "t", dataset=tiny_dataset("aaa", 20)).close()
    with pytest.raises(LossTableError, match=r"belongs to another dataset.*aaa.*bbb"):
        LossTable(tmp_path / "t", dataset=tiny_dataset("bbb", 20))
    with pytest.raises(LossTableError, match="belongs to another dataset"):
        LossTable.open_readonly(tmp_path / "t", dataset=tiny_dataset("bbb", 20))
    with pytest.raises(LossTableError, match="sample counts disagree"):
        LossTable(tmp_path / "t", dataset=tiny_dataset("aaa", 21))
    with LossTable(tmp_path / "t", dataset=tiny_dataset("aaa", 20)) as table:
        assert table.fingerprint == "aaa"


def test_table_without_dataset_adopts_one(tmp_path: Path, tiny_dataset) -> None:
    LossTable(tmp_path / "t", num_samples=20).close()
    LossTable(tmp_path / "t", dataset=tiny_dataset("aaa", 20)).close()
    with pytest.raises(LossTableError, match="belongs to another dataset"):
        LossTable(tmp_path / "t", dataset=tiny_dataset("bbb", 20))
    assert not (tmp_path / "t" / "keys.parquet").exists()
    assert "key" not in pl.read_parquet(tmp_path / "t" / "losses.parquet").columns


def _rewrite_version(path: Path, version: int) -> None:
    table = pq.read_table(path)
    meta = json.loads(table.schema.metadata[b"seta_stream.loss_table"])
    meta["version"] = version
    pq.write_table(
        table.replace_schema_metadata({b"seta_stream.loss_table": json.dumps(meta)}), path
    )


def test_unknown_versions_name_file_and_versions(tmp_path: Path) -> None:
    with LossTable(tmp_path / "t", num_samples=10) as table:
        table.end_epoch()
    snapshot = tmp_path / "t" / "losses.parquet"
    _rewrite_version(snapshot, 7)
    with pytest.raises(LossTableError, match=rf"{snapshot}: .*version 7 is not supported.*\[1\]"):
        LossTable.open_readonly(tmp_path / "t").scores()
    with pytest.raises(LossTableError, match="version 7"), LossTable(tmp_path / "t") as table:
        table.verify()
    history = tmp_path / "t" / "history" / "epoch=000000.parquet"
    _rewrite_version(history, 9)
    with (
        pytest.raises(LossTableError, match=rf"{history}: .*version 9"),
        LossTable(tmp_path / "t") as t,
    ):
        t.verify()
    meta_path = tmp_path / "t" / "table.json"
    meta_path.write_text(meta_path.read_text().replace('"version": 1', '"version": 99'))
    with pytest.raises(LossTableError, match=rf"{meta_path}: .*version 99 .*reads versions \[1\]"):
        LossTable(tmp_path / "t")


def test_readonly_reads_snapshots(tmp_path: Path) -> None:
    with pytest.raises(LossTableError, match="no loss table"):
        LossTable.open_readonly(tmp_path / "t")
    with LossTable(tmp_path / "t", num_samples=10) as table:
        reader = LossTable.open_readonly(tmp_path / "t")  # no lock: works beside the writer
        table.update(np.array([1]), np.array([3.0]))
        table.flush()
        assert np.isnan(reader.scores()).all()  # nothing snapshotted yet
        table.snapshot()
        scores = reader.scores()
        assert scores[1] == 3.0 and reader.snapshot_epoch() == 0
        assert np.isnan(np.delete(scores, 1)).all()  # never seen: null in Parquet, NaN here
        assert not hasattr(reader, "update")


def test_carry_over_to_a_resharded_dataset_by_key(
    tmp_path: Path, tiny_dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The module docstring's recipe, run (with stand-in dataset indexes)."""
    import seta_stream.losses as package
    import seta_stream.shards as shards

    keys = [f"k{i:03d}" for i in range(50)]
    perm = np.random.default_rng(1).permutation(50)  # re-sharding reorders the samples
    indexes = {
        "old_ds": pl.LazyFrame({"sample_id": np.arange(50), "key": keys}),
        "new_ds": pl.LazyFrame({"sample_id": np.arange(50), "key": [keys[i] for i in perm]}),
    }
    monkeypatch.setattr(shards, "scan_index", lambda path: indexes[path], raising=False)
    with LossTable(tmp_path / "runs/old/losses", dataset=tiny_dataset("old", 50)) as table:
        table.update(np.arange(0, 50, 2), np.arange(25, dtype=np.float32))
    recipe = package.__doc__.split("## Carrying a table over")[1].split("```python")[1]
    recipe = recipe.split("```")[0].replace("runs/", f"{tmp_path}/runs/")
    scope = {
        "old_dataset_path": "old_ds",
        "new_dataset_path": "new_ds",
        "new_dataset": tiny_dataset("new", 50),
    }
    exec(recipe, scope)
    scores = LossTable.open_readonly(tmp_path / "runs" / "new" / "losses").scores()
    old_scores = np.full(50, np.nan, np.float32)
    old_scores[np.arange(0, 50, 2)] = np.arange(25)
    np.testing.assert_array_equal(scores, old_scores[perm])


def test_the_documented_polars_queries_run(tmp_path: Path, tiny_dataset, seta_selection) -> None:
    import seta_stream.losses as package

    _run_epochs(tmp_path / "t", tiny_dataset("fp", N), seta_selection).close()
    blocks = [b.split("```")[0] for b in package.__doc__.split("```python")[1:]]
    queries = next(b for b in blocks if "pl.scan_parquet" in b)
    scope: dict = {}
    exec(queries.replace("runs/exp1/losses", str(tmp_path / "t")), scope)
    assert scope["per_epoch"]["kept"].to_list() == [
        pytest.approx(seta_selection(N, e).ids.size / N) for e in range(3)
    ]
    assert scope["curve"].height == 3 and scope["times_selected"].height == N
