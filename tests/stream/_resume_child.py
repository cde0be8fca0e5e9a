"""Child of test_resume.py: train into epoch 1, checkpoint after k batches, train on, wait for
SIGKILL. Usage: _resume_child.py SHARDS LOSSES OUT WORKERS K AFTER (AFTER: same|next)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from torchdata.stateful_dataloader import StatefulDataLoader

from seta_stream.policies import SeTa
from seta_stream.stream import SeTaStream

POLICY = SeTa(epochs=6, prune_ratio=0.3, num_groups=5, window=0.6)
SEED, BATCH = 1, 50


def loss_of(ids: torch.Tensor, epoch: int) -> torch.Tensor:
    return ((ids * (epoch + 3)) % 11).float() / 11


def main(shards: str, losses: str, out: str, workers: int, k: int, after: str) -> None:
    torch.set_num_threads(1)
    dest = Path(out)
    stream = SeTaStream(shards, policy=POLICY, losses=losses, seed=SEED)
    if workers:
        loader: DataLoader = StatefulDataLoader(stream, batch_size=BATCH, num_workers=workers)
    else:
        loader = DataLoader(stream, batch_size=BATCH)
    stream.set_epoch(0)
    for batch in loader:
        stream.update(batch["__index__"], loss_of(batch["__index__"], 0))
    stream.set_epoch(1)
    assert stream.table is not None
    np.save(dest / "selection.npy", POLICY.select(stream.table.scores(), 1, seed=SEED).ids)
    it = iter(loader)
    received = []
    for _ in range(k):
        ids = next(it)["__index__"]
        received.append(ids.numpy())
        stream.update(ids, loss_of(ids, 1))
    ckpt = {"stream": stream.state_dict(), "loader": loader.state_dict() if workers else None}
    torch.save(ckpt, dest / "ckpt.pt")
    np.save(dest / "received.npy", np.concatenate(received))
    # Train on past the checkpoint: the loss table gets newer than the checkpoint.
    if after == "same":
        for _ in range(3):
            ids = next(it)["__index__"]
            stream.update(ids, 1 - loss_of(ids, 1))
    else:
        for batch in it:
            stream.update(batch["__index__"], 1 - loss_of(batch["__index__"], 1))
        stream.set_epoch(2)
        ids = next(iter(loader))["__index__"]
        stream.update(ids, loss_of(ids, 2))
    stream.table.flush()
    (dest / "ready").touch()
    time.sleep(600)  # the test kills us here (SIGKILL)


if __name__ == "__main__":
    a = sys.argv[1:]
    main(a[0], a[1], a[2], int(a[3]), int(a[4]), a[5])
