"""Checkpoints of a `SeTaStream`: the state dict, its checks, and where the position lives.

A state dict is plain Python data (ints, strings, lists, dicts), so `torch.save`, `json` and
torchdata's `StatefulDataLoader` all carry it:

- `kind`, `version`: `"seta_stream.stream_state"`, 2.
- `dataset`: the manifest fingerprint of the dataset.
- `policy`, `seed`, `plan`: `policy.to_dict()`, the seed, and the plan options (`shuffle`,
  `open_shards`, `shuffle_window`); a state loads only into a stream with the same ones.
- `epoch`, `rank`, `world_size`: the epoch in progress and the DDP layout it was read with.
- `selection`: `plan.selection_digest` of the epoch's selected ids (count and 64-bit hash).
- `samples`: the samples this rank yields in the epoch (padding included).
- `position`: a list of stages `{"num_workers", "yielded"}` (see `plan.worker_part`), or
  `None` when DataLoader workers read the epoch and the position is in the loader's state.
- `worker`: the DataLoader worker that wrote the state (`None` in the training process).
- `loss_table`: `{"epoch", "updates"}` — the table's epoch and the number of loss values
  handed to it so far, flushed (rank 0; `None` elsewhere).
- `step`: this rank's count of `update()` calls, the step the next loss is recorded with
  (absent in states saved before steps were recorded: the count then goes on from the
  stream's own).

The position counts what the training loop received. With `num_workers > 0` only the
DataLoader knows that: torchdata's `StatefulDataLoader` keeps one state per worker (each
worker's `SeTaStream.state_dict()`, taken with every batch it sends), and
`position_from_loader` merges them so a run can resume with another worker count.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from seta_stream.errors import LossTableError, SeTaStreamError
from seta_stream.losses import LossTable
from seta_stream.losses.layout import HISTORY_DIR, epoch_file_name, read_meta
from seta_stream.losses.schema import file_metadata, read_checked
from seta_stream.plan import Stage
from seta_stream.policies import Selection

STATE_KIND = "seta_stream.stream_state"
STATE_VERSION = 2

Position = tuple[Stage, ...]


@dataclass(frozen=True, kw_only=True)
class Resume:
    """A loaded position, applied by the next iteration over `epoch`."""

    epoch: int
    digest: str
    world_size: int
    stages: Position | None  # None: kept by the DataLoader's state, not loaded yet
    complete: bool = False


def position_to_list(stages: Sequence[Stage] | None) -> list[dict[str, Any]] | None:
    if stages is None:
        return None
    return [{"num_workers": s.num_workers, "yielded": list(s.yielded)} for s in stages]


def position_from_list(raw: Any) -> Position | None:
    if raw is None:
        return None
    try:
        return tuple(
            Stage(num_workers=int(s["num_workers"]), yielded=tuple(int(c) for c in s["yielded"]))
            for s in raw
        )
    except (TypeError, KeyError, ValueError) as e:
        raise SeTaStreamError(f"state dict: bad 'position' {raw!r} ({e})") from e


def make_state(fields: Mapping[str, Any], stages: Sequence[Stage] | None) -> dict[str, Any]:
    """A state dict from the stream's fields and its position."""
    position = position_to_list(stages)
    return {"kind": STATE_KIND, "version": STATE_VERSION, **fields, "position": position}


def check_state(state: Any, *, expect: Mapping[str, Any]) -> dict[str, Any]:
    """Refuse a state of another kind, version, dataset, policy, seed or plan options."""
    if not isinstance(state, Mapping) or state.get("kind") != STATE_KIND:
        kind = state.get("kind") if isinstance(state, Mapping) else type(state).__name__
        raise SeTaStreamError(
            f"not a SeTaStream state dict (kind {kind!r}); "
            "pass what stream.state_dict() returned (a StatefulDataLoader's state goes to "
            "loader.load_state_dict, or to stream.load_state_dict(state, loader=...))"
        )
    if state.get("version") != STATE_VERSION:
        raise SeTaStreamError(
            f"state dict version {state.get('version')!r}; this seta_stream reads {STATE_VERSION}"
        )
    if state["dataset"] != expect["dataset"]:
        raise SeTaStreamError(
            f"state dict of another dataset (manifest fingerprint {state['dataset']}, this "
            f"stream's dataset has {expect['dataset']})"
        )
    for key, what in (("policy", "policy"), ("seed", "seed"), ("plan", "plan options")):
        if state[key] != expect[key]:
            raise SeTaStreamError(
                f"state dict of another {what}: {state[key]!r}; this stream has {expect[key]!r}. "
                "Resume with the policy, seed, shuffle, open_shards and shuffle_window it was "
                "saved with"
            )
    return dict(state)


def to_resume(
    state: Mapping[str, Any],
    position: Position | None,
    *,
    rank: int | None,
    world_size: int | None,
) -> Resume:
    """The loaded position, after checking it fits this rank and world size (None: a
    DataLoader worker, whose training process checked them)."""
    done = sum(sum(s.yielded) for s in position or ())
    epoch, samples = int(state["epoch"]), int(state["samples"])
    if done > samples:
        raise SeTaStreamError(
            f"state dict position counts {done} samples yielded, but rank {state['rank']} "
            f"has {samples} in epoch {epoch}: the state is corrupt"
        )
    complete = position is not None and done == samples
    saved_size = int(state["world_size"])
    started = position is None or done > 0
    if world_size is not None and saved_size != world_size and started and not complete:
        raise SeTaStreamError(
            f"state dict saved mid-epoch {epoch} with world_size {saved_size}, now "
            f"{world_size}: resume mid-epoch with the same number of ranks, or from a "
            "checkpoint taken at an epoch boundary"
        )
    if saved_size == world_size and state["rank"] != rank and started:
        raise SeTaStreamError(
            f"state dict of rank {state['rank']} loaded on rank {rank}: every rank saves and "
            "loads its own state"
        )
    return Resume(
        epoch=epoch,
        digest=str(state["selection"]),
        world_size=saved_size,
        stages=position,
        complete=complete,
    )


def position_from_loader(state: Mapping[str, Any], loader: Any) -> Position:
    """The position of `state['epoch']` from a torchdata `StatefulDataLoader` (or its state).

    Worker states hold the stages before this run and, in the last stage, their own count;
    the merge takes each worker's count from its own state.
    """
    ls = loader.state_dict() if hasattr(loader, "state_dict") else loader
    if not isinstance(ls, Mapping):
        raise SeTaStreamError(f"loader= takes a StatefulDataLoader or its state dict, got {ls!r}")
    if ls.get("dataset_state") is not None:  # num_workers == 0: the stream's own state
        found = [ls["dataset_state"]]
    elif "_snapshot" in ls:
        if ls.get("_steps_since_snapshot", 0):
            raise SeTaStreamError(
                "the StatefulDataLoader state is "
                f"{ls['_steps_since_snapshot']} batches past its last worker snapshot: create "
                "the loader with snapshot_every_n_steps=1 to resume with another worker count"
            )
        snaps = ls["_snapshot"].get("_worker_snapshots", {})
        found = [s.get("dataset_state") for s in snaps.values()]
    else:
        raise SeTaStreamError(
            "loader state has neither dataset_state nor _snapshot: not a "
            "torchdata StatefulDataLoader state of a SeTaStream"
        )
    parts = [
        position_from_list(s["position"])
        for s in found
        if s is not None and s.get("epoch") == state["epoch"]
    ]
    if not parts or any(p is None for p in parts):
        raise SeTaStreamError(
            f"the loader state holds no position of epoch {state['epoch']} (its workers' "
            "states are of another epoch): save loader.state_dict() together with "
            "stream.state_dict()"
        )
    return _merge([p for p in parts if p is not None])


def _merge(parts: list[Position]) -> Position:
    if not parts[0]:
        return ()
    longest = max(parts, key=len)
    last = longest[-1]
    counts = [0] * last.num_workers
    for p in parts:
        if len(p) != len(longest) or p[:-1] != longest[:-1] or p[-1].num_workers != len(counts):
            raise SeTaStreamError(f"worker states disagree on the earlier stages: {parts}")
        counts = [max(a, b) for a, b in zip(counts, p[-1].yielded, strict=True)]
    return (*longest[:-1], Stage(num_workers=last.num_workers, yielded=tuple(counts)))


def recorded_selection(table: LossTable, epoch: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Epoch `epoch`'s selection as the loss table recorded it (not re-run on newer losses).

    From the live columns while the table is in that epoch; from the epoch's history file
    once the run had moved on (the table then goes back to `epoch`).
    """
    meta = read_meta(table.root)
    if table.epoch == epoch and str(epoch) in meta.get("epochs", {}):
        cols = table.columns("selected", "weight")  # 5 bytes a sample, not all 18
        ids = np.flatnonzero(cols["selected"]).astype(np.int64)
        return ids, _weights(cols["weight"][ids])
    path = table.root / HISTORY_DIR / epoch_file_name(epoch)
    if table.epoch < epoch or not path.exists():
        raise LossTableError(
            f"loss table {table.root} (at epoch {table.epoch}) has no recorded selection of "
            f"epoch {epoch}: it is older than the checkpoint, or not the table it was saved with"
        )
    info = file_metadata(path, "history").get("info")
    t = read_checked(path, "history", ["sample_id", "selected", "weight", "group"])
    sel = t.column("selected").to_numpy(zero_copy_only=False)
    sid = t.column("sample_id").to_numpy()[sel].astype(np.int64)
    order = np.argsort(sid)
    ids = sid[order]
    weights = t.column("weight").to_numpy()[sel][order].astype(np.float32)
    groups = np.full(table.num_samples, -1, np.int8)
    groups[t.column("sample_id").to_numpy()] = t.column("group").to_numpy()
    table.set_epoch(epoch)
    table.record_selection(
        epoch, Selection(ids=ids, weights=weights, groups=groups, info=dict(info or {}))
    )
    return ids, _weights(weights)


def _weights(w: np.ndarray) -> np.ndarray | None:
    w = np.asarray(w, np.float32)
    return None if bool(np.all(w == 1.0)) else w
