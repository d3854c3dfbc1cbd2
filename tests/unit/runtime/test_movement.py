"""Movement detection adapter (RFC 6275 §11.5): RA parsing, Router Solicitations and the
kernel's address flags; no sockets opened, no root."""

from __future__ import annotations

import struct
from ipaddress import IPv6Address

import pytest

from nfq_mip6.runtime.movement import (
    MalformedRouterAdvertisement,
    address_usable,
    build_router_solicitation,
    parse_router_advertisement,
)
from nfq_mip6.wire.icmp import HomeAgentInformation
from tests.support.howto import HA, PREFIX

HA_LL = IPv6Address("fe80::1")


def _ra_bytes(flags: int, options: bytes) -> bytes:
    return struct.pack("!BBHBBHII", 134, 0, 0, 64, flags, 1800, 0, 0) + options


def test_parse_router_advertisement_with_h_flag_pio_and_hai() -> None:
    pio_bytes = struct.pack("!BBBBIII", 3, 4, 64, 0xE0, 86400, 14400, 0) + HA.packed
    hai = struct.pack("!BBHHH", 8, 1, 0, 10, 1800)
    interval = struct.pack("!BBHI", 7, 1, 0, 50)
    heard = parse_router_advertisement(_ra_bytes(0x20, pio_bytes + hai + interval), HA_LL)
    parsed = heard.message
    assert heard.source == HA_LL and parsed.home_agent
    assert parsed.prefixes[0].network == PREFIX
    assert parsed.prefixes[0].router_address and parsed.prefixes[0].prefix == HA
    assert parsed.prefixes[0].autonomous and parsed.prefixes[0].on_link
    assert parsed.home_agent_information == HomeAgentInformation(10, 1800)
    assert parsed.advertisement_interval == 50


@pytest.mark.parametrize(
    "data",
    [
        b"",
        bytes(16),  # type 0
        _ra_bytes(0, b"\x03\x00" + bytes(6)),  # zero-length option
        _ra_bytes(0, b"\x03\x04" + bytes(6)),  # truncated option
        _ra_bytes(0, b"\x03"),  # truncated option header
    ],
)
def test_malformed_router_advertisements(data: bytes) -> None:
    with pytest.raises(MalformedRouterAdvertisement):
        parse_router_advertisement(data, HA_LL)


def test_router_solicitation_with_source_link_layer_address() -> None:
    rs = build_router_solicitation(bytes.fromhex("00907df3031a"))
    assert rs[:8] == bytes((133, 0, 0, 0, 0, 0, 0, 0))
    assert rs[8:] == bytes((1, 1)) + bytes.fromhex("00907df3031a")
    assert build_router_solicitation(None) == bytes((133, 0, 0, 0, 0, 0, 0, 0))


def test_address_usable_flags() -> None:
    assert address_usable(0x80)
    assert not address_usable(0x40)  # tentative
    assert address_usable(0x40 | 0x04)  # tentative + optimistic
    assert not address_usable(0x08)  # DAD failed
