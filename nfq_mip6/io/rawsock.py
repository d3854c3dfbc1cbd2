"""Raw IPv6 sender: whole packets, header included (``IPV6_HDRINCL``).

The kernel refuses a Type 2 Routing Header through ``IPV6_RTHDR`` (EINVAL) and computes the
MH checksum over the CoA when an HAO is given through ``IPV6_DSTOPTS``, so every BA with an
RH2 (RFC 6275 §6.1.8, §9.5.4) and every BU with an HAO is sent as a complete packet built by
:mod:`nfq_mip6.wire`.
"""

from __future__ import annotations

import socket
from ipaddress import IPv6Address
from typing import Any, Self

__all__ = ["ETH_P_IPV6", "IPV6_HDRINCL", "LinkLayerIPv6Sender", "RawIPv6Sender"]

IPV6_HDRINCL = 36  # linux/in6.h; not exported by the socket module
ETH_P_IPV6 = 0x86DD  # linux/if_ether.h


class _PacketSender:
    """A non-blocking socket that sends whole IPv6 packets, counting sends and failures."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._sock.setblocking(False)
        self.sent = 0
        self.errors = 0

    @staticmethod
    def _require_ipv6(packet: bytes) -> None:
        if len(packet) < 40 or packet[0] >> 4 != 6:
            raise ValueError("not an IPv6 packet")

    def _sendto(self, packet: bytes, address: tuple[Any, ...]) -> None:
        try:
            self._sock.sendto(packet, address)
        except OSError:
            self.errors += 1
            raise
        self.sent += 1

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RawIPv6Sender(_PacketSender):
    """``socket(AF_INET6, SOCK_RAW, IPPROTO_RAW)`` with ``IPV6_HDRINCL``.

    ``send(packet)`` sends ``packet`` (a whole IPv6 packet) to its destination address, taken
    from bytes 24..40 of the fixed header; the route lookup uses that address, so a BA with an
    RH2 goes to the CoA.
    """

    def __init__(self) -> None:
        sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_RAW)
        sock.setsockopt(socket.IPPROTO_IPV6, IPV6_HDRINCL, 1)
        super().__init__(sock)

    def send(self, packet: bytes) -> None:
        """Send one whole IPv6 packet; raises ``ValueError`` if it is not one, ``OSError``."""
        self._require_ipv6(packet)
        self._sendto(packet, (str(IPv6Address(packet[24:40])), 0))


class LinkLayerIPv6Sender(_PacketSender):
    """``socket(AF_PACKET, SOCK_DGRAM, ETH_P_IPV6)`` on one interface: a whole IPv6 packet
    sent straight to a neighbour's link-layer address, bypassing the routing table.

    RFC 6275 §10.3.2: the HA answers a BU that came from the home link on the home link (to
    the mobile node's link-layer address), never through a tunnel route the kernel still
    holds for the home address.
    """

    def __init__(self, interface: str) -> None:
        self.interface = interface
        super().__init__(
            socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_IPV6))
        )

    def send(self, packet: bytes, link_address: bytes) -> None:
        """Send one whole IPv6 packet in a frame to ``link_address`` (6 octets); raises
        ``ValueError`` for a bad packet or address, ``OSError``."""
        self._require_ipv6(packet)
        if len(link_address) != 6:
            raise ValueError("not an Ethernet address")
        self._sendto(packet, (self.interface, ETH_P_IPV6, 0, 0, link_address))
