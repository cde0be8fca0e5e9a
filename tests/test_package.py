"""The package's front door: a sorted __all__ whose every name resolves, and cheap imports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import seta_stream


def test_all_is_sorted_and_resolves() -> None:
    assert seta_stream.__all__ == sorted(seta_stream.__all__)
    for name in seta_stream.__all__:
        assert getattr(seta_stream, name) is not None


def test_shards_do_not_import_torch() -> None:
    code = "import sys, seta_stream.shards, seta_stream; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_package_and_cli_import_without_ray() -> None:
    """Ray is an extra (`seta_stream[ray]`): only `seta_stream.ray` imports it."""
    code = (
        "import sys; sys.modules['ray'] = None\n"  # `import ray` now fails, as if not installed
        "import seta_stream, seta_stream.shards, seta_stream.stream\n"
        "sys.path.insert(0, 'tools'); import shard\n"
        "try:\n    import seta_stream.ray\nexcept ImportError: pass\nelse: raise SystemExit(1)\n"
    )
    cwd = str(Path(__file__).resolve().parents[1])
    subprocess.run([sys.executable, "-c", code], check=True, cwd=cwd)
