"""The route-optimization byte rewrites (RFC 6275 §9.3.1, §9.3.2, §11.3.1, §11.3.3).

The fast paths are checked against the general rewrites of :mod:`nfq_mip6.wire.ipv6`, against
scapy's view of the result, and for upper-layer checksum validity with the home address.
"""

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
    BindingUpdate,
    BUFlags,
    build_ipv6_packet,
    build_mh,
    insert_hao,
    insert_rh2,
    parse_ipv6,
    strip_hao_to_home_source,
    strip_rh2_to_home_destination,
)
from nfq_mip6.wire.checksum import verify_pseudo_header_checksum
from nfq_mip6.wire.ro_rewrite import (
    cn_inbound,
    cn_outbound,
    has_home_address_option,
    has_type2_routing_header,
    mn_inbound,
    mn_outbound,
)
from tests.support.howto import CN, COA, HOA

OTHER = IPv6Address("fec0:106:1000::99")

CN_BINDINGS = {HOA.packed: COA.packed}
MN_BINDINGS = {CN.packed: COA.packed}
MN_HOME = frozenset({HOA.packed})


def udp_cn_to_hoa(payload: bytes = b"x" * 37) -> bytes:
    return bytes(IPv6(src=str(CN), dst=str(HOA), hlim=61) / UDP(sport=7, dport=9) / payload)


def echo_hoa_to_cn() -> bytes:
    return bytes(IPv6(src=str(HOA), dst=str(CN), fl=0x12345) / ICMPv6EchoRequest(id=5, seq=9))


def upper_checksum_ok(raw: bytes) -> bool:
    """The upper-layer checksum verifies with the HAO's HoA / the RH2's final destination."""
    packet = parse_ipv6(raw)
    return verify_pseudo_header_checksum(
        packet.checksum_source,
        packet.checksum_destination,
        packet.upper_layer,
        packet.upper_layer_bytes,
    )


# ---------------------------------------------------------------------------------------------
# CN outbound / MN inbound
# ---------------------------------------------------------------------------------------------


def test_cn_outbound_inserts_rh2_like_the_general_rewrite() -> None:
    original = udp_cn_to_hoa()
    out = cn_outbound(original, CN_BINDINGS)
    assert out is not None
    assert out == insert_rh2(original, COA)
    assert has_type2_routing_header(out)
    parsed = parse_ipv6(out)
    assert parsed.dst == COA and parsed.rh2_address == HOA and parsed.src == CN
    assert parsed.rh2_valid and parsed.hop_limit == 61
    assert upper_checksum_ok(out)
    scapy_view = IPv6(out)
    assert scapy_view[IPv6ExtHdrRouting].type == 2
    assert scapy_view[IPv6ExtHdrRouting].addresses == [str(HOA)]
    assert scapy_view[UDP].load == b"x" * 37


def test_mn_inbound_restores_the_original_packet() -> None:
    original = udp_cn_to_hoa()
    routed = cn_outbound(original, CN_BINDINGS)
    assert routed is not None
    back = mn_inbound(routed, MN_HOME)
    assert back == original
    assert back == strip_rh2_to_home_destination(routed)
    assert upper_checksum_ok(back)


def test_cn_outbound_leaves_unbound_and_mobility_header_alone() -> None:
    assert cn_outbound(udp_cn_to_hoa(), {}) is None
    assert cn_outbound(udp_cn_to_hoa(), {OTHER.packed: COA.packed}) is None
    mh = build_mh(BindingUpdate(1, BUFlags.A, 5), CN, HOA)
    hot_like = build_ipv6_packet(CN, HOA, 135, mh)
    assert cn_outbound(hot_like, CN_BINDINGS) is None


def test_cn_outbound_general_case_with_hop_by_hop() -> None:
    original = bytes(
        IPv6(src=str(CN), dst=str(HOA)) / IPv6ExtHdrHopByHop() / UDP(sport=1, dport=2) / b"hi"
    )
    out = cn_outbound(original, CN_BINDINGS)
    assert out is not None and out == insert_rh2(original, COA)
    assert parse_ipv6(out).header_types[:2] == (0, 43)
    assert mn_inbound(out, MN_HOME) == original


def test_cn_outbound_refuses_truncated_packets() -> None:
    original = udp_cn_to_hoa()
    assert cn_outbound(original[:-3], CN_BINDINGS) is None


def test_mn_inbound_discards_foreign_home_address_and_invalid_rh2() -> None:
    routed = cn_outbound(udp_cn_to_hoa(), CN_BINDINGS)
    assert routed is not None
    assert mn_inbound(routed, frozenset({OTHER.packed})) is None
    no_segments_left = bytearray(routed)
    no_segments_left[43] = 0
    assert mn_inbound(bytes(no_segments_left), MN_HOME) is None
    assert mn_inbound(udp_cn_to_hoa(), MN_HOME) is None


def test_mn_inbound_leaves_a_binding_ack_to_the_runtime() -> None:
    mh = build_mh(BindingUpdate(1, BUFlags.A, 5), CN, HOA)
    ba_like = build_ipv6_packet(CN, COA, 135, mh, rh2_address=HOA)
    assert mn_inbound(ba_like, MN_HOME) is None


def test_mn_inbound_general_case_with_destination_options_before_rh2() -> None:
    original = bytes(
        IPv6(src=str(CN), dst=str(COA))
        / IPv6ExtHdrHopByHop()
        / IPv6ExtHdrRouting(type=2, segleft=1, addresses=[str(HOA)])
        / UDP(sport=1, dport=2)
        / b"data"
    )
    out = mn_inbound(original, MN_HOME)
    assert out is not None and out == strip_rh2_to_home_destination(original)
    assert parse_ipv6(out).dst == HOA


# ---------------------------------------------------------------------------------------------
# MN outbound / CN inbound
# ---------------------------------------------------------------------------------------------


def test_mn_outbound_inserts_hao_like_the_general_rewrite() -> None:
    original = echo_hoa_to_cn()
    out = mn_outbound(original, HOA.packed, MN_BINDINGS)
    assert out is not None
    assert out == insert_hao(original, COA)
    assert has_home_address_option(out)
    parsed = parse_ipv6(out)
    assert parsed.src == COA and parsed.home_address == HOA and parsed.dst == CN
    assert parsed.flow_label == 0x12345
    assert upper_checksum_ok(out)
    scapy_view = IPv6(out)
    assert scapy_view[HAO].hoa == str(HOA)


def test_cn_inbound_restores_the_original_packet() -> None:
    original = echo_hoa_to_cn()
    with_hao = mn_outbound(original, HOA.packed, MN_BINDINGS)
    assert with_hao is not None
    back = cn_inbound(with_hao, CN_BINDINGS)
    assert back == original
    assert back == strip_hao_to_home_source(with_hao)
    assert upper_checksum_ok(back)


def test_mn_outbound_only_for_the_home_address_and_bound_correspondents() -> None:
    original = echo_hoa_to_cn()
    assert mn_outbound(original, OTHER.packed, MN_BINDINGS) is None
    assert mn_outbound(original, HOA.packed, {}) is None
    mh = build_mh(BindingUpdate(1, BUFlags.A, 5), HOA, CN)
    hoti_like = build_ipv6_packet(HOA, CN, 135, mh)
    assert mn_outbound(hoti_like, HOA.packed, MN_BINDINGS) is None


def test_cn_inbound_needs_the_binding_to_match_the_source() -> None:
    """§9.3.1: HoA and CoA must both match; otherwise the runtime sends BE 1."""
    with_hao = mn_outbound(echo_hoa_to_cn(), HOA.packed, MN_BINDINGS)
    assert with_hao is not None
    assert cn_inbound(with_hao, {}) is None
    assert cn_inbound(with_hao, {HOA.packed: OTHER.packed}) is None


def test_cn_inbound_leaves_a_binding_update_to_the_runtime() -> None:
    mh = build_mh(BindingUpdate(1, BUFlags.A, 5), HOA, CN)
    bu = build_ipv6_packet(COA, CN, 135, mh, home_address=HOA)
    assert has_home_address_option(bu)
    assert cn_inbound(bu, CN_BINDINGS) is None


def test_cn_inbound_general_case_with_other_destination_options() -> None:
    original = bytes(
        IPv6(src=str(COA), dst=str(CN))
        / IPv6ExtHdrDestOpt(options=[PadN(optdata=b"\x00\x00"), HAO(hoa=str(HOA))])
        / UDP(sport=1, dport=2)
        / b"data"
    )
    out = cn_inbound(original, CN_BINDINGS)
    assert out is not None and out == strip_hao_to_home_source(original)
    assert parse_ipv6(out).src == HOA


def test_mn_outbound_general_case_with_fragment_header() -> None:
    original = bytes(
        IPv6(src=str(HOA), dst=str(CN))
        / IPv6ExtHdrFragment(id=7, m=0, offset=0)
        / UDP(sport=1, dport=2)
        / b"frag"
    )
    out = mn_outbound(original, HOA.packed, MN_BINDINGS)
    assert out is None or parse_ipv6(out).home_address == HOA


@pytest.mark.parametrize("size", [0, 1, 500, 1400])
def test_round_trips_for_payload_sizes(size: int) -> None:
    original = udp_cn_to_hoa(b"\xa5" * size)
    routed = cn_outbound(original, CN_BINDINGS)
    assert routed is not None and len(routed) == len(original) + 24
    assert mn_inbound(routed, MN_HOME) == original
    reply = bytes(IPv6(src=str(HOA), dst=str(CN)) / UDP(sport=9, dport=7) / (b"\x5a" * size))
    sent = mn_outbound(reply, HOA.packed, MN_BINDINGS)
    assert sent is not None and cn_inbound(sent, CN_BINDINGS) == reply


def test_garbage_never_raises() -> None:
    for blob in (b"", b"\x60" * 39, b"\x60" + b"\x00" * 63, bytes(range(80))):
        for result in (
            cn_outbound(blob, CN_BINDINGS),
            cn_inbound(blob, CN_BINDINGS),
            mn_outbound(blob, HOA.packed, MN_BINDINGS),
            mn_inbound(blob, MN_HOME),
        ):
            assert result is None or isinstance(result, bytes)


def test_mutated_packets_never_raise() -> None:
    """Random octet flips of every packet shape: the rewrites return bytes or None."""
    import random

    rng = random.Random(6275)
    seeds = [
        udp_cn_to_hoa(),
        echo_hoa_to_cn(),
        cn_outbound(udp_cn_to_hoa(), CN_BINDINGS) or b"",
        mn_outbound(echo_hoa_to_cn(), HOA.packed, MN_BINDINGS) or b"",
    ]
    for _ in range(3000):
        blob = bytearray(rng.choice(seeds))
        for _flip in range(rng.randint(1, 4)):
            blob[rng.randrange(len(blob))] = rng.randrange(256)
        raw = bytes(blob[: rng.randint(0, len(blob))] if rng.random() < 0.2 else blob)
        cn_outbound(raw, CN_BINDINGS)
        cn_inbound(raw, CN_BINDINGS)
        mn_outbound(raw, HOA.packed, MN_BINDINGS)
        mn_inbound(raw, MN_HOME)
