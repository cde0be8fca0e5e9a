"""SeTa over S3: shards and the loss table at s3:// URLs, epochs, and a resume on a new machine."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from torch.utils.data import DataLoader

from seta_stream.losses import LossTable
from seta_stream.losses.layout import TMP_SUFFIX
from seta_stream.losses.schema import METADATA_KEY
from seta_stream.policies import SeTa
from seta_stream.stream import SeTaStream

pytestmark = pytest.mark.remote
POLICY = SeTa(epochs=6, prune_ratio=0.3, num_groups=4, window=0.6)
N = 240


def _batches(stream: SeTaStream, workers: int) -> Any:
    return DataLoader(stream, batch_size=20, num_workers=workers)


def _train(stream: SeTaStream, epoch: int, workers: int = 0, stop: int | None = None) -> list:
    stream.set_epoch(epoch)
    seen = []
    for k, batch in enumerate(_batches(stream, workers)):
        ids = batch["__index__"]
        stream.update(ids, (ids % 11).float())
        seen.append(ids.numpy())
        if k + 1 == stop:
            break
    return seen


def test_seta_epochs_then_resume_on_a_new_machine(
    s3: Any, s3_ds: str, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import s3fs

    so = s3.storage_options
    losses = f"s3://{bucket}/run/losses"
    monkeypatch.setenv("SETA_STREAM_CACHE", str(tmp_path / "machine-a"))
    a = SeTaStream(s3_ds, policy=POLICY, losses=losses, storage_options=so, seed=1)
    for epoch, workers in ((0, 2), (1, 0)):
        seen = np.concatenate(_train(a, epoch, workers))
        assert len(seen) == len(a) == len(np.unique(seen))
    assert len(a) < N  # SeTa pruned in epoch 1
    done = _train(a, 2, stop=2)  # machine A checkpoints mid-epoch 2 and is lost
    state = a.state_dict()
    selected = np.flatnonzero(a.table.columns()["selected"]) if a.table else None
    fs = s3fs.S3FileSystem(**so)
    fs.invalidate_cache()
    names = {p.rsplit("/", 1)[1] for p in fs.find(f"{bucket}/run/losses")}
    assert {"table.json", "losses.parquet", "epoch=000000.parquet"} <= names
    assert not [n for n in names if "tmp" in n]

    monkeypatch.setenv("SETA_STREAM_CACHE", str(tmp_path / "machine-b"))  # nothing local
    with SeTaStream(s3_ds, policy=POLICY, losses=losses, storage_options=so, seed=1) as b:
        b.load_state_dict(state)
        assert b.table is not None
        steps = b.table.columns("step")["step"]  # restored from the snapshot of epoch 2's start
        assert steps.max() == state["step"] - 2 - 1  # 2 batches were trained after it
        rest = np.concatenate(_train(b, 2))
        before = np.concatenate(done)
        # after load_state_dict, len() is what remains of the epoch
        assert len(before) == 40 and len(rest) == len(b)
        assert not set(rest) & set(before)
        np.testing.assert_array_equal(np.sort(np.concatenate([before, rest])), selected)
        assert b.stats()["samples_read"] == len(rest)  # what A yielded is not read again
    a.close(sync=False)


def test_loss_table_uploads_are_never_seen_half_written(
    s3: Any, bucket: str, tmp_path: Path
) -> None:
    """What a reader of the URL can see while a table is written. The server calls `seen`
    at the moment each write is published (before the writer hears back): every object then
    is a complete Parquet file or `table.json`, under its final name (no temp name, copy or
    delete: one PUT each), and each `table.json` marks only epochs whose history, summary and
    snapshot are already there. A reader polling over S3 meanwhile sees the same."""
    import s3fs

    url = f"s3://{bucket}/t"
    fs = s3fs.S3FileSystem(**s3.storage_options, skip_instance_cache=True)
    stop = threading.Event()
    reads: list[int] = []
    bad: list[BaseException] = []
    published: list[str] = []

    def follow(get: Callable[[str], bytes | None]) -> None:
        """One reader's view: table.json, then every file it refers to, all complete."""
        text = get("table.json")
        if text is None:  # before the first upload nothing is promised
            return
        meta = json.loads(text)
        ended = [int(e) for e, v in meta["epochs"].items() if v.get("ended")]
        for e in ended:
            for folder in ("history", "summary"):  # (histogram/: only for compact histories)
                data = get(f"{folder}/epoch={e:06d}.parquet")
                assert data is not None, f"table.json marks epoch {e} ended before {folder}/"
                pq.read_table(pa.BufferReader(data))
        snapshot = get("losses.parquet")
        if ended or snapshot is not None:  # an epoch ended: its snapshot or a later one
            assert snapshot is not None, f"table.json marks {ended} ended before a snapshot"
            snap = pq.read_table(pa.BufferReader(snapshot))
            epoch = json.loads(snap.schema.metadata[METADATA_KEY])["epoch"]
            assert epoch >= max(ended, default=0), (epoch, ended)
            reads.append(snap.num_rows)

    def over_s3(key: str) -> bytes | None:
        try:
            return bytes(fs.cat_file(f"{bucket}/t/{key}"))
        except FileNotFoundError:
            return None

    def seen(path: str) -> None:  # runs in the server as each write is published
        try:
            key = path.split(f"/{bucket}/t/", 1)[1] if f"/{bucket}/t/" in path else path
            published.append(key)
            data = s3.object(bucket, f"t/{key}")
            if key.endswith(".parquet"):
                assert data is not None, key
                pq.read_table(pa.BufferReader(data))
            follow(lambda k: s3.object(bucket, f"t/{k}"))
        except BaseException as e:
            bad.append(e)

    def watch() -> None:  # a reader polling the URL while the table is written
        while not stop.is_set():
            try:
                follow(over_s3)
            except BaseException as e:
                bad.append(e)
                return

    s3.on_write = seen
    watcher = threading.Thread(target=watch, name="seta_stream-test-watch")
    watcher.start()
    try:
        table = LossTable(url, num_samples=5000, storage_options=s3.storage_options,
                          local_dir=tmp_path / "live", chunk_rows=256)  # fmt: skip
        with table:
            for epoch in range(4):
                table.set_epoch(epoch)
                ids = np.arange(0, 5000, epoch + 1)
                table.update(ids, np.full(len(ids), 0.5 + epoch))
                table.end_epoch()
            want = table.scores()
    finally:
        stop.set()
        watcher.join()
    assert not bad, bad
    assert reads and set(reads) == {5000}
    writes = [k for k in published if k != f"/{bucket}"]  # (the bucket's own creation)
    assert writes and not [k for k in writes if "?" in k or TMP_SUFFIX in k], writes
    assert {w.split(" ")[0] for w in s3.stats.writes} == {"PUT"}, s3.stats.writes
    reader = LossTable.open_readonly(url, storage_options=s3.storage_options)
    np.testing.assert_array_equal(reader.scores(), want)
    assert reader.snapshot_epoch() == 3
    fs.invalidate_cache()
    history = sorted(p.rsplit("/", 1)[1] for p in fs.ls(f"{bucket}/t/history", detail=False))
    assert history == [f"epoch={e:06d}.parquet" for e in range(4)]
    again = LossTable(url, storage_options=s3.storage_options, local_dir=tmp_path / "other")
    with again:  # pulled from the URL: the live columns rebuilt from the snapshot
        np.testing.assert_array_equal(again.scores(), want)
        assert again.epoch == 3
