"""The Mobile Node runtime's packet handling and action ordering, without root.

The kernel side (:class:`~nfq_mip6.dataplane.mobile_node.MobileNodeDataplane`) is replaced by
a recorder; packets are built and parsed with :mod:`nfq_mip6.wire`. The real kernel is
exercised in ``tests/integration/test_mobile_node.py`` and ``test_journey.py``.
"""

from __future__ import annotations

import dataclasses
import struct
from ipaddress import IPv6Address, IPv6Interface, IPv6Network
from pathlib import Path
from typing import Any

import pytest

from nfq_mip6.config import load_config
from nfq_mip6.io.nfqueue import QueuedPacket
from nfq_mip6.mobility.events import (
    InstallRouteOptimization,
    MovedToForeignLink,
    RemoveRouteOptimization,
    ReturnedToHomeLink,
    SendMobilityMessage,
)
from nfq_mip6.mobility.stats import MIPL_COUNTER_NAMES
from nfq_mip6.runtime.base import VerdictKind
from nfq_mip6.runtime.mobile_node import MobileNodeRuntime, _make_core
from nfq_mip6.runtime.movement import (
    AddressObservation,
    HeardRouterAdvertisement,
    MovementDetector,
)
from nfq_mip6.runtime.ro_datapath import MobileNodeRouteOptimization
from nfq_mip6.wire import (
    AlternateCareofAddress,
    BAFlags,
    BindingAck,
    BindingUpdate,
    BUFlags,
    HomeTestInit,
    MobilePrefixAdvertisement,
    MobilePrefixSolicitation,
    PrefixInformation,
    RouterAdvertisement,
    build_icmpv6_packet,
    build_ipv6_packet,
    build_mh,
    parse_and_validate_mh,
    parse_icmpv6,
    parse_ipv6,
    verify_icmpv6_checksum,
)
from nfq_mip6.wire.mh import IPPROTO_MH
from nfq_mip6.wire.validate import Accepted
from tests.support.factories import runtime_context
from tests.support.howto import CN, COA, COA2, HA
from tests.support.howto import HOA_INTERFACE as HOA

REPO = Path(__file__).resolve().parents[3]
AR = IPv6Address("fe80::11")
IPPROTO_UDP = 17


class RecordingDataplane:
    """Stands in for MobileNodeDataplane: records calls in the shared log."""

    def __init__(self, log: list[str]) -> None:
        self.log = log
        self.care_of_address: IPv6Address | None = None
        self.home_address_away = False
        self.local_rule_moved = False

    def prepare_care_of_address(self, coa: IPv6Address) -> None:
        self.log.append(f"prepare {coa}")
        self.local_rule_moved = True

    def install_reverse_tunnel(self, coa: IPv6Address, ha: IPv6Address) -> None:
        self.log.append(f"tunnel {coa} {ha}")
        self.care_of_address = coa

    def remove_reverse_tunnel(self) -> None:
        self.log.append("untunnel")
        self.care_of_address = None
        self.local_rule_moved = False

    def move_home_address_away(self) -> None:
        self.log.append("hoa away")
        self.home_address_away = True

    def move_home_address_home(self) -> None:
        self.log.append("hoa home")
        self.home_address_away = False

    def purge_visited_link_state(self, keep: tuple[IPv6Network, ...], router: Any) -> list[Any]:
        self.log.append("purge")
        return []

    def snapshot(self) -> dict[str, Any]:
        return {"backend": "recording"}


@pytest.fixture
def runtime_and_log() -> tuple[MobileNodeRuntime, list[str]]:
    log: list[str] = []
    config = load_config(REPO / "deploy" / "network-mip6.conf.mn", environ={})
    clock = [100.0]

    def send(packet: bytes) -> None:
        log.append("send " + packet.hex())

    runtime = MobileNodeRuntime()
    runtime.ctx = runtime_context(config, send, lambda: clock[0], verdict_stats=False)
    runtime.home_address = HOA
    runtime.home_agent = HA
    # no such interface: whatever the runtime would multicast (NAs) goes nowhere, even as root
    runtime.interface = "nfqmip6-none"
    runtime.core = _make_core(HOA, HA, 1000)
    runtime.detector = MovementDetector(HOA, HA)
    runtime.dataplane = RecordingDataplane(log)
    return runtime, log


def sent_packets(log: list[str]) -> list[bytes]:
    return [bytes.fromhex(entry[5:]) for entry in log if entry.startswith("send ")]


def binding_ack(sequence: int, coa: IPv6Address, home: IPv6Address = HOA.ip) -> bytes:
    mh = build_mh(BindingAck(0, BAFlags.NONE, sequence, 250), HA, home)
    return build_ipv6_packet(HA, coa, IPPROTO_MH, mh, rh2_address=home)


def test_move_sends_a_home_registration_after_the_hoa_leaves(
    runtime_and_log: tuple[MobileNodeRuntime, list[str]],
) -> None:
    runtime, log = runtime_and_log
    # what the monitor reports: the AR's RA, then the autoconfigured (optimistic) address
    visited = PrefixInformation(IPv6Address("fec0:106:1100::"), 64, True, True, False, 86400, 14400)
    runtime._observe(HeardRouterAdvertisement(AR, RouterAdvertisement(prefixes=(visited,))), 100.0)
    assert log == ["purge"]
    runtime._observe(AddressObservation(IPv6Interface(f"{COA}/64"), True, 86400.0), 100.0)
    kinds = [entry.split()[0] for entry in log]
    # the HoA (and its on-link home prefix) goes first, then the BU, then the decapsulation
    assert kinds[: kinds.index("send")] == ["purge", "hoa", "purge"]
    assert log.index(f"prepare {COA}") > kinds.index("send")
    assert not any(entry.startswith("tunnel") for entry in log)  # §11.3.1: waits for the BA
    (packet,) = sent_packets(log)
    verdict = parse_and_validate_mh(packet)
    assert isinstance(verdict, Accepted)  # checksum over the HoA (§6.1.1) is right
    parsed = parse_ipv6(packet)
    assert (parsed.src, parsed.dst, parsed.home_address) == (COA, HA, HOA.ip)
    bu = verdict.message
    assert isinstance(bu, BindingUpdate)
    assert bu.flags & (BUFlags.A | BUFlags.H) == BUFlags.A | BUFlags.H
    assert AlternateCareofAddress(COA) in bu.options
    assert runtime.bul_rows(100.0)[0]["state"] == 0


def test_binding_ack_from_nfqueue_is_consumed_and_installs_the_tunnel(
    runtime_and_log: tuple[MobileNodeRuntime, list[str]],
) -> None:
    runtime, log = runtime_and_log
    runtime._decide([MovedToForeignLink(COA, 86400.0, AR)], 100.0)
    sequence = runtime.bul_rows(100.0)[0]["sequence"]
    verdict = runtime.on_queued_packet(QueuedPacket(binding_ack(sequence, COA)), 100.01)
    assert verdict.kind is VerdictKind.DROP
    assert f"tunnel {COA} {HA}" in log
    row = runtime.bul_rows(100.02)[0]
    assert row["state"] == 1 and row["care_of_address"] == str(COA)
    assert row["expires"] >= 999 and row["recipient"] == str(HA)
    # a BA naming another home address in its RH2 is dropped without effect (§11.3.3)
    other = runtime.on_queued_packet(
        QueuedPacket(binding_ack(sequence, COA, IPv6Address("fec0::9"))), 100.03
    )
    assert other.kind is VerdictKind.DROP
    assert runtime.counters["malformed"] == 1


def test_second_move_reregisters_and_return_home_deregisters_from_the_hoa(
    runtime_and_log: tuple[MobileNodeRuntime, list[str]],
) -> None:
    runtime, log = runtime_and_log
    runtime._decide([MovedToForeignLink(COA, 86400.0, AR)], 100.0)
    runtime.on_queued_packet(
        QueuedPacket(binding_ack(runtime.bul_rows(100.0)[0]["sequence"], COA)), 100.01
    )
    log.clear()
    runtime._decide([MovedToForeignLink(COA2, 86400.0, AR)], 101.0)
    (packet,) = sent_packets(log)
    assert parse_ipv6(packet).src == COA2
    assert "hoa away" not in log  # already away
    log.clear()
    runtime._decide([ReturnedToHomeLink()], 102.0)
    kinds = [entry.split()[0] for entry in log]
    # the BU from the HoA first, the HoA back on the interface right after it, then the
    # tunnel rules go (§11.5.5)
    assert kinds == ["send", "hoa", "untunnel"]
    (packet,) = sent_packets(log)
    parsed = parse_ipv6(packet)
    verdict = parse_and_validate_mh(packet)
    assert isinstance(verdict, Accepted) and isinstance(verdict.message, BindingUpdate)
    assert (parsed.src, parsed.dst, parsed.home_address) == (HOA.ip, HA, None)
    assert verdict.message.lifetime == 0


def test_queued_packets_that_are_not_mobility_messages(
    runtime_and_log: tuple[MobileNodeRuntime, list[str]],
) -> None:
    runtime, _log = runtime_and_log
    udp = struct.pack("!HHHH", 5000, 6000, 12, 0) + b"data"
    # route-optimised data with an RH2 to our HoA: rewritten to the HoA and accepted
    routed = build_ipv6_packet(CN, COA, IPPROTO_UDP, udp, rh2_address=HOA.ip)
    verdict = runtime.on_queued_packet(QueuedPacket(routed), 1.0)
    assert verdict.kind is VerdictKind.REWRITE and verdict.payload is not None
    assert parse_ipv6(verdict.payload).dst == HOA.ip
    assert runtime.on_queued_packet(
        QueuedPacket(build_ipv6_packet(CN, COA, IPPROTO_UDP, udp)), 1.0
    ).kind is (VerdictKind.ACCEPT)
    assert runtime.on_queued_packet(QueuedPacket(b"\x60garbage"), 1.0).kind is VerdictKind.DROP
    assert runtime.counters["malformed"] == 1


def test_mobile_prefix_advertisement_goes_to_the_core(
    runtime_and_log: tuple[MobileNodeRuntime, list[str]],
) -> None:
    runtime, _log = runtime_and_log
    mpa = MobilePrefixAdvertisement(
        7, prefixes=(PrefixInformation(IPv6Address("fec0:106:2700::"), 64),)
    )
    packet = build_icmpv6_packet(mpa, HA, COA, hop_limit=64, rh2_address=HOA.ip)
    assert runtime.on_queued_packet(QueuedPacket(packet), 1.0).kind is VerdictKind.DROP
    assert any(what == "mpa id=7" for _t, what in runtime.events)
    broken = packet[:-1] + bytes((packet[-1] ^ 0xFF,))
    assert runtime.on_queued_packet(QueuedPacket(broken), 1.0).kind is VerdictKind.DROP
    assert runtime.counters["malformed"] == 1


def test_control_snapshots_have_the_contract_shapes(
    runtime_and_log: tuple[MobileNodeRuntime, list[str]],
) -> None:
    runtime, _log = runtime_and_log
    runtime._decide([MovedToForeignLink(COA, 86400.0, AR)], 100.0)
    bul = runtime.handle_control({"cmd": "bul"})
    assert bul["ok"] and set(bul["entries"][0]) >= {
        "recipient",
        "home_address",
        "care_of_address",
        "expires",
        "sequence",
        "state",
        "delay",
        "max_delay",
        "callback_time",
        "home_registration",
    }
    stats = runtime.handle_control({"cmd": "stats"})
    assert stats["ok"] and stats["role"] == "mn" and stats["backend"] == "seg6"
    assert tuple(stats["counters"]) == MIPL_COUNTER_NAMES
    assert stats["counters"]["NBindUpdatesSent"] == 1
    assert runtime.handle_control({"cmd": "ro"}) == {
        "ok": True,
        "route_optimization": False,
        "ro_datapath": {"datapath": "nfqueue", "reason": "not started"},
    }
    assert runtime.handle_control({"cmd": "nonsense"})["ok"] is False


def test_binding_ack_status_1_sends_a_mobile_prefix_solicitation(
    runtime_and_log: tuple[MobileNodeRuntime, list[str]],
) -> None:
    runtime, log = runtime_and_log
    runtime._decide([MovedToForeignLink(COA, 86400.0, AR)], 100.0)
    sequence = runtime.bul_rows(100.0)[0]["sequence"]
    mh = build_mh(BindingAck(1, BAFlags.NONE, sequence, 250), HA, HOA.ip)
    packet = build_ipv6_packet(HA, COA, IPPROTO_MH, mh, rh2_address=HOA.ip)
    log.clear()
    runtime.on_queued_packet(QueuedPacket(packet), 100.01)
    # §11.4.2: MPS from the CoA to the HA with an HAO, checksummed over the HoA
    (mps,) = sent_packets(log)
    parsed = parse_ipv6(mps)
    assert (parsed.src, parsed.dst, parsed.home_address) == (COA, HA, HOA.ip)
    body = parsed.upper_layer_bytes
    assert body[0] == 146
    assert verify_icmpv6_checksum(body, HOA.ip, HA)
    assert isinstance(parse_icmpv6(body), MobilePrefixSolicitation)


def test_hoti_goes_through_the_tunnel_and_ro_actions_drive_the_helper(
    runtime_and_log: tuple[MobileNodeRuntime, list[str]],
) -> None:
    runtime, log = runtime_and_log
    rules: list[list[str]] = []

    def run(args: list[str]) -> int:
        rules.append(args)
        return 0

    runtime.ro = MobileNodeRouteOptimization(HOA.ip, HA, 0, False, run=run)
    visited = PrefixInformation(IPv6Address("fec0:106:1100::"), 64, True, True, False, 86400, 14400)
    runtime._observe(HeardRouterAdvertisement(AR, RouterAdvertisement(prefixes=(visited,))), 100.0)
    runtime._observe(AddressObservation(IPv6Interface(f"{COA}/64"), True, 86400.0), 100.0)
    log.clear()
    hoti = HomeTestInit(b"\x01" * 8)
    runtime._apply([SendMobilityMessage(hoti, src=HOA.ip, dst=CN, via_tunnel=True)], 100.1)
    (packet,) = sent_packets(log)
    outer = parse_ipv6(packet)
    assert (outer.src, outer.dst, outer.upper_layer) == (COA, HA, 41)  # RFC 2473, §11.6.1
    inner = packet[40:]
    verdict = parse_and_validate_mh(inner)
    assert isinstance(verdict, Accepted) and verdict.message == hoti
    assert (parse_ipv6(inner).src, parse_ipv6(inner).dst) == (HOA.ip, CN)
    runtime._apply([InstallRouteOptimization(HOA.ip, COA, CN)], 100.2)
    assert runtime.ro.bindings == {CN.packed: COA.packed}
    assert rules[-1][:4] == ["-t", "mangle", "-A", "NFQMIP6-MN-RO"]
    runtime._apply([RemoveRouteOptimization(HOA.ip, CN)], 100.3)
    assert runtime.ro.bindings == {} and rules[-1][2] == "-D"


def test_sighup_binding_lifetime_goes_into_the_next_home_bu(
    runtime_and_log: tuple[MobileNodeRuntime, list[str]],
) -> None:
    """``[mn] binding_lifetime`` changed + SIGHUP (the agent passes the merged config): a
    shorter lifetime refreshes the binding at once, a longer one rides on the next refresh."""
    runtime, log = runtime_and_log
    assert runtime.ctx is not None and runtime.ctx.config.mn is not None
    runtime._decide([MovedToForeignLink(COA, 86400.0, AR)], 100.0)
    runtime.on_queued_packet(
        QueuedPacket(binding_ack(runtime.bul_rows(100.0)[0]["sequence"], COA)), 100.0
    )
    assert runtime.bul_rows(100.0)[0]["expires"] == 1000

    def reload(seconds: int, now: float) -> list[str]:
        assert runtime.ctx is not None and runtime.ctx.config.mn is not None
        mn = dataclasses.replace(runtime.ctx.config.mn, binding_lifetime=seconds)
        config = dataclasses.replace(runtime.ctx.config, mn=mn, route_optimization=False)
        runtime.ctx = dataclasses.replace(runtime.ctx, clock=lambda: now)
        log.clear()
        return runtime.reload(config)

    def sent_lifetime() -> int:
        (packet,) = sent_packets(log)
        verdict = parse_and_validate_mh(packet)
        assert isinstance(verdict, Accepted) and isinstance(verdict.message, BindingUpdate)
        return verdict.message.lifetime * 4

    assert reload(100, 110.0) == ["binding_lifetime: 100"]
    assert sent_lifetime() == 100  # the 1000 s binding is shortened now
    sequence = runtime.bul_rows(110.0)[0]["sequence"]
    ack = build_ipv6_packet(
        HA, COA, IPPROTO_MH, build_mh(BindingAck(0, BAFlags.NONE, sequence, 25), HA, HOA.ip),
        rh2_address=HOA.ip,
    )  # fmt: skip
    runtime.on_queued_packet(QueuedPacket(ack), 110.0)
    assert runtime.bul_rows(110.0)[0]["expires"] == 100
    # longer: nothing leaves now; the refresh (80 % of 100 s) asks for 600 s
    assert reload(600, 120.0) == ["binding_lifetime: 600"]
    assert sent_packets(log) == []
    assert reload(600, 121.0) == []  # unchanged: nothing to apply
    runtime.on_timer(190.0)
    assert sent_lifetime() == 600


def test_home_link_at_start_sends_no_binding_update(
    runtime_and_log: tuple[MobileNodeRuntime, list[str]],
) -> None:
    """§11.5.5, §11.7.1: the first RA is from the home link and no previous run ended away:
    there is no binding to de-register, so no BU (a BU that is not due)."""
    runtime, log = runtime_and_log
    home = PrefixInformation(HOA.network.network_address, 64, True, True, False, 86400, 14400)
    runtime._observe(HeardRouterAdvertisement(HA, RouterAdvertisement(prefixes=(home,))), 100.0)
    runtime._observe(HeardRouterAdvertisement(HA, RouterAdvertisement(prefixes=(home,))), 101.0)
    assert sent_packets(log) == []
    assert runtime.counters["start_deregistrations"] == 0


def test_silent_router_is_solicited_from_the_timer(
    runtime_and_log: tuple[MobileNodeRuntime, list[str]],
) -> None:
    """§11.5.1/§7.3: the visited router's RAs stop (a move without a carrier change): when its
    Advertisement Interval has passed, the agent's timer sends a Router Solicitation."""
    runtime, _log = runtime_and_log
    solicited: list[float] = []
    runtime._send_router_solicitation = lambda: solicited.append(0.0)  # type: ignore[method-assign]
    visited = PrefixInformation(IPv6Address("fec0:106:1100::"), 64, True, True, False, 86400, 14400)
    advertisement = HeardRouterAdvertisement(
        AR, RouterAdvertisement(prefixes=(visited,), advertisement_interval=1500)
    )
    runtime._observe(advertisement, 100.0)
    runtime._observe(AddressObservation(IPv6Interface(f"{COA}/64"), True, 86400.0), 100.0)
    assert runtime.reachability.router == AR
    runtime._observe(advertisement, 101.0)  # still there
    deadline = runtime.next_deadline()
    assert deadline is not None and deadline <= 103.0
    runtime.on_timer(102.0)
    assert solicited == [] and runtime.reachability.routers_lost == 0
    runtime.on_timer(103.0)  # 1.5 s + 0.5 s slack after the last RA
    assert len(solicited) == 1
    stats = runtime.handle_control({"cmd": "stats"})
    assert stats["mobile_node"]["routers_lost"] == 1
    assert any(what == f"router lost {AR}" for _t, what in runtime.events)
