"""One home per constant and per kernel helper (AST scan of nfq_mip6/): the IPv6 protocol
numbers live in nfq_mip6/constants.py, ip6tables runs through nfq_mip6/io/iptables.py, and
the pyroute2 seg6 patch lives in nfq_mip6/dataplane/kernel.py."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "nfq_mip6"


def _modules() -> list[tuple[str, ast.Module]]:
    return [
        (str(path.relative_to(PACKAGE)), ast.parse(path.read_text(encoding="utf-8")))
        for path in sorted(PACKAGE.rglob("*.py"))
    ]


def test_ip_protocol_numbers_are_defined_once() -> None:
    homes: dict[str, list[str]] = {}
    for name, tree in _modules():
        for node in ast.walk(tree):
            targets = (
                [node.target] if isinstance(node, ast.AnnAssign) else getattr(node, "targets", [])
            )
            for target in targets:
                if isinstance(target, ast.Name) and target.id.startswith("IPPROTO_"):
                    homes.setdefault(target.id, []).append(name)
    assert homes, "no IPPROTO_ constant found"
    assert {where for places in homes.values() for where in places} == {"constants.py"}
    assert all(len(places) == 1 for places in homes.values()), homes


def test_only_the_iptables_adapter_runs_ip6tables() -> None:
    commands = {"ip6tables", "ip6tables-restore", "ip6tables-save"}
    users = {
        name
        for name, tree in _modules()
        for node in ast.walk(tree)
        if isinstance(node, ast.List | ast.Tuple)
        and node.elts
        and isinstance(node.elts[0], ast.Constant)
        and node.elts[0].value in commands
    }  # an argv starting with the command
    assert users == {"io/iptables.py"}


def test_only_the_kernel_toolkit_patches_pyroute2() -> None:
    users = {
        name
        for name, tree in _modules()
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and node.attr in ("encapmodes", "r_encapmodes")
    }
    assert users == {"dataplane/kernel.py"}
