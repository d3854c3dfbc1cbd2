"""MobileNodeRouteOptimization: the MN half of route optimization (RFC 6275 §11.3, §11.6)
without the kernel: rules as ip6tables argument lists, packets in, verdicts and events out."""

from __future__ import annotations

import json
import subprocess

from nfq_mip6.dataplane.ro_fastpath import FakeRouteOptimizationFastPath
from nfq_mip6.dataplane.ro_routes import BindingRoutes
from nfq_mip6.mobility.events import DataPacketFromCorrespondent, IcmpErrorReceived
from nfq_mip6.runtime.base import VerdictKind
from nfq_mip6.runtime.ro_datapath import (
    MN_OUTPUT_CHAIN,
    MobileNodeRouteOptimization,
    cn_outbound,
)
from nfq_mip6.wire import (
    HomeTestInit,
    ParameterProblemMessage,
    build_icmpv6_packet,
    build_ipv6_packet,
    build_mh,
    parse_ipv6,
)
from tests.support.howto import CN, COA, HA, HOA


def helper() -> tuple[MobileNodeRouteOptimization, list[list[str]]]:
    calls: list[list[str]] = []

    def run(args: list[str]) -> int:
        calls.append(args)
        return 0

    return MobileNodeRouteOptimization(HOA, HA, 5, False, run=run), calls


def test_install_and_remove_manage_one_rule_per_correspondent() -> None:
    ro, calls = helper()
    assert ro.install(CN, COA) and ro.install(CN, COA)
    assert ro.bindings == {CN.packed: COA.packed}
    ro.clear()
    spec = ["-s", f"{HOA}/128", "-d", f"{CN}/128", "-j", "NFQUEUE", "--queue-num", "5"]
    assert calls == [
        ["-t", "mangle", "-A", MN_OUTPUT_CHAIN, *spec],
        ["-t", "mangle", "-D", MN_OUTPUT_CHAIN, *spec],
    ]
    assert ro.bindings == {}


def test_outbound_data_gets_an_hao_and_inbound_rh2_is_stripped() -> None:
    ro, _calls = helper()
    ro.install(CN, COA)
    data = build_ipv6_packet(HOA, CN, 59, b"")
    verdict, events = ro.handle_packet(data, away=True)
    assert verdict is not None and verdict.payload is not None
    assert verdict.kind == VerdictKind.REWRITE and events == []
    sent = parse_ipv6(verdict.payload)
    assert (sent.src, sent.home_address, sent.dst) == (COA, HOA, CN)
    routed = cn_outbound(build_ipv6_packet(CN, HOA, 59, b""), {HOA.packed: COA.packed})
    assert routed is not None
    verdict, events = ro.handle_packet(routed, away=True)
    assert verdict is not None and verdict.payload is not None
    assert verdict.kind == VerdictKind.REWRITE
    assert parse_ipv6(verdict.payload).dst == HOA and events == []


def test_own_mobility_header_from_the_home_address_is_accepted_unchanged() -> None:
    ro, _calls = helper()
    ro.install(CN, COA)
    hoti = build_ipv6_packet(HOA, CN, 135, build_mh(HomeTestInit(b"c" * 8), HOA, CN))
    verdict, events = ro.handle_packet(hoti, away=True)
    assert verdict is not None and verdict.kind == VerdictKind.ACCEPT and events == []


def test_data_from_a_correspondent_starts_return_routability_only_away() -> None:
    ro, _calls = helper()
    data = build_ipv6_packet(CN, HOA, 59, b"")
    verdict, events = ro.handle_packet(data, away=True)
    assert verdict is None and events == [DataPacketFromCorrespondent(CN)]
    assert ro.handle_packet(data, away=False) == (None, [])
    from_ha = build_ipv6_packet(HA, HOA, 59, b"")
    assert ro.handle_packet(from_ha, away=True) == (None, [])
    mh = build_ipv6_packet(CN, HOA, 135, build_mh(HomeTestInit(b"c" * 8), CN, HOA))
    assert ro.handle_packet(mh, away=True) == (None, [])


def test_parameter_problem_from_a_correspondent_becomes_an_icmp_error_event() -> None:
    ro, _calls = helper()
    hoti = build_ipv6_packet(HOA, CN, 135, build_mh(HomeTestInit(b"c" * 8), HOA, CN))
    problem = build_icmpv6_packet(ParameterProblemMessage(1, 40, hoti), CN, HOA, hop_limit=64)
    verdict, events = ro.handle_packet(problem, away=True)
    assert verdict is not None and verdict.kind == VerdictKind.ACCEPT
    assert events == [IcmpErrorReceived(CN, 4, 1, CN, 1)]
    truncated = build_icmpv6_packet(
        ParameterProblemMessage(1, 40, hoti[:44]), CN, HOA, hop_limit=64
    )
    _verdict, events = ro.handle_packet(truncated, away=True)
    assert events == [IcmpErrorReceived(CN, 4, 1, CN, 1)]


def test_garbage_is_left_to_the_runtime() -> None:
    ro, _calls = helper()
    ro.install(CN, COA)
    for blob in (b"", b"\x60" * 20, bytes(64)):
        verdict, events = ro.handle_packet(blob, away=True)
        assert events == [] or all(isinstance(e, DataPacketFromCorrespondent) for e in events)
        assert verdict is None or verdict.kind in tuple(VerdictKind)


def test_home_agent_entry_takes_only_packets_from_the_home_address() -> None:
    """§11.3.1: the HA's entry must leave the reverse tunnel (CoA -> HA) and the BUs alone."""
    fast_path = FakeRouteOptimizationFastPath("mn")
    ro = MobileNodeRouteOptimization(HOA, HA, 5, False, run=lambda _: 0, fast_path=fast_path)
    assert ro.install(HA, COA, home_agent=True) and ro.install(CN, COA)
    assert fast_path.entries == {(HOA, HA): COA, (HOA, CN): COA}
    assert fast_path.from_home_address_only == {(HOA, HA)}


def test_nfqueue_binding_gets_its_route_after_the_rule_and_loses_it_before() -> None:
    """The per-CN route (src HoA, MTU less 24) sends HoA traffic directly, so the NFQUEUE
    rule that adds the HAO must be in place first and go last."""
    order: list[str] = []

    def run(args: list[str]) -> int:
        order.append("rule " + args[2])
        return 0

    def ip(args: list[str]) -> subprocess.CompletedProcess[str]:
        if args[:4] == ["-j", "-6", "route", "get"]:
            out = json.dumps([{"dst": args[4], "gateway": "fe80::1", "dev": "lo"}])
            return subprocess.CompletedProcess(args, 0, out, "")
        if args[:3] in (["-6", "route", "replace"], ["-6", "route", "del"]):
            order.append(" ".join(args[1:3]))
        return subprocess.CompletedProcess(args, 0, "[]", "")

    routes = BindingRoutes("mn", run_ip=ip, user_space_rewrite=True)
    ro = MobileNodeRouteOptimization(HOA, HA, 5, False, run=run, routes=routes)
    assert ro.install(CN, COA)
    assert (HOA, CN) in routes.installed
    assert ro.remove(CN)
    assert order == ["rule -A", "route replace", "route del", "rule -D"]
    assert routes.installed == {}
