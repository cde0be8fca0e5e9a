"""What `fuzz/fuzz.py` fuzzes: one class per target, each `one(rng)` runs one mutated input.

`one` returns when the code under test succeeded with correct data or raised a project error
(which propagates); it raises `Wrong` when a success returned wrong data. Anything else that
escapes is a bug. `raw(data)` runs the same code on bytes from a coverage-guided fuzzer.
"""

from __future__ import annotations

import copy
import io
import json
import random
from pathlib import Path
from typing import Any

import fuzz_mutate as fm
import numpy as np

from seta_stream.shards import ConvertOptions, Dataset, convert, index_tars, open_source
from seta_stream.shards.manifest import Manifest
from seta_stream.shards.reader import read_samples
from seta_stream.shards.tarindex import TarScan, scan_tar
from seta_stream.storage import Store


class Wrong(AssertionError):
    """A call succeeded but returned data that is not what the input holds."""


def check(cond: bool, what: str) -> None:
    if not cond:
        raise Wrong(what)


def make_dataset(root: Path, *, fmt: str = "tar", compress: str | None = None) -> Path:
    """A small dataset (2 shards of 5 samples, `x.npy` and `y.npy`) written by convert."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    np.savez(root / "src.npz", x=rng.standard_normal((10, 6)).astype(np.float32), y=np.arange(10))
    out = root / f"{fmt}-{compress}"
    opts = ConvertOptions(samples_per_shard=5, progress=False, format=fmt, compress=compress)  # type: ignore[arg-type]
    convert(open_source(str(root / "src.npz")), out, opts)
    return out


class TarTarget:
    """`scan_tar` on mutated tars; now and then the whole `index_tars` + read path."""

    name = "tar"

    def __init__(self, work: Path) -> None:
        self.seeds = fm.seed_tars()
        self.scans = [scan_tar(io.BytesIO(s), name="seed.tar") for s in self.seeds]
        self.folder = work / "tars"
        self.folder.mkdir(parents=True, exist_ok=True)

    def one(self, rng: random.Random) -> None:
        k = rng.randrange(len(self.seeds))
        seed, p = self.seeds[k], rng.random()
        if p < 0.45:
            data = fm.mutate(rng, seed)
        elif p < 0.85:
            data = fm.corrupt_header(rng, seed)
            data = fm.mutate(rng, data) if rng.random() < 0.3 else data
        elif p < 0.95:
            other = rng.choice(self.seeds)
            data = seed[: rng.randrange(0, len(seed), 512)] + other[rng.randrange(len(other)) :]
        else:
            data = fm.random_bytes(rng)
        self.check(seed, self.scans[k], data, index_path=rng.random() < 0.03)

    def corpus(self) -> list[bytes]:
        return list(self.seeds)

    def raw(self, data: bytes) -> None:
        self.check(b"", None, data, index_path=False)

    def check(self, seed: bytes, orig: TarScan | None, data: bytes, *, index_path: bool) -> None:
        scan = scan_tar(io.BytesIO(data), name="fuzz.tar", checksum=index_path)
        _scan_invariants(scan, data)
        if orig is not None:  # samples whose bytes (and next header) precede the first edit
            first = fm.first_diff(seed, data)
            fixed = [
                s
                for s, nxt in zip(orig.samples, orig.samples[1:], strict=False)
                if nxt.members[0].data_offset <= first
            ]
            check(list(scan.samples[: len(fixed)]) == fixed, "samples before the edit changed")
        if index_path:
            (self.folder / "t.tar").write_bytes(data)
            index_tars(str(self.folder), progress=False)
            ds = Dataset.open(self.folder)
            for i, sample in enumerate(read_samples(ds, range(ds.num_samples))):
                for ext, off, size in scan.samples[i].members:
                    check(sample[ext] == data[off : off + size], f"sample {i} {ext}: other bytes")
            ds.close()


def _scan_invariants(scan: TarScan, data: bytes) -> None:
    end = 0
    check(scan.size == len(data), "size differs from the file")
    for s in scan.samples:
        check(s.offset >= end and s.length > 0, f"sample {s.key!r} overlaps the one before")
        end = s.offset + s.length
        check(end <= len(data), f"sample {s.key!r} past the end")
        for _, off, size in s.members:
            check(s.offset + 512 <= off and off + size <= end, f"member outside {s.key!r}")


_HOSTILE_VALUES: tuple[Any, ...] = (None, True, 0, -1, 2**31, 2**64, 10**30, 1.5, float("nan"),
    "x", "", "../../etc/passwd", "/abs", "a\x00b", [], {}, [1], {"a": 1}, "1")  # fmt: skip


class ManifestTarget:
    """`Manifest.from_json` on edited JSON (values, keys, versions) and mutated bytes."""

    name = "manifest"

    def __init__(self, work: Path) -> None:
        self.store = Store(make_dataset(work / "m"))
        self.base = json.loads(self.store.read_bytes("dataset.json"))

    def one(self, rng: random.Random) -> None:
        p = rng.random()
        if p < 0.6:
            doc = json.loads(json.dumps(self.base))
            for _ in range(rng.randint(1, 3)):
                _edit_json(rng, doc)
            text = json.dumps(doc).encode()
        elif p < 0.95:
            text = fm.mutate(rng, json.dumps(self.base).encode())
        else:
            text = rng.choice((b"[" * 100_000, b'{"a":' * 50_000, rng.randbytes(64)))
        self.raw(text)

    def corpus(self) -> list[bytes]:
        return [json.dumps(self.base).encode()]

    def raw(self, data: bytes) -> None:
        m = Manifest.from_json(data, source="fuzz/dataset.json")
        for s in m.shards:
            check(isinstance(s.bytes, int) and s.bytes >= 0, "shard bytes accepted")
            check(isinstance(s.name, str) and ".." not in s.name.split("/"), "shard name")
        check(Manifest.from_json(m.to_json(), source="again") == m, "round trip differs")
        check(len(m.fingerprint) == 32, "fingerprint")


def _edit_json(rng: random.Random, doc: dict[str, Any]) -> None:
    """Replace, delete or add one value somewhere in `doc`."""
    node: Any = doc
    while True:
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        if not keys:
            return
        k = rng.choice(keys)
        if isinstance(node[k], dict | list) and node[k] and rng.random() < 0.6:
            node = node[k]
            continue
        op = rng.random()
        if op < 0.15 and isinstance(node, dict):
            del node[k]
        elif op < 0.25 and isinstance(node, dict):
            node["surplus"] = copy.deepcopy(rng.choice(_HOSTILE_VALUES))
        elif k == "version" or op < 0.3:
            node[k] = rng.choice((0, 2, "1", 1.0, True, None, -1, 2**70))
        else:
            node[k] = copy.deepcopy(rng.choice(_HOSTILE_VALUES))  # no shared (circular) nodes
        return
