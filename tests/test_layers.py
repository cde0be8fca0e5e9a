"""The package's imports run one way: no import cycle, and no layer imports one above it.

Read from the source with `ast`, so imports under `TYPE_CHECKING` and inside functions count.
A package `__init__` is not a module here: `from seta_stream.shards import Dataset` is an
import of the module that defines `Dataset` (the `__init__` only re-exports it).

The layers, lowest first (a module may import its own layer and the ones its layer lists):

- base: the exception hierarchy;
- bytes: byte access (fsspec store, ranges/retries/coalescing, range cache, fetching ahead);
- format: shards as written and read (manifest, index and its checks, tar/Arrow readers and
  writer, decoders);
- losses: the loss table and the selection policies;
- conversion: sources and `convert`, index/merge/verify of existing shards, upgrades, and
  the same on a Ray cluster (`ray`: the shard sink and parallel indexing; the only module
  that imports Ray, an extra);
- stream: the plan, the read loop, resume, the work folder and `SeTaStream`.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "seta_stream"

_FORMAT = (
    "manifest index indexcheck shardindex scan tarread reader writer decode wdsname tarindex "
    "colchunk decodecols"
)
_CONVERSION = "convert sources sourcebase datasetsource skipped tables tableread magic maintain"
_CONVERSION += " tarsource upgrade_v1 indexwriter"
LAYERS: dict[str, tuple[str, ...]] = {  # modules by name under seta_stream/
    "base": ("errors",),
    "bytes": ("storage", "remote", "cache", "chunks", "prefetch"),
    "format": tuple(f"shards.{m}" for m in _FORMAT.split()),
    "losses": ("losses", "policies"),  # whole subpackages
    "conversion": (*(f"shards.{m}" for m in _CONVERSION.split()), "ray"),
    "stream": ("plan", "reading", "batching", "resume", "workdir", "stream", "distributed"),
}
MAY_IMPORT: dict[str, set[str]] = {
    "base": set(),
    "bytes": {"base"},
    "format": {"base", "bytes"},
    "losses": {"base", "bytes"},
    "conversion": {"base", "bytes", "format"},
    "stream": {"base", "bytes", "format", "losses"},
}


def _modules() -> dict[str, Path]:
    """Dotted name -> file, for every module of the package (a package by its own name)."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()
INITS = {m for m, p in MODULES.items() if p.name == "__init__.py"}


def _imports(name: str) -> Iterator[tuple[str, str | None, int]]:
    """(module, imported name or None, line) for every import of the package in `name`."""
    tree = ast.parse(MODULES[name].read_text(), str(MODULES[name]))
    package = name if name in INITS else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, *([base] if base else [])])
            for alias in node.names:
                yield base, alias.name, node.lineno
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, None, node.lineno


def _reexports(init: str) -> dict[str, str]:
    """Name -> module that defines it, for the names a package `__init__` imports."""
    return {n: m for m, n, _ in _imports(init) if n is not None and m in MODULES}


REEXPORTS = {init: _reexports(init) for init in INITS}


def _target(module: str, name: str | None) -> str | None:
    """The module an import depends on (a re-export resolved to its module), or None."""
    if name is not None and f"{module}.{name}" in MODULES:
        module = f"{module}.{name}"
    elif name is not None and module in INITS:
        module = REEXPORTS[module].get(name, module)
    if module not in MODULES or module in INITS:
        return None
    return module


def _edges() -> dict[str, dict[str, int]]:
    """Module -> {module it imports: line}, package `__init__`s left out."""
    edges: dict[str, dict[str, int]] = {}
    for m in MODULES:
        if m in INITS:
            continue
        edges[m] = {}
        for module, name, line in _imports(m):
            t = _target(module, name)
            if t is not None and t != m:
                edges[m].setdefault(t, line)
    return edges


EDGES = _edges()


def _reach(start: str) -> set[str]:
    seen: set[str] = set()
    todo = list(EDGES[start])
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo.extend(EDGES[m])
    return seen


def layer_of(module: str) -> str | None:
    rel = module.removeprefix("seta_stream.")
    for layer, members in LAYERS.items():
        if any(rel == p or rel.startswith(f"{p}.") for p in members):
            return layer
    return None


def test_modules_are_found() -> None:
    assert "seta_stream.shards.reader" in EDGES and "seta_stream.prefetch" in EDGES
    assert "seta_stream.chunks" in EDGES["seta_stream.prefetch"]
    # a re-export is an import of the module that defines the name
    assert "seta_stream.losses.table" in EDGES["seta_stream.resume"]


def test_no_import_cycle() -> None:
    reach = {m: _reach(m) for m in EDGES}
    cycles = {tuple(sorted(n for n in reach[m] if m in reach[n])) for m in EDGES if m in reach[m]}
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in sorted(cycles))


def test_every_module_has_a_layer() -> None:
    missing = sorted(m for m in EDGES if layer_of(m) is None)
    assert not missing, f"give these modules a layer in tests/test_layers.py: {missing}"


@pytest.mark.parametrize("layer", list(LAYERS))
def test_no_import_of_a_higher_layer(layer: str) -> None:
    allowed = MAY_IMPORT[layer] | {layer}
    bad = [
        f"{MODULES[m].relative_to(PACKAGE.parent)}:{line} ({layer}) imports {t} ({layer_of(t)})"
        for m, targets in sorted(EDGES.items())
        if layer_of(m) == layer
        for t, line in sorted(targets.items())
        if layer_of(t) not in allowed
    ]
    assert not bad, "\n".join(bad)


def test_only_the_ray_module_imports_ray() -> None:
    """`import seta_stream` works without the `ray` extra installed."""
    users = sorted(
        m
        for m in MODULES
        if any(mod == "ray" or mod.startswith("ray.") for mod, _, _ in _imports(m))
    )
    assert users == ["seta_stream.ray"]
