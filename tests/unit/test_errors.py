"""One error root (nfq_mip6/errors.py): every error the package raises on purpose hangs
under NfqMip6Error, through the branch that says whose fault it is, and keeps its old
builtin base so existing ``except`` clauses behave as before."""

from __future__ import annotations

import ast
import builtins
from pathlib import Path

import pytest

from nfq_mip6 import errors
from nfq_mip6.config import ConfigError
from nfq_mip6.control import AgentNotRunning, ControlError
from nfq_mip6.dataplane import DataplaneError
from nfq_mip6.dataplane.netlink import SysctlError
from nfq_mip6.io.iptables import RulesError
from nfq_mip6.mobility.binding import IllegalTransition
from nfq_mip6.runtime import UnsupportedRole
from nfq_mip6.runtime.movement import MalformedRouterAdvertisement
from nfq_mip6.security.keys import KeyMaterialError
from nfq_mip6.store import StoreError
from nfq_mip6.testbed.netns import CommandFailed, TestbedError
from nfq_mip6.wire.errors import MalformedPacket

PACKAGE = Path(__file__).resolve().parents[2] / "nfq_mip6"


@pytest.mark.parametrize(
    ("error", "branch", "builtin"),
    [
        (MalformedPacket, errors.MalformedInput, ValueError),
        (MalformedRouterAdvertisement, errors.MalformedInput, ValueError),
        (IllegalTransition, errors.InternalError, AssertionError),
        (DataplaneError, errors.DataplaneError, RuntimeError),
        (SysctlError, errors.DataplaneError, RuntimeError),
        (RulesError, errors.DataplaneError, RuntimeError),
        (ConfigError, errors.ConfigurationError, Exception),
        (KeyMaterialError, errors.ConfigurationError, Exception),
        (UnsupportedRole, errors.ConfigurationError, RuntimeError),
        (StoreError, errors.StoreError, Exception),
        (ControlError, errors.ControlError, Exception),
        (AgentNotRunning, errors.ControlError, Exception),
        (TestbedError, errors.NfqMip6Error, RuntimeError),
        (CommandFailed, errors.NfqMip6Error, RuntimeError),
    ],
    ids=lambda value: getattr(value, "__name__", str(value)),
)
def test_each_error_has_its_branch_and_keeps_its_builtin_base(
    error: type[Exception], branch: type[Exception], builtin: type[Exception]
) -> None:
    assert issubclass(error, branch) and issubclass(branch, errors.NfqMip6Error)
    assert issubclass(error, builtin)


def test_there_is_one_kernel_error_for_both_data_planes() -> None:
    from nfq_mip6.dataplane import mobile_node

    assert mobile_node.DataplaneError is DataplaneError is errors.DataplaneError


def test_no_exception_class_in_the_package_bypasses_the_root() -> None:
    """Every exception class defined under nfq_mip6/ derives from a class of the package."""
    builtin_names = {
        name
        for name, value in vars(builtins).items()
        if isinstance(value, type) and issubclass(value, BaseException)
    }
    roots = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ClassDef):
                continue
            bases = [b.id for b in node.bases if isinstance(b, ast.Name)]
            if bases and all(base in builtin_names for base in bases):
                roots.append(f"{path.relative_to(PACKAGE)}:{node.name}")
    assert roots == ["errors.py:NfqMip6Error"]


def test_the_error_module_imports_nothing() -> None:
    tree = ast.parse((PACKAGE / "errors.py").read_text(encoding="utf-8"))
    imports = [n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom)]
    assert [ast.unparse(n) for n in imports] == ["from __future__ import annotations"]
