"""Movement detection decisions (RFC 6275 §11.5), pure: no sockets, no root."""

from __future__ import annotations

import struct
from ipaddress import IPv6Address, IPv6Interface, IPv6Network

import pytest

from nfq_mip6.mobility.events import MovedToForeignLink, ReturnedToHomeLink
from nfq_mip6.runtime.movement import (
    AddressObservation,
    LinkLocation,
    MalformedRouterAdvertisement,
    MovementDetector,
    PrefixInformation,
    PurgeVisitedLinks,
    RouterAdvertisement,
    SolicitRouter,
    address_usable,
    build_router_solicitation,
    parse_router_advertisement,
)
from tests.support.howto import COA, COA2, HA, PREFIX, VISIT, VISIT2
from tests.support.howto import HOA_INTERFACE as HOA

HA_LL = IPv6Address("fe80::1")
AR_LL = IPv6Address("fe80::11")
AR2_LL = IPv6Address("fe80::22")


def pio(prefix: IPv6Network, *, router: IPv6Address | None = None) -> PrefixInformation:
    return PrefixInformation(prefix, True, True, router, 86400, 14400)


def ra(source: IPv6Address, *prefixes: PrefixInformation, h: bool = False) -> RouterAdvertisement:
    return RouterAdvertisement(source, 64, 0x20 if h else 0, 1800, tuple(prefixes))


def addr(address: IPv6Address, *, usable: bool = True) -> AddressObservation:
    return AddressObservation(IPv6Interface(f"{address}/64"), usable, 86400.0)


def test_start_solicits_a_router() -> None:
    assert MovementDetector(HOA, HA).start() == [SolicitRouter()]


def test_home_at_start_is_silent_for_the_core() -> None:
    detector = MovementDetector(HOA, HA)
    decisions = detector.on_router_advertisement(ra(HA_LL, pio(PREFIX), h=True))
    assert decisions == [PurgeVisitedLinks((PREFIX,), HA_LL)]
    assert detector.location == LinkLocation.HOME


def test_move_waits_for_the_autoconfigured_address() -> None:
    detector = MovementDetector(HOA, HA)
    detector.on_router_advertisement(ra(HA_LL, pio(PREFIX), h=True))
    decisions = detector.on_router_advertisement(ra(AR_LL, pio(VISIT)))
    assert decisions == [PurgeVisitedLinks((VISIT,), AR_LL)]
    assert detector.on_address(addr(COA, usable=False)) == []  # tentative, not optimistic
    decisions = detector.on_address(addr(COA))
    assert decisions == [MovedToForeignLink(COA, 86400.0, AR_LL)]
    assert detector.location == LinkLocation.FOREIGN
    assert detector.care_of_address == COA


def test_address_before_ra_completes_the_move_on_the_ra() -> None:
    detector = MovementDetector(HOA, HA)
    detector.on_router_advertisement(ra(HA_LL, pio(PREFIX), h=True))
    assert detector.on_address(addr(COA)) == []
    decisions = detector.on_router_advertisement(ra(AR_LL, pio(VISIT)))
    assert decisions[-1] == MovedToForeignLink(COA, 86400.0, AR_LL)


def test_same_link_again_is_no_move() -> None:
    detector = MovementDetector(HOA, HA)
    detector.on_address(addr(COA))
    detector.on_router_advertisement(ra(AR_LL, pio(VISIT)))
    assert detector.on_carrier(False) == []
    assert detector.on_carrier(True) == [SolicitRouter()]
    assert detector.on_router_advertisement(ra(AR_LL, pio(VISIT))) == []
    assert detector.moves == 1


def test_visitnet_to_visitnet2_to_home() -> None:
    detector = MovementDetector(HOA, HA)
    detector.on_router_advertisement(ra(HA_LL, pio(PREFIX), h=True))
    detector.on_router_advertisement(ra(AR_LL, pio(VISIT)))
    detector.on_address(addr(COA))
    decisions = detector.on_router_advertisement(ra(AR2_LL, pio(VISIT2)))
    assert decisions == [PurgeVisitedLinks((VISIT2,), AR2_LL)]
    assert detector.on_address_removed(COA) == []  # the purge removed the old CoA
    assert detector.on_address(addr(COA2)) == [MovedToForeignLink(COA2, 86400.0, AR2_LL)]
    decisions = detector.on_router_advertisement(ra(HA_LL, pio(PREFIX), h=True))
    assert decisions == [PurgeVisitedLinks((PREFIX,), HA_LL), ReturnedToHomeLink()]
    assert detector.care_of_address is None
    assert detector.moves == 3


def test_home_recognised_by_the_home_agent_router_address() -> None:
    detector = MovementDetector(HOA, HA)
    detector.on_router_advertisement(ra(AR_LL, pio(VISIT)))
    detector.on_address(addr(COA))
    other = IPv6Network("fec0:106:2701::/64")
    info = PrefixInformation(other, True, False, HA, 86400, 14400)
    decisions = detector.on_router_advertisement(ra(HA_LL, info, h=True))
    assert ReturnedToHomeLink() in decisions


def test_ra_without_autonomous_prefix_is_ignored() -> None:
    detector = MovementDetector(HOA, HA)
    info = PrefixInformation(VISIT, True, False, None, 86400, 14400)
    assert detector.on_router_advertisement(ra(AR_LL, info)) == []


def test_losing_the_coa_solicits() -> None:
    detector = MovementDetector(HOA, HA)
    detector.on_router_advertisement(ra(AR_LL, pio(VISIT)))
    detector.on_address(addr(COA))
    assert detector.on_address_removed(COA) == [SolicitRouter()]


def test_the_home_address_is_never_a_care_of_address() -> None:
    detector = MovementDetector(HOA, HA)
    assert detector.on_address(AddressObservation(HOA, True, None)) == []


def _ra_bytes(flags: int, options: bytes) -> bytes:
    return struct.pack("!BBHBBHII", 134, 0, 0, 64, flags, 1800, 0, 0) + options


def test_parse_router_advertisement_with_h_flag_pio_and_hai() -> None:
    pio_bytes = struct.pack("!BBBBIII", 3, 4, 64, 0xE0, 86400, 14400, 0) + HA.packed
    hai = struct.pack("!BBHHH", 8, 1, 0, 10, 1800)
    interval = struct.pack("!BBHI", 7, 1, 0, 50)
    parsed = parse_router_advertisement(_ra_bytes(0x20, pio_bytes + hai + interval), HA_LL)
    assert parsed.home_agent
    assert parsed.prefixes[0].prefix == PREFIX
    assert parsed.prefixes[0].router_address == HA
    assert parsed.prefixes[0].autonomous and parsed.prefixes[0].on_link
    assert (parsed.ha_preference, parsed.ha_lifetime) == (10, 1800)
    assert parsed.advertisement_interval_ms == 50


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


def test_a_flap_reported_as_one_up_event_still_solicits() -> None:
    detector = MovementDetector(HOA, HA)
    assert detector.on_carrier(True, 4) == []  # first report: the count is learnt
    assert detector.on_carrier(True, 4) == []  # nothing changed
    assert detector.on_carrier(True, 6) == [SolicitRouter()]  # down + up merged
    assert detector.on_carrier(False, 7) == []
    assert detector.on_carrier(True, 8) == [SolicitRouter()]
