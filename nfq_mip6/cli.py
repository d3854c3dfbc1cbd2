"""Command line: ``nfq-mip6`` (run, testbed, demo, stats, cache, bul, ro, cluster,
radvd-config) and ``mipdiag``.

Each subcommand lives in the module that owns its concern; this file only wires argparse.
A module contributes subcommands through a ``register(subparsers)`` function that sets
``func`` on its parsers (``func(args) -> int`` is the exit status). Modules are imported
lazily so that ``nfq-mip6 --help`` works without root or the C extensions, and a command
imports only the module that owns it: ``nfq-mip6 cluster status`` runs every few seconds
from keepalived's ``track_script`` on every HA host, and the agent's modules (the protocol
core, the wire codecs, the data plane) cost it most of its start-up (docs/cluster.md).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from nfq_mip6 import __version__

# Modules that contribute subcommands, in the order they appear in --help, with the
# commands each registers.
SUBCOMMAND_MODULES: dict[str, tuple[str, ...]] = {
    "nfq_mip6.agent": ("run",),
    "nfq_mip6.control_cli": ("stats", "cache", "bul", "ro", "cluster"),
    "nfq_mip6.testbed.cli": ("testbed",),
    "nfq_mip6.demo": ("demo",),
    "nfq_mip6.radvd_cli": ("radvd-config",),
}


def _owner(command: str | None) -> str | None:
    for module, commands in SUBCOMMAND_MODULES.items():
        if command in commands:
            return module
    return None


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``nfq-mip6`` parser: with every subcommand, or only with the module owning
    ``command`` when one does (what parsing that command needs)."""
    parser = argparse.ArgumentParser(
        prog="nfq-mip6",
        description="Mobile IPv6 (RFC 6275) agent: Home Agent, Mobile Node, Correspondent Node.",
    )
    parser.add_argument("--version", action="version", version=f"nfq-mip6 {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    owner = _owner(command)
    for name in SUBCOMMAND_MODULES if owner is None else (owner,):
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    # The first word that is not an option names the command (the top level has no option
    # taking a value).
    command = next((word for word in arguments if not word.startswith("-")), None)
    parser = build_parser(command)
    args = parser.parse_args(arguments)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return 2
    result: int = func(args)
    return result


def mipdiag_main(argv: Sequence[str] | None = None) -> int:
    """``mipdiag -s|-c|-l``: the MIPL 1.x diagnostic tool's output (HOWTO §5.2)."""
    from nfq_mip6.control_cli import mipdiag

    return mipdiag(argv)
