"""Raw IPv6 sender: whole packets, header included (``IPV6_HDRINCL``).

The kernel refuses a Type 2 Routing Header through ``IPV6_RTHDR`` (EINVAL) and computes the
MH checksum over the CoA when an HAO is given through ``IPV6_DSTOPTS``, so every BA with an
RH2 (RFC 6275 §6.1.8, §9.5.4) and every BU with an HAO is sent as a complete packet built by
:mod:`nfq_mip6.wire`.
"""

from __future__ import annotations

import socket
from ipaddress import IPv6Address

__all__ = ["ETH_P_IPV6", "IPV6_HDRINCL", "LinkLayerIPv6Sender", "RawIPv6Sender"]

IPV6_HDRINCL = 36  # linux/in6.h; not exported by the socket module
ETH_P_IPV6 = 0x86DD  # linux/if_ether.h


class RawIPv6Sender:
    """``socket(AF_INET6, SOCK_RAW, IPPROTO_RAW)`` with ``IPV6_HDRINCL``.

    ``send(packet)`` sends ``packet`` (a whole IPv6 packet) to its destination address, taken
    from bytes 24..40 of the fixed header; the route lookup uses that address, so a BA with an
    RH2 goes to the CoA.
    """

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_RAW)
        self._sock.setsockopt(socket.IPPROTO_IPV6, IPV6_HDRINCL, 1)
        self._sock.setblocking(False)
        self.sent = 0
        self.errors = 0

    def send(self, packet: bytes) -> None:
        """Send one whole IPv6 packet; raises ``ValueError`` if it is not one, ``OSError``."""
        if len(packet) < 40 or packet[0] >> 4 != 6:
            raise ValueError("not an IPv6 packet")
        dst = str(IPv6Address(packet[24:40]))
        try:
            self._sock.sendto(packet, (dst, 0))
        except OSError:
            self.errors += 1
            raise
        self.sent += 1

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> RawIPv6Sender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LinkLayerIPv6Sender:
    """``socket(AF_PACKET, SOCK_DGRAM, ETH_P_IPV6)`` on one interface: a whole IPv6 packet
    sent straight to a neighbour's link-layer address, bypassing the routing table.

    RFC 6275 §10.3.2: the HA answers a BU that came from the home link on the home link (to
    the mobile node's link-layer address), never through a tunnel route the kernel still
    holds for the home address.
    """

    def __init__(self, interface: str) -> None:
        self.interface = interface
        self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_IPV6))
        self._sock.setblocking(False)
        self.sent = 0
        self.errors = 0

    def send(self, packet: bytes, link_address: bytes) -> None:
        """Send one whole IPv6 packet in a frame to ``link_address`` (6 octets); raises
        ``ValueError`` for a bad packet or address, ``OSError``."""
        if len(packet) < 40 or packet[0] >> 4 != 6:
            raise ValueError("not an IPv6 packet")
        if len(link_address) != 6:
            raise ValueError("not an Ethernet address")
        try:
            self._sock.sendto(packet, (self.interface, ETH_P_IPV6, 0, 0, link_address))
        except OSError:
            self.errors += 1
            raise
        self.sent += 1

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> LinkLayerIPv6Sender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
