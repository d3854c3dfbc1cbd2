"""Hand-packed rtnetlink messages for the HA's per-binding hot path.

pyroute2 costs about 0.5 ms of Python per request (message objects, an asyncio loop); a
CoA change needs up to three route operations and a first registration also a proxy entry,
so at 1k BU/s pyroute2 alone would saturate a core. Here the few message shapes the HA needs
(seg6 ``encap.red`` route, source-specific ``End.DX6`` route, deletes, proxy neighbour
entries) are packed with :mod:`struct` (a few µs), sent together in one ``sendmsg`` and
acknowledged together (one ``NLMSG_ERROR`` per request, errno 0 = success).

Constants are the kernel's UAPI values (``linux/rtnetlink.h``, ``linux/lwtunnel.h``,
``linux/seg6_iptunnel.h``, ``linux/seg6_local.h``).
"""

from __future__ import annotations

import errno
import socket
import struct
from collections.abc import Sequence
from ipaddress import IPv6Address
from typing import Final

from nfq_mip6.dataplane.kernel import AF_INET6, SEG6_IPTUN_MODE_ENCAP_RED

__all__ = [
    "RtnlSocket",
    "proxy_neighbor",
    "route_delete",
    "seg6_encap_red_route",
    "seg6local_dx6_route",
]

NETLINK_ROUTE: Final = 0
RTM_NEWROUTE: Final = 24
RTM_DELROUTE: Final = 25
RTM_NEWNEIGH: Final = 28
RTM_DELNEIGH: Final = 29
NDA_DST: Final = 1
NTF_PROXY: Final = 0x08
NUD_PERMANENT: Final = 0x80
NLMSG_ERROR: Final = 2
NLM_F_REQUEST: Final = 0x1
NLM_F_ACK: Final = 0x4
NLM_F_REPLACE: Final = 0x100
NLM_F_CREATE: Final = 0x400
RT_SCOPE_UNIVERSE: Final = 0
RTN_UNICAST: Final = 1
RTA_DST: Final = 1
RTA_SRC: Final = 2
RTA_OIF: Final = 4
RTA_TABLE: Final = 15
RTA_ENCAP_TYPE: Final = 21
RTA_ENCAP: Final = 22
NLA_F_NESTED: Final = 0x8000
LWTUNNEL_ENCAP_SEG6: Final = 5
LWTUNNEL_ENCAP_SEG6_LOCAL: Final = 7
SEG6_IPTUNNEL_SRH: Final = 1
SEG6_LOCAL_ACTION: Final = 1
SEG6_LOCAL_NH6: Final = 5
SEG6_LOCAL_ACTION_END_DX6: Final = 5
IPV6_SRCRT_TYPE_4: Final = 4

_NLMSGHDR = struct.Struct("=IHHII")
_RTMSG = struct.Struct("=BBBBBBBBI")
_RTATTR = struct.Struct("=HH")
_NDMSG = struct.Struct("=BBHiHBB")
_UNSPECIFIED = bytes(16)


def _attr(kind: int, data: bytes) -> bytes:
    length = _RTATTR.size + len(data)
    return _RTATTR.pack(length, kind) + data + bytes(-length % 4)


def _route_body(
    *,
    dst: IPv6Address,
    table: int,
    proto: int,
    src: IPv6Address | None = None,
    oif: int | None = None,
    extra: bytes = b"",
    dst_len: int = 128,
) -> bytes:
    header = _RTMSG.pack(
        AF_INET6, dst_len, 128 if src is not None else 0, 0, 0, proto, RT_SCOPE_UNIVERSE,
        RTN_UNICAST, 0,
    )  # fmt: skip
    attrs = _attr(RTA_DST, dst.packed) + _attr(RTA_TABLE, struct.pack("=I", table))
    if src is not None:
        attrs += _attr(RTA_SRC, src.packed)
    if oif is not None:
        attrs += _attr(RTA_OIF, struct.pack("=I", oif))
    return header + attrs + extra


def seg6_encap_red_route(
    dst: IPv6Address,
    segment: IPv6Address,
    *,
    oif: int,
    table: int,
    proto: int,
    dst_len: int = 128,
) -> tuple[int, int, bytes]:
    """``route replace dst/dst_len encap seg6 mode encap.red segs <segment> dev <oif>``."""
    # struct seg6_iptunnel_encap { int mode; struct ipv6_sr_hdr srh; } with one segment:
    # nexthdr 0, hdrlen 2 (8 + 16 octets), type 4, segments_left 0, first_segment 0.
    srh = struct.pack("=BBBBBBH", 0, 2, IPV6_SRCRT_TYPE_4, 0, 0, 0, 0) + segment.packed
    encap = _attr(SEG6_IPTUNNEL_SRH, struct.pack("=i", SEG6_IPTUN_MODE_ENCAP_RED) + srh)
    extra = _attr(RTA_ENCAP_TYPE, struct.pack("=H", LWTUNNEL_ENCAP_SEG6)) + _attr(
        RTA_ENCAP | NLA_F_NESTED, encap
    )
    body = _route_body(dst=dst, table=table, proto=proto, oif=oif, extra=extra, dst_len=dst_len)
    return RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE, body


def seg6local_dx6_route(
    dst: IPv6Address, src: IPv6Address, *, oif: int, table: int, proto: int
) -> tuple[int, int, bytes]:
    """``route replace dst/128 from src/128 encap seg6local action End.DX6 nh6 :: dev <oif>``."""
    encap = _attr(SEG6_LOCAL_ACTION, struct.pack("=I", SEG6_LOCAL_ACTION_END_DX6)) + _attr(
        SEG6_LOCAL_NH6, _UNSPECIFIED
    )
    extra = _attr(RTA_ENCAP_TYPE, struct.pack("=H", LWTUNNEL_ENCAP_SEG6_LOCAL)) + _attr(
        RTA_ENCAP | NLA_F_NESTED, encap
    )
    body = _route_body(dst=dst, src=src, table=table, proto=proto, oif=oif, extra=extra)
    return RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE, body


def route_delete(
    dst: IPv6Address,
    *,
    table: int,
    proto: int,
    src: IPv6Address | None = None,
    dst_len: int = 128,
) -> tuple[int, int, bytes]:
    """``route del dst/dst_len [from src/128] table <table> proto <proto>``."""
    return RTM_DELROUTE, 0, _route_body(dst=dst, src=src, table=table, proto=proto, dst_len=dst_len)


def proxy_neighbor(address: IPv6Address, *, ifindex: int, add: bool) -> tuple[int, int, bytes]:
    """``ip -6 neigh add|del proxy <address> dev <ifindex>`` (RFC 6275 §10.4.1)."""
    body = _NDMSG.pack(AF_INET6, 0, 0, ifindex, NUD_PERMANENT, NTF_PROXY, 0) + _attr(
        NDA_DST, address.packed
    )
    if add:
        return RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_REPLACE, body
    return RTM_DELNEIGH, 0, body


class RtnlSocket:
    """A NETLINK_ROUTE socket sending batches of requests and collecting their acks."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
        self._sock.bind((0, 0))
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self._seq = 1

    def transact(self, requests: Sequence[tuple[int, int, bytes]]) -> list[int]:
        """Send ``requests`` (type, extra flags, body) in one ``sendmsg``; return the errno
        of each (0 = done), in order."""
        if not requests:
            return []
        first = self._seq
        chunks = []
        for kind, flags, body in requests:
            header = _NLMSGHDR.pack(
                _NLMSGHDR.size + len(body), kind, NLM_F_REQUEST | NLM_F_ACK | flags, self._seq, 0
            )
            chunks.append(header + body)
            self._seq = (self._seq + 1) & 0xFFFFFFFF or 1
        self._sock.sendmsg(chunks)
        results: dict[int, int] = {}
        while len(results) < len(requests):
            data = self._sock.recv(65536)
            offset = 0
            while offset + _NLMSGHDR.size <= len(data):
                length, kind, _flags, seq, _pid = _NLMSGHDR.unpack_from(data, offset)
                if length < _NLMSGHDR.size:
                    break
                if kind == NLMSG_ERROR:
                    (code,) = struct.unpack_from("=i", data, offset + _NLMSGHDR.size)
                    results[seq] = -code
                offset += (length + 3) & ~3
        out = []
        for i in range(len(requests)):
            seq = (first + i) & 0xFFFFFFFF or 1
            out.append(results.get(seq, errno.EIO))
        return out

    def close(self) -> None:
        self._sock.close()
