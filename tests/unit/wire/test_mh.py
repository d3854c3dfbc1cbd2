"""Mobility Header codec: golden vectors (docs/protocol-notes.md §5), round trips, layouts."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import replace
from ipaddress import IPv6Address, IPv6Network

import pytest

from nfq_mip6.wire import (
    AlternateCareofAddress,
    AuthenticationOption,
    BAFlags,
    BAStatus,
    BindingAck,
    BindingAuthorizationData,
    BindingError,
    BindingRefreshAdvice,
    BindingRefreshRequest,
    BindingUpdate,
    BUFlags,
    CareofTest,
    CareofTestInit,
    HomeAgentSwitch,
    HomeTest,
    HomeTestInit,
    MalformedPacket,
    MessageIdentifier,
    MobileNetworkPrefix,
    MobileNodeIdentifier,
    MobilityMessage,
    NonceIndices,
    UnknownMobilityMessage,
    UnknownOption,
    authenticator_input,
    build_mh,
    build_mh_unchecksummed,
    compute_mh_checksum,
    mh_checksum,
    mh_data_for_authenticator,
    parse_mh,
    verify_mh_checksum,
)
from tests.support.vectors import VECTORS

ADDR = {name: IPv6Address(text) for name, text in VECTORS["addresses"].items()}
HOA, COA, CN, HA = ADDR["hoa"], ADDR["coa"], ADDR["cn"], ADDR["ha"]
KBM = bytes.fromhex(VECTORS["kbm"])


def _reference_authenticator(
    kbm: bytes, coa: IPv6Address, cn: IPv6Address, mh_data: bytes
) -> bytes:
    """The independent reference authenticator of RFC 6275 §5.2.6 (docs/protocol-notes.md §5)."""
    m = bytearray(mh_data)
    m[4:6] = b"\0\0"
    return hmac.new(kbm, coa.packed + cn.packed + bytes(m), hashlib.sha1).digest()[:12]


def test_cn_binding_update_golden_vector() -> None:
    vector = VECTORS["cn_bu"]
    bu = BindingUpdate(
        7,
        BUFlags.A,
        0x69,
        (NonceIndices(3, 4), BindingAuthorizationData(bytes.fromhex(vector["authenticator"]))),
    )
    built = build_mh(bu, HOA, CN)
    assert built.hex() == vector["mh"]
    assert int.from_bytes(built[4:6], "big") == int(vector["checksum"], 16)
    assert verify_mh_checksum(built, HOA, CN)
    assert not verify_mh_checksum(built, COA, CN)
    parsed = parse_mh(built)
    assert parsed == bu
    assert isinstance(parsed, BindingUpdate) and not parsed.authorization_data_misplaced


def test_cn_binding_update_authenticator_callback_reproduces_vector() -> None:
    """build_mh computes the BAD over the MH Data with the checksum zeroed (§6.2.7)."""
    bu = BindingUpdate(7, BUFlags.A, 0x69, (NonceIndices(3, 4),))
    seen: list[bytes] = []

    def authenticate(mh_data: bytes) -> bytes:
        seen.append(mh_data)
        return _reference_authenticator(KBM, COA, CN, mh_data)

    built = build_mh(bu, HOA, CN, authenticator=authenticate)
    assert built.hex() == VECTORS["cn_bu"]["mh"]
    assert seen == [bytes.fromhex(VECTORS["cn_bu"]["mh"])[:20].replace(b"\x12\xc5", b"\0\0", 1)]
    # the receiving CN recomputes it from the received bytes
    assert authenticator_input(built) == seen[0]
    # a placeholder BAD as the last option is filled in the same way
    placeholder = BindingUpdate(
        7, BUFlags.A, 0x69, (NonceIndices(3, 4), BindingAuthorizationData(bytes(12)))
    )
    assert build_mh(placeholder, HOA, CN, authenticator=authenticate) == built


def test_home_binding_update_golden_vector() -> None:
    vector = VECTORS["home_bu"]
    bu = BindingUpdate(1, BUFlags.A | BUFlags.H, 10, (AlternateCareofAddress(COA),))
    unchecksummed = build_mh_unchecksummed(bu)
    assert unchecksummed.hex() == vector["mh_zeroed"]
    assert len(unchecksummed) == 32 and unchecksummed[1] == 3  # HdrLen 3
    assert unchecksummed[12:14] == b"\x01\x00"  # PadN len 0, AltCoA at 14 = 8·1+6
    built = build_mh(bu, HOA, HA)
    assert built[4:6].hex() == vector["checksum"]
    assert compute_mh_checksum(built, COA, HA) == int(vector["wrong_checksum_with_coa"], 16)
    assert mh_checksum(HOA, HA, built) == int(vector["checksum"], 16)
    assert parse_mh(built) == bu


def test_bu_without_options_has_padn_2_and_hdrlen_1() -> None:
    built = build_mh_unchecksummed(BindingUpdate(1, BUFlags.A, 1))
    assert len(built) == 16 and built[1] == 1
    assert built[12:16] == b"\x01\x02\x00\x00"


def test_altcoa_nonce_indices_bad_layout_is_canonical() -> None:
    bu = BindingUpdate(
        2,
        BUFlags.A,
        3,
        (AlternateCareofAddress(COA), NonceIndices(1, 2), BindingAuthorizationData(b"x" * 12)),
    )
    built = build_mh_unchecksummed(bu)
    assert len(built) == 56 and built[1] == 6
    assert built[12:14] == b"\x01\x00" and built[14] == 3
    assert built[32] == 4
    assert built[38:42] == b"\x01\x02\x00\x00"
    assert built[42:44] == b"\x05\x0c" and built[-12:] == b"x" * 12


def test_bad_followed_by_padding_is_reported_misplaced() -> None:
    good = build_mh_unchecksummed(
        BindingUpdate(7, BUFlags.A, 1, (NonceIndices(3, 4), BindingAuthorizationData(bytes(12))))
    )
    # 32 octets -> 40: append 8 octets of PadN after the BAD
    bad = bytearray(good) + b"\x01\x06" + bytes(6)
    bad[1] = 4
    parsed = parse_mh(bytes(bad))
    assert isinstance(parsed, BindingUpdate)
    assert parsed.authorization_data_misplaced
    # an option after the BAD (built in the given order) is misplaced as well
    reordered = build_mh_unchecksummed(
        BindingUpdate(7, BUFlags.A, 1, (BindingAuthorizationData(bytes(12)), NonceIndices(3, 4)))
    )
    parsed = parse_mh(bytes(reordered))
    assert isinstance(parsed, BindingUpdate) and parsed.authorization_data_misplaced


ALL_MESSAGES: list[MobilityMessage] = [
    BindingRefreshRequest(),
    BindingRefreshRequest((UnknownOption(200, b"abc"),)),
    HomeTestInit(b"\x01" * 8),
    CareofTestInit(b"\x02" * 8, (NonceIndices(1, 2),)),
    HomeTest(5, b"\x03" * 8, b"\x04" * 8),
    CareofTest(6, b"\x05" * 8, b"\x06" * 8),
    BindingUpdate(0xFFFF, BUFlags.A | BUFlags.H | BUFlags.L | BUFlags.K, 0xFFFF),
    BindingUpdate(1, BUFlags.NONE, 0, (MobileNodeIdentifier(1, b"mn@example.org"),)),
    BindingUpdate(
        9,
        BUFlags.A | BUFlags.H,
        100,
        (
            MessageIdentifier(0x0123456789ABCDEF),
            AlternateCareofAddress(COA),
            AuthenticationOption(1, 0xDEADBEEF, b"\x07" * 12),
        ),
    ),
    BindingAck(0, BAFlags.K, 1, 10, (BindingRefreshAdvice(5),)),
    BindingAck(BAStatus.SEQUENCE_NUMBER_OUT_OF_WINDOW, BAFlags.NONE, 77, 0),
    BindingAck(0, BAFlags.NONE, 1, 10, (BindingAuthorizationData(b"\x09" * 12),)),
    BindingError(2, IPv6Address("::")),
    BindingError(1, HOA, (UnknownOption(7, bytes(18)),)),
    BindingUpdate(
        4,
        BUFlags.A | BUFlags.H | BUFlags.R,
        10,
        (
            AlternateCareofAddress(COA),
            MobileNetworkPrefix(IPv6Address("2001:db8:77::"), 48),
            MobileNetworkPrefix(IPv6Address("2001:db8:78:1::"), 64),
        ),
    ),
    BindingAck(0, BAFlags.R, 4, 10),
    BindingAck(BAStatus.NOT_AUTHORIZED_FOR_PREFIX, BAFlags.NONE, 4, 0),
    UnknownMobilityMessage(8, b"\x00\x00"),
    UnknownMobilityMessage(0xFF, bytes(10)),
]


@pytest.mark.parametrize("message", ALL_MESSAGES, ids=lambda m: type(m).__name__)
def test_round_trip_every_message(message: MobilityMessage) -> None:
    built = build_mh(message, HOA, CN)
    assert len(built) % 8 == 0
    assert built[0] == 59
    assert verify_mh_checksum(built, HOA, CN)
    assert parse_mh(built) == message
    assert build_mh(parse_mh(built), HOA, CN) == built


def test_option_alignments() -> None:
    msg = BindingUpdate(
        1,
        BUFlags.A,
        1,
        (
            BindingRefreshAdvice(1),
            AuthenticationOption(1, 1, b"a" * 12),
            MessageIdentifier(1),
            MobileNodeIdentifier(1, b"abc"),
            AlternateCareofAddress(COA),
        ),
    )
    built = build_mh_unchecksummed(msg)
    offsets = {}
    i = 12
    while i < len(built):
        if built[i] == 0:
            i += 1
            continue
        offsets[built[i]] = i
        i += 2 + built[i + 1]
    assert offsets[2] % 2 == 0
    assert offsets[9] % 4 == 1
    assert offsets[10] % 8 == 2
    assert offsets[3] % 8 == 6
    assert parse_mh(built) == msg


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x3b\x00\x05\x00\x00\x00\x00",  # < 8 octets
        b"\x3b\x01\x05\x00\x00\x00\x00\x00",  # Header Len says 16
        b"\x3b\x00\x05\x00\x00\x00\x00\x00",  # BU needs 12 octets
        b"\x3b\x01\x05\x00\x00\x00\x00\x00\x00\x00\x00\x00\x03\x10\x00\x00",  # option overruns
        b"\x3b\x01\x05\x00\x00\x00\x00\x00\x00\x00\x00\x00\x04\x02\x00\x00",  # NI length 2
        b"\x3b\x01\x05\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x05",  # truncated TLV
    ],
)
def test_malformed_mh_raises_malformed_packet(raw: bytes) -> None:
    with pytest.raises(MalformedPacket):
        parse_mh(raw)


def test_builder_rejects_bad_field_values() -> None:
    with pytest.raises(MalformedPacket):
        build_mh(BindingUpdate(70000, BUFlags.A, 1), HOA, CN)
    with pytest.raises(MalformedPacket):
        build_mh(HomeTestInit(b"short"), HOA, CN)
    with pytest.raises(MalformedPacket):
        build_mh(BindingAck(0, BAFlags.NONE, 1, 1, (BindingAuthorizationData(b"1"),)), HA, HOA)


def test_reserved_bits_are_ignored() -> None:
    built = bytearray(build_mh(BindingRefreshRequest(), CN, HOA))
    built[3] = 0xFF  # MH Reserved
    built[6:8] = b"\xff\xff"  # BRR Reserved
    assert parse_mh(bytes(built)) == BindingRefreshRequest()


def test_mh_data_for_authenticator_matches_build_and_rr_encoder() -> None:
    messages = [
        BindingUpdate(7, BUFlags.A, 0x69, (NonceIndices(3, 4),)),
        BindingUpdate(
            8,
            BUFlags.A,
            1,
            (AlternateCareofAddress(COA), NonceIndices(1, 2), BindingAuthorizationData(bytes(12))),
        ),
        BindingAck(0, BAFlags.NONE, 8, 105, (BindingAuthorizationData(bytes(12)),)),
        BindingAck(0, BAFlags.NONE, 9, 105, (BindingRefreshAdvice(3),)),
    ]
    rr = pytest.importorskip("nfq_mip6.mobility.rr")
    for message in messages:
        data = mh_data_for_authenticator(message)
        seen: list[bytes] = []

        def record(mh_data: bytes, seen: list[bytes] = seen) -> bytes:
            seen.append(mh_data)
            return bytes(12)

        built = build_mh(message, HOA, CN, authenticator=record)
        assert seen == [data]
        assert authenticator_input(built) == data
        if hasattr(rr, "mh_data_for_authenticator"):
            options = message.options
            if not options or not isinstance(options[-1], BindingAuthorizationData):
                options = (*options, BindingAuthorizationData(bytes(12)))
            assert rr.mh_data_for_authenticator(replace(message, options=options)) == data


# --- RFC 3963 (NEMO Basic Support) ------------------------------------------------------------


def test_rfc3963_4_3_mobile_network_prefix_golden_vector() -> None:
    """Type 6, length 18, reserved 0, prefix length, 16-octet prefix at 8n+4 (RFC 3963 §4.3)."""
    bu = BindingUpdate(
        5,
        BUFlags.A | BUFlags.H | BUFlags.R,
        10,
        (MobileNetworkPrefix(IPv6Address("2001:db8:77::"), 48),),
    )
    built = build_mh_unchecksummed(bu)
    # MH head (checksum zero), seq 5, flags A|H|R = 0xc400, lifetime 10; the fixed part ends
    # at 12 = 8·1 + 4, so the option follows at once and its 20 octets end the MH at 32
    assert built.hex() == ("3b03050000000005c400000a0612003020010db8007700000000000000000000")
    assert parse_mh(build_mh(bu, HOA, HA)) == bu


def test_rfc3963_4_3_prefix_after_altcoa_is_padded_to_8n_plus_4() -> None:
    bu = BindingUpdate(
        1,
        BUFlags.A | BUFlags.H | BUFlags.R,
        10,
        (AlternateCareofAddress(COA), MobileNetworkPrefix(IPv6Address("2001:db8:1::"), 64)),
    )
    built = build_mh_unchecksummed(bu)
    # AltCoA at 14 ends at 32; the MNP type octet at 36 = 8·4+4 after a 4-octet PadN
    assert built[32:36] == b"\x01\x02\x00\x00"
    assert built[36:40] == bytes((6, 18, 0, 64))
    assert len(built) % 8 == 0
    assert parse_mh(built) == bu


def test_rfc3963_4_3_reserved_octet_ignored_and_bad_length_rejected() -> None:
    bu = BindingUpdate(1, BUFlags.A | BUFlags.H | BUFlags.R, 10, (MobileNetworkPrefix(HA, 64),))
    raw = bytearray(build_mh_unchecksummed(bu))
    raw[14] = 0xFF  # reserved
    assert parse_mh(bytes(raw)) == bu
    raw[13] = 17  # option length must be 18
    with pytest.raises(MalformedPacket):
        parse_mh(bytes(raw))


def test_rfc3963_4_3_impossible_prefix_length_parses_for_status_141() -> None:
    option = MobileNetworkPrefix(IPv6Address("2001:db8::"), 200)
    bu = BindingUpdate(1, BUFlags.A | BUFlags.H | BUFlags.R, 10, (option,))
    parsed = parse_mh(build_mh(bu, HOA, HA))
    assert parsed == bu
    assert option.network is None
    assert MobileNetworkPrefix(IPv6Address("2001:db8::1"), 64).network == IPv6Network(
        "2001:db8::/64"
    )


def test_rfc3963_4_1_and_4_2_r_flags_and_statuses() -> None:
    assert int(BUFlags.R) == 0x0400
    assert int(BAFlags.R) == 0x40
    assert [
        BAStatus.MOBILE_ROUTER_OPERATION_NOT_PERMITTED,
        BAStatus.INVALID_PREFIX,
        BAStatus.NOT_AUTHORIZED_FOR_PREFIX,
        BAStatus.FORWARDING_SETUP_FAILED,
    ] == [140, 141, 142, 143]
    ba = build_mh_unchecksummed(BindingAck(0, BAFlags.R, 9, 10))
    assert ba[7] == 0x40  # the flags octet after the status


# ---------------------------------------------------------------------------------------------
# RFC 5142 §4: Home Agent Switch (type 12)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["home_agent_switch", "home_agent_switch_empty"])
def test_home_agent_switch_golden_vector(name: str) -> None:
    """The layout written out by hand from RFC 5142 §4 and the checksum of the independent
    reference code (docs/protocol-notes.md §5) are what the codec builds and parses."""
    vector = VECTORS[name]
    message = HomeAgentSwitch(tuple(IPv6Address(a) for a in vector["home_agents"]))
    src, dst = ADDR[vector["pseudo_src"]], ADDR[vector["pseudo_dst"]]
    expected = bytearray.fromhex(vector["mh_zeroed"])
    assert bytes(build_mh_unchecksummed(message)) == bytes(expected)
    expected[4:6] = bytes.fromhex(vector["checksum"])
    built = build_mh(message, src, dst)
    assert built == bytes(expected)
    assert verify_mh_checksum(built, src, dst)
    assert parse_mh(built) == message


def test_home_agent_switch_header_len_and_count() -> None:
    """RFC 5142 §4: without options the MH is 8 + 16 n octets (Header Len 2 n), the count
    octet says n and the reserved octet is zero."""
    for count in (0, 1, 3, 127):
        agents = tuple(IPv6Address(int(HA) + i) for i in range(count))
        built = build_mh(HomeAgentSwitch(agents), HA, HOA)
        assert len(built) == 8 + 16 * count and built[1] == 2 * count
        assert built[2] == 12 and built[6] == count and built[7] == 0


def test_home_agent_switch_options_are_aligned_after_the_addresses() -> None:
    message = HomeAgentSwitch((HA,), (BindingRefreshAdvice(3),))
    built = build_mh(message, HA, HOA)
    assert len(built) % 8 == 0
    # the BRA (2n alignment) right after the 24 octets of header, count and address
    assert built[24:28] == bytes((2, 2, 0, 3))
    assert parse_mh(built) == message


def test_home_agent_switch_reserved_octet_is_ignored() -> None:
    built = bytearray(build_mh(HomeAgentSwitch((HA,)), HA, HOA))
    built[7] = 0xAA
    assert parse_mh(bytes(built)) == HomeAgentSwitch((HA,))


def test_home_agent_switch_count_beyond_the_header_is_malformed() -> None:
    built = bytearray(build_mh(HomeAgentSwitch((HA,)), HA, HOA))
    built[6] = 2  # two addresses announced, one present
    with pytest.raises(MalformedPacket):
        parse_mh(bytes(built))


def test_home_agent_switch_with_too_many_addresses_is_refused() -> None:
    agents = tuple(IPv6Address(int(HA) + i) for i in range(128))
    with pytest.raises(MalformedPacket):
        build_mh(HomeAgentSwitch(agents), HA, HOA)
