"""Imports run downward only: the layer order of docs/architecture.md, checked on the AST.

Every ``import`` of the package counts: module level, inside functions (lazy imports) and under
``if TYPE_CHECKING:`` (a type is a dependency too). A module may import its own top-level unit
(``runtime.home_agent`` -> ``runtime.base``) and any unit on a lower layer; units that share a
layer do not know each other (``security`` does not import ``store``). A new top-level module or
package must be placed in :data:`LAYERS` before it can land.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parents[2] / "nfq_mip6"
PACKAGE = "nfq_mip6"
ROOT = "nfq_mip6"  # the package's own __init__ (``__version__``)

# Lowest first. Keep in step with the table in docs/architecture.md.
LAYERS: tuple[tuple[str, ...], ...] = (
    (ROOT, "constants", "errors", "logsetup"),  # foundation: imports nothing of ours
    ("wire",),  # pure codec
    ("mobility",),  # pure protocol core (sans-I/O)
    ("security", "store"),  # pure security components; persistence
    # adapters: packets, kernel, control socket, Prometheus, the state directory's lock
    ("io", "dataplane", "control", "metrics", "statedir"),
    ("config",),  # the operator's typed configuration (adapters take plain values)
    ("runtime",),  # one runtime per role: bytes -> events, actions -> I/O
    ("agent", "control_cli", "radvd_cli", "testbed"),  # programs: agent, mipdiag, radvd, test bed
    ("demo",),  # the HOWTO walk-through on the test bed
    ("cli",),  # the ``nfq-mip6`` command, dispatching to the programs above
    ("__main__",),  # ``python -m nfq_mip6``
)
LAYER_OF: dict[str, int] = {unit: rank for rank, units in enumerate(LAYERS) for unit in units}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _unit(module: str) -> str:
    """``nfq_mip6.runtime.base`` -> ``runtime``; the package itself -> :data:`ROOT`."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ROOT


def _is_unit(name: str) -> bool:
    return (PACKAGE_DIR / f"{name}.py").is_file() or (PACKAGE_DIR / name / "__init__.py").is_file()


def _imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module) for every import of our package in ``path``."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target == PACKAGE:  # ``from nfq_mip6 import wire`` names a unit
                found += [
                    (node.lineno, f"{PACKAGE}.{alias.name}" if _is_unit(alias.name) else PACKAGE)
                    for alias in node.names
                ]
            else:
                found.append((node.lineno, target))
    return [(line, name) for line, name in found if name.split(".")[0] == PACKAGE]


def _modules() -> list[Path]:
    return sorted(PACKAGE_DIR.rglob("*.py"))


def test_every_unit_has_a_layer() -> None:
    units = {_unit(_module_name(path)) for path in _modules()}
    unplaced = sorted(units - LAYER_OF.keys())
    assert not unplaced, f"place {unplaced} in LAYERS (and in docs/architecture.md)"


def test_an_upward_import_is_found() -> None:
    """The checker itself: a lazy import of the runtime from wire/ is a violation."""
    assert _violations("wire", [(3, "nfq_mip6.runtime.base")]) == [
        "line 3: wire (layer 1) imports nfq_mip6.runtime.base (runtime, layer 6)"
    ]
    assert _violations("security", [(1, "nfq_mip6.store")])  # same layer, other unit
    assert not _violations("runtime", [(1, "nfq_mip6.runtime.base"), (2, "nfq_mip6.wire")])


def _violations(unit: str, imports: list[tuple[int, str]]) -> list[str]:
    rank = LAYER_OF[unit]
    bad: list[str] = []
    for line, name in imports:
        target = _unit(name)
        if target == unit:
            continue
        target_rank = LAYER_OF.get(target)
        if target_rank is None or target_rank >= rank:
            bad.append(
                f"line {line}: {unit} (layer {rank}) imports {name} ({target}, layer {target_rank})"
            )
    return bad


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE_DIR)))
def test_imports_run_downward(path: Path) -> None:
    unit = _unit(_module_name(path))
    if unit not in LAYER_OF:
        pytest.fail(f"{unit} has no layer (test_every_unit_has_a_layer)")
    bad = _violations(unit, _imported_modules(path))
    assert not bad, f"{path.relative_to(PACKAGE_DIR)}: " + "; ".join(bad)
