"""`SeTaStream`: a PyTorch IterableDataset that reads only the samples its policy selected.

`set_epoch(e)` (in the training process) merges the loss updates, takes a loss snapshot, runs
the policy, and publishes the epoch's read order as memory-mapped files in a work folder;
every iterator — in this process or in DataLoader workers, forked, spawned or persistent —
loads the current plan from there, takes its rank's and worker's part (`seta_stream.plan`),
and reads those samples' byte ranges and nothing else. Decoding happens at yield time, so
decode calls equal yielded samples.

**DDP.** Create the stream after `torch.distributed.init_process_group`. Every rank yields
`ceil(selected / world_size)` samples: the epoch's order is padded by repeating at most
`world_size - 1` samples from its start, so no rank waits on another. Rank 0 owns the loss
table and writes its snapshots; other ranks buffer their updates, and `set_epoch`,
`state_dict` and `close` gather them to rank 0 in one collective — call those on every rank.

**Resume.** `state_dict()` flushes the loss table and returns the epoch, the position, the
seed, the policy and the loss-table version (`seta_stream.resume`). `load_state_dict()` in a
new process takes the epoch's selection from the loss table (as recorded when the epoch
began, not re-run on newer losses) and the next iteration skips what was already yielded,
without reading it. With `num_workers > 0` the position is what torchdata's
`StatefulDataLoader` saved per worker: load it with `loader.load_state_dict(...)` (same
worker count) or `stream.load_state_dict(state, loader=loader_state)` (any worker count).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Mapping
from functools import partial
from typing import Any, Literal

import numpy as np
from torch.utils.data import IterableDataset, get_worker_info

from seta_stream import distributed as ddp
from seta_stream import resume
from seta_stream.batching import build_batch
from seta_stream.errors import NonFiniteLossError, SeTaStreamError
from seta_stream.losses import LossTable
from seta_stream.losses.inputs import (
    all_finite,
    as_ids,
    as_losses,
    check_range,
    check_shapes,
    first_nonfinite,
)
from seta_stream.losses.options import NonFinite
from seta_stream.plan import (
    Stage,
    World,
    rank_take,
    selection_digest,
    steps,
    worker_bounds,
    worker_part,
    yield_blocks,
)
from seta_stream.policies import Full, Policy
from seta_stream.reading import Decode, OnError, make_item, read_batches, read_part
from seta_stream.remote import RemoteOptions
from seta_stream.shards.reader import Dataset
from seta_stream.shards.shardindex import DEFAULT_CACHE_SAMPLES
from seta_stream.workdir import ITERS, Plan, WorkDir

_log = logging.getLogger("seta_stream")


class SeTaStream(IterableDataset[dict[str, Any]]):
    """Stream the samples selected by `policy` from a dataset written by tools/shard.py.

    Items are dicts of decoded fields plus `__key__`, `__index__` (int64 sample id) and
    `__weight__` (float32, the policy's loss weight). Call `set_epoch(e)` before iterating.

    `on_error="skip"`: a sample that cannot be read or decoded (truncated shard, header that
    does not match the index, corrupt member) is logged on the `seta_stream` logger, counted
    in `stats()["samples_skipped"]` and left out; the rest of the epoch is unaffected.
    The default, `"raise"`, stops at the first such sample with an error naming it.

    `decode`: `"default"` (by member extension), a callable on the raw sample dict, or
    `None`/`False` for raw bytes. `nonfinite="skip"` drops NaN/inf losses given to `update()`
    (the loss table counts them); the default, `"raise"`, refuses the batch.

    Opening reads the manifest only; each process (every DataLoader worker too) reads a
    shard's index file when it first reads from that shard and keeps at most
    `index_cache_samples` samples' worth of shard indexes (about 40 B a sample + 20 B a member).

    `batch_size=B` (batched mode, for small samples): items are whole batches, built in the
    reader; use `DataLoader(stream, batch_size=None)`. Each worker groups its own samples in
    yield order into batches of `B` (its last one shorter, or left out with `drop_last=True`).
    A batch is a dict of columns: `__key__` (list of str),
    `__index__` (int64 array: pass it to `update()` with the batch's losses), `__weight__`
    (float32 array) and one column per field: raw, a uint8 array `(rows, size)` when the
    field has one size in every row, else a list of bytes; with `decode="default"`, `.npy`
    fields of one shape as one array `(rows, *shape)`, class-like text (`cls`, `id`) as int64,
    other decoded values stacked when they are arrays of one shape (numbers: one array), else a
    list. A callable `decode` or a `transform` runs on one raw dict per sample and its results
    are collated the same way. Selection, resume, DDP counts and decode calls are as in the
    per-sample mode; `len(stream)` and `steps_per_epoch()` count batches.
    """

    def __init__(
        self,
        source: str | os.PathLike[str],
        *,
        policy: Policy,
        losses: str | os.PathLike[str] | None,
        seed: int = 0,
        shuffle: bool = True,
        decode: Decode | Literal[False] = "default",
        transform: Callable[[Any], Any] | None = None,
        open_shards: int = 4,
        shuffle_window: int = 1024,
        allow_pickle: bool = False,
        storage_options: Mapping[str, Any] | None = None,
        remote: RemoteOptions | None = None,
        workdir: str | None = None,
        index_cache_samples: int = DEFAULT_CACHE_SAMPLES,
        on_error: OnError = "raise",
        nonfinite: NonFinite = "raise",
        batch_size: int | None = None,
        drop_last: bool = False,
    ):
        super().__init__()
        if on_error not in ("raise", "skip"):
            raise SeTaStreamError(f"on_error={on_error!r}: use 'raise' (default) or 'skip'")
        self.on_error = on_error
        if nonfinite not in ("raise", "skip"):
            raise SeTaStreamError(f"nonfinite={nonfinite!r}: use 'raise' (default) or 'skip'")
        self.nonfinite = nonfinite
        if batch_size is not None and (
            isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
        ):
            raise SeTaStreamError(f"batch_size={batch_size!r}: must be None or an int >= 1")
        self.batch_size, self.drop_last = batch_size, bool(drop_last)
        if decode is False:
            decode = None
        elif not (
            decode is None or callable(decode) or (isinstance(decode, str) and decode == "default")
        ):
            raise SeTaStreamError(
                f"decode={decode!r}: use 'default' (by member extension), None or False (raw "
                "bytes), or a callable taking the raw sample dict"
            )
        if losses is None and not isinstance(policy, Full):
            raise SeTaStreamError(f"policy {policy.name} needs a loss table: pass losses=PATH")
        self.policy, self.seed, self.shuffle = policy, seed, shuffle
        self.decode, self.transform, self.allow_pickle = decode, transform, allow_pickle
        self.open_shards, self.shuffle_window = open_shards, shuffle_window
        self.dataset = Dataset.open(source, storage_options=storage_options, remote=remote,
                                    index_cache_samples=index_cache_samples)  # fmt: skip
        self.rank, self.world_size = ddp.rank_and_size()
        self.losses_path = None if losses is None else os.fspath(losses)
        self.table: LossTable | None = None
        if self.losses_path is not None and self.rank == 0:
            self.table = LossTable(
                self.losses_path,
                dataset=self.dataset,
                storage_options=storage_options,
                nonfinite=nonfinite,
            )
        self._work = WorkDir(workdir)
        self.workdir = self._work.path  # the folder shared with DataLoader workers
        self._pending: tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]] = ([], [], [])
        # the step recorded with each loss: update() calls, going on from the table's last step
        # (so a new run on an old table does not mix its steps with the old ones' windows)
        self._step = 0 if self.table is None else self.table.next_step
        if self.losses_path is not None and ddp.initialized():
            self._step = int(ddp.broadcast(self._step))  # a collective: every rank constructs
        self.epoch: int | None = None
        self._digest = ""
        self._selected = 0
        self._bytes_selected: int | None = 0
        self._selected_total = 0
        self._updates_base = 0  # loss values given to the table before this process
        self._resume: resume.Resume | None = None
        self._resumed: tuple[Stage, ...] = ()  # what a loaded state says was yielded already
        self._warned: set[str] = set()
        # the iteration in this process: (epoch, digest, rank samples), closed stages, count
        self._iter: tuple[int, str, int] | None = None
        self._stages: tuple[Stage, ...] = ()
        self._yielded_here = 0
        self._iterated_here = False
        self._closed = False

    # -- the epoch plan (training process) ------------------------------------------------

    def set_epoch(self, epoch: int) -> None:
        """Merge loss updates, run the policy on a loss snapshot, publish this epoch's plan.

        Calling it again with the current epoch keeps the plan, so a loop that resumed with
        `load_state_dict()` and then calls `set_epoch(e)` continues epoch `e`.
        """
        if not isinstance(epoch, int | np.integer) or isinstance(epoch, bool) or epoch < 0:
            raise SeTaStreamError(f"set_epoch(epoch={epoch!r}): epoch must be an int >= 0")
        epoch = int(epoch)
        if epoch == self.epoch:
            return
        self._check_epoch(epoch)
        self._sync_losses()
        scores = None
        if self.table is not None:
            if self.epoch is not None:
                self.table.end_epoch()
            self.table.set_epoch(epoch)
            scores = self.table.scores()
            self._check_unseen(scores, epoch)
        if ddp.initialized() and self.losses_path is not None:
            scores = ddp.broadcast(scores)
        if scores is None:
            scores = np.full(self.dataset.num_samples, np.nan, np.float32)
        sel = self.policy.select(scores, epoch, seed=self.seed, **self._policy_inputs(epoch))
        if self.table is not None:
            self.table.record_selection(epoch, sel)
        self._start(epoch, sel.ids, sel.weights)
        self._resume = None

    def _policy_inputs(self, epoch: int) -> dict[str, np.ndarray]:
        """What the policy's `needs` asks for besides the scores (rank 0 reads, all receive):
        `steps` (int64, the step of each sample's last loss, -1 never seen) and
        `selection_counts` (uint32, recorded epochs before this one that selected it)."""
        needs: frozenset[str] = getattr(self.policy, "needs", frozenset())
        if not needs or self.losses_path is None:
            return {}
        inputs: dict[str, np.ndarray] | None = None
        if self.table is not None:
            inputs = {}
            if "steps" in needs:
                inputs["steps"] = self.table.columns("step")["step"]
            if "selection_counts" in needs:
                self.table.track_selections()
                inputs["selection_counts"] = self.table.selection_counts(epoch)
        if ddp.initialized():
            inputs = ddp.broadcast(inputs)
        if inputs is None:
            raise SeTaStreamError("no loss table on rank 0 to read the policy's inputs from")
        return inputs

    def _check_epoch(self, epoch: int) -> None:
        epochs, last = getattr(self.policy, "epochs", None), self.epoch
        if isinstance(epochs, int) and epoch >= epochs:
            self._warn_once(
                "past",
                f"set_epoch({epoch}) is past the policy's epochs={epochs}: "
                f"its schedule ends at epoch {epochs - 1}; set epochs to the run's",
            )
        if last is not None and epoch < last:
            self._warn_once(
                "back",
                f"set_epoch({epoch}) after epoch {last}: epochs go back; "
                "to resume, use load_state_dict()",
            )

    def _check_unseen(self, scores: np.ndarray, epoch: int) -> None:
        unseen = int(np.isnan(scores).sum())
        if epoch > 0 and 2 * unseen > len(scores):
            self._warn_once(
                "unseen",
                f"epoch {epoch}: {unseen} of {len(scores)} samples have "
                f"no loss yet; {self.policy.name} treats them as unseen samples. "
                "Pass every batch's per-sample losses to stream.update()",
            )

    def _warn_once(self, kind: str, message: str) -> None:
        if kind not in self._warned:
            self._warned.add(kind)
            _log.warning("%s", message)

    def _start(self, epoch: int, ids: np.ndarray, weights: np.ndarray | None) -> None:
        """Publish this rank's part of the epoch's read order (computed for that part only)."""
        mine, w = rank_take(ids, weights, self.dataset.manifest.first_ids, rank=self.rank,
                            world_size=self.world_size, seed=self.seed, epoch=epoch,
                            open_shards=self.open_shards, shuffle=self.shuffle)  # fmt: skip
        digest = selection_digest(ids)
        self._work.publish(Plan(epoch, mine, w, digest))
        self.epoch, self._digest, self._selected = epoch, digest, len(mine)
        self._bytes_selected = None  # counted when stats() asks: it reads the shards' indexes
        self._selected_total += self._selected
        self._work.counters()[0] = 0  # the epoch's counters; row 1 keeps the totals
        self._iter, self._stages, self._yielded_here, self._iterated_here = None, (), 0, False
        self._resumed = ()

    def _bytes_of_epoch(self) -> int:
        """Bytes of this rank's selected samples this epoch (reads their shards' indexes)."""
        if self._bytes_selected is None:
            mine, total = self._work.load().order, 0  # this rank's part (memory-mapped)
            for a in range(0, len(mine), 1 << 20):
                total += int(self.dataset.index.lengths(mine[a : a + (1 << 20)]).sum())
            self._bytes_selected = total
        return self._bytes_selected

    def __len__(self) -> int:
        """Samples this rank yields in the current epoch (all workers together); after
        `load_state_dict()` mid-epoch, the samples that remain of that epoch. In batched mode
        (`batch_size=B`): the batches this process yields without DataLoader workers (with
        workers, `steps_per_epoch(num_workers=W)`)."""
        if self.epoch is None:
            raise SeTaStreamError("len(stream) is known after stream.set_epoch(epoch)")
        if self.batch_size is not None:
            return self.steps_per_epoch()
        return self._selected - sum(sum(s.yielded) for s in self._resumed)

    def steps_per_epoch(
        self,
        batch_size: int | None = None,
        *,
        drop_last: bool | None = None,
        num_workers: int = 0,
    ) -> int:
        """Batches this rank's DataLoader yields this epoch (for LR schedules that follow
        pruning); after `load_state_dict()` mid-epoch, the batches that remain.

        Pass the DataLoader's `batch_size`, `drop_last` and `num_workers`: each worker batches
        its own part, so with workers there can be one short batch per worker. In batched
        mode the stream's own `batch_size` and `drop_last` count: pass `num_workers` only.
        """
        if self.epoch is None:
            raise SeTaStreamError("steps_per_epoch() is known after stream.set_epoch(epoch)")
        if self.batch_size is not None:
            for name, given, own in (("batch_size", batch_size, self.batch_size),
                                     ("drop_last", drop_last, self.drop_last)):  # fmt: skip
                if given is not None and given != own:
                    raise SeTaStreamError(
                        f"steps_per_epoch({name}={given!r}): this stream yields batches with "
                        f"{name}={own!r} (use DataLoader(stream, batch_size=None))"
                    )
            batch_size, drop_last = self.batch_size, self.drop_last
        if batch_size is None:
            raise SeTaStreamError("steps_per_epoch(batch_size): pass the DataLoader's batch_size")
        return steps(self._selected, batch_size, num_workers, bool(drop_last),
                     stages=self._resumed)  # fmt: skip

    # -- reading (any process) -------------------------------------------------------------

    def __iter__(self) -> Iterator[dict[str, Any]]:
        # Not a generator: the plan and the resume position are taken here, at iter() time,
        # so a StatefulDataLoader's state right after iter() already describes this pass.
        epoch, order, weights, digest = self._work.load()  # this rank's part of the order
        world = World.current(rank=self.rank, world_size=self.world_size)
        rank_len = len(order)
        stages = self._stages_for(epoch, digest, rank_len)
        window = self.shuffle_window if self.shuffle else 0
        todo: np.ndarray | Iterator[np.ndarray]
        if stages:  # a resumed pass: what earlier stages yielded is left out
            part, yo, skip = worker_part(
                rank_len, world, seed=self.seed, epoch=epoch, shuffle_window=window, stages=stages
            )
            ids = np.asarray(order[part])
            w = np.asarray(weights[part]) if weights is not None else None
            todo = yo[skip:]
        else:  # a whole pass: the worker's slice of the plan file, yield order block by block
            a, b = worker_bounds(rank_len, world.worker, world.num_workers)
            ids, w, skip = order[a:b], (weights[a:b] if weights is not None else None), 0
            todo = yield_blocks(b - a, seed=self.seed, epoch=epoch, world=world,
                                shuffle_window=window)  # fmt: skip
        resumes_last = bool(stages) and stages[-1].num_workers == world.num_workers
        self._stages = tuple(stages[:-1] if resumes_last else stages)
        self._resume, self._iter, self._yielded_here = None, (epoch, digest, rank_len), skip
        in_worker = get_worker_info() is not None
        slot = 1 + world.worker if in_worker else 0
        self._iterated_here = not in_worker
        self._work.counters()[:, slot, ITERS] += 1
        return self._read(ids, w, todo, slot)

    def _stages_for(self, epoch: int, digest: str, rank_len: int) -> tuple[Stage, ...]:
        r = self._resume
        if r is None or r.epoch != epoch:
            return ()
        if r.digest != digest:
            raise SeTaStreamError(
                f"the plan of epoch {epoch} selects other samples ({digest}) than the "
                f"checkpoint ({r.digest}): call stream.load_state_dict() before set_epoch()"
            )
        if r.complete:
            return (Stage(num_workers=1, yielded=(rank_len,)),)
        if r.stages is None:
            raise SeTaStreamError(
                f"this stream resumed epoch {epoch} from a state saved while DataLoader workers "
                "read it, so the position is in the loader's state: load that too, with "
                "loader.load_state_dict(...) (same num_workers) or "
                "stream.load_state_dict(state, loader=loader_state)"
            )
        return r.stages

    def _read(self, ids: np.ndarray, weights: Any, todo: Any, slot: int) -> Iterator[dict]:
        build = None  # raw samples are items as they are
        if self.decode is not None or self.transform is not None:
            build = partial(make_item, decode=self.decode, transform=self.transform,
                            allow_pickle=self.allow_pickle)  # fmt: skip
        counters, decodes = self._work.counters(), self.decode is not None
        if self.batch_size is not None:
            yield from self._read_batches(ids, weights, todo, slot, build)
            return
        items = read_part(self.dataset, ids, weights, todo, decodes=decodes, counters=counters,
                          slot=slot, make_item=build, on_error=self.on_error)  # fmt: skip
        for item in items:
            self._yielded_here += 1  # before the yield: a state taken now includes this item
            if item is not None:  # None: a sample skipped (on_error="skip"), position consumed
                yield item

    def _read_batches(
        self, ids: np.ndarray, weights: Any, todo: Any, slot: int, make: Any
    ) -> Iterator[dict[str, Any]]:
        """Batched mode: `(B,)`-row column dicts; `make` (a user's decode or a transform) runs
        on one raw dict per row, the default decode a column at a time."""
        per_row = self.transform is not None or self.decode not in (None, "default")
        build = partial(build_batch, decode=self.decode is not None, allow_pickle=self.allow_pickle,
                        skip=self.on_error == "skip", item=make if per_row else None)  # fmt: skip
        batches = read_batches(self.dataset, ids, weights, todo, batch_size=self.batch_size or 1,
                               drop_last=self.drop_last, build=build,
                               decodes=self.decode is not None, counters=self._work.counters(),
                               slot=slot, on_error=self.on_error)  # fmt: skip
        for consumed, batch in batches:
            self._yielded_here += consumed  # before the yield: a state taken now includes it
            yield batch

    # -- losses ----------------------------------------------------------------------------

    def update(self, ids: Any, losses: Any) -> None:
        """Queue per-sample losses for the loss table; returns at once.

        Each call is one step: the table records, with each loss, this rank's count of
        `update()` calls before it, counted on from the table's last recorded step when the
        stream opens (saved in `state_dict()`; equal on every DDP rank when each rank calls
        `update()` once per training step)."""
        if self.losses_path is None:
            raise SeTaStreamError("this stream has no loss table (losses=None): nothing to update")
        step = self._step
        self._step += 1
        if self.table is not None:
            try:
                self.table.update(ids, losses, step=step)
            except NonFiniteLossError as e:
                e.add_note("SeTaStream(..., nonfinite='skip') drops such losses")
                raise
            return
        # another rank: buffered until the next gather, so check here what rank 0's table would
        i, v = as_ids(ids), as_losses(losses)
        check_shapes(i, v)
        check_range(i, self.dataset.num_samples)
        if not all_finite(v):
            if self.nonfinite == "raise":
                raise NonFiniteLossError(
                    f"non-finite {first_nonfinite(i, v)}; nothing of it was queued. "
                    "SeTaStream(..., nonfinite='skip') drops such losses"
                )
            keep = np.isfinite(v)
            i, v = i[keep], v[keep]
        self._pending[0].append(i)
        self._pending[1].append(v)
        self._pending[2].append(np.full(i.size, step, np.int64))

    def _sync_losses(self) -> None:
        """Under DDP: one gather of every rank's buffered updates into rank 0's table."""
        if not ddp.initialized() or self.losses_path is None:
            return
        gathered = ddp.gather_updates(*self._pending)
        self._pending = ([], [], [])
        if self.table is not None:
            for ids, losses, steps in gathered[1:]:
                if len(ids):
                    self.table.update(ids, losses, step=steps)
            self.table.flush()

    # -- stats, state, close ---------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """This rank's figures for the current epoch and since the start (workers included)."""
        epoch, total = self._work.figures()
        bytes_selected = self._bytes_of_epoch() if self.epoch is not None else 0
        epoch.update(samples_selected=self._selected, bytes_selected=bytes_selected)
        total.update(samples_selected=self._selected_total)
        return {**epoch, "epoch": self.epoch, "total": total}

    def _expect(self) -> dict[str, Any]:
        plan = {
            "shuffle": self.shuffle,
            "open_shards": self.open_shards,
            "shuffle_window": self.shuffle_window,
        }
        return {
            "dataset": self.dataset.fingerprint,
            "policy": self.policy.to_dict(),
            "seed": self.seed,
            "plan": plan,
        }

    def state_dict(self) -> dict[str, Any]:
        """The epoch, position, seed, policy and loss-table version (see `seta_stream.resume`).

        In the training process it first flushes the loss table (a collective under DDP:
        call it on every rank). Inside a DataLoader worker (torchdata's StatefulDataLoader
        calls it there with every batch) it describes that worker's pass and flushes nothing.
        """
        info = get_worker_info()
        if info is not None:
            it = self._iter or (self.epoch, self._digest, self._selected)
            counts = [0] * info.num_workers
            counts[info.id] = self._yielded_here
            mine = (*self._stages, Stage(num_workers=info.num_workers, yielded=tuple(counts)))
            return self._state(it, mine, info.id, None)
        if self.epoch is None:
            raise SeTaStreamError("state_dict() before set_epoch(): nothing to resume yet")
        self._sync_losses()
        table = None
        if self.table is not None:
            self.table.flush()
            queued = int(self.table.stats()["samples_queued"])
            table = {"epoch": self.table.epoch, "updates": self._updates_base + queued}
        it = (self.epoch, self._digest, self._selected)
        return self._state(it, self._main_position(), None, table)

    def _state(self, it: tuple[Any, str, int], stages: Any, worker: Any, table: Any) -> dict:
        """A state of pass `it` = (epoch, selection digest, rank samples) at `stages`."""
        fields = {"epoch": it[0], "rank": self.rank, "world_size": self.world_size}
        fields |= {"selection": it[1], "samples": it[2], "worker": worker, "loss_table": table}
        fields["step"] = self._step
        return resume.make_state({**self._expect(), **fields}, stages)

    def _main_position(self) -> tuple[Stage, ...] | None:
        """What the training loop received this epoch; None if only the loader knows."""
        if self._iterated_here:
            return (*self._stages, Stage(num_workers=1, yielded=(self._yielded_here,)))
        if self._work.counters()[0, 1:, ITERS].sum() > 0:
            return None  # DataLoader workers read this epoch (and prefetch ahead of the loop)
        r = self._resume if self._resume is not None and self._resume.epoch == self.epoch else None
        if r is not None:  # resumed and not read since
            return (Stage(num_workers=1, yielded=(self._selected,)),) if r.complete else r.stages
        return ()

    def load_state_dict(self, state: Mapping[str, Any], *, loader: Any = None) -> None:
        """Resume: the next pass over `state['epoch']` yields only what was not yielded.

        In the training process this also makes `state['epoch']` the current epoch, with the
        selection the loss table recorded for it. `loader`: a torchdata StatefulDataLoader
        (or its `state_dict()`) whose workers read that epoch, when `state` was saved with
        `num_workers > 0` and you resume with another worker count.
        """
        st = resume.check_state(state, expect=self._expect())
        position = resume.position_from_list(st["position"])
        if get_worker_info() is not None:  # StatefulDataLoader restoring a worker
            self._resume = resume.to_resume(st, position, rank=None, world_size=None)
            return
        if position is None and loader is not None:
            position = resume.position_from_loader(st, loader)
        r = resume.to_resume(st, position, rank=self.rank, world_size=self.world_size)
        if self.epoch != r.epoch:
            self._start(r.epoch, *self._recorded_selection(r.epoch))
        if self._digest != r.digest:
            raise SeTaStreamError(
                f"epoch {r.epoch} here selects other samples ({self._digest}) than the "
                f"checkpoint ({r.digest}). Call load_state_dict() on a new stream before "
                "set_epoch(), with the loss table the checkpoint was saved with"
            )
        if st["loss_table"] is not None:
            self._updates_base = int(st["loss_table"]["updates"])
        self._step = int(st.get("step", self._step))
        self._resume, self._iterated_here, self._stages, self._iter = r, False, (), None
        done = (Stage(num_workers=1, yielded=(self._selected,)),) if r.complete else r.stages
        self._resumed = done or ()  # None: the loader's state holds the position
        if done is None:
            _log.warning(
                "resuming epoch %d from a state saved while DataLoader workers read it: the "
                "position is in the loader's state, so len(stream) and steps_per_epoch() count "
                "the whole epoch; pass loader=<its state> to stream.load_state_dict to count "
                "what remains",
                r.epoch,
            )

    def _recorded_selection(self, epoch: int) -> tuple[np.ndarray, np.ndarray | None]:
        """The epoch's selection as it was when the epoch began (rank 0 reads, all receive)."""
        if self.losses_path is None:
            nan = np.full(self.dataset.num_samples, np.nan, np.float32)
            sel = self.policy.select(nan, epoch, seed=self.seed)
            return sel.ids, sel.weights
        found = None
        if self.table is not None:
            found = resume.recorded_selection(self.table, epoch)
        if ddp.initialized():
            found = ddp.broadcast(found)
        if found is None:
            raise SeTaStreamError("no loss table on rank 0 to resume from")
        return found

    def close(self, *, sync: bool = True) -> None:
        """Flush and snapshot the loss table, remove the work folder.

        Under DDP this gathers the last updates (a collective); `sync=False` skips that, as
        leaving a `with` block on an exception does, so a failing rank never waits on others.
        """
        if self._closed:
            return
        self._closed = True
        try:
            if sync:
                self._sync_losses()
        finally:
            if self.table is not None:
                if self.epoch is not None:
                    self.table.end_epoch()
                self.table.close()
                self.table = None
            self.dataset.close()
            self._work.remove()

    def __enter__(self) -> SeTaStream:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.close(sync=exc_type is None)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["table"] = None  # workers never write the table
        return state
