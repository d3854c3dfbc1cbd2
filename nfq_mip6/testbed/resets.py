"""Putting the test bed back as ``up()`` left it, for tests that share one bed: a node's
kernel state that agents touch (:func:`restore_baseline`) and the MN's memory of visited
links (:func:`forget_visited_links`, :func:`home_again`). :meth:`Testbed.reset` runs them.
"""

from __future__ import annotations

import shlex
from typing import Final

from nfq_mip6.testbed.node import Node
from nfq_mip6.testbed.topology import (
    MN_INTERFACE,
    MN_LINK_PREFIX,
    MN_LINKS,
    NodeSpec,
    care_of_address,
    interface_sysctls,
    sysctls,
)

__all__ = ["HOME_AGAIN", "forget_visited_links", "home_again", "restore_baseline"]

# Policy rules back to the kernel's defaults, no proxy neighbours and an empty neighbour
# cache (no stale proxied entries pointing at the HA), no seg6 tunnel source,
# empty raw/mangle/filter tables (the agents' NFQUEUE rules).
_BASELINE_SCRIPT: Final = """\
ip -6 rule flush
ip -6 rule show pref 0 | grep -q . || ip -6 rule add pref 0 lookup local
ip -6 rule add pref 32766 lookup main
ip -6 neigh flush proxy
ip -6 neigh flush all
ip sr tunsrc set ::
printf '*raw\\nCOMMIT\\n*mangle\\nCOMMIT\\n*filter\\nCOMMIT\\n' | ip6tables-restore -w
"""


def restore_baseline(target: Node, spec: NodeSpec) -> None:
    """Undo what an agent or a test may have left in ``target``: policy rules, routing
    tables other than main/local, routes added to main (tunnels, host routes), proxy
    neighbours, the seg6 tunnel source, addresses on ``lo``, ip6tables rules in the
    raw/mangle/filter tables, and the HOWTO sysctls."""
    values = sysctls(spec)
    for iface in spec.interfaces:
        values |= interface_sysctls(spec, iface.name)
    script = [
        _BASELINE_SCRIPT,
        shlex.join(["sysctl", "-q", "-w", *(f"{k}={v}" for k, v in values.items())]),
        # addresses on lo other than ::1 (e.g. a home address parked there)
        "ip -6 -o addr show dev lo | awk '$4 != \"::1/128\" {print $4}' |"
        ' while read a; do ip -6 addr del "$a" dev lo; done',
    ]
    for iface in spec.interfaces:
        for address in iface.addresses:
            script.append(shlex.join(["ip", "-6", "addr", "replace", address, "dev",
                                      iface.name, "nodad"]))  # fmt: skip
        script.append(shlex.join(["ip", "link", "set", iface.name, "up"]))
    target.run(["sh", "-c", "\n".join(script)], check=False)
    wanted = {(r.destination, r.gateway) for r in spec.routes}
    devices = {(r.destination, r.gateway): r.device for r in spec.routes}
    present: set[tuple[str, str]] = set()
    flushed: set[str] = set()
    for route in target.ipv6_routes("table", "all"):
        table = str(route.get("table", "main"))
        dst = str(route.get("dst", ""))
        if table not in ("main", "local"):
            if table not in flushed:
                target.run(["ip", "-6", "route", "flush", "table", table], check=False)
                flushed.add(table)
            continue
        if table != "main" or route.get("protocol") in ("kernel", "ra"):
            continue
        key = (dst, str(route.get("gateway", "")))
        if key in wanted and "encap" not in route:
            present.add(key)
            continue
        target.run(["ip", "-6", "route", "del", dst, "table", "main"], check=False)
    for destination, gateway in sorted(wanted - present):
        device = devices[(destination, gateway)]
        dev = ["dev", device] if device else []
        target.run(["ip", "-6", "route", "replace", destination, "via", gateway, *dev])


def forget_visited_links(mn: Node) -> None:
    """Remove the MN's SLAAC addresses, RA-learnt routes and visited prefixes."""
    mn.run(["ip", "-6", "addr", "flush", "dev", MN_INTERFACE, "dynamic"], check=False)
    mn.run(["ip", "-6", "route", "flush", "dev", MN_INTERFACE, "proto", "ra"], check=False)
    for link in MN_LINKS:
        if link != "home":
            mn.run(["ip", "-6", "route", "del", MN_LINK_PREFIX[link]], check=False)


HOME_AGAIN: Final = "the MN's home SLAAC address and default router"


def home_again(mn: Node) -> bool:
    """The MN has its home SLAAC address and a default router again."""
    home_slaac = care_of_address("home")
    return home_slaac in mn.ipv6_addresses(MN_INTERFACE) and bool(mn.ipv6_routes("default"))
