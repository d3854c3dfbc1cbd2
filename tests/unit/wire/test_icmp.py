"""ICMPv6 / ND codec: round trips and byte-for-byte cross-checks against scapy."""

from __future__ import annotations

from ipaddress import IPv6Address, IPv6Network

import pytest
from scapy.layers.inet6 import (
    ICMPv6DestUnreach,
    ICMPv6HAADReply,
    ICMPv6HAADRequest,
    ICMPv6MPAdv,
    ICMPv6MPSol,
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    ICMPv6ND_RA,
    ICMPv6ND_RS,
    ICMPv6NDOptAdvInterval,
    ICMPv6NDOptDstLLAddr,
    ICMPv6NDOptHAInfo,
    ICMPv6NDOptPrefixInfo,
    ICMPv6NDOptSrcLLAddr,
    ICMPv6ParamProblem,
    IPv6,
)

from nfq_mip6.wire import (
    MAX_DHAAD_REPLY_ADDRESSES,
    DestinationUnreachable,
    DhaadReply,
    DhaadRequest,
    HomeAgentInformation,
    ICMPv6Message,
    MalformedPacket,
    MobilePrefixAdvertisement,
    MobilePrefixSolicitation,
    NAFlags,
    NeighborAdvertisement,
    NeighborSolicitation,
    ParameterProblemMessage,
    PrefixInformation,
    RAFlags,
    RawNDOption,
    RouterAdvertisement,
    RouterSolicitation,
    UnknownICMPv6,
    build_icmpv6,
    build_icmpv6_packet,
    home_agents_anycast,
    parse_icmpv6,
    parse_ipv6,
    solicited_node_address,
    verify_icmpv6_checksum,
)
from tests.support.vectors import COA, HA, HOA

MAC = bytes.fromhex("020000000001")
PREFIX = PrefixInformation(IPv6Address("2001:db8:a::"), 64, True, True, False, 86400, 14400)
HA_PREFIX = PrefixInformation(HA, 64, True, True, True, 86400, 14400)


def _same(ours: bytes, scapy_packet: IPv6) -> None:
    assert ours.hex() == bytes(scapy_packet).hex()


def test_dhaad_request_matches_scapy() -> None:
    anycast = home_agents_anycast(IPv6Network("2001:db8:a::/64"))
    assert anycast == IPv6Address("2001:db8:a:0:fdff:ffff:ffff:fffe")
    ours = build_icmpv6_packet(DhaadRequest(0x1234), COA, anycast, hop_limit=64)
    _same(ours, IPv6(src=str(COA), dst=str(anycast), hlim=64) / ICMPv6HAADRequest(id=0x1234, R=0))


def test_dhaad_reply_matches_scapy_and_truncates_to_77() -> None:
    agents = tuple(IPv6Address(f"2001:db8:a::{i + 1:x}") for i in range(78))
    ours = build_icmpv6_packet(DhaadReply(7, agents), HA, COA, hop_limit=64)
    assert len(ours) <= 1280
    reference = IPv6(src=str(HA), dst=str(COA), hlim=64) / ICMPv6HAADReply(
        id=7, R=0, addresses=[str(a) for a in agents[:77]]
    )
    _same(ours, reference)
    parsed = parse_icmpv6(ours[40:])
    assert isinstance(parsed, DhaadReply) and len(parsed.home_agents) == MAX_DHAAD_REPLY_ADDRESSES


def test_mobile_prefix_messages_match_scapy() -> None:
    ours = build_icmpv6_packet(MobilePrefixSolicitation(9), COA, HA, hop_limit=64, home_address=HOA)
    parsed = IPv6(ours)
    assert parsed[ICMPv6MPSol].id == 9
    # the checksum is computed with the home address, as the HA will verify it
    assert verify_icmpv6_checksum(ours[64:], HOA, HA)

    mpa = MobilePrefixAdvertisement(9, managed=True, other=False, prefixes=(PREFIX,))
    ours = build_icmpv6_packet(mpa, HA, COA, hop_limit=64)
    reference = (
        IPv6(src=str(HA), dst=str(COA), hlim=64)
        / ICMPv6MPAdv(id=9, flags=2)
        / (
            ICMPv6NDOptPrefixInfo(
                prefixlen=64,
                L=1,
                A=1,
                R=0,
                validlifetime=86400,
                preferredlifetime=14400,
                prefix="2001:db8:a::",
            )
        )
    )
    _same(ours, reference)


def test_router_advertisement_with_home_agent_options_matches_scapy() -> None:
    ra = RouterAdvertisement(
        cur_hop_limit=64,
        flags=RAFlags.HOME_AGENT,
        router_lifetime=1800,
        source_link_layer=MAC,
        prefixes=(HA_PREFIX,),
        advertisement_interval=3000,
        home_agent_information=HomeAgentInformation(0xFFFF, 1000),
    )
    ours = build_icmpv6_packet(ra, IPv6Address("fe80::1"), IPv6Address("ff02::1"))
    reference = (
        IPv6(src="fe80::1", dst="ff02::1", hlim=255)
        / ICMPv6ND_RA(chlim=64, M=0, O=0, H=1, prf=0, P=0, routerlifetime=1800)
        / ICMPv6NDOptSrcLLAddr(lladdr="02:00:00:00:00:01")
        / ICMPv6NDOptPrefixInfo(
            prefixlen=64,
            L=1,
            A=1,
            R=1,
            validlifetime=86400,
            preferredlifetime=14400,
            prefix=str(HA),
        )
        / ICMPv6NDOptAdvInterval(advint=3000)
        / ICMPv6NDOptHAInfo(pref=0xFFFF, lifetime=1000)
    )
    _same(ours, reference)
    parsed = parse_icmpv6(ours[40:])
    assert parsed == ra
    assert isinstance(parsed, RouterAdvertisement) and parsed.home_agent
    assert parsed.prefixes[0].router_address


def test_neighbor_discovery_matches_scapy() -> None:
    target = HOA
    solicited = solicited_node_address(target)
    assert solicited == IPv6Address("ff02::1:ff00:100")
    ours = build_icmpv6_packet(NeighborSolicitation(target), IPv6Address("::"), solicited)
    _same(ours, IPv6(src="::", dst=str(solicited), hlim=255) / ICMPv6ND_NS(tgt=str(target)))

    na = NeighborAdvertisement(target, NAFlags.OVERRIDE, MAC)
    ours = build_icmpv6_packet(na, HA, IPv6Address("ff02::1"))
    reference = (
        IPv6(src=str(HA), dst="ff02::1", hlim=255)
        / ICMPv6ND_NA(R=0, S=0, O=1, tgt=str(target))
        / ICMPv6NDOptDstLLAddr(lladdr="02:00:00:00:00:01")
    )
    _same(ours, reference)
    assert parse_icmpv6(ours[40:]) == na

    rs = RouterSolicitation(MAC)
    ours = build_icmpv6_packet(rs, COA, IPv6Address("ff02::2"))
    reference = (
        IPv6(src=str(COA), dst="ff02::2", hlim=255)
        / ICMPv6ND_RS()
        / ICMPv6NDOptSrcLLAddr(lladdr="02:00:00:00:00:01")
    )
    _same(ours, reference)


def test_error_messages_match_scapy() -> None:
    invoking = bytes(IPv6(src=str(COA), dst=str(HA), nh=135, plen=0))
    ours = build_icmpv6_packet(ParameterProblemMessage(0, 64, invoking), HA, COA, hop_limit=64)
    reference = IPv6(src=str(HA), dst=str(COA), hlim=64) / ICMPv6ParamProblem(code=0, ptr=64)
    _same(ours, reference / invoking)
    ours = build_icmpv6_packet(DestinationUnreachable(3, invoking), HA, COA, hop_limit=64)
    reference = IPv6(src=str(HA), dst=str(COA), hlim=64) / ICMPv6DestUnreach(code=3)
    _same(ours, reference / invoking)


def test_error_message_is_truncated_to_the_minimum_mtu() -> None:
    big = bytes(IPv6(src=str(COA), dst=str(HA)) / (b"x" * 1400))
    ours = build_icmpv6_packet(DestinationUnreachable(3, big), HA, COA)
    assert len(ours) == 1280
    assert parse_ipv6(ours).end == 1280


ROUND_TRIP: list[ICMPv6Message] = [
    DhaadRequest(1),
    DhaadRequest(2, mobile_router=True),
    DhaadReply(3, (HA, HOA), mobile_router=True),
    DhaadReply(4),
    MobilePrefixSolicitation(5),
    MobilePrefixAdvertisement(6, True, True, (PREFIX, HA_PREFIX), (RawNDOption(200, bytes(6)),)),
    RouterSolicitation(),
    RouterAdvertisement(mtu=1500, other_options=(RawNDOption(25, bytes(14)),)),
    NeighborSolicitation(HOA, MAC),
    NeighborAdvertisement(HOA, NAFlags.ROUTER | NAFlags.SOLICITED),
    ParameterProblemMessage(2, 46, b"abc"),
    DestinationUnreachable(4, b""),
    UnknownICMPv6(128, 0, b"\x00\x01\x00\x02ping"),
]


@pytest.mark.parametrize("message", ROUND_TRIP, ids=lambda m: type(m).__name__)
def test_round_trip(message: ICMPv6Message) -> None:
    built = build_icmpv6(message, COA, HA)
    assert verify_icmpv6_checksum(built, COA, HA)
    assert parse_icmpv6(built) == message


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x90\x00\x00",
        b"\x91\x00\x00\x00\x00\x01\x00\x00\x01",  # DHAAD reply, partial address
        b"\x86\x00\x00\x00" + bytes(12) + b"\x01\x00",  # RA option of length 0
        b"\x88\x00\x00\x00" + bytes(20) + b"\x02\x02" + bytes(6),  # NA option overruns
        b"\x87\x00\x00\x00" + bytes(10),  # NS without target
        b"\x93\x00\x00\x00" + bytes(4) + b"\x03\x01" + bytes(6),  # MPA bad prefix length
    ],
)
def test_malformed_icmpv6(raw: bytes) -> None:
    with pytest.raises(MalformedPacket):
        parse_icmpv6(raw)
