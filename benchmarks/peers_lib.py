"""The pieces of benchmarks/bench_peers.py: one decode, one collate and the wrappers every
reader goes through; the peers' optional imports and their writers of the same samples."""

from __future__ import annotations

import importlib.util
import io
import multiprocessing
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from torch.utils.data import Dataset, IterableDataset, Sampler, get_worker_info

from seta_stream import DynamicRandom
from seta_stream.shards import Dataset as Shards
from seta_stream.shards import read_samples
from seta_stream.shards.decodecols import decode_column

DECODES = multiprocessing.RawArray("q", 16)  # decode calls, one slot per process (0 = main)


# ---------------------------------------------------------------- the shared harness


def decode_png(data: bytes) -> np.ndarray:
    """The one decode of every reader: PNG bytes -> uint8 (H, W, 3), counted per process."""
    info = get_worker_info()
    DECODES[0 if info is None else 1 + info.id] += 1
    with Image.open(io.BytesIO(data), formats=["PNG"]) as img:
        return np.asarray(img)


def decode_item(sample: dict[str, Any]) -> dict[str, Any]:
    return {"png": decode_png(sample["png"]), "cls": sample["cls"]}


def collate(batch: list[dict[str, Any]]) -> list[tuple[Any, int]]:
    """The one collate: (PNG bytes or uint8 array, int label) per sample."""
    return [(s["png"], int(s["cls"])) for s in batch]


def decode_batch(batch: dict[str, Any]) -> dict[str, Any]:
    """`decode_item` for a batched reader: the decode per sample, over the batch's column."""
    return {"png": [decode_png(b) for b in batch["png"]], "cls": batch["cls"]}


def collate_columns(batch: dict[str, Any]) -> tuple[list[Any], np.ndarray]:
    """The one collate for a reader that yields batches: (PNG bytes or uint8 arrays, int64
    labels), the labels' text parsed as `collate` does (`int()`; one width: vectorised)."""
    labels, failed = decode_column("cls", batch["cls"], where=str, allow_pickle=False)
    if failed:
        raise next(iter(failed.values()))
    return list(batch["png"]), labels


class Mapped(IterableDataset[dict[str, Any]]):
    """An iterable reader with `fn` applied to each sample where the reader runs."""

    def __init__(self, source: Any, fn: Callable[[dict[str, Any]], dict[str, Any]] | None):
        super().__init__()
        self.source, self.fn = source, fn

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.source) if self.fn is None else map(self.fn, self.source)


class Indexed(Dataset[dict[str, Any]]):
    """A random-access reader as a map-style dataset: `fn(source[i])`."""

    def __init__(self, source: Any, n: int, fn: Callable[[dict[str, Any]], dict[str, Any]] | None):
        self.source, self.n, self.fn = source, n, fn

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = self.source[i]
        return item if self.fn is None else self.fn(item)


class PlanSubset(Sampler[int]):
    """The same work as SeTaStream's keep-`frac` epochs: each epoch (one `iter` per epoch, from
    0) the very ids `DynamicRandom(prune_ratio=1 - frac)` selects with the same seed, read by
    our plan's order rule: shards (`per_shard` consecutive ids) in a seeded random order, each
    shard's selected ids ascending. Not copied: the plan's interleaving of a few open shards and
    its bounded shuffle of the yield order (both move a sample only a little)."""

    def __init__(self, n: int, frac: float, seed: int, per_shard: int, policy_epochs: int):
        self.n, self.seed, self.per_shard, self.epoch = n, seed, per_shard, 0
        self.policy = DynamicRandom(epochs=policy_epochs, prune_ratio=1 - frac)

    def _ids(self, epoch: int) -> np.ndarray:
        return self.policy.select(np.zeros(self.n, np.float32), epoch, seed=self.seed).ids

    def __len__(self) -> int:
        return len(self._ids(self.epoch))

    def __iter__(self) -> Iterator[int]:
        ids = self._ids(self.epoch)  # sorted
        rng = np.random.default_rng((self.seed, self.epoch))
        self.epoch += 1
        shard = ids // self.per_shard
        order = rng.permutation(np.unique(shard))
        blocks = {s: ids[shard == s] for s in order.tolist()}
        return iter(np.concatenate([blocks[s] for s in order.tolist()]).tolist())


def reader_rchar(workers: int) -> dict[int, int]:
    """rchar of the reading processes: this one (W=0) or its children (W>0), by pid."""
    if workers == 0:
        return {os.getpid(): _rchar()}
    pid, out = os.getpid(), {}
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        kids = [int(k) for k in f.read().split()]
    for kid in kids:
        try:
            with open(f"/proc/{kid}/io", "rb") as f:
                out[kid] = int(next(ln for ln in f if ln.startswith(b"rchar:")).split()[1])
        except OSError:  # exited meanwhile
            continue
    return out


# ---------------------------------------------------------------- peers (optional imports)


def import_litdata() -> tuple[Any, str]:
    """(litdata or None, how it was imported or why not)."""
    if importlib.util.find_spec("litdata") is None:
        return None, "not installed"
    import litdata

    return litdata, f"litdata {litdata.__version__}"


def import_streaming() -> tuple[Any, str]:
    """(streaming.base or None, how). `import streaming` imports its vision datasets, hence
    torchvision, whose PyPI wheel (a CUDA build) does not load beside the CPU torch; then the
    read/write path (`streaming.base`) is loaded without the package's `__init__`."""
    spec = importlib.util.find_spec("streaming")
    if spec is None or spec.submodule_search_locations is None:
        return None, "not installed"
    try:
        import streaming

        return streaming, f"mosaicml-streaming {streaming.__version__}"
    except Exception as e:  # the torchvision import, whatever it raises
        why = f"{type(e).__name__}: {e}".splitlines()[0]
    for name in [m for m in sys.modules if m == "streaming" or m.startswith("streaming.")]:
        del sys.modules[name]
    sys.modules["streaming"] = importlib.util.module_from_spec(spec)  # its __init__ not run
    import streaming.base
    from streaming._version import __version__

    return (
        streaming.base,
        f"mosaicml-streaming {__version__} (streaming.base; `import streaming` failed: {why})",
    )


def samples(shards: Path, lo: int, hi: int) -> Iterator[dict[str, Any]]:
    with closing(Shards.open(shards)) as d:
        for s in read_samples(d, range(lo, hi)):
            yield {"png": s["png"], "cls": int(s["cls"])}


def _lit_items(task: tuple[str, int, int]) -> Iterator[dict[str, Any]]:
    yield from samples(Path(task[0]), task[1], task[2])


def write_litdata(litdata: Any, shards: Path, out: Path, n: int, step: int) -> Path:
    """`litdata.optimize` over the first n samples of our shards, `step` per task."""
    tasks = [(str(shards), lo, min(lo + step, n)) for lo in range(0, n, step)]
    method = multiprocessing.get_start_method(allow_none=True)
    try:  # optimize() sets the global start method (spawn by default): fork, then restore
        litdata.optimize(fn=_lit_items, inputs=tasks, output_dir=str(out), num_workers=1,
                         chunk_bytes="64MB", start_method="fork")  # fmt: skip
    finally:
        multiprocessing.set_start_method(method, force=True)
    return out


def write_mds(streaming: Any, shards: Path, out: Path, n: int) -> Path:
    """`streaming.MDSWriter` over the first n samples of our shards."""
    columns = {"png": "bytes", "cls": "int"}
    with streaming.MDSWriter(out=str(out), columns=columns) as writer:
        for s in samples(shards, 0, n):
            writer.write(s)
    return out


def _rchar() -> int:
    with open("/proc/self/io", "rb") as f:
        return int(next(line for line in f if line.startswith(b"rchar:")).split()[1])
