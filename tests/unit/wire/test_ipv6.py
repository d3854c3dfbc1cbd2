"""IPv6 walker, builders, Mobile IPv6 rewrites and RFC 2473 encapsulation."""

from __future__ import annotations

from ipaddress import IPv6Address

import pytest
from scapy.layers.inet import UDP
from scapy.layers.inet6 import (
    HAO,
    ICMPv6EchoRequest,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
    PadN,
)

from nfq_mip6.wire import (
    AlternateCareofAddress,
    BAFlags,
    BindingAck,
    BindingUpdate,
    BUFlags,
    MalformedPacket,
    build_ipv6_packet,
    build_mh,
    decapsulate,
    encapsulate,
    insert_hao,
    insert_rh2,
    parse_ipv6,
    strip_hao_to_home_source,
    strip_rh2_to_home_destination,
    verify_mh_checksum,
)
from nfq_mip6.wire.checksum import verify_pseudo_header_checksum
from tests.support.vectors import CN, COA, HA, HOA


def _echo(src: IPv6Address, dst: IPv6Address) -> bytes:
    return bytes(IPv6(src=str(src), dst=str(dst)) / ICMPv6EchoRequest(id=7, seq=1, data=b"ping"))


def test_home_bu_packet_walk() -> None:
    bu = BindingUpdate(1, BUFlags.A | BUFlags.H, 10, (AlternateCareofAddress(COA),))
    raw = build_ipv6_packet(COA, HA, 135, build_mh(bu, HOA, HA), home_address=HOA)
    assert len(raw) == 40 + 24 + 32
    packet = parse_ipv6(raw)
    assert packet.src == COA and packet.dst == HA and packet.hop_limit == 64
    assert packet.header_types == (60,)
    assert packet.home_address == HOA
    assert packet.hao_offset == 40 + 6 and packet.hao_offset % 8 == 6
    assert packet.upper_layer == 135 and packet.upper_offset == 64
    assert packet.checksum_source == HOA and packet.checksum_destination == HA
    assert verify_mh_checksum(packet.upper_layer_bytes, HOA, HA)
    # scapy agrees on the layout
    parsed = IPv6(raw)
    assert parsed[HAO].hoa == str(HOA)
    assert parsed[IPv6ExtHdrDestOpt].nh == 135


def test_ba_with_rh2_walk() -> None:
    ba = BindingAck(0, BAFlags.NONE, 1, 10)
    raw = build_ipv6_packet(HA, COA, 135, build_mh(ba, HA, HOA), rh2_address=HOA)
    packet = parse_ipv6(raw)
    assert packet.rh2_address == HOA and packet.rh2_valid and packet.rh2_segments_left == 1
    assert packet.rh2_offset == 40 and packet.upper_offset == 64
    assert packet.checksum_destination == HOA
    scapy_rh = IPv6(raw)[IPv6ExtHdrRouting]
    assert scapy_rh.type == 2 and scapy_rh.segleft == 1 and scapy_rh.addresses == [str(HOA)]


def test_rh2_and_hao_order() -> None:
    raw = build_ipv6_packet(COA, CN, 59, b"", home_address=HOA, rh2_address=IPv6Address("::1"))
    packet = parse_ipv6(raw)
    assert packet.header_types == (43, 60)
    assert packet.upper_layer == 59 and packet.upper_offset == 88


def test_invalid_rh2_is_flagged() -> None:
    raw = bytearray(build_ipv6_packet(HA, COA, 59, b"", rh2_address=HOA))
    raw[43] = 0  # Segments Left 0
    packet = parse_ipv6(bytes(raw))
    assert packet.rh2_address == HOA and not packet.rh2_valid
    assert strip_rh2_to_home_destination(bytes(raw)) is None


def test_walk_hop_by_hop_fragment_and_udp() -> None:
    raw = bytes(
        IPv6(src=str(CN), dst=str(HOA))
        / IPv6ExtHdrHopByHop()
        / IPv6ExtHdrFragment(offset=0, m=0, id=5)
        / UDP(sport=1, dport=2)
        / b"data"
    )
    packet = parse_ipv6(raw)
    assert packet.header_types == (0, 44)
    assert packet.upper_layer == 17 and packet.fragmented
    later = bytes(
        IPv6(src=str(CN), dst=str(HOA)) / IPv6ExtHdrFragment(offset=10, m=0, id=5) / (b"x" * 8)
    )
    packet = parse_ipv6(later)
    assert packet.upper_layer == 44 and packet.upper_offset == 40


def test_route_optimisation_rewrites_round_trip() -> None:
    original = _echo(HOA, CN)
    with_hao = insert_hao(original, COA)
    assert with_hao is not None
    packet = parse_ipv6(with_hao)
    assert packet.src == COA and packet.home_address == HOA
    # the upper-layer checksum is still valid with the home address (§6.3)
    assert verify_pseudo_header_checksum(HOA, CN, 58, packet.upper_layer_bytes)
    assert strip_hao_to_home_source(with_hao) == original

    to_mn = _echo(CN, HOA)
    with_rh2 = insert_rh2(to_mn, COA)
    assert with_rh2 is not None
    packet = parse_ipv6(with_rh2)
    assert packet.dst == COA and packet.rh2_address == HOA and packet.rh2_valid
    assert verify_pseudo_header_checksum(CN, HOA, 58, packet.upper_layer_bytes)
    assert strip_rh2_to_home_destination(with_rh2) == to_mn
    assert insert_rh2(with_rh2, COA) is None  # already routed


def test_insert_hao_after_hop_by_hop() -> None:
    original = bytes(IPv6(src=str(HOA), dst=str(CN)) / IPv6ExtHdrHopByHop() / UDP() / b"x")
    rewritten = insert_hao(original, COA)
    assert rewritten is not None
    packet = parse_ipv6(rewritten)
    assert packet.header_types == (0, 60) and packet.upper_layer == 17
    assert strip_hao_to_home_source(rewritten) == original
    assert insert_hao(rewritten, COA) is None


def test_strip_hao_keeps_other_destination_options() -> None:
    raw = bytes(
        IPv6(src=str(COA), dst=str(CN))
        / IPv6ExtHdrDestOpt(
            options=[PadN(optdata=b"\0\0"), HAO(hoa=str(HOA)), PadN(otype=0x1E, optdata=b"ab")]
        )
        / UDP()
    )
    stripped = strip_hao_to_home_source(raw)
    assert stripped is not None
    packet = parse_ipv6(stripped)
    assert packet.src == HOA and packet.home_address is None and packet.header_types == (60,)
    assert len(stripped) == len(raw)


def test_rewrites_return_none_when_not_applicable() -> None:
    plain = _echo(HOA, CN)
    assert strip_hao_to_home_source(plain) is None
    assert strip_rh2_to_home_destination(plain) is None
    assert strip_hao_to_home_source(b"garbage") is None
    assert insert_hao(b"\x60" + bytes(10), COA) is None
    assert insert_rh2(b"", COA) is None


def test_ip6ip6() -> None:
    inner = _echo(CN, HOA)
    outer = encapsulate(inner, HA, COA)
    packet = parse_ipv6(outer)
    assert packet.upper_layer == 41 and packet.src == HA and packet.dst == COA
    result = decapsulate(outer)
    assert result is not None
    assert result.inner == inner and result.outer_source == HA and result.outer_destination == COA
    assert decapsulate(inner) is None
    assert IPv6(outer)[IPv6][1].dst == str(HOA)


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        bytes(39),
        b"\x40" + bytes(39),  # version 4
        b"\x60\x00\x00\x00\x00\x08\x3c\x40" + bytes(32),  # payload length beyond the buffer
        b"\x60\x00\x00\x00\x00\x08\x3c\x40" + bytes(32) + b"\x3b\x05" + bytes(6),  # ext overruns
        b"\x60\x00\x00\x00\x00\x08\x3c\x40" + bytes(32) + b"\x3b\x00\xc9\x10" + bytes(4),  # HAO
    ],
)
def test_malformed_ipv6(raw: bytes) -> None:
    with pytest.raises(MalformedPacket):
        parse_ipv6(raw)


def test_traffic_class_and_flow_label() -> None:
    raw = build_ipv6_packet(HA, CN, 59, b"", hop_limit=255, traffic_class=0xB8, flow_label=0x12345)
    packet = parse_ipv6(raw)
    assert packet.traffic_class == 0xB8 and packet.flow_label == 0x12345 and packet.hop_limit == 255
    scapy_packet = IPv6(raw)
    assert scapy_packet.tc == 0xB8 and scapy_packet.fl == 0x12345


def test_checksum_destination_follows_segments_left() -> None:
    raw = bytearray(build_ipv6_packet(HA, COA, 59, b"", rh2_address=HOA))
    assert parse_ipv6(bytes(raw)).checksum_destination == HOA
    raw[43] = 0  # already processed: the IPv6 destination is the final one (RFC 8200 §8.1)
    assert parse_ipv6(bytes(raw)).checksum_destination == COA
