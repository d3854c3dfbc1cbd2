"""Mobile Node movement detection (RFC 6275 §11.5) on the real kernel.

Two parts:

* :class:`MovementDetector`, pure: Router Advertisements, interface address observations and
  carrier changes in, *decisions* out (the core's :class:`MovedToForeignLink` /
  :class:`ReturnedToHomeLink` events, plus :class:`SolicitRouter` and
  :class:`PurgeVisitedLinks` for the adapter). No sockets, no clock: unit-testable without root.
* :class:`MovementMonitor`, the adapter: a raw ICMPv6 socket receiving RAs (and sending Router
  Solicitations) bound to the MN's interface, and an rtnetlink socket watching link and IPv6
  address events. Both are non-blocking fds for the agent's ``selectors`` loop.

Theory of operation (§11.5.1, dataplane notes Q6):

* Linux sends no Router Solicitation when the carrier comes back and does not redo DAD, so on
  carrier regain we send one ourselves; the access router answers at once (solicited RAs are
  unicast) and the kernel autoconfigures the new address — usable immediately with optimistic
  DAD (``optimistic_dad=1``, ``use_optimistic=1``, set by the runtime).
* An RA advertising the **home prefix** (normally from the HA with the H flag, §7.1), or the
  home agent's address as an R-flag prefix (§7.2), means the MN is on its home link (§11.5.5).
* Any other RA with an autonomous prefix is a visited link; the **care-of address** is the
  address the kernel autoconfigured on that prefix (we wait for it: RTM_NEWADDR). A new prefix
  means the MN moved; the same prefix again (e.g. a carrier flap on the same link) does not.
* Addresses and routes of links left behind are purged at once (HOWTO FAQ 6): a stale on-link
  home prefix would otherwise send the BU for the HA out on the visited link.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum
from ipaddress import IPv6Address, IPv6Interface, IPv6Network
from typing import Any, Final

from nfq_mip6.errors import MalformedInput
from nfq_mip6.mobility.events import MovedToForeignLink, ReturnedToHomeLink
from nfq_mip6.wire import MalformedPacket, parse_icmpv6
from nfq_mip6.wire import RouterAdvertisement as WireRouterAdvertisement

LOG = logging.getLogger(__name__)

ICMPV6_ROUTER_SOLICITATION: Final = 133
ICMPV6_ROUTER_ADVERTISEMENT: Final = 134
ND_OPT_SOURCE_LINKADDR: Final = 1
RA_FLAG_HOME_AGENT: Final = 0x20  # RFC 6275 §7.1
INFINITE_LIFETIME: Final = 0xFFFFFFFF


class MalformedRouterAdvertisement(MalformedInput):
    """An ICMPv6 message that is not a well-formed Router Advertisement (counted, dropped)."""


@dataclass(frozen=True, slots=True)
class PrefixInformation:
    """RFC 4861 §4.6.2 Prefix Information option (with RFC 6275 §7.2's R flag)."""

    prefix: IPv6Network
    on_link: bool
    autonomous: bool
    router_address: IPv6Address | None  # the full address when R = 1
    valid_lifetime: int
    preferred_lifetime: int


@dataclass(frozen=True, slots=True)
class RouterAdvertisement:
    """A parsed RA (RFC 4861 §4.2 with RFC 6275 §7.1 H flag and §7.4 HA Information option)."""

    source: IPv6Address
    hop_limit: int
    flags: int
    router_lifetime: int
    prefixes: tuple[PrefixInformation, ...] = ()
    ha_preference: int | None = None
    ha_lifetime: int | None = None
    advertisement_interval_ms: int | None = None

    @property
    def home_agent(self) -> bool:
        return bool(self.flags & RA_FLAG_HOME_AGENT)


def parse_router_advertisement(icmp: bytes, source: IPv6Address) -> RouterAdvertisement:
    """Parse an ICMPv6 RA message (starting at the ICMPv6 type octet) with
    :func:`nfq_mip6.wire.parse_icmpv6` into the detector's view of it.

    Raises:
        MalformedRouterAdvertisement: not an RA, or not a well-formed one.
    """
    if icmp[:1] != bytes((ICMPV6_ROUTER_ADVERTISEMENT,)):
        raise MalformedRouterAdvertisement("not a router advertisement")
    try:
        message = parse_icmpv6(icmp)
    except MalformedPacket as exc:
        raise MalformedRouterAdvertisement(str(exc)) from None
    if not isinstance(message, WireRouterAdvertisement):
        raise MalformedRouterAdvertisement("not a router advertisement")
    information = message.home_agent_information
    return RouterAdvertisement(
        source=source,
        hop_limit=message.cur_hop_limit,
        flags=int(message.flags),
        router_lifetime=message.router_lifetime,
        prefixes=tuple(
            PrefixInformation(
                prefix=info.network,
                on_link=info.on_link,
                autonomous=info.autonomous,
                router_address=info.prefix if info.router_address else None,
                valid_lifetime=info.valid_lifetime,
                preferred_lifetime=info.preferred_lifetime,
            )
            for info in message.prefixes
        ),
        ha_preference=information.preference if information is not None else None,
        ha_lifetime=information.lifetime if information is not None else None,
        advertisement_interval_ms=message.advertisement_interval,
    )


def build_router_solicitation(link_layer_address: bytes | None) -> bytes:
    """RFC 4861 §4.1 RS; the kernel fills in the checksum on an ICMPv6 raw socket."""
    message = bytes((ICMPV6_ROUTER_SOLICITATION, 0, 0, 0, 0, 0, 0, 0))
    if link_layer_address:
        option = bytes((ND_OPT_SOURCE_LINKADDR,)) + b"\x00" + link_layer_address
        option += b"\x00" * (-len(option) % 8)
        message += option[:1] + bytes((len(option) // 8,)) + option[2:]
    return message


# --------------------------------------------------------------------------------------------
# Pure decision logic
# --------------------------------------------------------------------------------------------


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

    def _is_home(self, ra: RouterAdvertisement) -> bool:
        for info in ra.prefixes:
            if info.prefix == self.home_prefix:
                return True
            if (
                self.home_agent is not None
                and info.router_address is not None
                and info.router_address == self.home_agent
            ):
                return True
        return False

    def on_router_advertisement(self, ra: RouterAdvertisement) -> list[MovementDecision]:
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
            info.prefix
            for info in ra.prefixes
            if info.autonomous and info.valid_lifetime > 0 and not info.prefix.is_link_local
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
        """Link layer change: Linux sends no RS on carrier regain (notes Q6), so we do.

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

    def on_router_advertisement(self, ra: RouterAdvertisement, now: float) -> None:
        """Any RA: its router's timer starts again (it may become the followed one)."""
        limits: list[float] = []
        if ra.advertisement_interval_ms:
            limits.append(ra.advertisement_interval_ms / 1000.0 + self.slack)
        if ra.router_lifetime > 0:
            limits.append(float(ra.router_lifetime))
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


# --------------------------------------------------------------------------------------------
# Adapter: raw ICMPv6 socket + rtnetlink
# --------------------------------------------------------------------------------------------

ICMP6_FILTER: Final = 1
IPV6_RECVHOPLIMIT: Final = 51
IPV6_HOPLIMIT: Final = 52
RTMGRP_LINK: Final = 0x1
RTMGRP_IPV6_IFADDR: Final = 0x100
IFA_F_OPTIMISTIC: Final = 0x04
IFA_F_DADFAILED: Final = 0x08
IFA_F_TENTATIVE: Final = 0x40


def _icmp6_filter_pass_only(*types: int) -> bytes:
    words = [0xFFFFFFFF] * 8
    for icmp_type in types:
        words[icmp_type >> 5] &= ~(1 << (icmp_type & 31)) & 0xFFFFFFFF
    return struct.pack("=8I", *words)


@dataclass(frozen=True, slots=True)
class LinkObservation:
    """The interface's carrier state from RTM_NEWLINK (and its change count, if reported)."""

    carrier: bool
    carrier_changes: int | None = None


Observation = RouterAdvertisement | AddressObservation | LinkObservation | IPv6Address
"""What the monitor reads: an RA, an address added, a link change, or an address removed."""


class MovementMonitor:
    """The sockets of movement detection for one interface (in the current netns).

    ``ra_fd`` and ``netlink_fd`` go into the agent loop; :meth:`read_router_advertisements` and
    :meth:`read_netlink` drain them (non-blocking) into observations.
    """

    def __init__(self, interface: str) -> None:
        self.interface = interface
        self.ifindex = socket.if_nametoindex(interface)
        self.malformed = 0
        self.solicitations_sent = 0
        self.lost_events = 0
        self._icmp = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
        self._icmp.setblocking(False)
        self._icmp.setsockopt(
            socket.SOL_SOCKET, socket.SO_BINDTODEVICE, interface.encode() + b"\x00"
        )
        self._icmp.setsockopt(
            socket.IPPROTO_ICMPV6,
            ICMP6_FILTER,
            _icmp6_filter_pass_only(ICMPV6_ROUTER_ADVERTISEMENT),
        )
        self._icmp.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVHOPLIMIT, 1)
        self._icmp.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
        self._icmp.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, self.ifindex)
        self._netlink = socket.socket(
            socket.AF_NETLINK,
            socket.SOCK_RAW | socket.SOCK_NONBLOCK,
            0,  # NETLINK_ROUTE
        )
        self._netlink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self._netlink.bind((0, RTMGRP_LINK | RTMGRP_IPV6_IFADDR))
        from pyroute2.netlink.rtnl.marshal import MarshalRtnl

        self._marshal: Any = MarshalRtnl()
        self._lladdr = self._read_link_layer_address()

    def _read_link_layer_address(self) -> bytes | None:
        try:
            with open(f"/sys/class/net/{self.interface}/address", encoding="ascii") as handle:
                text = handle.read().strip()
            return bytes(int(part, 16) for part in text.split(":")) if text else None
        except (OSError, ValueError):
            return None

    @property
    def ra_fd(self) -> int:
        return self._icmp.fileno()

    @property
    def netlink_fd(self) -> int:
        return self._netlink.fileno()

    def send_router_solicitation(self) -> None:
        """RFC 4861 §6.3.7 RS to all-routers (hop limit 255), with our link-layer address."""
        try:
            self._icmp.sendto(
                build_router_solicitation(self._lladdr), ("ff02::2", 0, 0, self.ifindex)
            )
            self.solicitations_sent += 1
        except OSError as exc:  # carrier down, interface gone: the next carrier-up retries
            LOG.debug("router solicitation not sent: %s", exc)

    def read_router_advertisements(self) -> list[RouterAdvertisement]:
        result: list[RouterAdvertisement] = []
        while True:
            try:
                data, ancillary, _flags, address = self._icmp.recvmsg(65535, socket.CMSG_SPACE(4))
            except BlockingIOError:
                return result
            except OSError as exc:
                LOG.debug("RA socket: %s", exc)
                return result
            hop_limit = 255
            for level, kind, value in ancillary:
                if level == socket.IPPROTO_IPV6 and kind == IPV6_HOPLIMIT and len(value) >= 4:
                    hop_limit = struct.unpack("=i", value[:4])[0]
            source = IPv6Address(address[0].split("%")[0])
            if hop_limit != 255 or not source.is_link_local:  # RFC 4861 §6.1.2
                self.malformed += 1
                continue
            try:
                result.append(parse_router_advertisement(data, source))
            except (MalformedRouterAdvertisement, ValueError) as exc:
                self.malformed += 1
                LOG.debug("dropped RA from %s: %s", source, exc)

    def read_netlink(self) -> list[Observation]:
        result: list[Observation] = []
        while True:
            try:
                data = self._netlink.recv(1 << 16)
            except BlockingIOError:
                return result
            except OSError as exc:  # ENOBUFS: events were lost; the runtime re-reads the state
                LOG.warning("netlink monitor: %s", exc)
                self.lost_events += 1
                return result
            try:
                messages = list(self._marshal.parse(data))
            except Exception as exc:  # pyroute2 parser errors are not typed
                LOG.debug("netlink parse error: %s", exc)
                continue
            result.extend(self._observations(messages))

    def _observations(self, messages: Iterable[Any]) -> list[Observation]:
        result: list[Observation] = []
        for msg in messages:
            event = msg.get("event")
            if event == "RTM_NEWLINK" and msg.get("index") == self.ifindex:
                carrier = msg.get_attr("IFLA_CARRIER")
                changes = msg.get_attr("IFLA_CARRIER_CHANGES")
                if carrier is not None:
                    result.append(LinkObservation(bool(carrier), int(changes) if changes else None))
            elif event in ("RTM_NEWADDR", "RTM_DELADDR") and msg.get("index") == self.ifindex:
                if msg.get("family") != socket.AF_INET6:
                    continue
                text = msg.get_attr("IFA_ADDRESS")
                if text is None:
                    continue
                interface = IPv6Interface(f"{text}/{msg.get('prefixlen')}")
                if event == "RTM_DELADDR":
                    result.append(interface.ip)
                    continue
                flags = int(msg.get_attr("IFA_FLAGS") or msg.get("flags") or 0)
                cache = msg.get_attr("IFA_CACHEINFO")
                valid: float | None = None
                if cache is not None and cache["ifa_valid"] != INFINITE_LIFETIME:
                    valid = float(cache["ifa_valid"])
                result.append(
                    AddressObservation(
                        interface, address_usable(flags), valid, bool(flags & IFA_F_TENTATIVE)
                    )
                )
        return result

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._icmp.close()
        with contextlib.suppress(OSError):
            self._netlink.close()


def address_usable(flags: int) -> bool:
    """An address is usable as a source unless DAD failed or it is tentative and not optimistic."""
    if flags & IFA_F_DADFAILED:
        return False
    return not (flags & IFA_F_TENTATIVE) or bool(flags & IFA_F_OPTIMISTIC)


__all__ = [
    "AddressObservation",
    "LinkLocation",
    "LinkObservation",
    "MalformedRouterAdvertisement",
    "MovementDecision",
    "MovementDetector",
    "MovementMonitor",
    "Observation",
    "PrefixInformation",
    "PurgeVisitedLinks",
    "RouterAdvertisement",
    "RouterReachability",
    "SolicitRouter",
    "address_usable",
    "build_router_solicitation",
    "parse_router_advertisement",
]
