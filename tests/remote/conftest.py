"""A moto S3 server and an HTTP Range server on 127.0.0.1 (free ports), and a dataset on both.

The servers live for the session; `s3` and `http` hand them to a test with faults off and
counters zeroed, and put the faults back off afterwards.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch

from seta_stream.shards import ConvertOptions, convert, open_source


def _servers() -> ModuleType:
    name = "seta_stream_test_servers"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("servers.py"))
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


servers = _servers()
# gcsfs >= 2026 probes every bucket over gRPC (60 s timeout) unless this is off; the emulator
# speaks JSON over HTTP only. Read by gcsfs at import, so set before any gs:// use.
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
# Every S3 test passes credentials; never let botocore look for them at the EC2 metadata address.
os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
N = 240
SAMPLES_PER_SHARD = 60


@pytest.fixture(scope="session", autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture
def faults() -> Any:
    """The `Faults` record to give a server's `set()`."""
    return servers.Faults


@pytest.fixture(scope="session")
def s3_server() -> Iterator[Any]:
    server = servers.S3Server()
    yield server
    server.stop()


@pytest.fixture
def s3(s3_server: Any) -> Iterator[Any]:
    s3_server.set(servers.Faults())
    s3_server.stats.reset()
    yield s3_server
    s3_server.set(servers.Faults())
    s3_server.on_write = None


@pytest.fixture
def bucket(s3: Any) -> str:
    """A fresh bucket (its name) on the S3 server."""
    import s3fs

    name = f"b-{uuid.uuid4().hex[:12]}"
    s3fs.S3FileSystem(**s3.storage_options).mkdir(name)
    return name


@pytest.fixture(scope="session")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Image-like samples of 8-48 KiB random bytes (incompressible) and a label."""
    root = tmp_path_factory.mktemp("remote-src")
    rng = np.random.default_rng(0)
    for i in range(N):
        size = int(rng.integers(8 << 10, 48 << 10))
        (root / f"{i:05d}.bin").write_bytes(rng.bytes(size))
        (root / f"{i:05d}.cls").write_text(str(i % 10))
    return root


@pytest.fixture(scope="session")
def local_ds(source: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The dataset converted to a local folder (4 tar shards)."""
    out = tmp_path_factory.mktemp("remote-ds") / "ds"
    opts = ConvertOptions(samples_per_shard=SAMPLES_PER_SHARD, progress=False)
    convert(open_source(str(source)), out, opts)
    return out


@pytest.fixture(scope="session")
def s3_ds(s3_server: Any, local_ds: Path) -> str:
    """The same dataset, uploaded to s3://<bucket>/ds (read-only for tests)."""
    import s3fs

    fs = s3fs.S3FileSystem(**s3_server.storage_options)
    fs.mkdir("shared")
    fs.put(str(local_ds), "shared/ds", recursive=True)
    return "s3://shared/ds"


@pytest.fixture(scope="session")
def http_server(local_ds: Path) -> Iterator[Any]:
    server = servers.RangeHTTPServer(local_ds.parent)
    yield server
    server.stop()


@pytest.fixture
def http(http_server: Any) -> Iterator[Any]:
    http_server.set(servers.Faults())
    http_server.stats.reset()
    yield http_server
    http_server.set(servers.Faults())


@pytest.fixture(scope="session")
def gcs_server() -> Iterator[dict[str, Any]]:
    """gcp-storage-emulator (PyPI) on a free port; yields gcsfs storage options."""
    emulator = pytest.importorskip("gcp_storage_emulator.server")
    logging.getLogger("gcp_storage_emulator").setLevel(logging.CRITICAL)
    server = emulator.create_server("127.0.0.1", 0, in_memory=True, default_bucket="gcs-data")
    server.start()
    port = server._api._httpd.server_address[1]
    yield {"endpoint_url": f"http://127.0.0.1:{port}", "token": "anon", "project": "test"}
    server.stop()
