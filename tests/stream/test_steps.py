"""`steps_per_epoch` and `len` equal what a real DataLoader yields, also after a resume."""

from __future__ import annotations

from pathlib import Path

import pytest
from torch.utils.data import DataLoader

from seta_stream.policies import Full, Static
from seta_stream.stream import SeTaStream

N = 1000


def _count(batch: list[object]) -> int:
    return len(batch)


def _batches(stream: SeTaStream, batch: int, workers: int, drop_last: bool) -> list[int]:
    loader = DataLoader(
        stream, batch_size=batch, num_workers=workers, drop_last=drop_last, collate_fn=_count
    )
    return list(loader)


# 3 workers on a 2-core machine: torch warns that it suggests at most 2; 3 splits unevenly.
@pytest.mark.filterwarnings("ignore:This DataLoader will create 3 worker processes:UserWarning")
def test_steps_match_the_dataloader(shards: Path) -> None:
    with SeTaStream(shards, policy=Full(), losses=None, decode=None) as s:
        s.set_epoch(0)
        for workers in (0, 1, 2, 3):
            for drop_last in (False, True):
                for batch in (10, 64):  # 10 divides 1000 but not 333; 64 divides neither
                    sizes = _batches(s, batch, workers, drop_last)
                    expect = s.steps_per_epoch(batch, drop_last=drop_last, num_workers=workers)
                    assert len(sizes) == expect, (workers, drop_last, batch)
                    assert sum(sizes) <= len(s) == N
        # with 3 workers a batch that divides the epoch still leaves a short batch per worker
        assert s.steps_per_epoch(10, num_workers=3) == 102 != s.steps_per_epoch(10)


@pytest.mark.parametrize("drop_last", [False, True])
def test_after_resume_the_rest_of_the_epoch(shards: Path, tmp_path: Path, drop_last: bool) -> None:
    policy, batch, taken = Static(prune_ratio=0.6), 32, 3  # 400 samples selected
    with SeTaStream(shards, policy=policy, losses=tmp_path / "l", decode=None) as a:
        a.set_epoch(0)
        full = len(a)
        assert full == 400
        loader = iter(DataLoader(a, batch_size=batch, collate_fn=_count))
        assert [next(loader) for _ in range(taken)] == [batch] * taken
        state = a.state_dict()
    with SeTaStream(shards, policy=policy, losses=tmp_path / "l", decode=None) as b:
        b.load_state_dict(state)
        assert len(b) == full - taken * batch
        b.set_epoch(0)  # a resumed loop calls set_epoch(start): still the rest
        assert len(b) == full - taken * batch
        expect = b.steps_per_epoch(batch, drop_last=drop_last)
        sizes = _batches(b, batch, 0, drop_last)
        assert len(sizes) == expect and sum(sizes) <= len(b)
        b.set_epoch(1)  # the next epoch counts whole again
        assert len(b) == full and b.steps_per_epoch(batch) == -(-full // batch)


# torchdata 0.11's StatefulDataLoader calls torch.set_vital, deprecated in torch 2.13.
@pytest.mark.filterwarnings("ignore:'set_vital' is deprecated:UserWarning")
def test_after_resume_with_workers_the_loader_state_gives_the_rest(
    shards: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from torchdata.stateful_dataloader import StatefulDataLoader

    policy, batch = Static(prune_ratio=0.6), 32  # 400 samples: 200 a worker
    with SeTaStream(shards, policy=policy, losses=tmp_path / "l", decode=None) as a:
        a.set_epoch(0)
        la = StatefulDataLoader(a, batch_size=batch, num_workers=2, collate_fn=_count)
        it = iter(la)
        taken = [next(it) for _ in range(3)]
        ckpt = {"stream": a.state_dict(), "loader": la.state_dict()}
        del it
    rest = 400 - sum(taken)
    with SeTaStream(shards, policy=policy, losses=tmp_path / "l", decode=None) as b:
        with caplog.at_level("WARNING", logger="seta_stream"):
            b.load_state_dict(ckpt["stream"])  # no position of its own: the loader has it
        assert "pass loader=" in caplog.text and len(b) == 400
    caplog.clear()
    with SeTaStream(shards, policy=policy, losses=tmp_path / "l", decode=None) as c:
        with caplog.at_level("WARNING", logger="seta_stream"):
            c.load_state_dict(ckpt["stream"], loader=ckpt["loader"])
        assert not caplog.records and len(c) == rest
        expect = c.steps_per_epoch(batch, num_workers=2)
        lc = StatefulDataLoader(c, batch_size=batch, num_workers=2, collate_fn=_count)
        lc.load_state_dict(ckpt["loader"])
        sizes = list(lc)
        assert (len(sizes), sum(sizes)) == (expect, rest)
