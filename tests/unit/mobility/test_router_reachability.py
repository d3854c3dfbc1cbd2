"""Router reachability (RFC 6275 §11.5.1, §7.3): RAs and a clock in, Router Solicitations out."""

from __future__ import annotations

from ipaddress import IPv6Address

from nfq_mip6.mobility.movement import (
    MAX_RTR_SOLICITATIONS,
    RTR_SOLICITATION_INTERVAL,
    HeardRouterAdvertisement,
    RouterReachability,
    SolicitRouter,
)
from nfq_mip6.wire.icmp import RouterAdvertisement

AR = IPv6Address("fe80::11")
AR2 = IPv6Address("fe80::22")


def ra(
    source: IPv6Address = AR, interval_ms: int | None = 3000, lifetime: int = 1800
) -> HeardRouterAdvertisement:
    message = RouterAdvertisement(router_lifetime=lifetime, advertisement_interval=interval_ms)
    return HeardRouterAdvertisement(source, message)


def solicitations(reachability: RouterReachability, start: float, end: float) -> list[float]:
    """When Router Solicitations go out, stepping the clock by 0.25 s."""
    times: list[float] = []
    now = start
    while now <= end:
        if reachability.on_timer(now):
            times.append(now)
        now += 0.25
    return times


def test_router_heard_within_its_advertisement_interval_is_kept() -> None:
    reachability = RouterReachability(slack=0.5)
    reachability.follow(AR)
    for now in (0.0, 3.0, 6.0, 9.0):
        reachability.on_router_advertisement(ra(), now)
        assert reachability.on_timer(now + 3.25) == []
    assert reachability.next_deadline() == 12.5
    assert reachability.routers_lost == 0


def test_silent_router_is_lost_after_its_interval_and_solicited() -> None:
    reachability = RouterReachability(slack=0.5)
    reachability.follow(AR)
    reachability.on_router_advertisement(ra(), 10.0)
    assert reachability.on_timer(13.25) == []
    assert reachability.on_timer(13.5) == [SolicitRouter()]  # 3 s interval + 0.5 s slack
    assert reachability.routers_lost == 1
    # MAX_RTR_SOLICITATIONS in all, RTR_SOLICITATION_INTERVAL apart, then quiet
    later = solicitations(reachability, 13.75, 60.0)
    assert later == [13.5 + RTR_SOLICITATION_INTERVAL * k for k in range(1, MAX_RTR_SOLICITATIONS)]
    assert reachability.next_deadline() is None


def test_router_lifetime_bounds_the_wait_without_an_interval_option() -> None:
    reachability = RouterReachability()
    reachability.follow(AR)
    reachability.on_router_advertisement(ra(interval_ms=None, lifetime=30), 0.0)
    assert reachability.next_deadline() == 30.0
    assert reachability.on_timer(30.0) == [SolicitRouter()]
    # neither an interval nor a default-router lifetime: nothing to watch
    reachability.follow(AR2)
    reachability.on_router_advertisement(ra(AR2, interval_ms=None, lifetime=0), 40.0)
    assert reachability.next_deadline() is None and reachability.on_timer(1e6) == []


def test_other_routers_do_not_keep_the_followed_one_alive() -> None:
    reachability = RouterReachability(slack=0.5)
    reachability.follow(AR)
    reachability.on_router_advertisement(ra(), 0.0)
    reachability.on_router_advertisement(ra(AR2), 3.0)  # another router on the link
    assert reachability.on_timer(3.5) == [SolicitRouter()]


def test_an_ra_from_the_router_or_a_new_router_stops_the_solicitations() -> None:
    reachability = RouterReachability(slack=0.5)
    reachability.follow(AR)
    reachability.on_router_advertisement(ra(), 0.0)
    assert reachability.on_timer(3.5) == [SolicitRouter()]
    reachability.on_router_advertisement(ra(), 4.0)  # it answered
    assert reachability.next_deadline() == 7.5
    assert reachability.on_timer(7.25) == []  # no pending solicitation left
    assert reachability.on_timer(7.5) == [SolicitRouter()]
    # the detector moved to the router that answered on the new link: follow its timer
    reachability.on_router_advertisement(ra(AR2, interval_ms=10000), 8.0)
    reachability.follow(AR2)
    assert reachability.next_deadline() == 18.5
    assert solicitations(reachability, 8.25, 18.25) == []


def test_many_routers_are_remembered_within_a_bound() -> None:
    reachability = RouterReachability()
    reachability.follow(AR)
    reachability.on_router_advertisement(ra(), 0.0)
    for index in range(50):
        reachability.on_router_advertisement(ra(IPv6Address(f"fe80::1:{index:x}")), 1.0)
    assert len(reachability._lost_at) == RouterReachability.MAX_ROUTERS
    assert reachability.lost_at == 3.5  # the followed router is kept
