"""Command line: ``nfq-mip6`` (run, testbed, demo, stats, cache, bul, ro) and ``mipdiag``.

Each subcommand lives in the module that owns its concern; this file only wires argparse.
A module contributes subcommands through a ``register(subparsers)`` function that sets
``func`` on its parsers (``func(args) -> int`` is the exit status). Modules are imported
lazily so that ``nfq-mip6 --help`` works without root or the C extensions.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from nfq_mip6 import __version__

# Modules that contribute subcommands, in the order they appear in --help.
SUBCOMMAND_MODULES: tuple[str, ...] = (
    "nfq_mip6.agent",  # run
    "nfq_mip6.control_cli",  # stats, cache, bul, ro
    "nfq_mip6.testbed.cli",  # testbed up|down|status|move
    "nfq_mip6.demo",  # demo
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nfq-mip6",
        description="Mobile IPv6 (RFC 6275) agent: Home Agent, Mobile Node, Correspondent Node.",
    )
    parser.add_argument("--version", action="version", version=f"nfq-mip6 {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
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
