"""``nfq-mip6 testbed up|down|status|move`` — the HOWTO test bed from the command line."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any, cast

from nfq_mip6.testbed.netns import TestbedError
from nfq_mip6.testbed.testbed import DEFAULT_PREFIX, Testbed
from nfq_mip6.testbed.topology import MN_LINKS, MnLink


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser(
        "testbed",
        help="build the HOWTO's test bed (HA, R, AR, AR2, CN, MN) in network namespaces",
        description="The Linux Mobile IPv6 HOWTO test bed (§4, §5.5) in network namespaces.",
    )
    actions = parser.add_subparsers(dest="testbed_command", metavar="ACTION", required=True)

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = actions.add_parser(name, help=help_text)
        sub.add_argument(
            "--prefix",
            default=DEFAULT_PREFIX,
            help=f"name prefix of namespaces (default {DEFAULT_PREFIX!r})",
        )
        return sub

    up = add("up", "create the namespaces, links, addresses, routes and radvd (idempotent)")
    up.add_argument(
        "--nemo",
        action="store_true",
        help="the NEMO variant (RFC 3963): the MN as a mobile router with a LAN "
        "(mobilenet, fec0:106:2800::/64) and a mobile network node on it, plus the HA's and "
        "the router's agent configurations (docs/nemo.md)",
    )
    up.add_argument(
        "--cluster",
        type=int,
        default=0,
        metavar="N",
        help="N HA hosts serving one virtual HA instead of the single HA: an etcd member, "
        "keepalived (VRRPv3) and an HA agent on each (docs/cluster.md)",
    )
    up.set_defaults(func=_up)
    down = add("down", "remove everything `up` created")
    down.add_argument(
        "--force",
        action="store_true",
        help="also remove namespaces with the test bed's names that it has no record of",
    )
    down.set_defaults(func=_down)
    status = add("status", "show what exists")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=_status)
    move = add("move", "make the MN travel (HOWTO §5.2: iwconfig eth0 essid LINK)")
    move.add_argument("link", choices=MN_LINKS)
    move.add_argument(
        "--solicit",
        action="store_true",
        help="send a Router Solicitation from the MN afterwards (rdisc6)",
    )
    move.set_defaults(func=_move)


def _guard(action: str, args: argparse.Namespace) -> int:
    try:
        testbed = Testbed(
            args.prefix,
            nemo=args.nemo if action == "up" else None,
            cluster=args.cluster if action == "up" else None,
        )
        if action == "up":
            started = time.monotonic()
            testbed.up()
            print(testbed.status().format())
            if testbed.nemo:
                print("  agent configurations (nfq-mip6 run --config FILE, in the node's netns):")
                for name in ("ha", "mn", "mn-implicit"):
                    print(f"    {name:<12} {testbed.nemo_config(name)}")
            print(f"(ready in {time.monotonic() - started:.2f} s)")
        elif action == "down":
            removed = testbed.down(force=args.force)
            print(f"removed: {', '.join(removed) if removed else 'nothing'}")
        elif action == "status":
            status = testbed.status()
            print(status.to_json() if args.json else status.format())
        elif action == "move":
            testbed.move(cast(MnLink, args.link))
            if args.solicit:
                testbed.solicit_router()
            print(f"MN moved to {args.link}")
    except TestbedError as exc:
        print(f"nfq-mip6 testbed {action}: {exc}", file=sys.stderr)
        return 1
    return 0


def _up(args: argparse.Namespace) -> int:
    return _guard("up", args)


def _down(args: argparse.Namespace) -> int:
    return _guard("down", args)


def _status(args: argparse.Namespace) -> int:
    return _guard("status", args)


def _move(args: argparse.Namespace) -> int:
    return _guard("move", args)
