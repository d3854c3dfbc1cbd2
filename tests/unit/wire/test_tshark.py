"""Decode every packet the codec builds with tshark: no malformed packet, no warning/error
expert info (bad ICMPv6 checksums are such errors), and each layer is dissected as intended.

Wireshark does not verify MH checksums, so those are checked here with the independent
reference code of RFC 6275 §6.1.1 (docs/protocol-notes.md §5). Skipped only when tshark
is not installed.
"""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
from ipaddress import IPv6Address
from pathlib import Path

import pytest

from nfq_mip6.wire import (
    AlternateCareofAddress,
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
    MobileNetworkPrefix,
    MobilePrefixAdvertisement,
    MobilePrefixSolicitation,
    NAFlags,
    NeighborAdvertisement,
    NeighborSolicitation,
    NonceIndices,
    ParameterProblemMessage,
    PrefixInformation,
    RAFlags,
    RouterAdvertisement,
    RouterSolicitation,
    build_icmpv6_packet,
    build_ipv6_packet,
    build_mh,
    encapsulate,
    insert_hao,
    insert_rh2,
    parse_ipv6,
    pseudo_header_checksum,
    solicited_node_address,
)
from tests.support.vectors import CN, COA, HA, HOA

TSHARK = shutil.which("tshark")
pytestmark = pytest.mark.skipif(TSHARK is None, reason="tshark is not installed")

ALL_NODES = IPv6Address("ff02::1")
MAC = bytes.fromhex("020000000001")
PI_WARN = 0x00600000
LINKTYPE_RAW = 101


def _reference_mh_checksum_ok(src: IPv6Address, dst: IPv6Address, mh: bytes) -> bool:
    """RFC 6275 §6.1.1: the Internet checksum over pseudo-header + MH (as received) must give 0."""
    data = src.packed + dst.packed + struct.pack("!I", len(mh)) + b"\0\0\0\x87" + mh
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return (~total & 0xFFFF) == 0


def _mh_packets() -> list[tuple[bytes, str]]:
    """(packet, expected mip6.mhtype)."""
    home_bu = BindingUpdate(1, BUFlags.A | BUFlags.H, 10, (AlternateCareofAddress(COA),))
    cn_bu = BindingUpdate(
        7, BUFlags.A, 0x69, (NonceIndices(3, 4), BindingAuthorizationData(b"\x15" * 12))
    )
    router_bu = BindingUpdate(
        2,
        BUFlags.A | BUFlags.H | BUFlags.R,
        10,
        (AlternateCareofAddress(COA), MobileNetworkPrefix(IPv6Address("2001:db8:77::"), 48)),
    )
    packets = [
        (build_ipv6_packet(COA, HA, 135, build_mh(home_bu, HOA, HA), home_address=HOA), "5"),
        (build_ipv6_packet(COA, HA, 135, build_mh(router_bu, HOA, HA), home_address=HOA), "5"),
        (build_ipv6_packet(COA, CN, 135, build_mh(cn_bu, HOA, CN), home_address=HOA), "5"),
        (
            build_ipv6_packet(
                HA,
                COA,
                135,
                build_mh(BindingAck(0, BAFlags.NONE, 1, 10, (BindingRefreshAdvice(2),)), HA, HOA),
                rh2_address=HOA,
            ),
            "6",
        ),
        (build_ipv6_packet(CN, HOA, 135, build_mh(BindingRefreshRequest(), CN, HOA)), "0"),
        (build_ipv6_packet(HOA, CN, 135, build_mh(HomeTestInit(b"c" * 8), HOA, CN)), "1"),
        (build_ipv6_packet(COA, CN, 135, build_mh(CareofTestInit(b"d" * 8), COA, CN)), "2"),
        (build_ipv6_packet(CN, HOA, 135, build_mh(HomeTest(1, b"c" * 8, b"t" * 8), CN, HOA)), "3"),
        (
            build_ipv6_packet(CN, COA, 135, build_mh(CareofTest(2, b"d" * 8, b"u" * 8), CN, COA)),
            "4",
        ),
        (build_ipv6_packet(HA, COA, 135, build_mh(BindingError(2, HOA), HA, COA)), "7"),
        # RFC 5142 §4. Wireshark 4.0 starts the options 6 octets early (its dissector returns
        # 2 + 16 n instead of 8 + 16 n), inside the last address: an address whose last six
        # octets are zero reads as Pad1 there; tests/unit/wire/test_mh.py checks the options.
        (
            build_ipv6_packet(
                HA,
                COA,
                135,
                build_mh(HomeAgentSwitch((IPv6Address("2001:db8:a:0:2::"),)), HA, HOA),
                rh2_address=HOA,
            ),
            "12",
        ),
    ]
    return packets


def _icmp_packets() -> list[tuple[bytes, str]]:
    """(packet, expected icmpv6.type)."""
    prefix = PrefixInformation(IPv6Address("2001:db8:a::"), 64, True, True, False, 86400, 14400)
    ra = RouterAdvertisement(
        flags=RAFlags.HOME_AGENT,
        source_link_layer=MAC,
        prefixes=(PrefixInformation(HA, 64, True, True, True, 86400, 14400),),
        advertisement_interval=3000,
        home_agent_information=HomeAgentInformation(10, 1800),
    )
    anycast = IPv6Address("2001:db8:a:0:fdff:ffff:ffff:fffe")
    invoking = build_ipv6_packet(COA, HA, 135, b"\x06\x01\x05\x00" + bytes(12), home_address=HOA)
    return [
        (build_icmpv6_packet(DhaadRequest(1), COA, anycast, hop_limit=64), "144"),
        (build_icmpv6_packet(DhaadReply(1, (HA,)), HA, COA, hop_limit=64), "145"),
        (
            build_icmpv6_packet(
                MobilePrefixSolicitation(2), COA, HA, hop_limit=64, home_address=HOA
            ),
            "146",
        ),
        (
            build_icmpv6_packet(
                MobilePrefixAdvertisement(2, prefixes=(prefix,)),
                HA,
                COA,
                hop_limit=64,
                rh2_address=HOA,
            ),
            "147",
        ),
        (build_icmpv6_packet(ra, IPv6Address("fe80::1"), ALL_NODES), "134"),
        (build_icmpv6_packet(RouterSolicitation(MAC), COA, IPv6Address("ff02::2")), "133"),
        (
            build_icmpv6_packet(
                NeighborSolicitation(HOA), IPv6Address("::"), solicited_node_address(HOA)
            ),
            "135",
        ),
        (
            build_icmpv6_packet(NeighborAdvertisement(HOA, NAFlags.OVERRIDE, MAC), HA, ALL_NODES),
            "136",
        ),
        (build_icmpv6_packet(ParameterProblemMessage(0, 64, invoking), HA, COA), "4"),
        (build_icmpv6_packet(DestinationUnreachable(3, invoking), HA, COA), "1"),
    ]


def _echo(src: IPv6Address, dst: IPv6Address) -> bytes:
    body = b"\x80\x00\x00\x00\x00\x07\x00\x01ping"
    checksum = pseudo_header_checksum(src, dst, 58, body)
    body = body[:2] + checksum.to_bytes(2, "big") + body[4:]
    return build_ipv6_packet(src, dst, 58, body)


def _data_packets() -> list[tuple[bytes, str]]:
    with_hao = insert_hao(_echo(HOA, CN), COA)
    with_rh2 = insert_rh2(_echo(CN, HOA), COA)
    assert with_hao is not None and with_rh2 is not None
    return [
        (with_hao, "128"),
        (with_rh2, "128"),
        (encapsulate(_echo(CN, HOA), HA, COA), "128"),
    ]


def _write_pcap(path: Path, packets: list[bytes]) -> None:
    with path.open("wb") as handle:
        handle.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, LINKTYPE_RAW))
        for index, packet in enumerate(packets):
            handle.write(struct.pack("<IIII", index, 0, len(packet), len(packet)) + packet)


def test_tshark_decodes_every_built_packet(tmp_path: Path) -> None:
    assert TSHARK is not None
    mh_packets = _mh_packets()
    others = _icmp_packets() + _data_packets()
    packets = [p for p, _ in mh_packets + others]
    for packet, _ in mh_packets:
        parsed = parse_ipv6(packet)
        assert _reference_mh_checksum_ok(
            parsed.checksum_source, parsed.checksum_destination, parsed.upper_layer_bytes
        )
    pcap = tmp_path / "built.pcap"
    _write_pcap(pcap, packets)

    as_json = subprocess.run(
        [TSHARK, "-n", "-r", str(pcap), "-T", "json"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert "_ws.malformed" not in as_json
    severities = [int(s) for s in re.findall(r'"_ws\.expert\.severity":\s*"(\d+)"', as_json)]
    messages = re.findall(r'"_ws\.expert\.message":\s*"([^"]*)"', as_json)
    assert all(s < PI_WARN for s in severities), messages
    assert '"icmpv6.checksum.status": "0"' not in as_json

    fields = subprocess.run(
        [
            TSHARK,
            "-n",
            "-r",
            str(pcap),
            "-T",
            "fields",
            "-E",
            "separator=|",
            "-e",
            "mip6.mhtype",
            "-e",
            "icmpv6.type",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.splitlines()
    assert len(fields) == len(packets)
    for line, (_packet, expected) in zip(fields[: len(mh_packets)], mh_packets, strict=True):
        assert line.split("|")[0] == expected
    for line, (_packet, expected) in zip(fields[len(mh_packets) :], others, strict=True):
        assert line.split("|")[1].split(",")[0] == expected, line


def test_tshark_decodes_rfc3963_r_flags_and_mobile_network_prefix(tmp_path: Path) -> None:
    """RFC 3963 §4.1–§4.3 as Wireshark's NEMO dissector reads them."""
    assert TSHARK is not None
    bu = BindingUpdate(
        3,
        BUFlags.A | BUFlags.H | BUFlags.R,
        10,
        (
            MobileNetworkPrefix(IPv6Address("2001:db8:77::"), 48),
            MobileNetworkPrefix(IPv6Address("2001:db8:78:1::"), 64),
        ),
    )
    ba = BindingAck(0, BAFlags.R, 3, 10)
    pcap = tmp_path / "nemo.pcap"
    _write_pcap(
        pcap,
        [
            build_ipv6_packet(COA, HA, 135, build_mh(bu, HOA, HA), home_address=HOA),
            build_ipv6_packet(HA, COA, 135, build_mh(ba, HA, HOA), rh2_address=HOA),
        ],
    )
    fields = subprocess.run(
        [TSHARK, "-n", "-r", str(pcap), "-T", "fields", "-E", "separator=|"]
        + [
            arg
            for name in (
                "mip6.nemo.bu.r_flag",
                "mip6.nemo.mnp.pfl",
                "mip6.nemo.mnp.mnp",
                "mip6.nemo.ba.r_flag",
                "_ws.malformed",
            )
            for arg in ("-e", name)
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.splitlines()
    bu_fields, ba_fields = (line.split("|") for line in fields)
    assert bu_fields[0] in ("1", "True")
    assert bu_fields[1] == "48,64"
    assert bu_fields[2] == "2001:db8:77::,2001:db8:78:1::"
    assert ba_fields[3] in ("1", "True")
    assert bu_fields[4] == ba_fields[4] == ""
