"""Hypothesis properties: build → parse is the identity; parsers raise only MalformedPacket."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from ipaddress import IPv6Address

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nfq_mip6.wire import (
    AlternateCareofAddress,
    AuthenticationOption,
    BAFlags,
    BindingAck,
    BindingAuthorizationData,
    BindingError,
    BindingRefreshAdvice,
    BindingRefreshRequest,
    BindingUpdate,
    BUFlags,
    CareofTest,
    CareofTestInit,
    DestinationUnreachable,
    DhaadReply,
    DhaadRequest,
    HomeAgentInformation,
    HomeAgentSwitch,
    HomeTest,
    HomeTestInit,
    ICMPv6Message,
    MalformedPacket,
    MessageIdentifier,
    MobileNetworkPrefix,
    MobileNodeIdentifier,
    MobilePrefixAdvertisement,
    MobilePrefixSolicitation,
    MobilityMessage,
    MobilityOption,
    NAFlags,
    NeighborAdvertisement,
    NeighborSolicitation,
    NonceIndices,
    ParameterProblemMessage,
    PrefixInformation,
    RAFlags,
    RawNDOption,
    RouterAdvertisement,
    RouterSolicitation,
    UnknownICMPv6,
    UnknownMobilityMessage,
    UnknownOption,
    build_icmpv6,
    build_ipv6_packet,
    build_mh,
    decapsulate,
    insert_hao,
    insert_rh2,
    parse_and_validate_mh,
    parse_icmpv6,
    parse_ipv6,
    parse_mh,
    strip_hao_to_home_source,
    strip_rh2_to_home_destination,
    verify_icmpv6_checksum,
    verify_mh_checksum,
)
from tests.support.vectors import CN as DST
from tests.support.vectors import COA
from tests.support.vectors import HOA as SRC

u16 = st.integers(0, 0xFFFF)
addresses = st.builds(IPv6Address, st.integers(0, 2**128 - 1))
eight = st.binary(min_size=8, max_size=8)
options_strategy: st.SearchStrategy[MobilityOption] = st.one_of(
    st.builds(BindingRefreshAdvice, u16),
    st.builds(AlternateCareofAddress, addresses),
    st.builds(NonceIndices, u16, u16),
    st.builds(BindingAuthorizationData, st.binary(min_size=12, max_size=12)),
    st.builds(MobileNetworkPrefix, addresses, st.integers(0, 255)),
    st.builds(MobileNodeIdentifier, st.integers(0, 255), st.binary(max_size=40)),
    st.builds(
        AuthenticationOption,
        st.integers(0, 255),
        st.integers(0, 2**32 - 1),
        st.binary(max_size=40),
    ),
    st.builds(MessageIdentifier, st.integers(0, 2**64 - 1)),
    st.builds(
        UnknownOption,
        st.sampled_from([7, 11, 12, 100, 200, 255]),
        st.binary(max_size=40),
    ),
)
option_tuples = st.lists(options_strategy, max_size=6).map(tuple)


@st.composite
def unknown_messages(draw: st.DrawFn) -> UnknownMobilityMessage:
    words = draw(st.integers(0, 10))
    return UnknownMobilityMessage(
        draw(st.integers(8, 255).filter(lambda t: t != 12)),
        draw(st.binary(min_size=2 + 8 * words, max_size=2 + 8 * words)),
    )


messages: st.SearchStrategy[MobilityMessage] = st.one_of(
    st.builds(BindingRefreshRequest, option_tuples),
    st.builds(HomeTestInit, eight, option_tuples),
    st.builds(CareofTestInit, eight, option_tuples),
    st.builds(HomeTest, u16, eight, eight, option_tuples),
    st.builds(CareofTest, u16, eight, eight, option_tuples),
    st.builds(BindingUpdate, u16, st.builds(BUFlags, u16), u16, option_tuples),
    st.builds(
        BindingAck,
        st.integers(0, 255),
        st.builds(BAFlags, st.integers(0, 255)),
        u16,
        u16,
        option_tuples,
    ),
    st.builds(BindingError, st.integers(0, 255), addresses, option_tuples),
    st.builds(HomeAgentSwitch, st.lists(addresses, max_size=8).map(tuple), option_tuples),
    unknown_messages(),
)


@given(messages)
@settings(max_examples=400)
def test_build_parse_identity(message: MobilityMessage) -> None:
    built = build_mh(message, SRC, DST)
    assert len(built) % 8 == 0 and verify_mh_checksum(built, SRC, DST)
    assert parse_mh(built) == message


@given(messages)
@settings(max_examples=200)
def test_full_packet_validates_to_the_message(message: MobilityMessage) -> None:
    raw = build_ipv6_packet(COA, DST, 135, build_mh(message, SRC, DST), home_address=SRC)
    verdict = parse_and_validate_mh(raw)
    if isinstance(message, UnknownMobilityMessage):
        assert type(verdict).__name__ == "BindingErrorRequired"
    else:
        assert getattr(verdict, "message", None) == message


def _only_malformed(function: Callable[[bytes], object], data: bytes) -> None:
    """Any exception other than MalformedPacket propagates and fails the test."""
    with contextlib.suppress(MalformedPacket):
        function(data)


@st.composite
def mutated_packets(draw: st.DrawFn) -> bytes:
    """A valid MH packet (with HAO and/or RH2) with a few octets changed or cut."""
    message = draw(messages)
    raw = bytearray(
        build_ipv6_packet(
            COA,
            DST,
            135,
            build_mh(message, SRC, DST),
            home_address=draw(st.sampled_from([None, SRC])),
            rh2_address=draw(st.sampled_from([None, DST])),
        )
    )
    for _ in range(draw(st.integers(1, 4))):
        index = draw(st.integers(0, len(raw) - 1))
        raw[index] = draw(st.integers(0, 255))
    cut = draw(st.integers(0, len(raw)))
    return bytes(raw[: len(raw) - draw(st.integers(0, 1)) * cut // 4])


fuzz_settings = settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])


@given(st.binary(max_size=200))
@fuzz_settings
def test_parse_mh_arbitrary_bytes(data: bytes) -> None:
    _only_malformed(parse_mh, data)
    # the same bytes behind a consistent Payload Proto / Header Len, to reach the body parsers
    words = (len(data) + 2) // 8
    if words:
        _only_malformed(parse_mh, bytes((59, words - 1)) + data[: words * 8 - 2])


@given(mutated_packets())
@fuzz_settings
def test_parsers_on_mutated_packets(raw: bytes) -> None:
    _only_malformed(parse_ipv6, raw)
    _only_malformed(parse_mh, raw[64:])
    _only_malformed(parse_mh, raw[40:])
    parse_and_validate_mh(raw)  # never raises at all
    for rewrite in (strip_hao_to_home_source, strip_rh2_to_home_destination):
        result = rewrite(raw)
        assert result is None or isinstance(result, bytes)
    assert insert_hao(raw, COA) is None or isinstance(insert_hao(raw, COA), bytes)
    assert insert_rh2(raw, COA) is None or isinstance(insert_rh2(raw, COA), bytes)
    assert decapsulate(raw) is None or isinstance(decapsulate(raw), object)


@given(st.binary(max_size=300))
@fuzz_settings
def test_ipv6_walker_and_validate_arbitrary_bytes(data: bytes) -> None:
    header = b"\x60\x00\x00\x00" + len(data).to_bytes(2, "big")
    for next_header in (0, 43, 44, 51, 60, 135):
        raw = header + bytes((next_header, 64)) + bytes(32) + data
        _only_malformed(parse_ipv6, raw)
        parse_and_validate_mh(raw)
        strip_hao_to_home_source(raw)
        strip_rh2_to_home_destination(raw)
        insert_hao(raw, COA)
        insert_rh2(raw, COA)
        decapsulate(raw)
    _only_malformed(parse_ipv6, data)


@given(
    st.sampled_from([1, 2, 4, 128, 133, 134, 135, 136, 144, 145, 146, 147]), st.binary(max_size=120)
)
@fuzz_settings
def test_parse_icmpv6_arbitrary_bytes(icmp_type: int, data: bytes) -> None:
    _only_malformed(parse_icmpv6, bytes((icmp_type, 0, 0, 0)) + data)
    _only_malformed(parse_icmpv6, data)


@given(mutated_packets())
@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
def test_rewrites_round_trip_when_applicable(raw: bytes) -> None:
    with_hao = insert_hao(raw, COA)
    if with_hao is not None:
        assert strip_hao_to_home_source(with_hao) == raw[: parse_ipv6(raw).end]
    with_rh2 = insert_rh2(raw, COA)
    if with_rh2 is not None:
        assert strip_rh2_to_home_destination(with_rh2) == raw[: parse_ipv6(raw).end]


# --- ICMPv6 / ND -------------------------------------------------------------------------------


u32 = st.integers(0, 2**32 - 1)
macs = st.binary(min_size=6, max_size=6)
raw_nd_options = st.builds(
    RawNDOption,
    st.sampled_from([10, 24, 25, 31, 200]),
    st.integers(0, 3).flatmap(lambda n: st.binary(min_size=6 + 8 * n, max_size=6 + 8 * n)),
)
raw_nd_tuples = st.lists(raw_nd_options, max_size=3).map(tuple)
prefixes = st.builds(
    PrefixInformation,
    addresses,
    st.integers(0, 128),
    st.booleans(),
    st.booleans(),
    st.booleans(),
    u32,
    u32,
)
prefix_tuples = st.lists(prefixes, max_size=3).map(tuple)
icmp_messages: st.SearchStrategy[ICMPv6Message] = st.one_of(
    st.builds(DhaadRequest, u16, st.booleans()),
    st.builds(DhaadReply, u16, st.lists(addresses, max_size=5).map(tuple), st.booleans()),
    st.builds(MobilePrefixSolicitation, u16),
    st.builds(
        MobilePrefixAdvertisement, u16, st.booleans(), st.booleans(), prefix_tuples, raw_nd_tuples
    ),
    st.builds(RouterSolicitation, st.none() | macs, raw_nd_tuples),
    st.builds(
        RouterAdvertisement,
        st.integers(0, 255),
        st.builds(RAFlags, st.integers(0, 255)),
        u16,
        u32,
        u32,
        st.none() | macs,
        st.none() | u32,
        prefix_tuples,
        st.none() | u32,
        st.none() | st.builds(HomeAgentInformation, u16, u16),
        raw_nd_tuples,
    ),
    st.builds(NeighborSolicitation, addresses, st.none() | macs, raw_nd_tuples),
    st.builds(
        NeighborAdvertisement,
        addresses,
        st.builds(NAFlags, st.sampled_from([0, 0x20, 0x40, 0x60, 0x80, 0xA0, 0xC0, 0xE0])),
        st.none() | macs,
        raw_nd_tuples,
    ),
    st.builds(ParameterProblemMessage, st.integers(0, 255), u32, st.binary(max_size=100)),
    st.builds(DestinationUnreachable, st.integers(0, 255), st.binary(max_size=100)),
    st.builds(
        UnknownICMPv6,
        st.sampled_from([3, 128, 129, 137, 200]),
        st.integers(0, 255),
        st.binary(max_size=40),
    ),
)


@given(icmp_messages)
@settings(max_examples=300)
def test_icmpv6_build_parse_identity(message: ICMPv6Message) -> None:
    built = build_icmpv6(message, SRC, DST)
    assert verify_icmpv6_checksum(built, SRC, DST)
    assert parse_icmpv6(built) == message
