"""The HA data plane without root: the in-memory fake, rtnetlink packing, and the Home Agent
runtime driven end to end against the fake (BU in → BA with RH2 out, tunnel, proxy)."""

from __future__ import annotations

from collections.abc import Iterator
from ipaddress import IPv6Address
from pathlib import Path
from typing import Any

import pytest

from nfq_mip6.dataplane.fake import FakeDataplane
from nfq_mip6.io.nfqueue import QueuedPacket
from nfq_mip6.runtime.base import VerdictKind
from nfq_mip6.runtime.home_agent import HomeAgentRuntime
from nfq_mip6.wire import (
    BAFlags,
    BAStatus,
    BindingAck,
    BindingUpdate,
    BUFlags,
    build_icmpv6_packet,
    build_ipv6_packet,
    build_mh,
    home_agents_anycast,
    parse_ipv6,
    parse_mh,
)
from nfq_mip6.wire.mh import IPPROTO_MH
from tests.support.factories import home_agent_runtime
from tests.support.howto import HA, HOA, PREFIX

COA = IPv6Address("fec0:106:1100::10")
COA2 = IPv6Address("fec0:106:1000::10")


# -- FakeDataplane ---------------------------------------------------------------------------


# -- rtnetlink packing -----------------------------------------------------------------------


# -- HomeAgentRuntime on the fake ------------------------------------------------------------


class FakeND:
    def __init__(self) -> None:
        self.announced: list[IPv6Address] = []

    def fileno(self) -> int:
        return -1

    def on_readable(self) -> None: ...

    def announce(self, target: IPv6Address, source: IPv6Address, now: float) -> None:
        self.announced.append(target)

    def cancel_announcements(self, target: IPv6Address) -> None: ...

    def start_dad(self, hoa: IPv6Address, ll: IPv6Address | None, now: float) -> None:
        self.dad_started = (hoa, now)

    def next_deadline(self) -> float | None:
        return getattr(self, "dad_started", (None, None))[1]

    def poll(self, now: float) -> list[Any]:
        from nfq_mip6.io.nd import DadResult

        started = getattr(self, "dad_started", None)
        if started is None:
            return []
        del self.dad_started
        return [DadResult(started[0], duplicate=False)]

    def close(self) -> None: ...


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[tuple[HomeAgentRuntime, FakeDataplane, list[bytes]]]:
    fake = FakeDataplane()
    sent: list[bytes] = []
    rt = home_agent_runtime(tmp_path, fake, sent.append, nd=FakeND())
    yield rt, fake, sent
    rt.stop()  # stops the WAL checkpointer thread, closes the store


def bu(sequence: int, coa: IPv6Address = COA, lifetime: int = 0xFFFF) -> bytes:
    mh = build_mh(BindingUpdate(sequence, BUFlags.A | BUFlags.H, lifetime), HOA, HA)
    return build_ipv6_packet(coa, HA, IPPROTO_MH, mh, home_address=HOA)


def answer(sent: list[bytes]) -> tuple[BindingAck, IPv6Address, IPv6Address | None]:
    packet = parse_ipv6(sent[-1])
    message = parse_mh(packet.upper_layer_bytes)
    assert isinstance(message, BindingAck)
    return message, packet.dst, packet.rh2_address


def test_registration_through_proxy_dad_installs_tunnel_and_answers_with_rh2(
    runtime: tuple[HomeAgentRuntime, FakeDataplane, list[bytes]],
) -> None:
    rt, fake, sent = runtime
    # the MH is consumed
    assert rt.on_queued_packet(QueuedPacket(bu(1)), 100.0).kind == VerdictKind.DROP
    assert sent == [] and rt.next_deadline() == 100.0  # proxy DAD running
    rt.on_timer(101.0)
    ba, dst, rh2 = answer(sent)
    assert (ba.status, ba.sequence, ba.lifetime_seconds, dst, rh2) == (0, 1, 400, COA, HOA)
    assert fake.tunnels() == {HOA: COA} and HOA in fake.proxies()
    # A CoA change replaces the tunnel; the BA goes to the new CoA.
    rt.on_queued_packet(QueuedPacket(bu(2, coa=COA2)), 102.0)
    assert answer(sent)[1] == COA2 and fake.tunnels() == {HOA: COA2}
    assert fake.counters.tunnel_replacements == 1
    # An old sequence number: 135 with the last accepted one.
    rt.on_queued_packet(QueuedPacket(bu(1, coa=COA2)), 103.0)
    ba, _dst, _rh2 = answer(sent)
    assert (ba.status, ba.sequence) == (BAStatus.SEQUENCE_NUMBER_OUT_OF_WINDOW, 2)
    # De-registration removes the tunnel and the proxy.
    rt.on_queued_packet(QueuedPacket(bu(3, coa=COA2, lifetime=0)), 104.0)
    assert answer(sent)[0].status == BAStatus.ACCEPTED
    assert fake.tunnels() == {} and HOA not in fake.proxies()
    assert fake.proxies() == {home_agents_anycast(PREFIX)}  # DHAAD (§10.5) stays proxied
    stats = rt.handle_control({"cmd": "stats"})
    assert stats["ok"] and stats["backend"] == "fake" and stats["bindings"] == 0
    assert len(stats["counters"]) == 19


def test_malformed_and_slow_path_packets(
    runtime: tuple[HomeAgentRuntime, FakeDataplane, list[bytes]],
) -> None:
    rt, _fake, sent = runtime
    assert rt.on_queued_packet(QueuedPacket(b"\x60garbage"), 100.0).kind == VerdictKind.DROP
    assert rt.counters["malformed"] == 1
    # A new flow toward a node at home (no binding): accepted unchanged.
    at_home = build_ipv6_packet(IPv6Address("fec0:106:2300::10"), HOA, 59, b"")
    assert rt.on_queued_packet(QueuedPacket(at_home), 100.0).kind == VerdictKind.ACCEPT
    assert sent == []
    assert rt.handle_control({"cmd": "nope"})["ok"] is False


# -- NetlinkDataplane error paths (no kernel change: fake rtnetlink / syntax errors) ---------


def test_router_advertisements_feed_prefix_lifetimes_and_the_home_agents_list(
    runtime: tuple[HomeAgentRuntime, FakeDataplane, list[bytes]],
) -> None:
    from nfq_mip6.wire import (
        DhaadReply,
        DhaadRequest,
        HomeAgentInformation,
        PrefixInformation,
        RAFlags,
        RouterAdvertisement,
        build_icmpv6_packet,
        parse_icmpv6,
    )

    rt, _fake, sent = runtime
    own, other = IPv6Address("fe80::2"), IPv6Address("fe80::9")
    other_ha = IPv6Address("fec0:106:2700::9")
    rt._own_link_locals = frozenset({own})
    # Our radvd: the home prefix is valid 100 s, preferred 50 s → lifetime ≤ 100, status 1.
    rt._on_router_advertisement(
        own,
        RouterAdvertisement(
            flags=RAFlags.HOME_AGENT,
            prefixes=(PrefixInformation(HA, 64, router_address=True, valid_lifetime=100,
                                        preferred_lifetime=50),),
        ),
    )  # fmt: skip
    rt.on_queued_packet(QueuedPacket(bu(1)), 100.0)
    rt.on_timer(101.0)  # proxy DAD done
    ba, _dst, _rh2 = answer(sent)
    assert ba.status == BAStatus.ACCEPTED_PREFIX_DISCOVERY_NECESSARY
    assert ba.lifetime_seconds <= 100
    # Another home agent on the link (H bit, preference 30 > ours 0): listed first in DHAAD.
    rt._on_router_advertisement(
        other,
        RouterAdvertisement(
            flags=RAFlags.HOME_AGENT,
            router_lifetime=1800,
            prefixes=(PrefixInformation(other_ha, 64, router_address=True),),
            home_agent_information=HomeAgentInformation(30, 1800),
        ),
    )
    anycast = home_agents_anycast(PREFIX)
    rt.on_queued_packet(
        QueuedPacket(build_icmpv6_packet(DhaadRequest(7), COA, anycast, hop_limit=64)), 102.0
    )
    reply = parse_icmpv6(parse_ipv6(sent[-1]).upper_layer_bytes)
    assert isinstance(reply, DhaadReply)
    assert reply.home_agents == (other_ha, HA)


def test_an_expired_binding_loses_its_tunnel_and_proxy(
    runtime: tuple[HomeAgentRuntime, FakeDataplane, list[bytes]],
) -> None:
    rt, fake, _sent = runtime
    rt.on_queued_packet(QueuedPacket(bu(1, lifetime=10)), 100.0)  # 40 s
    rt.on_timer(101.0)  # proxy DAD done: registered until 141
    assert fake.tunnels() == {HOA: COA}
    deadline = rt.next_deadline()
    assert deadline is not None and 140.0 <= deadline <= 141.0
    rt.on_timer(deadline)
    assert fake.tunnels() == {} and HOA not in fake.proxies()
    assert rt.handle_control({"cmd": "cache"})["bindings"] == []


def test_bindings_gauge_is_per_state_when_scraped(
    runtime: tuple[HomeAgentRuntime, FakeDataplane, list[bytes]],
) -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from nfq_mip6.metrics import AgentMetrics

    rt, _fake, _sent = runtime
    registry = CollectorRegistry()
    AgentMetrics(registry, lambda: rt.handle_control({"cmd": "stats"}))

    def scrape() -> dict[str, float]:
        text = generate_latest(registry).decode()
        return {
            line.split("{")[1].split("}")[0]: float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("nfq_mip6_bindings{")
        }

    rt.on_queued_packet(QueuedPacket(bu(1)), 100.0)  # proxy DAD running: state "dad"
    assert scrape() == {'role="ha",state="dad"': 1.0, 'role="ha",state="registered"': 0.0}
    rt.on_timer(101.0)
    assert scrape() == {'role="ha",state="dad"': 0.0, 'role="ha",state="registered"': 1.0}
    assert rt.handle_control({"cmd": "stats"})["bindings_by_state"] == {"registered": 1, "dad": 0}


def test_a_flood_of_failed_sends_is_counted_but_logged_once_per_window(
    runtime: tuple[HomeAgentRuntime, FakeDataplane, list[bytes]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    from nfq_mip6.logsetup import LogThrottle

    rt, _fake, _sent = runtime
    clock = [1000.0]

    def refuse(packet: bytes) -> None:
        raise OSError(101, "Network is unreachable")

    assert rt.ctx is not None
    object.__setattr__(rt.ctx, "send_packet", refuse)
    rt._send_failures = LogThrottle(
        __import__("logging").getLogger("nfq_mip6.ha"), "sending a packet failed",
        clock=lambda: clock[0],
    )  # fmt: skip
    for _ in range(1000):
        rt._send(b"\x60" + bytes(39))
    clock[0] += 11.0
    rt._send(b"\x60" + bytes(39))
    rt.on_timer(1011.0)
    clock[0] += 11.0
    rt.on_timer(1022.0)  # nothing pending: no line
    lines = [r.getMessage() for r in caplog.records if "failed" in r.getMessage()]
    assert lines == [
        "sending a 40-octet packet failed: [Errno 101] Network is unreachable",
        "sending a packet failed 1000 more time(s) in the last 11 s "
        "(last: sending a 40-octet packet failed: [Errno 101] Network is unreachable)",
    ]
    assert rt.handle_control({"cmd": "stats"})["home_agent"]["send_errors"] == 1001


def test_own_packets_to_a_registered_home_address_go_directly_with_rh2(
    runtime: tuple[HomeAgentRuntime, FakeDataplane, list[bytes]],
) -> None:
    """RFC 6275 §9.3.2, §10.3.1: once the HoA is registered, a packet the HA originates for
    it (from NFQMIP6-HA-OUT, no input interface) leaves for the CoA with an RH2 = HoA; the
    same packet arriving through FORWARD keeps the tunnel; an MH (a BA) is left alone;
    after de-registration nothing is rewritten."""
    rt, _fake, sent = runtime
    echo_reply = build_ipv6_packet(HA, HOA, 58, b"\x81\x00\x00\x00\x00\x01\x00\x01")
    assert (
        rt.on_queued_packet(QueuedPacket(echo_reply), 100.0).kind == VerdictKind.ACCEPT
    )  # no binding yet
    rt.on_queued_packet(QueuedPacket(bu(1)), 100.0)
    rt.on_timer(101.0)  # proxy DAD done: registered
    verdict = rt.on_queued_packet(QueuedPacket(echo_reply), 102.0)
    assert verdict.kind == VerdictKind.REWRITE and verdict.payload is not None
    out = parse_ipv6(verdict.payload)
    assert (out.src, out.dst, out.rh2_address, out.upper_layer) == (HA, COA, HOA, 58)
    assert out.upper_layer_bytes == echo_reply[40:]  # checksum over the HoA: unchanged
    assert rt.handle_control({"cmd": "stats"})["home_agent"]["direct_rh2_inserted"] == 1
    # A BA the HA sends to the HoA itself is never rewritten.
    own_ba = build_ipv6_packet(
        HA, HOA, IPPROTO_MH, build_mh(BindingAck(0, BAFlags(0), 1, 0), HA, HOA)
    )
    assert rt.on_queued_packet(QueuedPacket(own_ba), 102.0).kind == VerdictKind.ACCEPT
    # Forwarded (FORWARD slow path: an input interface) → tunnelled, not given an RH2.
    forwarded = build_ipv6_packet(IPv6Address("2001:db8:c::9"), HOA, 59, b"")
    assert rt.on_queued_packet(QueuedPacket(forwarded, 7), 102.0).kind == VerdictKind.DROP
    assert parse_ipv6(sent[-1]).dst == COA and parse_ipv6(sent[-1]).upper_layer == 41
    # The kernel's Redirect to the bound HoA (a reverse-tunnelled packet forwarded back out
    # of the home interface, §10.4.5) is dropped, counted.
    redirect = build_ipv6_packet(
        IPv6Address("fe80::1"), HOA, 58, b"\x89\x00\x00\x00" + bytes(36), hop_limit=255
    )
    assert rt.on_queued_packet(QueuedPacket(redirect), 102.0).kind == VerdictKind.DROP
    assert rt.counters["redirects_suppressed"] == 1
    # A new CoA moves the direct path with it; de-registration ends it.
    rt.on_queued_packet(QueuedPacket(bu(2, coa=COA2)), 103.0)
    verdict = rt.on_queued_packet(QueuedPacket(echo_reply), 103.0)
    assert verdict.payload is not None and parse_ipv6(verdict.payload).dst == COA2
    rt.on_queued_packet(QueuedPacket(bu(3, coa=COA2, lifetime=0)), 104.0)
    assert rt.on_queued_packet(QueuedPacket(echo_reply), 105.0).kind == VerdictKind.ACCEPT


def test_icmp_error_about_a_tunnelled_packet_is_relayed_to_its_source(
    runtime: tuple[HomeAgentRuntime, FakeDataplane, list[bytes]],
) -> None:
    """RFC 2473 §8.1: Time Exceeded from the tunnel path → Destination Unreachable code 3
    from the HA to the original sender, with the inner packet; the error is accepted."""
    from nfq_mip6.wire import encapsulate
    from nfq_mip6.wire.icmp import DestinationUnreachable, UnknownICMPv6, parse_icmpv6

    rt, _fake, sent = runtime
    cn = IPv6Address("2001:db8:c::1")
    inner = build_ipv6_packet(cn, HOA, 59, b"")
    error = build_icmpv6_packet(
        UnknownICMPv6(3, 0, bytes(4) + encapsulate(inner, HA, COA)),
        IPv6Address("2001:db8:d::1"),
        HA,
        hop_limit=64,
    )
    assert rt.on_queued_packet(QueuedPacket(error, 2), 100.0).kind == VerdictKind.ACCEPT
    relayed = parse_ipv6(sent[-1])
    assert (relayed.src, relayed.dst, relayed.upper_layer) == (HA, cn, 58)
    message = parse_icmpv6(relayed.upper_layer_bytes)
    assert isinstance(message, DestinationUnreachable)
    assert (message.code, message.invoking_packet) == (3, inner)
    assert rt.counters["tunnel_errors_relayed"] == 1


def test_own_router_advertisement_sets_the_dhaad_preference(
    runtime: tuple[HomeAgentRuntime, FakeDataplane, list[bytes]],
) -> None:
    """RFC 6275 §7.4, §10.5.1: radvd's Home Agent Information option in the HA's own RA
    (looped back to its ND socket) is the preference the HA ranks itself with."""
    from nfq_mip6.wire.icmp import HomeAgentInformation, RAFlags, RouterAdvertisement

    rt, _fake, _sent = runtime
    assert rt.core is not None and rt.core.preference == 0
    own = IPv6Address("fe80::1")
    rt._own_link_locals = frozenset({own})
    ra = RouterAdvertisement(
        flags=RAFlags.HOME_AGENT, home_agent_information=HomeAgentInformation(10, 1800)
    )
    rt._on_router_advertisement(own, ra)
    assert rt.core.preference == 10
    rt._on_router_advertisement(
        IPv6Address("fe80::99"),
        RouterAdvertisement(
            flags=RAFlags.HOME_AGENT, home_agent_information=HomeAgentInformation(20, 1800)
        ),
    )
    assert rt.core.preference == 10  # another home agent's RA changes only its own entry


def test_virtual_ha_router_advertisement_is_recognised_by_the_ha_address(
    runtime: tuple[HomeAgentRuntime, FakeDataplane, list[bytes]],
) -> None:
    """A virtual HA's RA (radvd on the active member's VRRP interface) comes from the VRRP
    link-local, unknown when the member started as a standby: the HA address in the prefix
    option (Router Address flag, RFC 6275 §7.2) makes it ours, not another home agent."""
    from nfq_mip6.wire.icmp import (
        HomeAgentInformation,
        PrefixInformation,
        RAFlags,
        RouterAdvertisement,
    )

    rt, _fake, _sent = runtime
    assert rt.core is not None and rt.link is not None
    ra = RouterAdvertisement(
        flags=RAFlags.HOME_AGENT,
        home_agent_information=HomeAgentInformation(100, 1800),
        prefixes=(PrefixInformation(rt._address, 64, router_address=True),),
    )
    rt._on_router_advertisement(IPv6Address("fe80::2"), ra)
    assert rt.core.preference == 100
    assert rt.core.home_agent_list_rows(rt.ctx.clock() if rt.ctx else 0.0) == []
