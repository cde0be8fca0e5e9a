"""The package's front door: a sorted __all__ whose every name resolves, and cheap imports."""

from __future__ import annotations

import subprocess
import sys

import seta_stream


def test_all_is_sorted_and_resolves() -> None:
    assert seta_stream.__all__ == sorted(seta_stream.__all__)
    for name in seta_stream.__all__:
        assert getattr(seta_stream, name) is not None


def test_shards_do_not_import_torch() -> None:
    code = "import sys, seta_stream.shards, seta_stream; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
