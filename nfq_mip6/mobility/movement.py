"""Mobile Node movement detection (RFC 6275 §11.5) and router reachability (§11.5.1, §7.3),
pure: Router Advertisements, interface address observations, carrier changes and a clock in,
*decisions* out (the core's :class:`MovedToForeignLink` / :class:`ReturnedToHomeLink` events,
plus :class:`SolicitRouter` and :class:`PurgeVisitedLinks` for the adapter). No sockets, no
clock of its own: the adapter (:mod:`nfq_mip6.runtime.movement`) reads the kernel.

Theory of operation (§11.5.1):

* Linux sends no Router Solicitation when the carrier comes back and does not redo DAD, so on
  carrier regain the detector asks for one; the access router answers at once (solicited RAs
  are unicast) and the kernel autoconfigures the new address — usable immediately with
  optimistic DAD (RFC 4429).
* An RA advertising the **home prefix** (normally from the HA with the H flag, §7.1), or the
  home agent's address as an R-flag prefix (§7.2), means the MN is on its home link (§11.5.5).
* Any other RA with an autonomous prefix is a visited link; the **care-of address** is the
  address the kernel autoconfigured on that prefix (the detector waits for it). A new prefix
  means the MN moved; the same prefix again (e.g. a carrier flap on the same link) does not.
* Addresses and routes of links left behind are purged at once: a stale on-link home prefix
  would otherwise send the BU for the HA out on the visited link.
* A move without a carrier change shows only in the RAs: :class:`RouterReachability` times the
  followed router's RAs and asks for Router Solicitations when they stop.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from ipaddress import IPv6Address, IPv6Interface, IPv6Network
from typing import Final

from nfq_mip6.mobility.events import MovedToForeignLink, ReturnedToHomeLink
from nfq_mip6.wire.icmp import RouterAdvertisement


@dataclass(frozen=True, slots=True)
class HeardRouterAdvertisement:
    """A Router Advertisement (the wire message, RFC 4861 §4.2 with RFC 6275 §7) and the
    link-local address of the router that sent it."""

    source: IPv6Address
    message: RouterAdvertisement


class LinkLocation(IntEnum):
    UNKNOWN = 0
    HOME = 1
    FOREIGN = 2


@dataclass(frozen=True, slots=True)
class SolicitRouter:
    """Adapter: send a Router Solicitation on the interface now (§11.5.1)."""


@dataclass(frozen=True, slots=True)
class PurgeVisitedLinks:
    """Adapter: remove addresses/routes of other links (keep these prefixes and this router)."""

    keep_prefixes: tuple[IPv6Network, ...]
    keep_router: IPv6Address | None


@dataclass(frozen=True, slots=True)
class AddressObservation:
    """A global address on the MN's interface (from rtnetlink)."""

    interface: IPv6Interface
    usable: bool  # not tentative (or optimistic), DAD not failed
    valid_lifetime: float | None  # seconds, None = infinite
    tentative: bool = False  # DAD still running (the address may be optimistic, RFC 4429)


MovementDecision = MovedToForeignLink | ReturnedToHomeLink | SolicitRouter | PurgeVisitedLinks


class MovementDetector:
    """Decides where the MN is from what the adapter observes (pure; see module docstring).

    Args:
        home_address: the HoA with the home prefix length.
        home_agent: the HA address, if configured (recognised in an R-flag prefix).
    """

    def __init__(self, home_address: IPv6Interface, home_agent: IPv6Address | None = None) -> None:
        self.home_address = home_address
        self.home_prefix = home_address.network
        self.home_agent = home_agent
        self.location = LinkLocation.UNKNOWN
        self.care_of_address: IPv6Address | None = None
        self.foreign_prefix: IPv6Network | None = None
        self.router: IPv6Address | None = None
        self._pending_prefixes: tuple[IPv6Network, ...] = ()
        self._pending_router: IPv6Address | None = None
        self._addresses: dict[IPv6Address, AddressObservation] = {}
        self.carrier = True
        self.carrier_changes: int | None = None
        self.moves = 0

    def start(self) -> list[MovementDecision]:
        """At agent start: ask the routers on the link to identify themselves."""
        return [SolicitRouter()]

    def _is_home(self, ra: HeardRouterAdvertisement) -> bool:
        for info in ra.message.prefixes:
            if info.network == self.home_prefix:
                return True
            if (
                self.home_agent is not None
                and info.router_address  # §7.2: the prefix field holds the router's address
                and info.prefix == self.home_agent
            ):
                return True
        return False

    def on_router_advertisement(self, ra: HeardRouterAdvertisement) -> list[MovementDecision]:
        """RFC 6275 §11.5.1: an RA is the evidence of which link the MN is on."""
        if self._is_home(ra):
            # §11.5.5: back on the home link.
            self._pending_prefixes = ()
            if self.location == LinkLocation.HOME:
                return []
            previous = self.location
            self.location = LinkLocation.HOME
            self.router = ra.source
            self.care_of_address = None
            self.foreign_prefix = None
            decisions: list[MovementDecision] = [PurgeVisitedLinks((self.home_prefix,), ra.source)]
            if previous == LinkLocation.FOREIGN:
                self.moves += 1
                decisions.append(ReturnedToHomeLink())
            return decisions
        candidates = tuple(
            info.network
            for info in ra.message.prefixes
            if info.autonomous and info.valid_lifetime > 0 and not info.network.is_link_local
        )
        if not candidates:
            return []  # an RA without autoconfiguration prefixes tells us nothing about moving
        if (
            self.location == LinkLocation.FOREIGN
            and self.foreign_prefix in candidates
            and self.care_of_address is not None
            and self.care_of_address in self._addresses
        ):
            return []  # same visited link
        if self._pending_prefixes == candidates:
            return []  # already waiting for the address on this link
        self._pending_prefixes = candidates
        self._pending_router = ra.source
        decisions = [PurgeVisitedLinks(candidates, ra.source)]
        # drop what the purge removes from our view
        self._addresses = {
            address: observation
            for address, observation in self._addresses.items()
            if any(address in prefix for prefix in candidates)
        }
        decisions.extend(self._try_complete_move())
        return decisions

    def _try_complete_move(self) -> list[MovementDecision]:
        for prefix in self._pending_prefixes:
            for address, observation in self._addresses.items():
                if address in prefix and observation.usable and address != self.home_address.ip:
                    self.location = LinkLocation.FOREIGN
                    self.foreign_prefix = prefix
                    self.care_of_address = address
                    self.router = self._pending_router
                    self._pending_prefixes = ()
                    self.moves += 1
                    return [
                        MovedToForeignLink(
                            care_of_address=address,
                            coa_valid_lifetime=observation.valid_lifetime,
                            router=self._pending_router,
                        )
                    ]
        return []

    def on_address(self, observation: AddressObservation) -> list[MovementDecision]:
        """RTM_NEWADDR on the interface (also used to seed the state at start)."""
        address = observation.interface.ip
        if address.is_link_local or address == self.home_address.ip:
            return []
        self._addresses[address] = observation
        if self._pending_prefixes:
            return self._try_complete_move()
        return []

    @property
    def waiting_for_address(self) -> bool:
        """A visited link was seen and its care-of address is not known yet."""
        return bool(self._pending_prefixes)

    def on_address_removed(self, address: IPv6Address) -> list[MovementDecision]:
        """RTM_DELADDR: losing the CoA means we must find a router (and address) again."""
        self._addresses.pop(address, None)
        if address == self.care_of_address and self.location == LinkLocation.FOREIGN:
            self.care_of_address = None
            self.foreign_prefix = None
            if not self._pending_prefixes:  # not the purge of a link we just left
                return [SolicitRouter()]
        return []

    def on_carrier(self, up: bool, carrier_changes: int | None = None) -> list[MovementDecision]:
        """Link layer change: Linux sends no RS on carrier regain (kernel-notes §9), so we do.

        ``carrier_changes`` is the kernel's IFLA_CARRIER_CHANGES count: the kernel's link
        watcher may report a quick down/up as a single "up" event, which only the count
        reveals (a re-attachment to a possibly different link all the same).
        """
        was_up = self.carrier
        previous_changes = self.carrier_changes
        self.carrier = up
        if carrier_changes is not None:
            self.carrier_changes = carrier_changes
        if up and not was_up:
            return [SolicitRouter()]
        if (
            up
            and carrier_changes is not None
            and previous_changes is not None
            and carrier_changes > previous_changes
        ):
            return [SolicitRouter()]  # a flap we saw only as its end
        return []


MAX_RTR_SOLICITATIONS: Final = 3  # RFC 4861 §10
RTR_SOLICITATION_INTERVAL: Final = 4.0  # seconds, RFC 4861 §10


class RouterReachability:
    """Is the current default router still there? (RFC 6275 §11.5.1, §7.3; pure, clocked.)

    A move without a carrier change (another access point of the same technology, a bridge
    re-plugged upstream) shows only in the RAs: the current router's stop. Each RA restarts
    its router's timer: the Advertisement Interval option (§7.3, the router's
    MaxRtrAdvInterval) when the RA has one, and its Router Lifetime (RFC 4861 §6.3.4) in any
    case, whichever ends first. When the timer of the router the detector follows
    (:meth:`follow`) runs out, the router is taken as lost: a Router Solicitation goes out at
    once (a router on the new link answers it; its RA then drives :class:`MovementDetector`),
    repeated every RTR_SOLICITATION_INTERVAL up to MAX_RTR_SOLICITATIONS times in all; then
    nothing more until an RA or a carrier change.

    Args:
        slack: seconds added to the Advertisement Interval (radvd sends at random times up to
            the interval; the slack absorbs scheduling jitter, not a lost RA).
    """

    MAX_ROUTERS: Final = 8  # routers remembered (a link rarely has more; bounds the memory)

    def __init__(self, slack: float = 0.5) -> None:
        self.slack = slack
        self.router: IPv6Address | None = None
        self._lost_at: dict[IPv6Address, float | None] = {}  # router -> when it is lost
        self._solicitations_left = 0
        self._next_solicitation_at: float | None = None
        self.routers_lost = 0

    def on_router_advertisement(self, ra: HeardRouterAdvertisement, now: float) -> None:
        """Any RA: its router's timer starts again (it may become the followed one)."""
        limits: list[float] = []
        interval_ms = ra.message.advertisement_interval
        if interval_ms:
            limits.append(interval_ms / 1000.0 + self.slack)
        if ra.message.router_lifetime > 0:
            limits.append(float(ra.message.router_lifetime))
        self._lost_at.pop(ra.source, None)
        self._lost_at[ra.source] = now + min(limits) if limits else None
        while len(self._lost_at) > self.MAX_ROUTERS:
            oldest = next(iter(self._lost_at))
            if oldest == self.router:  # keep the followed one
                self._lost_at[oldest] = self._lost_at.pop(oldest)
                oldest = next(iter(self._lost_at))
            del self._lost_at[oldest]
        if ra.source == self.router:
            self._next_solicitation_at = None  # it is back (or still there)
            self._solicitations_left = 0

    def follow(self, router: IPv6Address | None) -> None:
        """The router of the link the detector has decided the MN is on."""
        if router != self.router:
            self.router = router
            self._next_solicitation_at = None
            self._solicitations_left = 0

    @property
    def lost_at(self) -> float | None:
        """When the followed router is taken as lost, if no RA from it comes first."""
        return None if self.router is None else self._lost_at.get(self.router)

    def next_deadline(self) -> float | None:
        if self._next_solicitation_at is not None:
            return self._next_solicitation_at
        return self.lost_at

    def on_timer(self, now: float) -> list[MovementDecision]:
        """Router Solicitations due at ``now`` (the router was lost, or is still missing)."""
        lost_at = self.lost_at
        if self.router is not None and lost_at is not None and now >= lost_at:
            # §11.5.1: no RA from the current router within its interval: it is gone
            self._lost_at[self.router] = None
            self.routers_lost += 1
            self._solicitations_left = MAX_RTR_SOLICITATIONS - 1
            self._next_solicitation_at = now + RTR_SOLICITATION_INTERVAL
            return [SolicitRouter()]
        if self._next_solicitation_at is not None and now >= self._next_solicitation_at:
            self._solicitations_left -= 1
            self._next_solicitation_at = (
                now + RTR_SOLICITATION_INTERVAL if self._solicitations_left > 0 else None
            )
            return [SolicitRouter()]
        return []


__all__ = [
    "MAX_RTR_SOLICITATIONS",
    "RTR_SOLICITATION_INTERVAL",
    "AddressObservation",
    "HeardRouterAdvertisement",
    "LinkLocation",
    "MovementDecision",
    "MovementDetector",
    "PurgeVisitedLinks",
    "RouterReachability",
    "SolicitRouter",
]
