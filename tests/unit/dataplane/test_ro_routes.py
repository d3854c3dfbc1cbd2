"""dataplane/ro_routes.py: the per-binding routes as `ip` commands (no kernel)."""

from __future__ import annotations

import json
import subprocess
from ipaddress import IPv6Address

from nfq_mip6.dataplane.kernel import (
    MN_RO_REROUTE_RULE_PRIORITY,
    MN_RO_ROUTE_TABLE,
    MN_RO_RULE_PRIORITY,
    RT_PROTO_RO,
)
from nfq_mip6.dataplane.ro_routes import BindingRoutes

HOA = IPv6Address("2001:db8:a::100")
CN = IPv6Address("2001:db8:c::2")
COA = IPv6Address("2001:db8:f::2")
HA = IPv6Address("2001:db8:a::1")
TAIL = ["lookup", str(MN_RO_ROUTE_TABLE), "priority", str(MN_RO_RULE_PRIORITY)]


class FakeIp:
    """Answers `ip -j route get` with a gateway on eth9 and records every command."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.shown: list[dict[str, object]] = []
        self.rules: list[dict[str, object]] = []

    def __call__(self, args: list[str]) -> subprocess.CompletedProcess[str]:
        self.calls.append(args)
        out = ""
        if args[:4] == ["-j", "-6", "route", "get"]:
            out = json.dumps([{"dst": args[4], "gateway": "fe80::1", "dev": "lo"}])
        elif args[:4] == ["-j", "-6", "route", "show"]:
            out = json.dumps(self.shown)
        elif args == ["-j", "-6", "rule", "show"]:
            out = json.dumps(self.rules)
        elif args[:3] == ["-j", "-6", "rule"]:
            out = "[]"
        return subprocess.CompletedProcess(["ip", *args], 0, out, "")


def test_cn_route_to_the_home_address_with_the_smaller_mtu() -> None:
    ip = FakeIp()
    attached: list[str] = []
    routes = BindingRoutes("cn", run_ip=ip, on_interface=attached.append)
    routes.install(HOA, CN, COA)
    assert ["-j", "-6", "route", "get", str(COA)] in ip.calls
    add = next(c for c in ip.calls if c[:3] == ["-6", "route", "replace"])
    mtu = int(add[add.index("mtu") + 1])
    assert add[3] == f"{HOA}/128" and add[4:6] == ["via", "fe80::1"] and mtu == 65536 - 24
    assert add[add.index("proto") + 1] == str(RT_PROTO_RO)
    assert attached == ["lo"]
    routes.remove(HOA, CN)
    assert ip.calls[-1] == ["-6", "route", "del", f"{HOA}/128", "proto", str(RT_PROTO_RO)]


def test_mn_rule_and_route_with_the_home_address_as_source() -> None:
    ip = FakeIp()
    routes = BindingRoutes("mn", run_ip=ip)
    routes.install(HOA, CN, COA)
    assert ["-j", "-6", "route", "get", str(CN), "from", str(COA)] in ip.calls
    add = next(c for c in ip.calls if c[:3] == ["-6", "route", "replace"])
    assert add[3] == f"{CN}/128" and add[add.index("src") + 1] == str(HOA)
    assert add[add.index("table") + 1] == str(MN_RO_ROUTE_TABLE)
    rule = ["-6", "rule", "add", "to", f"{CN}/128", "lookup", str(MN_RO_ROUTE_TABLE)]
    assert [*rule, "priority", str(MN_RO_RULE_PRIORITY)] in ip.calls


def test_stale_routes_of_gone_bindings_are_removed() -> None:
    ip = FakeIp()
    ip.shown = [{"dst": f"{HOA}/128"}, {"dst": "2001:db8:a::200/128"}]
    BindingRoutes("cn", run_ip=ip).remove_stale({(HOA, CN): COA})
    deleted = [c for c in ip.calls if c[:3] == ["-6", "route", "del"]]
    assert deleted == [["-6", "route", "del", "2001:db8:a::200/128", "proto", str(RT_PROTO_RO)]]


def test_mn_rule_for_the_home_agent_selects_only_packets_from_the_home_address() -> None:
    """The reverse tunnel's outer packets and the BUs (CoA -> HA) must not match it."""
    ip = FakeIp()
    routes = BindingRoutes("mn", run_ip=ip)
    routes.install(HOA, HA, COA, from_home_address_only=True)
    rule = ["-6", "rule", "add", "from", f"{HOA}/128", "to", f"{HA}/128"]
    assert [*rule, "lookup", str(MN_RO_ROUTE_TABLE), "priority", str(MN_RO_RULE_PRIORITY)] in (
        ip.calls
    )
    assert not any(c[:5] == ["-6", "rule", "add", "to", f"{HA}/128"] for c in ip.calls)
    routes.remove(HOA, HA)
    deleted = [c for c in ip.calls if c[:3] == ["-6", "rule", "del"]]
    assert deleted == [["-6", "rule", "del", "from", f"{HOA}/128", "to", f"{HA}/128", *TAIL]]


def test_stale_mn_rule_from_the_home_address_is_removed_with_its_selector() -> None:
    ip = FakeIp()
    ip.rules = [{"priority": MN_RO_RULE_PRIORITY, "src": str(HOA), "srclen": 128, "dst": str(HA)}]
    BindingRoutes("mn", run_ip=ip).remove_stale({})
    deleted = [c for c in ip.calls if c[:3] == ["-6", "rule", "del"]]
    assert deleted == [["-6", "rule", "del", "from", f"{HOA}/128", "to", f"{HA}/128", *TAIL]]


REROUTE = ["lookup", "main", "priority", str(MN_RO_REROUTE_RULE_PRIORITY)]
COA2 = IPv6Address("2001:db8:f2::2")


def test_mn_user_space_rewrite_routes_the_rewritten_packet_by_the_main_table() -> None:
    """NFQUEUE: the packet rewritten to `from CoA` is routed again on reinjection; a rule
    sends it by the main table (interface MTU), not by the per-CN route (MTU less 24)."""
    ip = FakeIp()
    routes = BindingRoutes("mn", run_ip=ip, user_space_rewrite=True)
    routes.install(HOA, CN, COA)
    add = ["-6", "rule", "add", "from", f"{COA}/128", "to", f"{CN}/128", *REROUTE]
    assert add in ip.calls
    assert ip.calls.index(add) > next(
        i for i, c in enumerate(ip.calls) if c[:3] == ["-6", "route", "replace"]
    )
    routes.install(HOA, CN, COA2)  # moved: the rule follows the CoA
    assert ["-6", "rule", "del", "from", f"{COA}/128", "to", f"{CN}/128", *REROUTE] in ip.calls
    assert ["-6", "rule", "add", "from", f"{COA2}/128", "to", f"{CN}/128", *REROUTE] in ip.calls
    routes.remove(HOA, CN)
    assert ["-6", "rule", "del", "from", f"{COA2}/128", "to", f"{CN}/128", *REROUTE] in ip.calls


def test_mn_without_user_space_rewrite_adds_no_reroute_rule() -> None:
    ip = FakeIp()
    BindingRoutes("mn", run_ip=ip).install(HOA, CN, COA)
    assert not any("main" in c for c in ip.calls if c[:2] == ["-6", "rule"])


def test_stale_reroute_rules_are_removed() -> None:
    ip = FakeIp()
    ip.rules = [
        {"priority": MN_RO_REROUTE_RULE_PRIORITY, "src": str(COA), "srclen": 128, "dst": str(CN)},
        {"priority": MN_RO_REROUTE_RULE_PRIORITY, "src": str(COA), "srclen": 128, "dst": str(HA)},
    ]
    routes = BindingRoutes("mn", run_ip=ip, user_space_rewrite=True)
    routes.install(HOA, CN, COA)
    routes.remove_stale({(HOA, CN): COA})
    deleted = [c for c in ip.calls if c[:3] == ["-6", "rule", "del"]]
    assert deleted == [["-6", "rule", "del", "from", f"{COA}/128", "to", f"{HA}/128", *REROUTE]]


def test_cn_user_space_rewrite_keeps_the_home_address_next_hop() -> None:
    """NFQUEUE: what is not rewritten (HoT, BRR, a de-registration's BA) must still reach
    the home network; the route only adds the MTU."""
    ip = FakeIp()
    BindingRoutes("cn", run_ip=ip, user_space_rewrite=True).install(HOA, CN, COA)
    assert ["-j", "-6", "route", "get", str(HOA)] in ip.calls
    assert ["-j", "-6", "route", "get", str(COA)] not in ip.calls
    add = next(c for c in ip.calls if c[:3] == ["-6", "route", "replace"])
    assert add[3] == f"{HOA}/128" and "mtu" in add
    assert not any(c[:2] == ["-6", "rule"] for c in ip.calls)
