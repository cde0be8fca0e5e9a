"""gs:// through gcsfs against gcp-storage-emulator (a GCS JSON-API emulator from PyPI).

The emulator lacks the moveTo call gcsfs uses for renames (gcsfs falls back to copy+delete
after ~30 s of retries), so nothing here renames: datasets are uploaded with put, and
seta_stream writes to object stores with single PUTs anyway.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from torch.utils.data import DataLoader

from seta_stream.losses import LossTable
from seta_stream.policies import Static
from seta_stream.shards import Dataset, read_samples
from seta_stream.stream import SeTaStream

pytestmark = pytest.mark.remote


def test_stream_and_loss_table_on_gcs(gcs_server: dict[str, Any], local_ds: Path, tmp_path: Path):
    import gcsfs

    fs = gcsfs.GCSFileSystem(**gcs_server)
    for p in sorted(local_ds.rglob("*")):
        if p.is_file():
            fs.put_file(str(p), f"gcs-data/ds/{p.relative_to(local_ds).as_posix()}")
    policy = Static(prune_ratio=0.7)
    losses = "gs://gcs-data/run/losses"
    with SeTaStream("gs://gcs-data/ds", policy=policy, losses=losses,
                    storage_options=gcs_server, seed=2) as stream:  # fmt: skip
        stream.set_epoch(0)
        got = {}
        for batch in DataLoader(stream, batch_size=None):
            got[int(batch["__index__"])] = batch["bin"]
            stream.update(np.array([batch["__index__"]]), np.array([0.25]))
        st = stream.stats()
        table = stream.table
        assert table is not None
        table.end_epoch()
    sel = policy.select(np.full(240, np.nan, np.float32), 0, seed=2).ids
    assert sorted(got) == sel.tolist()
    want = {r["__index__"]: r["bin"] for r in read_samples(Dataset.open(local_ds), sel)}
    assert got == want
    assert st["bytes_read"] <= 1.10 * st["bytes_selected"]
    reader = LossTable.open_readonly(losses, storage_options=gcs_server)
    scores = reader.scores()
    assert np.all(scores[sel] == 0.25) and np.isnan(np.delete(scores, sel)).all()
    fs.invalidate_cache()
    assert fs.exists("gcs-data/run/losses/history/epoch=000000.parquet")
