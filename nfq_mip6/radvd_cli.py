"""``nfq-mip6 radvd-config``: a home agent's radvd.conf from its agent configuration.

The Router Advertisements that make an HA known on its home link (RFC 6275 §7.4: the H flag
and the Home Agent Information option) carry the same preference the agent ranks itself by
in its DHAAD replies (``[ha] preference``, §10.5.1), so one value configures both. A virtual
HA's active member runs radvd with this file on its VRRP interface (keepalived's notify
script starts it on MASTER, stops it otherwise: ``deploy/cluster/nfq-mip6-notify``); the
text itself comes from :func:`nfq_mip6.io.radvd.home_agent_config`.
"""

from __future__ import annotations

import argparse
import sys
from ipaddress import IPv6Interface
from pathlib import Path

__all__ = ["radvd_config_command", "register"]


def radvd_config_command(args: argparse.Namespace) -> int:
    """Print the radvd.conf; exit 2 (with the key named) when the configuration cannot give
    one: not an HA, or no ``[ha] address`` and ``home_prefix`` (an HA that derives them from
    its interface has nothing to render before it runs)."""
    from nfq_mip6.config import ConfigError, Role, load_config
    from nfq_mip6.io.radvd import home_agent_config

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"nfq-mip6: {exc}", file=sys.stderr)
        return 2
    if config.role is not Role.HA or config.ha is None:
        print(f"nfq-mip6: {args.config}: role: {config.role}, not ha", file=sys.stderr)
        return 2
    ha = config.ha
    if ha.address is None or ha.home_prefix is None:
        missing = "ha.address" if ha.address is None else "ha.home_prefix"
        print(f"nfq-mip6: {args.config}: {missing}: needed to write radvd.conf", file=sys.stderr)
        return 2
    interface = args.interface or config.interface
    if not interface:
        print(f"nfq-mip6: {args.config}: interface: missing (or give --interface)", file=sys.stderr)
        return 2
    name = f" for the virtual HA {config.cluster.name}" if config.cluster is not None else ""
    try:
        text = home_agent_config(
            interface,
            IPv6Interface(f"{ha.address}/{ha.home_prefix.prefixlen}"),
            preference=ha.preference,
            lifetime=args.lifetime,
            router_lifetime=args.router_lifetime,
            heading=f"Home agent {ha.address}{name} (RFC 6275 §7.4), by nfq-mip6 radvd-config",
        )
    except ValueError as exc:
        print(f"nfq-mip6: {exc}", file=sys.stderr)
        return 2
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.write_text(text)
        args.output.chmod(0o644)  # radvd refuses a world-writable configuration
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``nfq-mip6 radvd-config`` to the top-level parser."""
    text = "print a home agent's radvd.conf (H flag, Home Agent Information preference)"
    parser = subparsers.add_parser("radvd-config", help=text, description=text)
    parser.add_argument("--config", required=True, type=Path, help="the HA's TOML configuration")
    parser.add_argument("--interface", default=None, help="default: the configuration's")
    parser.add_argument(
        "--lifetime", type=int, default=1800, help="Home Agent Lifetime, seconds (default 1800)"
    )
    parser.add_argument(
        "--router-lifetime",
        type=int,
        default=None,
        help="AdvDefaultLifetime: 0 when another router is the link's default router",
    )
    parser.add_argument("--output", type=Path, default=None, help="write here, not to stdout")
    parser.set_defaults(func=radvd_config_command)
