"""The fuzz targets of fuzz/fuzz.py, built once per session in a temporary folder."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

FUZZ = Path(__file__).resolve().parents[2] / "fuzz"


@pytest.fixture(scope="session")
def fuzzlib() -> Iterator[dict[str, ModuleType]]:
    """fuzz/fuzz_mutate.py, fuzz_targets.py and fuzz_readers.py (they import each other)."""
    sys.path.insert(0, str(FUZZ))
    try:
        import fuzz_mutate
        import fuzz_readers
        import fuzz_targets

        yield {"mutate": fuzz_mutate, "targets": fuzz_targets, "readers": fuzz_readers}
    finally:
        sys.path.remove(str(FUZZ))


@pytest.fixture(scope="session")
def targets(fuzzlib: dict[str, ModuleType], tmp_path_factory: pytest.TempPathFactory) -> Any:
    """name -> target object, as fuzz/fuzz.py makes them."""
    work = tmp_path_factory.mktemp("fuzz")
    t, r = fuzzlib["targets"], fuzzlib["readers"]
    kinds = {"tar": t.TarTarget, "manifest": t.ManifestTarget, "index": r.IndexTarget,
             "decode": r.DecodeTarget, "read": r.ReadTarget}  # fmt: skip
    return {name: kind(work / name) for name, kind in kinds.items()}
