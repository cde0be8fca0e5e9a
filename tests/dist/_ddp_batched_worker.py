"""Run by test_ddp_batched.py under torchrun (gloo): SeTaStream in batched mode, 2 DataLoader
workers per rank, 2 epochs with losses fed back from each batch's `__index__`; then epoch 2 is
checkpointed after 2 batches (StatefulDataLoader, 2 workers) and resumed by a new stream with
1 worker. Writes OUT/rank<r>.json. Usage: _ddp_batched_worker.py SHARDS OUT."""

from __future__ import annotations

import json
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from _ddp_worker import BATCH, EPOCHS, POLICY, SEED, loss_of  # this folder: sys.path[0]
from torch.utils.data import DataLoader
from torchdata.stateful_dataloader import StatefulDataLoader

from seta_stream.stream import SeTaStream


def main(shards: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", timeout=timedelta(seconds=60))
    rank = dist.get_rank()
    report: dict[str, Any] = {"epochs": []}
    losses = Path(out) / "losses"
    kw: dict[str, Any] = {"policy": POLICY, "losses": losses, "seed": SEED, "batch_size": BATCH}
    with SeTaStream(shards, **kw) as stream:
        loader = DataLoader(stream, batch_size=None, num_workers=2)
        for epoch in range(EPOCHS):
            stream.set_epoch(epoch)
            digest = stream.state_dict()["selection"]  # a collective: every rank calls it
            ids, sizes = [], []
            for batch in loader:
                sizes.append(len(batch["__index__"]))
                ids += batch["__index__"].tolist()
                stream.update(batch["__index__"], loss_of(batch["__index__"], epoch))
            report["epochs"].append(
                {
                    "steps": stream.steps_per_epoch(num_workers=2),
                    "sizes": sizes,
                    "ids": ids,
                    "digest": digest,
                    "stats": stream.stats(),
                }
            )
        stream.set_epoch(EPOCHS)
        stateful = StatefulDataLoader(stream, batch_size=None, num_workers=2)
        it = iter(stateful)
        before = [next(it)["__index__"].tolist() for _ in range(2)]
        state = {"stream": stream.state_dict(), "loader": stateful.state_dict()}
        del it
    with SeTaStream(shards, **kw) as stream:
        stream.load_state_dict(state["stream"], loader=state["loader"])
        steps = stream.steps_per_epoch(num_workers=1)
        after = [
            b["__index__"].tolist() for b in DataLoader(stream, batch_size=None, num_workers=1)
        ]
        report["resume"] = {
            "before": [i for b in before for i in b],
            "after": [i for b in after for i in b],
            "batches_after": len(after),
            "steps_after": steps,
            "digest": state["stream"]["selection"],
            "read": stream.stats()["samples_read"],
        }
    (Path(out) / f"rank{rank}.json").write_text(json.dumps(report))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
