"""RePB end to end: steps recorded by update(), selection counts kept, weights in the batch,
and the step count carried through a resume."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import torch
from torch.utils.data import DataLoader

from seta_stream import RePB
from seta_stream.stream import SeTaStream

N = 1000


def _epoch(stream: SeTaStream, loader: DataLoader, epoch: int, steps: np.ndarray) -> list:
    """One epoch; `steps[id]` = the step its loss was given at. Returns the batch weights."""
    stream.set_epoch(epoch)
    weights = []
    for batch in loader:
        ids = batch["__index__"]
        steps[ids.numpy()] = stream._step  # the step this update() records
        stream.update(ids, (ids % 7).float() + 0.1 * epoch)
        weights.append(batch["__weight__"])
    return weights


def test_repb_steps_counts_weights_and_resume(tmp_path: Path, shards: Path) -> None:
    policy = RePB(epochs=8, prune_ratio=0.4, window_steps=2)
    steps = np.full(N, -1, np.int64)
    with SeTaStream(shards, policy=policy, losses=tmp_path / "l", seed=3) as s:
        loader = DataLoader(s, batch_size=100)
        kept = []
        weights: dict[int, np.ndarray] = {}
        for e in range(3):
            weights[e] = torch.cat(_epoch(s, loader, e, steps)).numpy()
            kept.append(len(weights[e]))
        table = s.table
        assert table is not None
        np.testing.assert_array_equal(table.columns("step")["step"], steps)
        # epoch 0: all; then exactly N - floor(0.4·N) of the N seen samples
        assert kept == [N, 600, 600]
        assert set(np.unique(weights[1]).tolist()) == {1.0}  # everyone was in epoch 0
        # epoch 2: a sample pruned in epoch 1 was selected in 1 of 2 epochs: weight 3/2
        assert set(np.unique(weights[2]).tolist()) == {1.0, 1.5}
        counts = table.selection_counts(3)
        s.set_epoch(3)  # records epoch 3's selection: counts grow incrementally
        assert int(counts.sum()) == N + 600 + 600
        state = s.state_dict()
        assert state["step"] == 10 + 6 + 6
    # snapshot and history carry the steps (polars reads them)
    snap = pl.read_parquet(tmp_path / "l" / "losses.parquet").sort("sample_id")
    np.testing.assert_array_equal(snap["step"].to_numpy(), steps)
    hist = pl.read_parquet(tmp_path / "l" / "history" / "*.parquet")
    assert hist.filter(pl.col("epoch") == 2)["step"].max() == 21
    # resume: the step count goes on from the checkpoint's
    with SeTaStream(shards, policy=policy, losses=tmp_path / "l", seed=3) as s2:
        assert s2._step == 22  # the table's next step, before any checkpoint is loaded
        s2.load_state_dict(state)
        assert s2._step == 22 and s2.epoch == 3
        batch = next(iter(DataLoader(s2, batch_size=50)))
        s2.update(batch["__index__"], torch.ones(len(batch["__index__"])))
        assert s2.table is not None
        got = s2.table.columns("step")["step"][batch["__index__"].numpy()]
        assert (got == 22).all()
        # selection counts were recounted after the resume (epoch 3 was recorded before)
        np.testing.assert_array_equal(s2.table.selection_counts(3), counts)
    # a new run on the same table without a checkpoint goes on after the last recorded step
    with SeTaStream(shards, policy=policy, losses=tmp_path / "l", seed=3) as s3:
        assert s3._step == 23
