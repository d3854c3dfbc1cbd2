"""rtnetlink messages packed by hand (nfq_mip6/dataplane/rtnl.py): seg6
encap.red routes (home addresses and mobile network prefixes), End.DX6 decapsulation and
deletes, attribute by attribute."""

from __future__ import annotations

import struct
from ipaddress import IPv6Address

from nfq_mip6.dataplane.rtnl import (
    LWTUNNEL_ENCAP_SEG6,
    RTM_DELROUTE,
    RTM_NEWROUTE,
    SEG6_IPTUN_MODE_ENCAP_RED,
    route_delete,
    seg6_encap_red_route,
    seg6local_dx6_route,
)
from tests.support.howto import HA, HOA

COA = IPv6Address("fec0:106:1100::10")
COA2 = IPv6Address("fec0:106:1000::10")


# -- FakeDataplane ---------------------------------------------------------------------------


def attributes(body: bytes) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    offset = 12  # struct rtmsg
    while offset + 4 <= len(body):
        length, kind = struct.unpack_from("=HH", body, offset)
        out[kind & 0x7FFF] = body[offset + 4 : offset + length]
        offset += (length + 3) & ~3
    return out


def test_encap_red_route_message() -> None:
    kind, flags, body = seg6_encap_red_route(HOA, COA, oif=7, table=6275, proto=173)
    assert kind == RTM_NEWROUTE and flags == 0x500  # NLM_F_CREATE | NLM_F_REPLACE
    family, dst_len, src_len, _tos, _table, proto, _scope, rtype, _f = struct.unpack_from(
        "=BBBBBBBBI", body
    )
    assert (family, dst_len, src_len, proto, rtype) == (10, 128, 0, 173, 1)
    attrs = attributes(body)
    assert attrs[1] == HOA.packed  # RTA_DST
    assert struct.unpack("=I", attrs[15])[0] == 6275  # RTA_TABLE
    assert struct.unpack("=I", attrs[4])[0] == 7  # RTA_OIF
    assert struct.unpack("=H", attrs[21][:2])[0] == LWTUNNEL_ENCAP_SEG6
    encap = attrs[22]
    mode = struct.unpack_from("=i", encap, 4)[0]
    assert mode == SEG6_IPTUN_MODE_ENCAP_RED  # not 1 (encap): no SRH on the wire
    assert encap[8:12] == bytes((0, 2, 4, 0)) and encap[-16:] == COA.packed


def test_decap_and_delete_messages() -> None:
    _kind, _flags, body = seg6local_dx6_route(HA, COA, oif=3, table=6276, proto=173)
    assert body[1:3] == bytes((128, 128))  # dst_len, src_len: source-specific route
    assert attributes(body)[2] == COA.packed  # RTA_SRC = the registered CoA
    kind, flags, body = route_delete(HOA, table=6275, proto=173)
    assert (kind, flags) == (RTM_DELROUTE, 0)
    assert 22 not in attributes(body)


def test_mobile_network_prefix_route_message_and_route_line() -> None:
    """RFC 3963 §6.4: a prefix route is the same encap.red route with the prefix length, and
    reading the table back keeps prefixes apart from home addresses."""
    from ipaddress import IPv6Network

    from nfq_mip6.dataplane.netlink import _parse_route_line

    prefix = IPv6Network("2001:db8:77::/48")
    _kind, _flags, body = seg6_encap_red_route(
        prefix.network_address, COA, oif=7, table=6275, proto=173, dst_len=48
    )
    assert body[1] == 48 and attributes(body)[1] == prefix.network_address.packed
    _kind, _flags, body = route_delete(prefix.network_address, table=6275, proto=173, dst_len=48)
    assert body[1] == 48
    line = _parse_route_line(
        f"{prefix}  encap seg6 mode encap.red segs 1 [ {COA} ] dev eth0 proto 173 metric 1024"
    )
    assert line is not None and (line.dst, line.dst_len, line.segment) == (
        prefix.network_address,
        48,
        COA,
    )
    host = _parse_route_line(f"{HOA} encap seg6 mode encap.red segs 1 [ {COA} ] dev eth0")
    assert host is not None and host.dst_len == 128
