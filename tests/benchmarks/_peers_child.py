"""Run in the peers' environment (.venv-peers): benchmarks/peers_lib.py's imports and writers
on tiny data, then every sample read back through LitData and MosaicML Streaming, iterated
and by `ds[i]`, compared with ours. Prints one JSON report.

    .venv-peers/bin/python tests/benchmarks/_peers_child.py WORKDIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

import bench_stream as bs  # noqa: E402
import torch  # noqa: E402
from peers_lib import import_litdata, import_streaming, samples, write_litdata, write_mds  # noqa: E402

N, PER_SHARD = 120, 50


def read(ds: object, n: int) -> dict[str, object]:
    """Both of a peer's read paths against our samples: counts, PNG bytes, mismatches."""
    ours = list(samples(SHARDS, 0, n))
    by_key = {s["png"]: s["cls"] for s in ours}
    it = list(ds)  # type: ignore[call-overload]
    wrong = sum(by_key.get(bytes(s["png"]), -1) != int(s["cls"]) for s in it)
    picked = [ds[i] for i in range(n - 1, -1, -7)]  # type: ignore[index]
    wrong_at = sum(
        bytes(s["png"]) != ours[i]["png"] or int(s["cls"]) != ours[i]["cls"]
        for i, s in zip(range(n - 1, -1, -7), picked, strict=True)
    )
    return {
        "len": len(ds),  # type: ignore[arg-type]
        "iterated": len(it),
        "distinct": len({bytes(s["png"]) for s in it}),
        "png_bytes": sum(len(s["png"]) for s in it),
        "wrong_iterated": wrong,
        "indexed": len(picked),
        "wrong_indexed": wrong_at,
        "ours_png_bytes": sum(len(s["png"]) for s in ours),
    }


if __name__ == "__main__":
    torch.set_num_threads(1)
    work = Path(sys.argv[1])
    SHARDS = bs.build_dataset(work, bs.BenchConfig(samples=N, samples_per_shard=PER_SHARD))
    lit, lit_how = import_litdata()
    mds, mds_how = import_streaming()
    report: dict[str, object] = {"litdata": lit_how, "streaming": mds_how}
    if lit is not None:
        out = write_litdata(lit, SHARDS, work / "litdata", N, PER_SHARD)
        report["litdata_read"] = read(lit.StreamingDataset(str(out)), N)
    if mds is not None:
        out = write_mds(mds, SHARDS, work / "mds", N)
        report["streaming_read"] = read(mds.StreamingDataset(local=str(out), batch_size=8), N)
    print(json.dumps(report))
