"""Mobile Node movement detection (RFC 6275 §11.5) on the real kernel: the adapter.

The decisions are pure and live in :mod:`nfq_mip6.mobility.movement`
(:class:`MovementDetector`, :class:`RouterReachability`; re-exported here).
:class:`MovementMonitor` is their eyes: a raw ICMPv6 socket receiving RAs (and sending Router
Solicitations) bound to the MN's interface, and an rtnetlink socket watching link and IPv6
address events. Both are non-blocking fds for the agent's ``selectors`` loop. RAs are decoded
with :func:`nfq_mip6.wire.parse_icmpv6` (one RA type, :class:`nfq_mip6.wire.RouterAdvertisement`).

The runtime turns on optimistic DAD (``optimistic_dad=1``, ``use_optimistic=1``) so that a
new care-of address is usable at once (RFC 4429).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv6Address, IPv6Interface
from typing import Any, Final

from nfq_mip6.dataplane.kernel import IFA_F_DADFAILED, IFA_F_OPTIMISTIC, IFA_F_TENTATIVE
from nfq_mip6.errors import MalformedInput
from nfq_mip6.io.nd import ICMP6_FILTER
from nfq_mip6.mobility.movement import (
    MAX_RTR_SOLICITATIONS,
    RTR_SOLICITATION_INTERVAL,
    AddressObservation,
    HeardRouterAdvertisement,
    LinkLocation,
    MovementDecision,
    MovementDetector,
    PurgeVisitedLinks,
    RouterReachability,
    SolicitRouter,
)
from nfq_mip6.wire import MalformedPacket, RouterAdvertisement, parse_icmpv6
from nfq_mip6.wire.icmp import ICMPv6Type, NDOptionType

LOG = logging.getLogger(__name__)

ICMPV6_ROUTER_SOLICITATION: Final = int(ICMPv6Type.ROUTER_SOLICITATION)
ICMPV6_ROUTER_ADVERTISEMENT: Final = int(ICMPv6Type.ROUTER_ADVERTISEMENT)
ND_OPT_SOURCE_LINKADDR: Final = int(NDOptionType.SOURCE_LINK_LAYER_ADDRESS)
INFINITE_LIFETIME: Final = 0xFFFFFFFF


class MalformedRouterAdvertisement(MalformedInput):
    """An ICMPv6 message that is not a well-formed Router Advertisement (counted, dropped)."""


def parse_router_advertisement(icmp: bytes, source: IPv6Address) -> HeardRouterAdvertisement:
    """Parse an ICMPv6 RA message (starting at the ICMPv6 type octet) heard from ``source``.

    Raises:
        MalformedRouterAdvertisement: not an RA, or not a well-formed one.
    """
    if icmp[:1] != bytes((ICMPV6_ROUTER_ADVERTISEMENT,)):
        raise MalformedRouterAdvertisement("not a router advertisement")
    try:
        message = parse_icmpv6(icmp)
    except MalformedPacket as exc:
        raise MalformedRouterAdvertisement(str(exc)) from None
    if not isinstance(message, RouterAdvertisement):
        raise MalformedRouterAdvertisement("not a router advertisement")
    return HeardRouterAdvertisement(source, message)


def build_router_solicitation(link_layer_address: bytes | None) -> bytes:
    """RFC 4861 §4.1 RS; the kernel fills in the checksum on an ICMPv6 raw socket."""
    message = bytes((ICMPV6_ROUTER_SOLICITATION, 0, 0, 0, 0, 0, 0, 0))
    if link_layer_address:
        option = bytes((ND_OPT_SOURCE_LINKADDR,)) + b"\x00" + link_layer_address
        option += b"\x00" * (-len(option) % 8)
        message += option[:1] + bytes((len(option) // 8,)) + option[2:]
    return message


# --------------------------------------------------------------------------------------------
# Adapter: raw ICMPv6 socket + rtnetlink
# --------------------------------------------------------------------------------------------

IPV6_RECVHOPLIMIT: Final = 51
IPV6_HOPLIMIT: Final = 52
RTMGRP_LINK: Final = 0x1
RTMGRP_IPV6_IFADDR: Final = 0x100


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


Observation = HeardRouterAdvertisement | AddressObservation | LinkObservation | IPv6Address
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

    def read_router_advertisements(self) -> list[HeardRouterAdvertisement]:
        result: list[HeardRouterAdvertisement] = []
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
    "MAX_RTR_SOLICITATIONS",
    "RTR_SOLICITATION_INTERVAL",
    "AddressObservation",
    "HeardRouterAdvertisement",
    "LinkLocation",
    "LinkObservation",
    "MalformedRouterAdvertisement",
    "MovementDecision",
    "MovementDetector",
    "MovementMonitor",
    "Observation",
    "PurgeVisitedLinks",
    "RouterReachability",
    "SolicitRouter",
    "address_usable",
    "build_router_solicitation",
    "parse_router_advertisement",
]
