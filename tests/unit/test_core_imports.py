"""The protocol core and the codec are pure: no I/O modules, no clock (AST scan)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "nfq_mip6"
PURE_PACKAGES = ("mobility", "wire")
FORBIDDEN_MODULES = frozenset(
    {
        "asyncio",
        "netfilterqueue",
        "prometheus_client",
        "pyroute2",
        "scapy",
        "select",
        "selectors",
        "socket",
        "subprocess",
        "threading",
        "time",
        "datetime",
    }
)


def _python_files() -> list[Path]:
    return sorted(p for name in PURE_PACKAGES for p in (PACKAGE / name).rglob("*.py"))


def _imported_roots(tree: ast.AST) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "__import__"
        ):
            roots.add("__import__")
    return roots


def test_there_are_files_to_scan() -> None:
    assert any(p.name == "events.py" for p in _python_files())


@pytest.mark.parametrize("path", _python_files(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_pure_module_imports_no_io(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    bad = _imported_roots(tree) & (FORBIDDEN_MODULES | {"__import__"})
    assert not bad, f"{path} imports {sorted(bad)}: the core must stay sans-I/O"
