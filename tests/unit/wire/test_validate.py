"""RFC 6275 §9.2 receiver checks (validate_mh)."""

from __future__ import annotations

from ipaddress import IPv6Address

from nfq_mip6.wire import (
    Accepted,
    AlternateCareofAddress,
    BindingErrorRequired,
    BindingRefreshRequest,
    BindingUpdate,
    BUFlags,
    HomeAgentSwitch,
    HomeTest,
    ParameterProblem,
    SilentDiscard,
    UnknownMobilityMessage,
    build_ipv6_packet,
    build_mh,
    build_mh_unchecksummed,
    finalize_mh,
    parse_and_validate_mh,
    parse_ipv6,
    pseudo_header_checksum,
    validate_mh,
)
from tests.support.vectors import CN, COA, HA, HOA

HOME_BU = BindingUpdate(1, BUFlags.A | BUFlags.H, 10, (AlternateCareofAddress(COA),))


def _with_hao(mh: bytes) -> bytes:
    return build_ipv6_packet(COA, HA, 135, mh, home_address=HOA)


def _tamper(mh: bytes, index: int, value: int, src: IPv6Address = HOA) -> bytes:
    """Change one octet and fix the checksum, so that the later checks are reached."""
    raw = bytearray(mh)
    raw[index] = value
    return finalize_mh(raw, src, HA)


def test_home_bu_with_hao_is_accepted() -> None:
    verdict = parse_and_validate_mh(_with_hao(build_mh(HOME_BU, HOA, HA)))
    assert isinstance(verdict, Accepted)
    assert verdict.message == HOME_BU
    assert verdict.home_address == HOA and verdict.source == COA


def test_checksum_with_care_of_address_is_silently_discarded() -> None:
    verdict = parse_and_validate_mh(_with_hao(build_mh(HOME_BU, COA, HA)))
    assert isinstance(verdict, SilentDiscard) and "checksum" in verdict.reason


def test_payload_proto_pointer_64_with_hao_and_40_without() -> None:
    verdict = parse_and_validate_mh(_with_hao(_tamper(build_mh(HOME_BU, HOA, HA), 0, 6)))
    assert isinstance(verdict, ParameterProblem)
    assert (verdict.code, verdict.pointer, verdict.to) == (0, 64, COA)
    plain = build_ipv6_packet(HOA, HA, 135, _tamper(build_mh(HOME_BU, HOA, HA), 0, 17))
    verdict = parse_and_validate_mh(plain)
    assert isinstance(verdict, ParameterProblem)
    assert verdict.code == 0 and verdict.pointer == 40 and verdict.to == HOA


def test_header_len_below_minimum_points_at_header_len() -> None:
    # a BU squeezed into 8 octets (Header Len 0 < 1)
    mh = bytearray(build_mh_unchecksummed(BindingUpdate(1, BUFlags.A, 1)))[:8]
    mh[1] = 0
    verdict = parse_and_validate_mh(_with_hao(finalize_mh(mh, HOA, HA)))
    assert isinstance(verdict, ParameterProblem)
    assert verdict.pointer == 65 and verdict.to == COA
    # HoT with Header Len 1 (min 2)
    hot = bytearray(build_mh_unchecksummed(HomeTest(1, bytes(8), bytes(8))))
    hot[1] = 1
    verdict = parse_and_validate_mh(build_ipv6_packet(CN, HOA, 135, finalize_mh(hot[:16], CN, HOA)))
    assert isinstance(verdict, ParameterProblem) and verdict.pointer == 41


def test_unknown_type_requires_binding_error_status_2() -> None:
    mh = build_mh(UnknownMobilityMessage(0xFF, bytes(2)), HOA, HA)
    verdict = parse_and_validate_mh(_with_hao(mh))
    assert verdict == BindingErrorRequired(2, HOA, COA, 0xFF)
    without_hao = build_ipv6_packet(
        CN, HA, 135, build_mh(UnknownMobilityMessage(8, bytes(2)), CN, HA)
    )
    assert parse_and_validate_mh(without_hao) == BindingErrorRequired(2, IPv6Address("::"), CN, 8)


def test_unknown_type_from_multicast_source_is_silent() -> None:
    src = IPv6Address("ff02::1")
    raw = build_ipv6_packet(src, HA, 135, build_mh(UnknownMobilityMessage(8, bytes(2)), src, HA))
    assert isinstance(parse_and_validate_mh(raw), SilentDiscard)


def test_truncated_and_length_mismatch_are_silent() -> None:
    assert isinstance(
        parse_and_validate_mh(build_ipv6_packet(HOA, HA, 135, b"\x3b\x00")), SilentDiscard
    )
    mh = bytearray(build_mh_unchecksummed(BindingRefreshRequest()))
    mh[1] = 3  # claims 32 octets, has 8
    assert isinstance(
        parse_and_validate_mh(build_ipv6_packet(HA, HOA, 135, finalize_mh(mh, HA, HOA))),
        SilentDiscard,
    )
    assert isinstance(parse_and_validate_mh(b"\x60"), SilentDiscard)


def test_reserved_nonzero_is_processed_normally() -> None:
    verdict = parse_and_validate_mh(_with_hao(_tamper(build_mh(HOME_BU, HOA, HA), 3, 0xFF)))
    assert isinstance(verdict, Accepted) and verdict.message == HOME_BU


def test_rh2_destination_used_in_checksum() -> None:
    ba_like = build_mh(BindingRefreshRequest(), HA, HOA)
    raw = build_ipv6_packet(HA, COA, 135, ba_like, rh2_address=HOA)
    assert isinstance(validate_mh(parse_ipv6(raw)), Accepted)


def test_not_mh_is_silent() -> None:
    raw = build_ipv6_packet(HA, COA, 59, b"")
    assert isinstance(validate_mh(parse_ipv6(raw)), SilentDiscard)


def test_checksum_covers_the_mh_as_header_len_defines_it_not_a_piggybacked_payload() -> None:
    """§6.1.1/§9.2: a BU carrying a piggybacked payload (Payload Proto 58, an Echo Request
    after the MH) has its checksum over the 16-octet MH only; it is not a bad checksum but a
    Payload Proto error: Parameter Problem code 0 pointing at Payload Proto (40 + 24 = 64)."""
    mh = bytearray(build_mh_unchecksummed(HOME_BU))
    mh[0] = 58
    mh = bytearray(finalize_mh(mh, HOA, HA))
    echo = bytes((128, 0, 0, 0, 0, 1, 0, 1))
    verdict = parse_and_validate_mh(_with_hao(bytes(mh) + echo))
    assert isinstance(verdict, ParameterProblem), verdict
    assert (verdict.code, verdict.pointer, verdict.to) == (0, 64, COA)
    # A checksum over the whole IPv6 payload instead is wrong: silently discarded.
    whole = bytearray(mh + echo)
    whole[4:6] = b"\x00\x00"
    whole[4:6] = pseudo_header_checksum(HOA, HA, 135, whole).to_bytes(2, "big")
    verdict = parse_and_validate_mh(_with_hao(bytes(whole)))
    assert isinstance(verdict, SilentDiscard) and "checksum" in verdict.reason


def test_header_len_inconsistent_with_the_message_points_at_header_len() -> None:
    """§9.2: a whole 24-octet BU whose Header Len says 0 (8 octets, below the BU's minimum
    of 1); its checksum covers the 8 octets Header Len defines → Parameter Problem code 0
    at Header Len (40 + 24 + 1 = 65), not a silent checksum discard."""
    mh = bytearray(build_mh_unchecksummed(HOME_BU))
    mh[1] = 0
    verdict = parse_and_validate_mh(_with_hao(finalize_mh(mh, HOA, HA)))
    assert isinstance(verdict, ParameterProblem), verdict
    assert (verdict.code, verdict.pointer, verdict.to) == (0, 65, COA)


def test_home_agent_switch_with_a_routing_header_is_accepted() -> None:
    """RFC 5142 §4: type 12 is known (Header Len ≥ 0), checked over HA → HoA (the RH2's
    final destination), and a count larger than the header is a silent discard."""
    message = HomeAgentSwitch((IPv6Address("2001:db8:a::2"),))
    raw = build_ipv6_packet(HA, COA, 135, build_mh(message, HA, HOA), rh2_address=HOA)
    verdict = parse_and_validate_mh(raw)
    assert isinstance(verdict, Accepted) and verdict.message == message
    mh = bytearray(build_mh_unchecksummed(message))
    mh[6] = 5
    bad = build_ipv6_packet(HA, COA, 135, finalize_mh(mh, HA, HOA), rh2_address=HOA)
    assert isinstance(parse_and_validate_mh(bad), SilentDiscard)
