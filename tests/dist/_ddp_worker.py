"""Run by test_ddp.py and test_ddp_batched.py under torchrun (gloo): 2 epochs of SeTaStream
with 2 DataLoader workers per rank, losses fed back from each batch's `__index__`; then epoch
2 is checkpointed after 2 batches (StatefulDataLoader, 2 workers) and resumed by a new stream
with 1 worker. MODE `samples`: the DataLoader collates batches of BATCH samples; `batched`: the
stream yields them (`SeTaStream(batch_size=BATCH)`, `DataLoader(batch_size=None)`).
Writes OUT/rank<r>.json. Usage: _ddp_worker.py SHARDS OUT [samples|batched]."""

from __future__ import annotations

import json
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader
from torchdata.stateful_dataloader import StatefulDataLoader

from seta_stream.policies import SeTa
from seta_stream.stream import SeTaStream

POLICY = SeTa(epochs=4, prune_ratio=0.3, num_groups=3, window=0.6)
SEED, BATCH, EPOCHS = 5, 32, 2


def loss_of(ids: torch.Tensor, epoch: int) -> torch.Tensor:
    return ((ids * (epoch + 2)) % 13).float() / 13 + 0.01


def main(shards: str, out: str, mode: str = "samples") -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", timeout=timedelta(seconds=60))
    rank = dist.get_rank()
    batched = mode == "batched"
    kw: dict[str, Any] = {"policy": POLICY, "losses": Path(out) / "losses", "seed": SEED}
    if batched:
        kw["batch_size"] = BATCH
    loader_batch = None if batched else BATCH
    steps_args = () if batched else (BATCH,)
    report: dict[str, Any] = {"epochs": []}
    with SeTaStream(shards, **kw) as stream:
        loader = DataLoader(stream, batch_size=loader_batch, num_workers=2)
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
                    "len": len(stream),
                    "steps": stream.steps_per_epoch(*steps_args, num_workers=2),
                    "sizes": sizes,
                    "ids": ids,
                    "digest": digest,
                    "stats": stream.stats(),
                }
            )
        stream.set_epoch(EPOCHS)
        stateful = StatefulDataLoader(stream, batch_size=loader_batch, num_workers=2)
        it = iter(stateful)
        before = [next(it)["__index__"].tolist() for _ in range(2)]
        state = {"stream": stream.state_dict(), "loader": stateful.state_dict()}
        del it
    with SeTaStream(shards, **kw) as stream:
        stream.load_state_dict(state["stream"], loader=state["loader"])
        steps = stream.steps_per_epoch(*steps_args, num_workers=1)
        after = [
            b["__index__"].tolist()
            for b in DataLoader(stream, batch_size=loader_batch, num_workers=1)
        ]
        report["resume"] = {
            "before": [i for b in before for i in b],
            "after": [i for b in after for i in b],
            "digest": state["stream"]["selection"],
            "len": len(stream),
            "steps": steps,
            "batches": len(after),
            "read": stream.stats()["samples_read"],
        }
    (Path(out) / f"rank{rank}.json").write_text(json.dumps(report))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:])
