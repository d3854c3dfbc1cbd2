"""Kernel routes that go with each route-optimized binding (RFC 6275 §9.3.2, §11.3.1).

The RH2 or the HAO adds 24 octets to every packet of a binding. A host route with the
interface MTU less 24 makes the sender size (or fragment) packets before the insert, so none
exceeds the path MTU afterwards: TCP picks a smaller MSS, a 1500-octet ping is fragmented at
the source. Both RO data paths use them (tc BPF and NFQUEUE).

* CN: ``<HoA>/128 via <next hop to the CoA> dev <if> mtu <MTU-24>`` in ``main``; the packet
  also leaves on the CoA's interface, where the egress program runs.
* MN: rule ``to <CN>/128 lookup MN_RO_ROUTE_TABLE`` (priority ``MN_RO_RULE_PRIORITY``, before
  the reverse tunnel's ``from HoA`` rule; numbers in :mod:`nfq_mip6.dataplane.kernel`) with
  ``<CN>/128 via <next hop> src <HoA>``: the packet leaves directly instead of through the
  tunnel (the program adds the HAO), and a socket bound to ``::`` answers from the HoA
  (Linux implements RFC 6724 rule 4, "prefer home address", only with CONFIG_IPV6_MIP6).
* MN, the peer is the home agent (§11.3.1, §9.3.1: its binding HoA → CoA lets our packets
  to it leave directly): the rule also selects ``from <HoA>/128``. Everything else the MN
  sends to the HA leaves from the CoA and must keep the main table's route: the reverse
  tunnel's outer packets (next header 41) and the Binding Updates. Caught by a plain
  ``to <HA>/128`` rule they would take this route (its ``src HoA``, and after a move a
  stale next hop) and be lost.

* CN, NFQUEUE data path (``user_space_rewrite``): ``<HoA>/128`` keeps the HoA's own next
  hop and only adds the MTU. The rewritten packet is routed again to the CoA when it is
  reinjected; the packets to the HoA that are not rewritten — the HoT and the BRR (§9.4.3,
  §9.5.5: through the home agent) and the BA of a home de-registration — must still reach
  the home network.
* MN, NFQUEUE data path (``user_space_rewrite``): the packet rewritten in user space to
  ``from <CoA>`` is routed again when it is reinjected (LOCAL_OUT). A rule
  ``from <CoA>/128 to <CN>/128 lookup main`` (``MN_RO_REROUTE_RULE_PRIORITY``, before the
  per-CN rule) gives it the main table's route with the interface MTU: the per-CN route's
  MTU, which sized it before the 24-octet insert, would now refuse it.

The routes carry ``proto`` ``RT_PROTO_RO``, so the ones of bindings that are gone (after
a crash) can be found and removed.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Callable, Mapping
from ipaddress import IPv6Address
from pathlib import Path
from typing import Any, Final

from nfq_mip6.dataplane import DataplaneError
from nfq_mip6.dataplane.kernel import (
    MN_RO_REROUTE_RULE_PRIORITY,
    MN_RO_ROUTE_TABLE,
    MN_RO_RULE_PRIORITY,
    RT_PROTO_RO,
)
from nfq_mip6.dataplane.ro_fastpath import BindingKey

__all__ = ["BindingRoutes"]

MIP6_EXT_LEN: Final = 24


def _run_ip(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=False)


def _rule_source(rule: Mapping[str, Any]) -> IPv6Address | None:
    """The ``from`` address of a rule as ``ip -j rule show`` prints it (None: any source)."""
    source = str(rule.get("src", "all"))
    if source == "all":
        return None
    try:
        return IPv6Address(source.removesuffix("/128"))
    except ValueError:
        return None


class BindingRoutes:
    """The per-binding routes (and MN rules) of one role, ``"cn"`` or ``"mn"``.

    ``on_interface`` is called with the interface a route leaves through before the route
    is added (the BPF data path attaches its programs there). ``user_space_rewrite``
    (NFQUEUE data path): at the CN the route keeps the HoA's next hop, at the MN the rule
    that routes the rewritten packet (from the CoA) by the main table is added too.
    """

    def __init__(
        self,
        role: str,
        *,
        run_ip: Callable[[list[str]], subprocess.CompletedProcess[str]] = _run_ip,
        on_interface: Callable[[str], None] | None = None,
        user_space_rewrite: bool = False,
    ) -> None:
        self.role = role
        self.user_space_rewrite = user_space_rewrite
        self._reroute: dict[IPv6Address, IPv6Address] = {}  # MN peer -> CoA of its rule
        self._run_ip = run_ip
        self._on_interface = on_interface
        self.installed: dict[BindingKey, tuple[IPv6Address, str]] = {}  # -> (dst, dev)
        self._rule_sources: dict[IPv6Address, IPv6Address | None] = {}  # MN peer -> its `from`

    def _route_get(self, destination: IPv6Address, source: IPv6Address | None) -> dict[str, Any]:
        args = ["-j", "-6", "route", "get", str(destination)]
        if source is not None:
            args += ["from", str(source)]
        done = self._run_ip(args)
        if done.returncode != 0:
            raise DataplaneError(f"ip {' '.join(args)}: {done.stderr.strip()}")
        routes = json.loads(done.stdout or "[]")
        if not routes or "dev" not in routes[0]:
            raise DataplaneError(f"ip {' '.join(args)}: no route")
        return dict(routes[0])

    def install(
        self,
        home_address: IPv6Address,
        peer: IPv6Address,
        care_of_address: IPv6Address,
        *,
        from_home_address_only: bool = False,
    ) -> None:
        """The per-binding host route (and on the MN its rule); attaches the programs on
        the interface the route leaves through. ``from_home_address_only`` (MN, the peer
        is the home agent): the rule selects only packets from the home address."""
        if self.role == "cn" and self.user_space_rewrite:
            # the rewritten packet is routed again (to the CoA); what is not rewritten (HoT,
            # BRR, the BA of a home de-registration) keeps the HoA's own next hop
            found = self._route_get(home_address, None)
            destination = home_address
            extra: list[str] = []
        elif self.role == "cn":
            found = self._route_get(care_of_address, None)
            destination = home_address
            extra = []
        else:
            found = self._route_get(peer, care_of_address)
            destination = peer
            extra = ["src", str(home_address), "table", str(MN_RO_ROUTE_TABLE)]
        dev = str(found["dev"])
        if self._on_interface is not None:
            self._on_interface(dev)
        mtu = int(Path(f"/sys/class/net/{dev}/mtu").read_text()) - MIP6_EXT_LEN
        via = ["via", str(found["gateway"])] if found.get("gateway") else []
        args = ["-6", "route", "replace", f"{destination}/128", *via, "dev", dev]
        args += ["mtu", str(mtu), "proto", str(RT_PROTO_RO), *extra]
        done = self._run_ip(args)
        if done.returncode != 0:
            raise DataplaneError(f"ip {' '.join(args)}: {done.stderr.strip()}")
        if self.role == "mn":
            source = home_address if from_home_address_only else None
            if peer in self._rule_sources and self._rule_sources[peer] != source:
                self._mn_rule("del", peer, self._rule_sources[peer])
            self._mn_rule("add", peer, source)
            if self.user_space_rewrite:  # the rewritten packet (from the CoA) by `main`
                self._reroute_rule(peer, care_of_address)
        self.installed[(home_address, peer)] = (destination, dev)

    def _mn_rule(self, verb: str, peer: IPv6Address, source: IPv6Address | None) -> None:
        selector = ["from", f"{source}/128"] if source is not None else []
        selector += ["to", f"{peer}/128"]
        args = ["-6", "rule", verb, *selector, "lookup", str(MN_RO_ROUTE_TABLE)]
        args += ["priority", str(MN_RO_RULE_PRIORITY)]
        if verb == "add":
            shown = self._run_ip(["-j", "-6", "rule", "show", *selector])
            for rule in json.loads(shown.stdout or "[]") if shown.returncode == 0 else []:
                if rule.get("priority") == MN_RO_RULE_PRIORITY and _rule_source(rule) == source:
                    self._rule_sources[peer] = source
                    return
        self._run_ip(args)
        if verb == "add":
            self._rule_sources[peer] = source
        else:
            self._rule_sources.pop(peer, None)

    def _reroute_rule(self, peer: IPv6Address, care_of_address: IPv6Address | None) -> None:
        """``from <CoA> to <peer> lookup main``; None: remove it."""
        old = self._reroute.pop(peer, None)
        if old is not None and old != care_of_address:
            self._run_ip(self._reroute_args("del", peer, old))
        if care_of_address is not None and old != care_of_address:
            self._run_ip(self._reroute_args("add", peer, care_of_address))
        if care_of_address is not None:
            self._reroute[peer] = care_of_address

    @staticmethod
    def _reroute_args(verb: str, peer: IPv6Address, care_of_address: IPv6Address) -> list[str]:
        return [
            "-6", "rule", verb, "from", f"{care_of_address}/128", "to", f"{peer}/128",
            "lookup", "main", "priority", str(MN_RO_REROUTE_RULE_PRIORITY),
        ]  # fmt: skip

    def _delete_route(self, destination: IPv6Address) -> None:
        args = ["-6", "route", "del", f"{destination}/128", "proto", str(RT_PROTO_RO)]
        if self.role == "mn":
            args += ["table", str(MN_RO_ROUTE_TABLE)]
            self._mn_rule("del", destination, self._rule_sources.get(destination))
            self._reroute_rule(destination, None)
        self._run_ip(args)

    def remove_stale(self, wanted: Mapping[BindingKey, IPv6Address]) -> None:
        """Routes (and MN rules) of ours for bindings that are gone (after a crash)."""
        keep = {home if self.role == "cn" else peer for home, peer in wanted}
        table = ["table", str(MN_RO_ROUTE_TABLE)] if self.role == "mn" else []
        shown = self._run_ip(["-j", "-6", "route", "show", "proto", str(RT_PROTO_RO), *table])
        for route in json.loads(shown.stdout or "[]") if shown.returncode == 0 else []:
            dst = str(route.get("dst", ""))
            with contextlib.suppress(ValueError):
                address = IPv6Address(dst.removesuffix("/128"))
                if address not in keep:
                    self._delete_route(address)
        if self.role == "mn":
            rules = self._run_ip(["-j", "-6", "rule", "show"])
            for rule in json.loads(rules.stdout or "[]") if rules.returncode == 0 else []:
                priority = rule.get("priority")
                if priority not in (MN_RO_RULE_PRIORITY, MN_RO_REROUTE_RULE_PRIORITY):
                    continue
                with contextlib.suppress(ValueError):
                    address = IPv6Address(str(rule.get("dst", "")))
                    source = _rule_source(rule)
                    if priority == MN_RO_RULE_PRIORITY and address not in keep:
                        self._mn_rule("del", address, source)
                    elif (
                        priority == MN_RO_REROUTE_RULE_PRIORITY
                        and source is not None
                        and (address not in keep or self._reroute.get(address) != source)
                    ):
                        self._run_ip(self._reroute_args("del", address, source))

    def remove(self, home_address: IPv6Address, peer: IPv6Address) -> None:
        route = self.installed.pop((home_address, peer), None)
        if route is not None:
            self._delete_route(route[0])

    def clear(self) -> None:
        for home_address, peer in list(self.installed):
            self.remove(home_address, peer)
