"""``nfq-mip6``'s command wiring (nfq_mip6/cli.py): every subcommand in the help, and a
command imports only the module that owns it (keepalived runs ``nfq-mip6 cluster status``
every few seconds on every HA host, docs/cluster.md)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from nfq_mip6.cli import SUBCOMMAND_MODULES, build_parser, main

# what ``main`` imported, printed as JSON by a fresh interpreter
_IMPORTED = """
import json, sys
from nfq_mip6.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print(json.dumps(sorted(m for m in sys.modules if m.startswith("nfq_mip6"))))
"""


def imported_by(*argv: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", _IMPORTED, *argv],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    modules: list[str] = json.loads(done.stdout.splitlines()[-1])
    return modules


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for commands in SUBCOMMAND_MODULES.values():
        for command in commands:
            assert command in out, command


def test_each_module_registers_the_commands_it_is_listed_with() -> None:
    for module, commands in SUBCOMMAND_MODULES.items():
        parser = build_parser(commands[0])
        subparsers = next(a for a in parser._actions if a.dest == "command")
        assert sorted(subparsers.choices) == sorted(commands), module


def test_cluster_status_imports_only_the_control_client() -> None:
    modules = imported_by("cluster", "status", "--control-socket", "/nonexistent/agent.sock")
    assert "nfq_mip6.control_cli" in modules
    heavy = [
        m
        for m in modules
        if m.startswith(("nfq_mip6.mobility", "nfq_mip6.runtime", "nfq_mip6.wire"))
        or m in ("nfq_mip6.agent", "nfq_mip6.testbed", "nfq_mip6.demo", "nfq_mip6.config")
    ]
    assert heavy == [], heavy


def test_an_unknown_command_is_refused_with_every_command_listed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["no-such-command"])
    assert exit_.value.code == 2
    assert "testbed" in capsys.readouterr().err
