"""Batched mode (`SeTaStream(..., batch_size=B)`): the per-sample mode's guarantees, a batch
at a time: exact selection, decode calls = yielded samples, pruned samples never read,
resume, `steps_per_epoch`, weights, `update()` from the batch's ids, and columns."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader
from torchdata.stateful_dataloader import StatefulDataLoader

from seta_stream.batching import ColWindow
from seta_stream.errors import DecodeError, SeTaStreamError, ShardFormatError
from seta_stream.plan import worker_counts
from seta_stream.policies import Full, InfoBatch, SeTa, Static
from seta_stream.shards import ConvertOptions, convert, open_source
from seta_stream.shards.colchunk import ColChunk
from seta_stream.stream import SeTaStream

N = 1000
POLICY = SeTa(epochs=6, prune_ratio=0.3, num_groups=5, window=0.6)


def _same(a: Any, b: Any) -> bool:
    if isinstance(b, list) and b and isinstance(b[0], bytes):  # a raw field of one size
        return [bytes(row) for row in np.asarray(a)] == b
    return bool(np.array_equal(np.asarray(a), np.asarray(b)))


def _loader(s: SeTaStream, workers: int = 0, **kw: Any) -> DataLoader:
    return DataLoader(s, batch_size=None, num_workers=workers, **kw)


@pytest.mark.parametrize("decode", [None, "default"])
@pytest.mark.parametrize("workers", [0, 2])
def test_batches_hold_what_the_per_sample_mode_yields(
    shards: Path, tmp_path: Path, decode: str | None, workers: int
) -> None:
    """Same samples, same order, same values, same weights (InfoBatch: weights != 1)."""
    policy = InfoBatch(epochs=4, prune_ratio=0.5)
    kw: dict[str, Any] = {"policy": policy, "seed": 3, "decode": decode}
    with (
        SeTaStream(shards, losses=tmp_path / "a", **kw) as one,
        SeTaStream(shards, losses=tmp_path / "b", batch_size=48, **kw) as many,
    ):
        for epoch in range(2):
            one.set_epoch(epoch)
            many.set_epoch(epoch)
            per = list(DataLoader(one, batch_size=48, num_workers=workers))
            got = list(_loader(many, workers))
            assert len(got) == len(per) == many.steps_per_epoch(num_workers=workers)
            for p, g in zip(per, got, strict=True):
                assert set(g) == set(p)
                assert g["__key__"] == p["__key__"]
                for name in set(p) - {"__key__"}:
                    assert _same(g[name], p[name]), name
                    assert isinstance(g[name], torch.Tensor)  # numpy columns -> tensors
                losses = (g["__index__"] % 5).float() + 0.5
                one.update(p["__index__"], losses)
                many.update(g["__index__"], losses)
            w = torch.cat([g["__weight__"] for g in got])
            assert w.dtype == torch.float32
            if epoch == 1:
                assert (w > 1).any()  # InfoBatch rescales pruned groups' survivors


@pytest.mark.parametrize("workers", [0, 2])
def test_each_selected_sample_once_pruned_never_read(
    shards: Path, tmp_path: Path, workers: int
) -> None:
    with SeTaStream(shards, policy=POLICY, losses=tmp_path / "l", seed=1, batch_size=64) as s:
        loader = _loader(s, workers, persistent_workers=workers > 0)
        for e in range(4):
            s.set_epoch(e)
            sel = POLICY.select(s.table.scores(), e, seed=1).ids  # type: ignore[union-attr]
            seen = []
            for batch in loader:
                ids = batch["__index__"]
                assert len(ids) <= 64
                seen.append(ids.numpy())
                s.update(ids, (ids % 7).float())
            got = np.concatenate(seen)
            np.testing.assert_array_equal(np.sort(got), sel)  # every selected one, once
            st = s.stats()
            assert st["samples_read"] == st["samples_decoded"] == st["samples_yielded"] == len(sel)
            assert st["bytes_read"] == st["bytes_selected"]  # nothing but the selection read
        assert len(sel) < N


@pytest.mark.filterwarnings("ignore:This DataLoader will create 3 worker processes:UserWarning")
def test_steps_per_epoch_is_the_number_of_batches(shards: Path) -> None:
    for batch in (10, 64):  # 10 divides 1000 but not 333; 64 divides neither
        for drop_last in (False, True):
            with SeTaStream(shards, policy=Full(), losses=None, decode=None,
                            batch_size=batch, drop_last=drop_last) as s:  # fmt: skip
                s.set_epoch(0)
                for workers in (0, 1, 2, 3):
                    before = s.stats()["samples_read"]
                    sizes = [len(b["__index__"]) for b in _loader(s, workers)]
                    expect = s.steps_per_epoch(num_workers=workers)
                    assert len(sizes) == expect, (batch, drop_last, workers)
                    assert sum(b < batch for b in sizes) <= (0 if drop_last else max(workers, 1))
                    read = s.stats()["samples_read"] - before
                    assert sum(sizes) <= read <= N
                    assert drop_last or read == sum(sizes)
                    counts = worker_counts(N, workers)
                    assert sum(sizes) == sum(c // batch * batch if drop_last else c for c in counts)
                assert len(s) == s.steps_per_epoch()
                with pytest.raises(SeTaStreamError, match="batch_size=None"):
                    s.steps_per_epoch(batch + 1)
    with SeTaStream(shards, policy=Full(), losses=None, batch_size=10) as s:
        s.set_epoch(0)
        assert s.steps_per_epoch(num_workers=3) == 102 != s.steps_per_epoch() == len(s) == 100


@pytest.mark.parametrize("bad", [0, -1, 2.0, True])
def test_batch_size_must_be_a_positive_int(shards: Path, bad: Any) -> None:
    with pytest.raises(SeTaStreamError, match="batch_size="):
        SeTaStream(shards, policy=Full(), losses=None, batch_size=bad)


def _ids(batches: list[dict[str, Any]]) -> list[np.ndarray]:
    return [np.asarray(b["__index__"]) for b in batches]


@pytest.mark.parametrize(("workers", "then"), [(0, 0), (2, 2), (2, 1), (2, 0)])
def test_resume_mid_epoch(shards: Path, tmp_path: Path, workers: int, then: int) -> None:
    losses, batch = tmp_path / "l", 40
    with SeTaStream(shards, policy=POLICY, losses=losses, seed=1, batch_size=batch) as a:
        a.set_epoch(0)
        for b in _loader(a):
            a.update(b["__index__"], (b["__index__"] % 11).float())
        a.set_epoch(1)
        selection = np.sort(POLICY.select(a.table.scores(), 1, seed=1).ids)  # type: ignore[union-attr]
        la = StatefulDataLoader(a, batch_size=None, num_workers=workers)
        it = iter(la)
        got = _ids([next(it) for _ in range(3)])
        state, ls = a.state_dict(), la.state_dict()
        del it
    assert all(len(g) == batch for g in got)
    with SeTaStream(shards, policy=POLICY, losses=losses, seed=1, batch_size=batch) as b:
        b.load_state_dict(state, loader=ls if workers else None)
        b.set_epoch(1)
        steps = b.steps_per_epoch(num_workers=then)
        rest = _ids(list(_loader(b, then)))
        assert len(rest) == steps
        assert b.stats()["samples_read"] == sum(map(len, rest))  # what was yielded: not read
    both = np.concatenate([*got, *rest])
    assert len(both) == len(np.unique(both))
    np.testing.assert_array_equal(np.sort(both), selection)


def test_resume_keeps_the_batch_boundaries(shards: Path, tmp_path: Path) -> None:
    """Resumed at 0 workers, the rest is the uninterrupted run's remaining batches."""
    kw: dict[str, Any] = {"policy": Static(prune_ratio=0.6), "losses": tmp_path / "l"}
    with SeTaStream(shards, batch_size=32, **kw) as a:
        a.set_epoch(0)
        whole = _ids(list(_loader(a)))
        it = iter(_loader(a))
        [next(it) for _ in range(4)]
        state = a.state_dict()
        assert state["position"] == [{"num_workers": 1, "yielded": [128]}]
    with SeTaStream(shards, batch_size=32, **kw) as b:
        b.load_state_dict(state)
        assert len(b) == len(whole) - 4
        rest = _ids(list(_loader(b)))
    assert len(rest) == len(whole) - 4
    for x, y in zip(rest, whole[4:], strict=True):
        np.testing.assert_array_equal(x, y)


def test_a_callable_decode_and_transform_run_once_per_sample(shards: Path, tmp_path: Path) -> None:
    calls: list[int] = []

    def decode(raw: dict[str, Any]) -> dict[str, Any]:
        calls.append(raw["__index__"])
        return {"n": len(raw["x.npy"]), "x": np.frombuffer(raw["x.npy"][128:], np.float32)}

    def transform(item: dict[str, Any]) -> dict[str, Any]:
        return {**item, "half": item["x"][:20], "tag": f"t{item['n']}"}

    with SeTaStream(shards, policy=Static(prune_ratio=0.5), losses=tmp_path / "l", decode=decode,
                    transform=transform, batch_size=64) as s:  # fmt: skip
        s.set_epoch(0)
        got = list(s)
        st = s.stats()
    b = got[0]
    assert isinstance(b["x"], np.ndarray) and b["x"].shape == (64, 40)
    assert b["half"].shape == (64, 20) and b["n"].dtype == np.int64
    assert b["tag"] == ["t288"] * 64  # strings stay a list
    ids = np.concatenate([g["__index__"] for g in got])
    assert sorted(calls) == sorted(ids.tolist()) and len(calls) == len(ids) == 500
    assert st["samples_decoded"] == st["samples_yielded"] == 500


def test_default_decode_columns(shards: Path) -> None:
    """.npy of one shape: one array; class-like text: int64; raw fields of one size: uint8."""
    src = np.load(Path(shards).parent / "src.npz")
    with SeTaStream(shards, policy=Full(), losses=None, batch_size=100, shuffle=False) as s:
        s.set_epoch(0)
        b = next(iter(s))
    with SeTaStream(shards, policy=Full(), losses=None, batch_size=100, decode=None,
                    shuffle=False) as s:  # fmt: skip
        s.set_epoch(0)
        raw = next(iter(s))
    i = b["__index__"]
    np.testing.assert_array_equal(b["x.npy"], src["x"][i])
    np.testing.assert_array_equal(b["y.npy"], src["y"][i])
    assert b["x.npy"].flags.writeable and b["x.npy"].flags.c_contiguous
    assert raw["x.npy"].dtype == np.uint8 and raw["x.npy"].shape == (100, 288)
    np.testing.assert_array_equal(raw["x.npy"][:, 128:].copy().view(np.float32), src["x"][i])


def test_columns_of_varying_size_zst_and_class_text(tmp_path: Path) -> None:
    """A field whose size varies is a list of bytes; `.zst` members come out decompressed;
    `cls` text of mixed widths becomes int64 through int() per value."""
    import io
    import tarfile

    tar = tmp_path / "src.tar"
    with tarfile.open(tar, "w") as t:
        for i in range(300):
            for name, data in ((f"{i:05d}.txt", b"x" * (i % 7)), (f"{i:05d}.cls", str(i).encode())):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))
    convert(open_source(str(tar)), tmp_path / "ds",
            ConvertOptions(samples_per_shard=70, compress="zstd", progress=False))  # fmt: skip
    for decode in (None, "default"):
        with SeTaStream(tmp_path / "ds", policy=Full(), losses=None, decode=decode,
                        batch_size=32) as s:  # fmt: skip
            s.set_epoch(0)
            got = list(s)
        ids = np.concatenate([g["__index__"] for g in got])
        assert sorted(ids.tolist()) == list(range(300))
        keys = [k for g in got for k in g["__key__"]]
        order = [int(k) for k in keys]
        txt = [v for g in got for v in g["txt"]]
        cls = [g["cls"] for g in got]
        if decode is None:  # (a batch whose values happen to have one size: an array)
            assert [bytes(v) for v in txt] == [b"x" * (i % 7) for i in order]
            assert [bytes(v) for c in cls for v in c] == [str(i).encode() for i in order]
            assert any(isinstance(c, list) for c in cls)
        else:
            assert txt == ["x" * (i % 7) for i in order]
            assert all(isinstance(c, np.ndarray) and c.dtype == np.int64 for c in cls)
            assert np.concatenate(cls).tolist() == order


def test_window_gathers_across_chunks() -> None:
    """`ColWindow.take` over chunks from raw dicts: fixed sizes as one array, others a list,
    a missing field None, errors in their row; a chunk is dropped once all taken."""
    rng = np.random.default_rng(0)
    raws = [{"__key__": f"k{i}", "__index__": i, "a": bytes([i % 251]) * 3,
             "b": b"v" * (i % 4), **({"c": b"c"} if i % 2 else {})} for i in range(50)]  # fmt: skip
    err = ShardFormatError("broken")
    raws[17] = err  # type: ignore[call-overload]
    win = ColWindow()
    for a in range(0, 50, 10):
        win.extend(ColChunk.from_raws(np.arange(a, a + 10), raws[a : a + 10]))
    order = rng.permutation(50)
    seen = []
    for a in range(0, 50, 16):
        ranks = order[a : a + 16]
        batch = win.take(ranks)
        assert batch.ids.tolist() == ranks.tolist()
        ok = [k for k, r in enumerate(ranks.tolist()) if r != 17]
        assert set(batch.errors) == set(range(len(ranks))) - set(ok)
        in_bad_chunk = ((ranks >= 10) & (ranks < 20)).any()  # that chunk holds an error
        assert isinstance(batch.fields["a"], list if in_bad_chunk else np.ndarray)
        for k in ok:
            r = int(ranks[k])
            assert bytes(batch.fields["a"][k]) == raws[r]["a"]  # type: ignore[index]
            assert bytes(batch.fields["b"][k]) == raws[r]["b"]  # type: ignore[index]
            c = batch.fields["c"][k]
            assert (None if c is None else bytes(c)) == (b"c" if r % 2 else None)
        seen += ranks.tolist()
    assert sorted(seen) == list(range(50)) and win.chunks == []


def _broken(shards: Path, dst: Path) -> Path:
    from tests.stream.test_on_error import BAD_DATA, BAD_HEADER, _break

    return _break(shards, dst, (BAD_HEADER, BAD_DATA))


def test_on_error_skip_leaves_the_row_out_raise_names_it(
    shards: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from tests.stream.test_on_error import BAD_DATA, BAD_HEADER

    path = _broken(shards, tmp_path / "ds")
    with SeTaStream(path, policy=Full(), losses=None, batch_size=50) as s:
        s.set_epoch(0)
        with pytest.raises((ShardFormatError, DecodeError), match=r"sample (7|611)\b"):
            list(s)
    with (
        caplog.at_level(logging.WARNING, logger="seta_stream"),
        SeTaStream(path, policy=Full(), losses=None, batch_size=50, on_error="skip") as s,
    ):
        s.set_epoch(0)
        got = list(s)
        st = s.stats()
    assert len(got) == 20 == s.steps_per_epoch()  # the count of batches does not change
    ids = np.concatenate([g["__index__"] for g in got])
    assert sorted(ids.tolist()) == sorted(set(range(N)) - {BAD_HEADER, BAD_DATA})
    assert sorted(len(g["__index__"]) for g in got)[:2] == [49, 49]
    assert all(len(g["x.npy"]) == len(g["__key__"]) == len(g["__index__"]) for g in got)
    assert st["samples_skipped"] == 2 and st["samples_yielded"] == N - 2
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert f"sample {BAD_HEADER}" in logged and f"sample {BAD_DATA}" in logged


def test_arrow_shards_batched_as_per_sample(tmp_path: Path) -> None:
    """Arrow shards (raw dicts turned into columns) give the per-sample mode's samples."""
    rng = np.random.default_rng(2)
    np.savez(tmp_path / "src.npz", x=rng.standard_normal((300, 6)).astype(np.float32),
             y=rng.integers(0, 10, 300))  # fmt: skip
    convert(open_source(str(tmp_path / "src.npz")), tmp_path / "ds",
            ConvertOptions(format="arrow", samples_per_shard=70, progress=False))  # fmt: skip
    kw: dict[str, Any] = {"policy": Full(), "losses": None, "seed": 4}
    with (
        SeTaStream(tmp_path / "ds", **kw) as one,
        SeTaStream(tmp_path / "ds", batch_size=32, **kw) as many,
    ):
        one.set_epoch(0)
        many.set_epoch(0)
        per = list(DataLoader(one, batch_size=32))
        got = list(_loader(many))
        st = many.stats()
    assert len(got) == len(per) == 10
    for p, g in zip(per, got, strict=True):
        for name in p:
            assert _same(g[name], p[name]), name
    assert st["samples_read"] == st["samples_decoded"] == st["samples_yielded"] == 300
