"""Fixtures of the distributed tests: `torchrun` launches a worker script on several ranks."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest


def _torchrun(script: Path, *args: str | Path, world: int = 2, timeout: float = 120) -> None:
    """Run `script ARGS` on `world` ranks; fails the test with the output's tail if it fails.
    `--standalone` lets torchrun pick a free rendezvous port (never a fixed one)."""
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "GLOO_SOCKET_IFNAME": "lo",
        "TP_SOCKET_IFNAME": "lo",
        "MASTER_ADDR": "127.0.0.1",
    }
    argv = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={world}",
        "--local-addr=127.0.0.1",
        str(script),
        *map(str, args),
    ]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]


@pytest.fixture(scope="session")
def torchrun() -> Callable[..., None]:
    """`torchrun(script, *args, world=2, timeout=120)`: see `_torchrun`."""
    return _torchrun
