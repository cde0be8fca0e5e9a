"""Tables made before keys were dropped (`keys.parquet`, a `key` column) open and keep working."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from seta_stream.losses import LossTable
from seta_stream.losses.schema import with_metadata

N = 300


def _make_legacy(root: Path) -> list[str]:
    """A table as the keyed format left it: keys.parquet, has_keys, a keyed snapshot."""
    keys = [f"sample-{i:06d}" for i in range(N)]
    with LossTable(root, num_samples=N, chunk_rows=128) as table:
        table.update(np.arange(10), np.ones(10, np.float32))
    schema = with_metadata(
        pa.schema([("sample_id", pa.int64()), ("key", pa.large_string())]),
        "keys",
        num_samples=N,
        fingerprint="fp",
    )
    keyed = pa.table({"sample_id": np.arange(N), "key": keys}).cast(schema)
    pq.write_table(keyed, root / "keys.parquet")
    snapshot = pq.read_table(root / "losses.parquet")
    snapshot = snapshot.add_column(1, "key", pa.array(keys, pa.large_string()))
    pq.write_table(snapshot, root / "losses.parquet")
    meta = json.loads((root / "table.json").read_text())
    meta.update(has_keys=True, fingerprint="fp")
    (root / "table.json").write_text(json.dumps(meta))
    return keys


def test_a_keyed_table_opens_and_keeps_its_key_column(
    tmp_path: Path, tiny_dataset, seta_selection
) -> None:
    root = tmp_path / "t"
    keys = _make_legacy(root)
    assert LossTable.open_readonly(root).scores()[:10].tolist() == [1.0] * 10
    with LossTable(root, dataset=tiny_dataset("fp", N), chunk_rows=128) as table:
        table.verify()
        for epoch, compact_max in ((0, N), (1, 100)):
            table.options = type(table.options)(history_full_max=compact_max, chunk_rows=128)
            table.set_epoch(epoch)
            selection = seta_selection(N, epoch)
            table.record_selection(epoch, selection)
            table.update(selection.ids, np.full(selection.ids.size, 2.0, np.float32))
            table.end_epoch()
    snapshot = pl.read_parquet(root / "losses.parquet")
    assert snapshot["key"].to_list() == keys
    history = pl.scan_parquet(str(root / "history" / "*.parquet")).collect()
    assert history.columns[:3] == ["epoch", "sample_id", "key"]
    assert history["key"].to_list() == [keys[i] for i in history["sample_id"]]
    compact = history.filter(pl.col("epoch") == 1)
    assert compact["sample_id"].to_list() == seta_selection(N, 1).ids.tolist()


def test_new_tables_write_no_keys(tmp_path: Path, tiny_dataset) -> None:
    with LossTable(tmp_path / "t", dataset=tiny_dataset("fp", N)) as table:
        table.end_epoch()
    assert not (tmp_path / "t" / "keys.parquet").exists()
    assert "has_keys" not in json.loads((tmp_path / "t" / "table.json").read_text())
    for path in (tmp_path / "t").rglob("*.parquet"):
        assert "key" not in pq.read_schema(path).names, path
