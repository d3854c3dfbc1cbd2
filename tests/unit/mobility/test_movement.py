"""Movement detection decisions (RFC 6275 §11.5), pure: no sockets, no root."""

from __future__ import annotations

from ipaddress import IPv6Address, IPv6Interface, IPv6Network

from nfq_mip6.mobility.events import MovedToForeignLink, ReturnedToHomeLink
from nfq_mip6.mobility.movement import (
    AddressObservation,
    HeardRouterAdvertisement,
    LinkLocation,
    MovementDetector,
    PurgeVisitedLinks,
    SolicitRouter,
)
from nfq_mip6.wire.icmp import PrefixInformation, RAFlags, RouterAdvertisement
from tests.support.howto import COA, COA2, HA, PREFIX, VISIT, VISIT2
from tests.support.howto import HOA_INTERFACE as HOA

HA_LL = IPv6Address("fe80::1")
AR_LL = IPv6Address("fe80::11")
AR2_LL = IPv6Address("fe80::22")


def pio(prefix: IPv6Network, *, autonomous: bool = True) -> PrefixInformation:
    return PrefixInformation(
        prefix.network_address, prefix.prefixlen, True, autonomous, False, 86400, 14400
    )


def ra(
    source: IPv6Address, *prefixes: PrefixInformation, h: bool = False
) -> HeardRouterAdvertisement:
    flags = RAFlags.HOME_AGENT if h else RAFlags.NONE
    return HeardRouterAdvertisement(
        source, RouterAdvertisement(64, flags, 1800, prefixes=tuple(prefixes))
    )


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
    # §7.2: an R-flag prefix holds the router's whole address; a /56 of it is not the home
    # prefix, so only the home agent's address says "home"
    info = PrefixInformation(HA, 56, True, False, True, 86400, 14400)
    assert info.network != PREFIX
    decisions = detector.on_router_advertisement(ra(HA_LL, info, h=True))
    assert ReturnedToHomeLink() in decisions


def test_ra_without_autonomous_prefix_is_ignored() -> None:
    detector = MovementDetector(HOA, HA)
    info = pio(VISIT, autonomous=False)
    assert detector.on_router_advertisement(ra(AR_LL, info)) == []


def test_losing_the_coa_solicits() -> None:
    detector = MovementDetector(HOA, HA)
    detector.on_router_advertisement(ra(AR_LL, pio(VISIT)))
    detector.on_address(addr(COA))
    assert detector.on_address_removed(COA) == [SolicitRouter()]


def test_the_home_address_is_never_a_care_of_address() -> None:
    detector = MovementDetector(HOA, HA)
    assert detector.on_address(AddressObservation(HOA, True, None)) == []


def test_a_flap_reported_as_one_up_event_still_solicits() -> None:
    detector = MovementDetector(HOA, HA)
    assert detector.on_carrier(True, 4) == []  # first report: the count is learnt
    assert detector.on_carrier(True, 4) == []  # nothing changed
    assert detector.on_carrier(True, 6) == [SolicitRouter()]  # down + up merged
    assert detector.on_carrier(False, 7) == []
    assert detector.on_carrier(True, 8) == [SolicitRouter()]
