"""The security layer imports downward only (wire < mobility < security/store < io/dataplane <
runtime < agent): no module of nfq_mip6/security imports the configuration, the store, the
adapters or the runtimes — not at the top, not inside a function, not for type checking."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SECURITY = Path(__file__).resolve().parents[2] / "nfq_mip6" / "security"
ALLOWED = ("nfq_mip6.constants", "nfq_mip6.errors", "nfq_mip6.wire", "nfq_mip6.mobility")


def imported_modules(path: Path) -> list[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module is not None and node.level == 0:
            names.append(node.module)
        elif isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
    return names


@pytest.mark.parametrize("path", sorted(SECURITY.glob("*.py")), ids=lambda p: p.name)
def test_security_imports_only_layers_below_it(path: Path) -> None:
    upward = [
        name
        for name in imported_modules(path)
        if name.startswith("nfq_mip6")
        and not name.startswith("nfq_mip6.security")
        and not name.startswith(ALLOWED)
    ]
    assert upward == []
