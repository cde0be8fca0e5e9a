"""Short hypothesis runs of every fuzz target: only project errors escape, and nothing hangs.

The long seeded run is `python fuzz/fuzz.py --inputs 100000` (figures in the closing note of
issue 7); these keep the property in the default test suite (derandomized: reproducible).
"""

from __future__ import annotations

import json
import random
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType, ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seta_stream.errors import SeTaStreamError

FAST = settings(
    max_examples=120,
    deadline=2000,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


class Hang(BaseException):
    pass


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """A hang fails the test (SIGALRM) instead of blocking the suite."""

    def alarm(signum: int, frame: FrameType | None) -> None:
        raise Hang(f"over {seconds} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def only_project_errors(run: Callable[[], Any]) -> SeTaStreamError | None:
    """Run; a project error is returned (and must name what it is about), anything else
    (a Wrong data check included) fails the test."""
    error = None
    try:
        with time_limit(5.0):
            run()
    except SeTaStreamError as e:
        error = e
    assert error is None or str(error).strip(), "an error without a message"
    return error


edits = st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 255)), min_size=1, max_size=6)


@FAST
@given(k=st.integers(0, 3), edits=edits, cut=st.none() | st.integers(0, 1 << 16), fix=st.booleans())
def test_tar_indexer(targets: dict[str, Any], fuzzlib: dict[str, ModuleType], k: int,
                     edits: list[tuple[int, int]], cut: int | None, fix: bool) -> None:  # fmt: skip
    """Byte edits (re-checksummed or not) and cuts of real tars: `scan_tar` raises
    ShardFormatError naming the file, or indexes the samples before the edit as before."""
    tar, fm = targets["tar"], fuzzlib["mutate"]
    seed = tar.seeds[k]
    blob = bytearray(seed)
    for at, value in edits:
        blob[at % len(blob)] = value
    if fix:
        for at in fm.header_offsets(bytes(blob)):
            fm.fix_checksum(blob, at)
    data = bytes(blob if cut is None else blob[:cut])
    err = only_project_errors(lambda: tar.check(seed, tar.scans[k], data, index_path=False))
    assert err is None or str(err).startswith("fuzz.tar: ")


@FAST
@given(n=st.integers(0, 2**32))
def test_tar_indexer_seeded_mutations(targets: dict[str, Any], n: int) -> None:
    """The fuzzer's own mutations (header fields, splices, random bytes, the index path)."""
    only_project_errors(lambda: targets["tar"].one(random.Random(n)))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=8,
)


@FAST
@given(key=st.sampled_from(["kind", "version", "format", "fields", "compression", "index",
                            "num_samples", "shards", "extra", "metadata_columns"]),
       shard_key=st.sampled_from(["name", "bytes", "samples", "sha256", None]),
       value=json_values)  # fmt: skip
def test_manifest_values(targets: dict[str, Any], key: str, shard_key: str | None,
                         value: object) -> None:  # fmt: skip
    """Any JSON value in any place of a real manifest: ManifestError or a checked manifest."""
    doc = json.loads(json.dumps(targets["manifest"].base))
    if shard_key is None:
        doc[key] = value
    else:
        doc["shards"][0][shard_key] = value
    text = json.dumps(doc).encode()
    err = only_project_errors(lambda: targets["manifest"].raw(text))
    assert err is None or str(err).startswith("fuzz/dataset.json: ")


@FAST
@given(data=st.binary(max_size=300))
def test_manifest_bytes(targets: dict[str, Any], data: bytes) -> None:
    only_project_errors(lambda: targets["manifest"].raw(data))


@FAST
@given(ext=st.sampled_from(["x.npy", "a.json", "t.txt", "cls", "id", "img.png", "img.jpg",
                            "img.gif", "img.ppm", "img.tiff", "x.npy.zst", "x.pickle", "b.bin"]),
       data=st.binary(max_size=200))  # fmt: skip
def test_decoders_random_bytes(targets: dict[str, Any], ext: str, data: bytes) -> None:
    only_project_errors(lambda: targets["decode"].raw(ext.encode() + b"\x00" + data))


@FAST
@given(n=st.integers(0, 2**32))
def test_decoders_seeded_mutations(targets: dict[str, Any], n: int) -> None:
    """Mutated valid values of every decoder, absurd npy headers, zstd bombs (1 MiB limit)."""
    only_project_errors(lambda: targets["decode"].one(random.Random(n)))


@settings(FAST, max_examples=60)
@given(n=st.integers(0, 2**32))
def test_index_reader(targets: dict[str, Any], n: int) -> None:
    """Edited index tables and mutated Parquet: ManifestError, or an index whose reads return
    each sample's own bytes; and opened with the real manifest, every edited index file of
    either format (tar, arrow) is refused by its sha256. Nothing is let through: a `Wrong`
    (such as "arrow: an edited index was opened") fails the test."""
    only_project_errors(lambda: targets["index"].one(random.Random(n)))


@settings(FAST, max_examples=60)
@given(n=st.integers(0, 2**32))
def test_read_mutated_shards(targets: dict[str, Any], n: int) -> None:
    """Shards mutated after indexing, read end to end with decoding: project errors only,
    and every sample whose bytes were not touched reads exactly as before."""
    only_project_errors(lambda: targets["read"].one(random.Random(n)))


def test_fuzz_cli_smoke(script: Callable[[str], ModuleType], tmp_path: Any) -> None:
    fuzz = script("fuzz/fuzz.py")
    out = tmp_path / "f.json"
    rc = fuzz.main(["--inputs", "50", "--seed", "3", "--no-progress", "--json", str(out)])
    report = json.loads(out.read_text())
    rows = {r["target"]: r for r in report["targets"]}
    assert sorted(rows) == sorted(fuzz.TARGETS)
    for name, r in rows.items():
        assert r["inputs"] == 10 and r["ok"] + sum(r["errors"].values()) + r["wrong"] == 10
        assert r["escapes"] == 0 and r["hangs"] == 0 and r["wrong"] == 0, (name, r["examples"])
    assert rc == 0


def test_fuzz_cli_usage(script: Callable[[str], ModuleType]) -> None:
    fuzz = script("fuzz/fuzz.py")
    with pytest.raises(SystemExit) as e:
        fuzz.main(["--inputs", "0"])
    assert e.value.code == 2
