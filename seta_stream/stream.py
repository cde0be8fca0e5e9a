"""`SeTaStream`: a PyTorch IterableDataset that reads only the samples its policy selected.

`set_epoch(e)` (in the training process) merges the loss updates, takes a loss snapshot, runs
the policy, and publishes the epoch's read order as memory-mapped files in a work folder;
every iterator — in this process or in DataLoader workers, forked, spawned or persistent —
loads the current plan from there, takes its rank's and worker's part (`seta_stream.plan`),
and reads those samples' byte ranges and nothing else. Decoding happens at yield time, so
decode calls equal yielded samples.

DDP: every rank yields `ceil(selected / world_size)` samples; the last rank's part is padded
with at most `world_size - 1` samples repeated from the start of the epoch's order.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Literal

import numpy as np
from torch.utils.data import IterableDataset, get_worker_info

from seta_stream import distributed as ddp
from seta_stream.errors import SeTaStreamError
from seta_stream.losses import LossTable
from seta_stream.plan import World, per_rank_count, read_order, split, yield_order
from seta_stream.policies import Full, Policy, policy_from_dict
from seta_stream.shards.decode import decode_fields
from seta_stream.shards.reader import Dataset

STATE_VERSION = 1
_COUNTERS = ("samples_read", "samples_decoded", "bytes_read", "samples_yielded")
_SLOTS = 257  # slot 0: this process; 1 + w: DataLoader worker w


class SeTaStream(IterableDataset[dict[str, Any]]):
    """Stream the samples selected by `policy` from a dataset written by tools/shard.py.

    Items are dicts of decoded fields plus `__key__`, `__index__` (int64 sample id) and
    `__weight__` (float32, the policy's loss weight). Call `set_epoch(e)` before iterating.
    """

    def __init__(
        self,
        source: str | os.PathLike[str],
        *,
        policy: Policy,
        losses: str | os.PathLike[str] | None,
        seed: int = 0,
        shuffle: bool = True,
        decode: Literal["default"] | Callable[[dict[str, Any]], Any] | None = "default",
        transform: Callable[[Any], Any] | None = None,
        open_shards: int = 4,
        shuffle_window: int = 1024,
        allow_pickle: bool = False,
        storage_options: Mapping[str, Any] | None = None,
        workdir: str | None = None,
    ):
        super().__init__()
        self.policy, self.seed, self.shuffle = policy, seed, shuffle
        self.decode, self.transform, self.allow_pickle = decode, transform, allow_pickle
        self.open_shards, self.shuffle_window = open_shards, shuffle_window
        self.dataset = Dataset.open(source, storage_options=storage_options)
        self.rank, self.world_size = ddp.rank_and_size()
        self.workdir = tempfile.mkdtemp(prefix="seta_stream-", dir=workdir)
        self._own_workdir = True
        os.makedirs(os.path.join(self.workdir, "index"))
        self.dataset.share_index(os.path.join(self.workdir, "index"))
        n = self.dataset.num_samples
        self.table: LossTable | None = None
        if losses is None and not isinstance(policy, Full):
            raise SeTaStreamError(f"policy {policy.name} needs a loss table: pass losses=PATH")
        self.losses_path = None if losses is None else os.fspath(losses)
        if self.losses_path is not None and self.rank == 0:
            self.table = LossTable(self.losses_path, num_samples=n, dataset=self.dataset)
        self._pending: tuple[list[np.ndarray], list[np.ndarray]] = ([], [])
        counts = np.lib.format.open_memmap(
            os.path.join(self.workdir, "counters.npy"), "w+", np.int64, (2, _SLOTS, len(_COUNTERS))
        )
        del counts
        self.epoch: int | None = None
        self._selected = 0
        self._bytes_selected = self._bytes_selected_total = self._selected_total = 0
        self._resume: dict[str, Any] | None = None
        self._yielded_here = 0
        self._iter_epoch: int | None = None

    # -- the epoch plan (training process) ------------------------------------------------

    def set_epoch(self, epoch: int) -> None:
        """Merge loss updates, run the policy on a loss snapshot, publish this epoch's plan."""
        self._sync_losses()
        scores = None
        if self.table is not None:
            if self.epoch is not None and self.epoch != epoch:
                self.table.end_epoch()
            self.table.set_epoch(epoch)
            scores = self.table.scores()
        if ddp.initialized() and self.losses_path is not None:
            scores = ddp.broadcast(scores)
        if scores is None:
            scores = np.full(self.dataset.num_samples, np.nan, np.float32)
        sel = self.policy.select(scores, epoch, seed=self.seed)
        if self.table is not None:
            self.table.record_selection(epoch, sel)
        idx = self.dataset.index
        order = read_order(sel.ids, idx.shard, idx.offset, seed=self.seed, epoch=epoch,
                           open_shards=self.open_shards, shuffle=self.shuffle)
        weights = None
        if sel.weights is not None:
            w = np.ones(self.dataset.num_samples, np.float32)
            w[sel.ids] = sel.weights
            weights = w[order]
        self._publish(epoch, order, weights)
        mine = order[split(np.arange(len(order)), World(rank=self.rank, world_size=self.world_size))]
        self.epoch, self._selected = epoch, len(mine)
        self._bytes_selected = int(idx.length[mine].sum())
        self._selected_total += self._selected
        self._bytes_selected_total += self._bytes_selected
        self._counters()[0] = 0  # the epoch's counters; slot row 1 keeps the totals
        self._yielded_here = 0
        if self._resume is not None and self._resume["epoch"] != epoch:
            self._resume = None

    def _publish(self, epoch: int, order: np.ndarray, weights: np.ndarray | None) -> None:
        base = os.path.join(self.workdir, f"epoch-{epoch:06d}")
        np.save(base + ".order.npy", order)
        if weights is not None:
            np.save(base + ".weights.npy", weights)
        tmp = os.path.join(self.workdir, ".current.json.tmp")
        with open(tmp, "w") as f:
            json.dump({"epoch": epoch, "weights": weights is not None}, f)
        os.replace(tmp, os.path.join(self.workdir, "current.json"))

    def _load_plan(self) -> tuple[int, np.ndarray, np.ndarray | None]:
        path = os.path.join(self.workdir, "current.json")
        if not os.path.exists(path):
            raise SeTaStreamError(
                "SeTaStream: call stream.set_epoch(epoch) before iterating (it runs the policy "
                "and publishes the epoch's plan to the DataLoader workers)"
            )
        with open(path) as f:
            cur = json.load(f)
        base = os.path.join(self.workdir, f"epoch-{cur['epoch']:06d}")
        order = np.load(base + ".order.npy", mmap_mode="r")
        weights = np.load(base + ".weights.npy", mmap_mode="r") if cur["weights"] else None
        return int(cur["epoch"]), order, weights

    def __len__(self) -> int:
        """Samples this rank yields in the current epoch (all workers together)."""
        if self.epoch is None:
            raise SeTaStreamError("len(stream) is known after stream.set_epoch(epoch)")
        return self._selected

    def steps_per_epoch(self, batch_size: int, *, drop_last: bool = False) -> int:
        """Optimizer steps this epoch at `batch_size` (for LR schedules that follow pruning)."""
        n = len(self)
        return n // batch_size if drop_last else -(-n // batch_size)

    # -- reading (any process) -------------------------------------------------------------

    def _world(self) -> World:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        return World(rank=self.rank, world_size=self.world_size, worker=worker, num_workers=workers)

    def _counters(self) -> np.ndarray:
        return np.load(os.path.join(self.workdir, "counters.npy"), mmap_mode="r+")

    def __iter__(self) -> Iterator[dict[str, Any]]:
        epoch, order, weights = self._load_plan()
        world = self._world()
        positions, todo = self._my_positions(epoch, len(order), world)
        self._resume = None  # a resume applies to one iteration
        self._iter_epoch = epoch
        ids = np.asarray(order[positions])
        w = np.asarray(weights[positions]) if weights is not None else None
        slot = 0 if get_worker_info() is None else 1 + world.worker
        counters = self._counters()
        yield from self._read(ids, w, todo, counters, slot)

    def _my_positions(self, epoch: int, n: int, world: World) -> tuple[np.ndarray, np.ndarray]:
        """Positions into the epoch order for this worker, and the yield order still to do."""
        rank_world = World(rank=world.rank, world_size=world.world_size)
        mine = split(np.arange(n), rank_world)
        resume = self._resume if self._resume and self._resume["epoch"] == epoch else None
        if resume is not None and not any(resume["yielded"]):
            resume = None
        if resume is None or resume["num_workers"] == world.num_workers:
            part = split(mine, World(rank=0, worker=world.worker, num_workers=world.num_workers))
            yo = yield_order(part, seed=self.seed, epoch=epoch, world=world,
                             shuffle_window=self.shuffle_window if self.shuffle else 0)
            skip = resume["yielded"][world.worker] if resume is not None else 0
            self._yielded_here = skip
            return part, yo[skip:]
        done = np.zeros(len(mine), bool)  # resumed with another worker count: re-split the rest
        k = resume["num_workers"]
        for old, count in enumerate(resume["yielded"]):
            old_world = World(rank=world.rank, world_size=world.world_size, worker=old, num_workers=k)
            local = split(np.arange(len(mine)), World(rank=0, worker=old, num_workers=k))
            yo = yield_order(local, seed=self.seed, epoch=epoch, world=old_world,
                             shuffle_window=self.shuffle_window if self.shuffle else 0)
            done[local[yo[:count]]] = True
        rest = mine[~done]
        self._yielded_here = 0
        part = split(rest, World(rank=0, worker=world.worker, num_workers=world.num_workers))
        return part, yield_order(part, seed=self.seed, epoch=epoch + 1_000_003, world=world,
                                 shuffle_window=self.shuffle_window if self.shuffle else 0)

    def _read(
        self, ids: np.ndarray, weights: np.ndarray | None, todo: np.ndarray,
        counters: np.ndarray, slot: int,
    ) -> Iterator[dict[str, Any]]:
        ds = self.dataset
        need = np.zeros(len(ids), bool)
        need[todo] = True
        read_seq = np.flatnonzero(need).tolist()  # ascending = read order
        ids_l = ids.tolist()
        w_l = weights.tolist() if weights is not None else None
        buf: dict[int, dict[str, Any]] = {}
        r = 0
        local = np.zeros(len(_COUNTERS), np.int64)
        bytes_before = ds.stats.bytes_read
        try:
            for pos in todo.tolist():
                while pos not in buf:
                    p = read_seq[r]
                    r += 1
                    buf[p] = ds.read_raw(ids_l[p])
                    local[0] += 1
                item = self._decode(buf.pop(pos))
                local[1] += self.decode is not None
                item["__weight__"] = np.float32(w_l[pos] if w_l is not None else 1.0)
                local[3] += 1
                self._yielded_here += 1
                if local[3] % 256 == 0:
                    bytes_before = self._flush_counters(counters, slot, local, bytes_before)
                yield item
        finally:
            self._flush_counters(counters, slot, local, bytes_before)

    def _flush_counters(
        self, counters: np.ndarray, slot: int, local: np.ndarray, bytes_before: int
    ) -> int:
        now = self.dataset.stats.bytes_read
        local[2] = now - bytes_before
        counters[:, slot] += local
        local[:] = 0
        return now

    def _decode(self, raw: dict[str, Any]) -> Any:
        if self.decode is None:
            item: Any = raw
        elif self.decode == "default":
            item = decode_fields(raw, where=f"sample {raw['__index__']}", allow_pickle=self.allow_pickle)
        else:
            item = self.decode(raw)
        if self.transform is not None:
            item = self.transform(item)
        if not isinstance(item, dict):
            raise SeTaStreamError(f"decode/transform must return a dict, got {type(item).__name__}")
        item.setdefault("__key__", raw["__key__"])
        item.setdefault("__index__", raw["__index__"])
        return item

    # -- losses ----------------------------------------------------------------------------

    def update(self, ids: Any, losses: Any) -> None:
        """Queue per-sample losses for the loss table; returns at once."""
        if self.losses_path is None:
            raise SeTaStreamError("this stream has no loss table (losses=None): nothing to update")
        if self.table is not None:
            self.table.update(ids, losses)
            return
        from seta_stream.losses.inputs import as_ids, as_losses, check_range, check_shapes

        i, v = as_ids(ids), as_losses(losses)
        check_shapes(i, v)
        check_range(i, self.dataset.num_samples)
        self._pending[0].append(i)
        self._pending[1].append(v)

    def _sync_losses(self) -> None:
        if not ddp.initialized() or self.losses_path is None:
            return
        gathered = ddp.gather_updates(*self._pending)
        self._pending = ([], [])
        if self.table is not None:
            for ids, losses in gathered[1:]:
                if len(ids):
                    self.table.update(ids, losses)
            self.table.flush()

    # -- stats, state, close ---------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """This rank's figures for the current epoch and since the start (workers included)."""
        c = self._counters()
        epoch = dict(zip(_COUNTERS, c[0].sum(axis=0).tolist(), strict=True))
        total = dict(zip(_COUNTERS, c[1].sum(axis=0).tolist(), strict=True))
        epoch.update(samples_selected=self._selected, bytes_selected=self._bytes_selected)
        total.update(samples_selected=self._selected_total, bytes_selected=self._bytes_selected_total)
        return {**epoch, "epoch": self.epoch, "total": total}

    def state_dict(self) -> dict[str, Any]:
        """Where this iterator stands: epoch and samples yielded (per worker inside workers)."""
        info = get_worker_info()
        if info is None:
            self._sync_losses()
            if self.table is not None:
                self.table.flush()
        if self.epoch is None and info is None:
            raise SeTaStreamError("state_dict() before set_epoch(): nothing to resume yet")
        epoch = self.epoch if info is None else self._iter_epoch
        yielded = [0] * (1 if info is None else info.num_workers)
        yielded[0 if info is None else info.id] = self._yielded_here
        state = {
            "version": STATE_VERSION,
            "epoch": epoch,
            "seed": self.seed,
            "policy": self.policy.to_dict(),
            "fingerprint": self.dataset.fingerprint,
            "world_size": self.world_size,
            "num_workers": 1 if info is None else info.num_workers,
            "worker": 0 if info is None else info.id,
            "yielded": yielded,
        }
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume: the next iteration of `state['epoch']` yields only what was not yielded."""
        if state.get("version") != STATE_VERSION:
            raise SeTaStreamError(f"state version {state.get('version')!r}; this reads {STATE_VERSION}")
        if state["fingerprint"] != self.dataset.fingerprint:
            raise SeTaStreamError("state dict of another dataset (its manifest fingerprint differs)")
        if policy_from_dict(state["policy"]) != self.policy or state["seed"] != self.seed:
            raise SeTaStreamError(
                f"state dict of another policy or seed: {state['policy']} seed {state['seed']}, "
                f"this stream has {self.policy.to_dict()} seed {self.seed}"
            )
        if state["world_size"] != self.world_size:
            raise SeTaStreamError(
                f"state dict from world_size {state['world_size']}, now {self.world_size}: "
                "resume mid-epoch with the same number of ranks (or resume at the next epoch)"
            )
        self._resume = {"epoch": state["epoch"], "num_workers": state["num_workers"],
                        "yielded": list(state["yielded"])}
        if get_worker_info() is None and self.epoch != state["epoch"]:
            self.set_epoch(state["epoch"])

    def close(self) -> None:
        """Flush and snapshot the loss table, remove the work folder."""
        if self.table is not None:
            self._sync_losses()
            if self.epoch is not None:
                self.table.end_epoch()
            self.table.close()
            self.table = None
        self.dataset.close()
        if self._own_workdir and os.path.isdir(self.workdir):
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> SeTaStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["table"] = None  # workers never write the table
        state["_own_workdir"] = False
        return state
