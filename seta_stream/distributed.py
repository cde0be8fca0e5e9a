"""The few collectives SeTaStream needs, and nothing per step.

Loss updates of ranks other than 0 are buffered where they are made and gathered to rank 0
(the table's only writer) in one `gather_object` per `set_epoch`, `state_dict` or `close`.
The scores rank 0 reads are broadcast in one `broadcast_object_list` per epoch, so every rank
runs the policy on the same snapshot and computes the same selection; on a resume, rank 0
broadcasts the selection the loss table recorded instead. Object collectives pickle numpy
arrays, so ids stay int64 at any size, and work with gloo and nccl alike (with nccl, call
`torch.cuda.set_device(local_rank)` first, as torch requires for object collectives).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def initialized() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def rank_and_size() -> tuple[int, int]:
    if not initialized():
        return 0, 1
    import torch.distributed as dist

    return dist.get_rank(), dist.get_world_size()


def gather_updates(
    ids: list[np.ndarray], losses: list[np.ndarray], steps: list[np.ndarray]
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """On rank 0: every rank's buffered (ids, losses, steps); elsewhere: []. One collective."""
    import torch.distributed as dist

    mine = (
        np.concatenate(ids) if ids else np.zeros(0, np.int64),
        np.concatenate(losses) if losses else np.zeros(0, np.float32),
        np.concatenate(steps) if steps else np.zeros(0, np.int64),
    )
    rank, size = dist.get_rank(), dist.get_world_size()
    out: list[Any] | None = [None] * size if rank == 0 else None
    dist.gather_object(mine, out, dst=0)
    return [o for o in out if o is not None] if out is not None else []


def broadcast(value: Any) -> Any:
    """Rank 0's value on every rank. One collective."""
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]
