"""Reading a fraction of the samples reads about that fraction of the bytes, counted by the OS."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from seta_stream.shards import ConvertOptions, Dataset, convert, open_source, read_samples


def _rchar() -> int:
    """Bytes this process got from read syscalls (pread included), as the kernel counts them."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("big")
    rng = np.random.default_rng(0)
    np.savez(
        root / "src.npz",
        x=rng.standard_normal((3000, 256)).astype(np.float32),
        y=rng.integers(0, 10, 3000),
    )
    convert(
        open_source(str(root / "src.npz")),
        root / "ds",
        ConvertOptions(samples_per_shard=500, progress=False),
    )
    return root / "ds"


@pytest.mark.parametrize("fraction", [0.1, 0.3, 1.0])
def test_bytes_read_follow_the_selection(big: Path, fraction: float) -> None:
    ds = Dataset.open(big)
    total = ds.manifest.total_bytes
    ids = np.sort(
        np.random.default_rng(1).choice(
            ds.num_samples, int(fraction * ds.num_samples), replace=False
        )
    )
    before = _rchar()
    reader = read_samples(ds, ids)
    n = sum(1 for _ in reader)
    os_bytes = _rchar() - before
    assert n == len(ids)
    # the reader reads each sample's whole range once; the OS saw the same bytes
    want = int(ds.index.lengths(ids).sum())
    assert reader.bytes_read == want
    assert want <= os_bytes <= want * 1.02 + 64 * 1024
    assert os_bytes <= (fraction + 0.03) * total


def test_order_and_repeats_follow_the_ids(big: Path) -> None:
    ids = [7, 3, 7, 2999, 0]
    got = [s["__index__"] for s in read_samples(big, ids)]
    assert got == ids


def test_selected_bytes_counts_member_bytes(big: Path) -> None:
    ds = Dataset.open(big)
    ids = np.array([0, 5, 9])
    raw = [ds.read_raw(i) for i in ids]
    assert ds.index.gather(ids).selected_bytes(np.arange(3)) == sum(
        len(r["x.npy"]) + len(r["y.npy"]) for r in raw
    )


def test_out_of_range_id(big: Path) -> None:
    with pytest.raises(IndexError, match="3000"):
        list(read_samples(big, [3000]))


def test_dataset_pickles_without_fds(big: Path) -> None:
    import pickle

    ds = Dataset.open(big)
    ds.read_raw(1)
    clone = pickle.loads(pickle.dumps(ds))
    assert clone.read_raw(1) == ds.read_raw(1)


def test_batched_local_path_equals_per_sample_reads(big: Path) -> None:
    ds = Dataset.open(big)
    ids = np.random.default_rng(2).integers(0, ds.num_samples, 700)  # repeats, > 2 chunks
    batched = list(ds.iter_raw(ids))
    assert batched == [ds.read_raw(i) for i in ids.tolist()]
    with pytest.raises(IndexError, match="sample id -1 out of range"):
        list(ds.iter_raw(np.array([0, -1])))
