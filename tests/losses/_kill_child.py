"""Child process for the kill -9 and lock tests (run as a script, never imported by pytest).

`python _kill_child.py TABLE N ROUND PAUSE_POINT PAUSE_AT`

Updates the table in a loop. Step s of round r queues the ids `batch_ids(N, r, s)` with the
loss `loss_value(r, s)` (increasing over time) in epoch `epoch_of(r, s)`; every 5 steps it
flushes and prints `FLUSHED s`, every 15 it snapshots, every 20 it ends the epoch (`ENDED e`).
When PAUSE_POINT (a debug-hook point such as `apply:mid`) is reached for the PAUSE_AT-th time
it prints `PAUSED point` and sleeps inside it, so the parent can kill it right there.
PAUSE_POINT `hold` only opens the table, prints `READY` and sleeps (for the lock test).
"""

from __future__ import annotations

import sys
import time

import numpy as np

from seta_stream.losses import LossTable

BATCH = 48
STEPS_PER_EPOCH = 20
MAX_STEPS = 199  # epochs of one round stay below the next round's first epoch


def batch_ids(num_samples: int, round_: int, step: int) -> np.ndarray:
    return np.random.default_rng([round_, step]).integers(0, num_samples, BATCH)


def loss_value(round_: int, step: int) -> float:
    return float(round_ * 1000 + step + 1)


def epoch_of(round_: int, step: int) -> int:
    return round_ * 10 + step // STEPS_PER_EPOCH


def main(argv: list[str]) -> None:
    path, num_samples, round_, point, pause_at = (
        argv[0],
        int(argv[1]),
        int(argv[2]),
        argv[3],
        int(argv[4]),
    )
    seen = {"count": 0}

    def hook(name: str) -> None:
        if name == point:
            seen["count"] += 1
            if seen["count"] == pause_at:
                print("PAUSED", name, flush=True)
                time.sleep(600)

    table = LossTable(path, num_samples=num_samples, chunk_rows=256, max_pending=8, debug_hook=hook)
    if point == "hold":
        print("READY", flush=True)
        time.sleep(600)
    for step in range(MAX_STEPS + 1):
        epoch = epoch_of(round_, step)
        if epoch != table.epoch or step == 0:
            if step:
                table.end_epoch()
                print("ENDED", table.epoch, flush=True)
            table.set_epoch(epoch)
        ids = batch_ids(num_samples, round_, step)
        table.update(ids, np.full(ids.shape, loss_value(round_, step), np.float32))
        if step % 5 == 4:
            table.flush()
            print("FLUSHED", step, flush=True)
        if step % 15 == 14:
            table.snapshot()
    print("DONE", flush=True)
    time.sleep(600)


if __name__ == "__main__":
    main(sys.argv[1:])
