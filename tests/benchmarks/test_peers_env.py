"""The code behind the peers' rows (benchmarks/peers_lib.py: `import_litdata`, the
`streaming.base` import workaround, `write_litdata`, `write_mds`; bench_peers' readers) run
on tiny data in the peers' environment: LitData 0.2.76 and MosaicML Streaming 0.13.0 with
--no-deps beside the CPU torch, layered on .venv (`make peers-env`, which `make test` runs;
benchmarks/peers_env.sh). Their pins (huggingface-hub < 1, filelock 3.18, xxhash < 4) clash
with .venv's, hence a second environment. SETA_PEERS_PYTHON names another one."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
PYTHON = Path(os.environ.get("SETA_PEERS_PYTHON", ROOT / ".venv-peers" / "bin" / "python"))


def _run(args: list[str], tmp_path: Path) -> str:
    assert PYTHON.exists(), (
        f"no peers environment at {PYTHON}: run `make peers-env` (`make test` does), i.e. "
        "BASE=.venv VENV=.venv-peers bash benchmarks/peers_env.sh"
    )
    tmp = tmp_path / "tmp"  # MosaicML Streaming leaves its NNNNNN_*_filelock files in TMPDIR
    tmp.mkdir(exist_ok=True)
    env = os.environ | {"PYTHONPATH": str(ROOT), "HOME": str(tmp_path / "home"), "TMPDIR": str(tmp)}
    done = subprocess.run([str(PYTHON), *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    return done.stdout


def test_peers_write_and_read_back_every_sample(tmp_path: Path) -> None:
    """write_litdata / write_mds over 120 samples (3 shards of ours), read back iterated and
    by ds[i]: every sample once, its PNG bytes and class as ours."""
    out = _run([str(ROOT / "tests/benchmarks/_peers_child.py"), str(tmp_path)], tmp_path)
    report = json.loads(out.strip().splitlines()[-1])
    assert report["litdata"] == "litdata 0.2.76"
    assert report["streaming"].startswith("mosaicml-streaming 0.13.0"), report["streaming"]
    for peer in ("litdata_read", "streaming_read"):
        r = report[peer]
        assert r["len"] == r["iterated"] == r["distinct"] == 120, (peer, r)
        assert r["png_bytes"] == r["ours_png_bytes"] > 0, (peer, r)
        assert r["wrong_iterated"] == r["wrong_indexed"] == 0 and r["indexed"] == 18, (peer, r)


def test_bench_peers_smoke_measures_both_peers(tmp_path: Path) -> None:
    """bench_peers.py --smoke in the peers' environment: the peers' rows are measured (not
    "not installed"), each epoch yields its count, decodes only when decoding, and the
    sequential read of each peer's files reads exactly their bytes on disk."""
    out = tmp_path / "peers.json"
    _run(["benchmarks/bench_peers.py", "--smoke", "--out", str(out), "--workdir", str(tmp_path)],
         tmp_path)  # fmt: skip
    data: dict[str, Any] = json.loads(out.read_text())
    assert data["peers"]["litdata"] == "litdata 0.2.76"
    assert data["peers"]["streaming"].startswith("mosaicml-streaming 0.13.0")
    disk = data["bytes_on_disk"]
    for reader, fmt in (("litdata.StreamingDataset", "litdata chunks"),
                        ("streaming.StreamingDataset", "MDS shards")):  # fmt: skip
        rows = [r for r in data["rows"] if r["reader"].startswith(reader)]
        assert len(rows) == 2 * 2 * 2 and all("status" not in r for r in rows), rows
        for r in rows:
            n = 500 if r["reader"].endswith(" iter") else 150
            assert r["samples"] == n and r["samples_per_s"] > 0, r
            assert r["decode_calls"] == (n if r["mode"] == "decoded" else 0), r
        limit = next(r for r in data["rows"] if r["reader"] == f"limit: sequential read, {fmt}")
        assert limit["bytes_read"] == disk[fmt] > 0
