"""Mobile Node kernel data plane on the seg6 backend (RFC 6275 §11.2–§11.5, §11.3.1).

Away from home the MN keeps its Home Address (HoA) usable by applications and reverse-tunnels
everything sent from it to the Home Agent; packets the HA tunnels to the care-of address (CoA)
are decapsulated by the kernel. Steady-state data never reaches userspace.

Design choices (kernel 6.18 without ip6tnl/sit/MIPv6):

* **HoA while away: a /128 on ``lo``** (``nodad noprefixroute``), removed from the interface.
  Applications can still bind to it and receive on it, and the kernel does not answer Neighbor
  Solicitations for it on the visited link, since Linux answers NS only for addresses on the
  receiving interface (the MN must not defend the HoA away from home: the HA proxies it at
  home, §10.4.1). We do not keep it on ``eth0`` with ``nodad`` because that address would still
  be defended on the visited link and would add a bogus on-link home-prefix route.
* **Reverse tunnel (MN → HA, §11.3.1)**: policy rule ``from HoA lookup <reverse table>`` and,
  in that table, ``default encap seg6 mode encap.red segs <HA> dev <if>``: plain IPv6-in-IPv6
  (outer next header 41, no SRH). The outer source is the per-netns ``ip sr tunsrc`` (there is
  no per-route source on 6.18), set to the CoA on every move.
* **Decapsulation (HA → MN)**: rule ``to <CoA> ipproto 41 lookup <decap table>`` with route
  ``<CoA>/128 encap seg6local action End.DT6 table local``: the inner packet is delivered
  locally (End.DX6 cannot deliver locally, kernel-notes §5). The ``local`` rule (pref 0) must come
  after the decap rule, so it is moved to pref 1000 while away and put back at home.
* Rule order: decap 100 < local 1000 < from-HoA 1100 < main 32766 (traffic from the HoA to a
  local address stays local).
* On a CoA change the new decap rule and route are added before the old ones are removed.

The pyroute2 seg6 patch, the ENOMEM retry, the rule helpers and the tunnel source come from
the shared toolkit :mod:`nfq_mip6.dataplane.kernel`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from ipaddress import IPv6Address, IPv6Interface, IPv6Network
from typing import Any

from pyroute2 import IPRoute

from nfq_mip6.constants import IPPROTO_IPV6
from nfq_mip6.dataplane import InterfaceAddress, MobileNodeKernel
from nfq_mip6.dataplane.kernel import (
    AF_INET6,
    IFA_F_NODAD,
    IFA_F_NOPREFIXROUTE,
    IFA_F_OPTIMISTIC,
    IFA_F_PERMANENT,
    IFA_F_TENTATIVE,
    LOCAL_RULE_PRIORITY,
    MN_DECAP_RULE_PRIORITY,
    MN_DECAP_TABLE,
    MN_HOME_ADDRESS_RULE_PRIORITY,
    MN_REVERSE_TUNNEL_TABLE,
    RT_TABLE_LOCAL,
    RT_TABLE_MAIN,
    RTPROT_KERNEL,
    RTPROT_RA,
    EnomemRetry,
    TunnelSource,
    add_rule,
    has_rule,
    ipv6_rules,
    move_local_rule,
    patch_pyroute2_seg6_modes,
    quietly,
    restore_local_rule,
    rule_table,
)
from nfq_mip6.errors import DataplaneError

LOG = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class MobileNodeTables:
    """Routing tables and rule priorities owned by the MN data plane."""

    reverse_tunnel_table: int = MN_REVERSE_TUNNEL_TABLE
    decap_table: int = MN_DECAP_TABLE
    decap_rule_priority: int = MN_DECAP_RULE_PRIORITY
    local_rule_priority: int = LOCAL_RULE_PRIORITY
    home_address_rule_priority: int = MN_HOME_ADDRESS_RULE_PRIORITY


def _lifetime(value: int) -> float | None:
    return None if value == 0xFFFFFFFF else float(value)


class MobileNodeDataplane:
    """Applies the MN's data-plane actions to the kernel of the current (or a named) netns.

    Args:
        interface: the MN's single network interface (``eth0`` in the HOWTO test bed).
        home_address: the HoA with its home prefix length (``fec0:106:2700::4/64``).
        netns: operate in that named netns (tests); ``None`` = the current one (the agent).
        tables: table numbers and rule priorities.
    """

    def __init__(
        self,
        interface: str,
        home_address: IPv6Interface,
        *,
        netns: str | None = None,
        tables: MobileNodeTables | None = None,
        mobile_network_prefixes: tuple[IPv6Network, ...] = (),
        mobile_network_interface: str | None = None,
    ) -> None:
        patch_pyroute2_seg6_modes()
        self.interface = interface
        self.home_address = home_address
        self.netns = netns
        self.tables = tables or MobileNodeTables()
        self._ipr: Any = IPRoute(netns=netns) if netns else IPRoute()
        links = self._ipr.link_lookup(ifname=interface)
        if not links:
            self._ipr.close()
            raise DataplaneError(f"interface {interface!r} not found")
        self.ifindex: int = links[0]
        self.lo_index: int = self._ipr.link_lookup(ifname="lo")[0]
        self.care_of_address: IPv6Address | None = None
        self.home_agent: IPv6Address | None = None
        self.home_address_away = False
        self.local_rule_moved = False
        self.operations = 0
        self._enomem = EnomemRetry()
        self._tunnel_source = TunnelSource(netns=netns)
        self._decap_installed: set[IPv6Address] = set()
        self._tunnel_route_installed = False
        self._home_rule_installed = False
        # RFC 3963 §5.5, §5.6: a mobile router's prefixes use the same tunnel as its HoA
        self.mobile_network_prefixes = mobile_network_prefixes
        self.lan_index: int | None = None
        if mobile_network_prefixes:
            lan = self._ipr.link_lookup(ifname=mobile_network_interface or "")
            if not lan:
                self._ipr.close()
                raise DataplaneError(
                    f"mobile network interface {mobile_network_interface!r} not found"
                )
            self.lan_index = lan[0]
        self._mobile_network_installed = False

    # ---------------------------------------------------------------- helpers

    def _retry(self, what: str, func: Any, *args: Any, **kwargs: Any) -> Any:
        """One netlink request through the toolkit's ENOMEM retry."""
        self.operations += 1
        return self._enomem.call(what, func, *args, **kwargs)

    def _quiet(self, what: str, func: Any, *args: Any, **kwargs: Any) -> bool:
        """A removal; a missing object is not an error."""
        self.operations += 1
        return quietly(what, func, *args, **kwargs)

    def set_tunnel_source(self, address: IPv6Address | None) -> None:
        """``ip sr tunsrc set`` (per netns; ``None`` resets to ``::``)."""
        self.operations += 1
        self._tunnel_source.set(address)

    def _rules(self) -> list[Any]:
        return ipv6_rules(self._ipr)

    def _has_rule(self, priority: int, table: int) -> bool:
        return has_rule(self._ipr, priority, table)

    # ---------------------------------------------------------------- the local rule

    def move_local_rule(self) -> None:
        """Put the ``local`` table lookup after the decap rule (pref 0 → 1000)."""
        if self.local_rule_moved:
            return
        self.operations += 2
        move_local_rule(self._ipr, self._enomem, self.tables.local_rule_priority)
        self.local_rule_moved = True

    def restore_local_rule(self) -> None:
        """Put the ``local`` rule back at pref 0 (at home, or on stop)."""
        self.operations += 2
        restore_local_rule(self._ipr, self._enomem, self.tables.local_rule_priority)
        self.local_rule_moved = False

    # ---------------------------------------------------------------- home address

    def move_home_address_away(self) -> None:
        """RFC 6275 §11.5.1: the HoA leaves the interface (not defended on the visited link)
        and lives on ``lo`` as a /128, still usable by applications."""
        hoa = str(self.home_address.ip)
        self._retry(
            "add HoA on lo",
            self._ipr.addr,
            "replace",
            index=self.lo_index,
            address=hoa,
            prefixlen=128,
            IFA_FLAGS=IFA_F_NODAD | IFA_F_NOPREFIXROUTE,
        )
        self._quiet(
            "del HoA on interface",
            self._ipr.addr,
            "del",
            index=self.ifindex,
            address=hoa,
            prefixlen=self.home_address.network.prefixlen,
        )
        self.home_address_away = True

    def move_home_address_home(self) -> None:
        """RFC 6275 §11.5.5: the HoA goes back on the home interface (no DAD: it is ours and
        the HA proxied it until the de-registration)."""
        hoa = str(self.home_address.ip)
        self._retry(
            "add HoA on interface",
            self._ipr.addr,
            "replace",
            index=self.ifindex,
            address=hoa,
            prefixlen=self.home_address.network.prefixlen,
            IFA_FLAGS=IFA_F_NODAD,
        )
        self._quiet(
            "del HoA on lo", self._ipr.addr, "del", index=self.lo_index, address=hoa, prefixlen=128
        )
        self.home_address_away = False

    # ---------------------------------------------------------------- the MN–HA tunnel

    def prepare_care_of_address(self, care_of_address: IPv6Address) -> None:
        """Decapsulation for ``care_of_address`` and the tunnel source, ahead of the BA.

        Harmless before the registration completes (nothing is tunnelled to a CoA the HA does
        not know), and it takes the slow part (``ip sr tunsrc``) off the BA's critical path.
        """
        self.move_local_rule()
        if care_of_address not in self._decap_installed:
            self._retry(
                "add decap route",
                self._ipr.route,
                "replace",
                family=AF_INET6,
                dst=f"{care_of_address}/128",
                oif=self.ifindex,
                table=self.tables.decap_table,
                encap={"type": "seg6local", "action": "End.DT6", "table": RT_TABLE_LOCAL},
            )
            self.operations += 1
            add_rule(
                self._ipr,
                self._enomem,
                "add decap rule",
                priority=self.tables.decap_rule_priority,
                table=self.tables.decap_table,
                dst=str(care_of_address),
                dst_len=128,
                ip_proto=IPPROTO_IPV6,
            )
            self._decap_installed.add(care_of_address)
        if self._tunnel_source.current != care_of_address:
            self.set_tunnel_source(care_of_address)

    def install_reverse_tunnel(self, care_of_address: IPv6Address, home_agent: IPv6Address) -> None:
        """Create or re-point the bidirectional MN–HA tunnel (§11.3.1) for a (new) CoA.

        Make-before-break: the new CoA's decapsulation exists before the old one's goes.
        """
        tables = self.tables
        self.prepare_care_of_address(care_of_address)
        if home_agent != self.home_agent or not self._tunnel_route_installed:
            self._retry(
                "add reverse tunnel route",
                self._ipr.route,
                "replace",
                family=AF_INET6,
                dst="::/0",
                oif=self.ifindex,
                table=tables.reverse_tunnel_table,
                encap={"type": "seg6", "mode": "encap.red", "segs": [str(home_agent)]},
            )
            self._tunnel_route_installed = True
        if not self._home_rule_installed:
            if not self._has_rule(tables.home_address_rule_priority, tables.reverse_tunnel_table):
                self._retry(
                    "add from-HoA rule",
                    self._ipr.rule,
                    "add",
                    family=AF_INET6,
                    priority=tables.home_address_rule_priority,
                    src=str(self.home_address.ip),
                    src_len=128,
                    table=tables.reverse_tunnel_table,
                )
            self._home_rule_installed = True
        if self.mobile_network_prefixes and not self._mobile_network_installed:
            self._install_mobile_network()
        for old in sorted(self._decap_installed - {care_of_address}):
            self._remove_decap(old)
        self.care_of_address = care_of_address
        self.home_agent = home_agent
        LOG.info(
            "reverse tunnel %s -> %s (HoA %s)", care_of_address, home_agent, self.home_address.ip
        )

    def _install_mobile_network(self) -> None:
        """RFC 3963 §5.5: packets from the mobile network go into the reverse tunnel (a
        ``from PREFIX`` rule beside the home address's), and packets the HA tunnels to it are
        forwarded to the LAN: the decapsulation looks the inner destination up in ``local``
        (``End.DT6 table local``), so the prefix gets a route there toward the LAN."""
        for prefix in self.mobile_network_prefixes:
            if not self._has_rule_from(prefix):
                self._retry(
                    f"add from-{prefix} rule", self._ipr.rule, "add", family=AF_INET6,
                    priority=self.tables.home_address_rule_priority,
                    src=str(prefix.network_address), src_len=prefix.prefixlen,
                    table=self.tables.reverse_tunnel_table,
                )  # fmt: skip
            self._retry(
                f"add {prefix} delivery route", self._ipr.route, "replace", family=AF_INET6,
                dst=str(prefix), oif=self.lan_index, table=RT_TABLE_LOCAL,
            )  # fmt: skip
        self._mobile_network_installed = True

    def _remove_mobile_network(self) -> None:
        for prefix in self.mobile_network_prefixes:
            self._quiet(
                f"del from-{prefix} rule", self._ipr.rule, "del", family=AF_INET6,
                priority=self.tables.home_address_rule_priority,
                src=str(prefix.network_address), src_len=prefix.prefixlen,
                table=self.tables.reverse_tunnel_table,
            )  # fmt: skip
            self._quiet(
                f"del {prefix} delivery route", self._ipr.route, "del", family=AF_INET6,
                dst=str(prefix), table=RT_TABLE_LOCAL,
            )  # fmt: skip
        self._mobile_network_installed = False

    def _has_rule_from(self, prefix: IPv6Network) -> bool:
        for rule in self._rules():
            if (
                rule.get_attr("FRA_PRIORITY", 0) == self.tables.home_address_rule_priority
                and rule.get_attr("FRA_SRC") == str(prefix.network_address)
                and rule["src_len"] == prefix.prefixlen
            ):
                return True
        return False

    def _remove_decap(self, care_of_address: IPv6Address) -> None:
        tables = self.tables
        self._decap_installed.discard(care_of_address)
        self._quiet(
            "del decap rule",
            self._ipr.rule,
            "del",
            family=AF_INET6,
            priority=tables.decap_rule_priority,
            dst=str(care_of_address),
            dst_len=128,
            ip_proto=IPPROTO_IPV6,
            table=tables.decap_table,
        )
        self._quiet(
            "del decap route",
            self._ipr.route,
            "del",
            family=AF_INET6,
            dst=f"{care_of_address}/128",
            table=tables.decap_table,
        )

    def remove_reverse_tunnel(self) -> None:
        """Remove the tunnel, its rules and routes (back home, §11.5.5, or on stop)."""
        tables = self.tables
        if self.mobile_network_prefixes:
            self._remove_mobile_network()  # at home: a plain router for its LAN
        self._quiet(
            "del from-HoA rule",
            self._ipr.rule,
            "del",
            family=AF_INET6,
            priority=tables.home_address_rule_priority,
            src=str(self.home_address.ip),
            src_len=128,
            table=tables.reverse_tunnel_table,
        )
        self._quiet(
            "del reverse tunnel route",
            self._ipr.route,
            "del",
            family=AF_INET6,
            dst="::/0",
            table=tables.reverse_tunnel_table,
        )
        for care_of_address in sorted(self._decap_installed):
            self._remove_decap(care_of_address)
        # any leftovers (e.g. from a crashed previous run)
        for rule in self._rules():
            if (
                rule.get_attr("FRA_PRIORITY", 0) == tables.decap_rule_priority
                and rule_table(rule) == tables.decap_table
            ):
                self._quiet("del stale decap rule", self._ipr.rule, "del", **_rule_key(rule))
        self._flush_table(tables.decap_table)
        self._flush_table(tables.reverse_tunnel_table)
        self.set_tunnel_source(None)
        self.restore_local_rule()
        self.care_of_address = None
        self.home_agent = None
        self._tunnel_route_installed = False
        self._home_rule_installed = False

    def _flush_table(self, table: int) -> None:
        for route in self._ipr.get_routes(family=AF_INET6, table=table):
            if route.get_attr("RTA_TABLE", route["table"]) != table:
                continue
            dst = route.get_attr("RTA_DST") or "::"
            self._quiet(
                "flush route",
                self._ipr.route,
                "del",
                family=AF_INET6,
                dst=f"{dst}/{route['dst_len']}",
                table=table,
            )

    # ---------------------------------------------------------------- visited-link state

    def carrier_state(self) -> tuple[bool, int | None]:
        """(carrier, IFLA_CARRIER_CHANGES) of the interface now."""
        (link,) = self._ipr.get_links(self.ifindex)
        changes = link.get_attr("IFLA_CARRIER_CHANGES")
        return bool(link.get_attr("IFLA_CARRIER")), int(changes) if changes is not None else None

    def recheck_link_local(self) -> list[IPv6Address]:
        """RFC 6275 §11.5.4, RFC 4862 §5.4: after a move, DAD again for the interface's
        link-local addresses on the new link. The kernel repeats DAD only when the carrier
        comes back; a move it does not see as one (new router, same carrier) needs the
        address re-added: optimistic (RFC 4429, usable at once) with the interface's
        ``optimistic_dad``, else plain tentative. Returns the addresses re-added."""
        redone: list[IPv6Address] = []
        for msg in self._ipr.get_addr(family=AF_INET6, index=self.ifindex):
            address = msg.get_attr("IFA_ADDRESS")
            if address is None or not IPv6Address(address).is_link_local:
                continue
            flags = int(msg.get_attr("IFA_FLAGS") or msg["flags"])
            if flags & (IFA_F_TENTATIVE | IFA_F_NODAD):
                continue  # DAD already running, or deliberately without DAD
            prefixlen = int(msg["prefixlen"])
            if not self._quiet(
                "del link-local", self._ipr.addr, "del", index=self.ifindex,
                address=address, prefixlen=prefixlen,
            ):  # fmt: skip
                continue
            try:
                self._retry(
                    "add link-local (optimistic)", self._ipr.addr, "add", index=self.ifindex,
                    address=address, prefixlen=prefixlen, IFA_FLAGS=IFA_F_OPTIMISTIC,
                )  # fmt: skip
            except DataplaneError:
                self._retry(
                    "add link-local", self._ipr.addr, "add", index=self.ifindex,
                    address=address, prefixlen=prefixlen,
                )  # fmt: skip
            redone.append(IPv6Address(address))
        return redone

    def interface_addresses(self) -> list[InterfaceAddress]:
        """Global (non-link-local) IPv6 addresses on the interface."""
        result: list[InterfaceAddress] = []
        for msg in self._ipr.get_addr(family=AF_INET6, index=self.ifindex):
            address = msg.get_attr("IFA_ADDRESS")
            if address is None:
                continue
            iface = IPv6Interface(f"{address}/{msg['prefixlen']}")
            if iface.ip.is_link_local:
                continue
            flags = msg.get_attr("IFA_FLAGS") or msg["flags"]
            cache = msg.get_attr("IFA_CACHEINFO")
            valid = preferred = None
            if cache is not None:
                valid = _lifetime(cache["ifa_valid"])
                preferred = _lifetime(cache["ifa_preferred"])
            result.append(InterfaceAddress(iface, int(flags), valid, preferred))
        return result

    def purge_visited_link_state(
        self, keep_prefixes: tuple[IPv6Network, ...], keep_router: IPv6Address | None
    ) -> list[IPv6Interface]:
        """Remove addresses and RA routes of links the MN left (HOWTO FAQ 6, kernel-notes §9).

        Autoconfigured addresses outside ``keep_prefixes`` are deleted (permanent, i.e.
        statically configured, addresses and the HoA are the operator's and stay), as are
        RA-learned default routes via other routers and prefix routes that no remaining
        address covers (otherwise the old home prefix would stay on-link on the visited link
        and hide the HA). Returns the addresses removed.
        """
        removed: list[IPv6Interface] = []
        remaining: list[IPv6Address] = []
        for entry in self.interface_addresses():
            if (
                entry.address == self.home_address.ip
                or entry.flags & IFA_F_PERMANENT
                or any(entry.address in prefix for prefix in keep_prefixes)
            ):
                remaining.append(entry.address)
                continue
            if self._quiet(
                "del stale address",
                self._ipr.addr,
                "del",
                index=self.ifindex,
                address=str(entry.address),
                prefixlen=entry.interface.network.prefixlen,
            ):
                removed.append(entry.interface)
            else:
                remaining.append(entry.address)
        for route in self._ipr.get_routes(family=AF_INET6, table=RT_TABLE_MAIN):
            if route.get_attr("RTA_OIF") != self.ifindex:
                continue
            if route["proto"] not in (RTPROT_KERNEL, RTPROT_RA):
                continue  # static routes are the operator's
            dst = route.get_attr("RTA_DST")
            gateway = route.get_attr("RTA_GATEWAY")
            if dst is None and route["dst_len"] == 0:
                if route["proto"] != RTPROT_RA or (
                    gateway is not None and IPv6Address(gateway) == keep_router
                ):
                    continue
                self._quiet(
                    "del stale default route",
                    self._ipr.route,
                    "del",
                    family=AF_INET6,
                    dst="::/0",
                    gateway=gateway,
                    oif=self.ifindex,
                )
                continue
            if dst is None:
                continue
            network = IPv6Network(f"{dst}/{route['dst_len']}")
            if network.is_link_local or network.is_multicast or network.prefixlen == 128:
                continue
            if network in keep_prefixes or any(address in network for address in remaining):
                continue
            self._quiet(
                "del stale prefix route",
                self._ipr.route,
                "del",
                family=AF_INET6,
                dst=str(network),
                oif=self.ifindex,
            )
        if removed:
            LOG.info(
                "removed addresses of links left behind: %s", ", ".join(str(i) for i in removed)
            )
        return removed

    # ---------------------------------------------------------------- lifecycle

    def snapshot(self) -> dict[str, Any]:
        return {
            "backend": "seg6",
            "care_of_address": str(self.care_of_address) if self.care_of_address else None,
            "home_agent": str(self.home_agent) if self.home_agent else None,
            "home_address_away": self.home_address_away,
            "operations": self.operations,
        }

    def adopt_leftovers(self) -> bool:
        """At start: recognise kernel state left by a previous run that ended while away
        (HoA on ``lo``, the ``local`` rule moved, our rules or tables). The flags are set so
        that :meth:`cleanup` / the return home remove it. Returns True if anything was found.
        """
        hoa = str(self.home_address.ip)
        on_lo = any(
            msg.get_attr("IFA_ADDRESS") == hoa
            for msg in self._ipr.get_addr(family=AF_INET6, index=self.lo_index)
        )
        tables = self.tables
        ours = {tables.decap_table, tables.reverse_tunnel_table}
        rules = self._rules()
        local_moved = not any(
            rule.get_attr("FRA_PRIORITY", 0) == 0 and rule_table(rule) == RT_TABLE_LOCAL
            for rule in rules
        )
        our_rules = any(rule_table(rule) in ours for rule in rules)
        self.home_address_away = self.home_address_away or on_lo
        self.local_rule_moved = self.local_rule_moved or local_moved
        found = on_lo or local_moved or our_rules
        if found:
            LOG.warning(
                "kernel state of a previous run found (HoA on lo: %s, local rule moved: %s, "
                "tunnel rules: %s); it is removed when the MN is home or the agent stops",
                on_lo,
                local_moved,
                our_rules,
            )
        return found

    def cleanup(self) -> None:
        """Remove every agent-owned kernel object and put the HoA back on the interface."""
        try:
            self.remove_reverse_tunnel()
        finally:
            if self.home_address_away:
                self.move_home_address_home()

    def close(self) -> None:
        self._tunnel_source.close()
        self._ipr.close()


def _rule_key(rule: Any) -> dict[str, Any]:
    key: dict[str, Any] = {
        "family": AF_INET6,
        "priority": rule.get_attr("FRA_PRIORITY", 0),
        "table": rule_table(rule),
    }
    dst = rule.get_attr("FRA_DST")
    if dst is not None:
        key["dst"] = dst
        key["dst_len"] = rule["dst_len"]
    proto = rule.get_attr("FRA_IP_PROTO")
    if proto is not None:
        key["ip_proto"] = proto
    return key


__all__ = [
    "DataplaneError",
    "InterfaceAddress",
    "MobileNodeDataplane",
    "MobileNodeTables",
]


def _follows_the_protocol(dataplane: MobileNodeDataplane) -> MobileNodeKernel:
    """Never called: mypy checks here that the real data plane implements the Protocol."""
    return dataplane
