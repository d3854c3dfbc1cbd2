"""Route-optimization byte rewrites (RFC 6275 §9.3, §11.3), pure: one packet in, the
rewritten packet (or ``None``) out. Used by the NFQUEUE data path of the Correspondent Node
and the Mobile Node (:mod:`nfq_mip6.runtime.ro_datapath`) and by the home agent's egress.

No ``ipaddress`` objects, no dataclasses, no scapy per packet: addresses are the 16 raw octets,
binding tables are plain dicts keyed by them, and the common packet shapes (nothing between the
IPv6 header and the upper layer, or exactly the 24-octet HAO / RH2 header this project and
every MIPv6 stack emits) are rewritten with a few slices. Anything else falls back to the
general rewrites of :mod:`nfq_mip6.wire.ipv6`, which walk the whole extension-header chain.

Directions (the "binding" is the route-optimization binding of the role):

* CN outbound (§9.3.2): to a bound HoA → destination := CoA, RH2 carrying the HoA inserted.
* CN inbound (§9.3.1): HAO from the CoA of a binding → source := HoA, HAO removed.
* MN outbound (§11.3.1): from the HoA to a CN with an RO binding → source := CoA, HAO
  carrying the HoA inserted.
* MN inbound (§11.3.3): valid RH2 (Hdr Ext Len 2, Segments Left 1) carrying one of our
  home addresses → destination := HoA, RH2 removed.

Upper-layer checksums are never touched: Mobile IPv6 computes them with the home address
at both ends (§6.1.1, §11.3.1; RFC 8200 §8.1 "final destination"), which is what the
sender's kernel did before the rewrite and what the receiver's kernel checks after it.

Mobility Header packets are never rewritten here (§6.1: MH messages carry an HAO only in a
BU and an RH2 only in a BA, both built by the runtimes themselves); they return ``None``.
A ``None`` result always means "not rewritten by the fast path": the runtime then decides
with the full parser (accept, Binding Error, drop).
"""

from __future__ import annotations

from collections.abc import Container, Mapping
from ipaddress import IPv6Address
from struct import Struct
from typing import Final

from nfq_mip6.constants import IPPROTO_DSTOPTS, IPPROTO_MH, IPPROTO_ROUTING
from nfq_mip6.wire.ipv6 import (
    insert_hao,
    insert_rh2,
    strip_hao_to_home_source,
    strip_rh2_to_home_destination,
)

__all__ = [
    "HAO_HEADER_LENGTH",
    "RH2_HEADER_LENGTH",
    "cn_inbound",
    "cn_outbound",
    "has_home_address_option",
    "has_type2_routing_header",
    "mn_inbound",
    "mn_outbound",
    "upper_layer_is_mh",
]

HAO_HEADER_LENGTH: Final = 24
"""A Destination Options header holding PadN(4) and the HAO (at 8n+6, §6.3)."""
RH2_HEADER_LENGTH: Final = 24
"""A Type 2 Routing Header (§6.4)."""

# Next header | Hdr Ext Len 2 | PadN type 1, len 2, 0, 0 | HAO type 201, len 16.
_HAO_TAIL: Final = b"\x02\x01\x02\x00\x00\xc9\x10"
# Hdr Ext Len 2 | Routing Type 2 | Segments Left 1 | Reserved(32).
_RH2_TAIL: Final = b"\x02\x02\x01\x00\x00\x00\x00"
# Headers that may sit between the IPv6 header and an HAO/RH2 in the general case.
_EXTENSION_HEADERS: Final = frozenset((0, 43, 44, 51, 60))
_LENGTH: Final = Struct("!H")


def _payload_length(raw: bytes, delta: int) -> bytes | None:
    """The new Payload Length field, or ``None`` if the packet is truncated or the result
    does not fit (no jumbograms) or would be negative."""
    old = (raw[4] << 8) | raw[5]
    length = old + delta
    if not 0 <= length <= 0xFFFF or 40 + old != len(raw):
        return None
    return _LENGTH.pack(length)


def has_home_address_option(raw: bytes) -> bool:
    """Cheap test: a Destination Options header follows the IPv6 header and holds the HAO in
    the standard layout (the general case needs :func:`nfq_mip6.wire.parse_ipv6`)."""
    return len(raw) >= 64 and raw[6] == IPPROTO_DSTOPTS and raw[41:48] == _HAO_TAIL


def has_type2_routing_header(raw: bytes) -> bool:
    """Cheap test: a valid RH2 (§6.4) follows the IPv6 header directly."""
    return len(raw) >= 64 and raw[6] == IPPROTO_ROUTING and raw[41:48] == _RH2_TAIL


# ---------------------------------------------------------------------------------------------
# Correspondent node
# ---------------------------------------------------------------------------------------------


def cn_outbound(raw: bytes, bindings: Mapping[bytes, bytes]) -> bytes | None:
    """§9.3.2: a packet to a bound home address leaves for the care-of address with an RH2.

    ``bindings`` maps HoA octets → CoA octets. ``None``: no binding for the destination, a
    Mobility Header (HoT, BRR go through the home agent, §6.1), or a shape the rewrite
    refuses (an existing routing header, oversize).
    """
    care_of = bindings.get(raw[24:40])
    if care_of is None or len(raw) < 40:
        return None
    next_header = raw[6]
    if next_header == IPPROTO_MH:
        return None
    if next_header not in _EXTENSION_HEADERS:
        length = _payload_length(raw, RH2_HEADER_LENGTH)
        if length is None:
            return None
        # IPv6 header with dst := CoA and next header := routing; RH2(next header, HoA).
        return b"".join(
            (
                raw[:4],
                length,
                b"\x2b",
                raw[7:24],
                care_of,
                bytes((next_header,)),
                _RH2_TAIL,
                raw[24:40],
                raw[40:],
            )
        )
    if upper_layer_is_mh(raw):
        return None
    return insert_rh2(raw, _address(care_of))


def cn_inbound(raw: bytes, bindings: Mapping[bytes, bytes]) -> bytes | None:
    """§9.3.1: a packet with an HAO whose binding maps that HoA to the packet's source is
    delivered as if sent from the HoA (source := HoA, HAO removed).

    ``None``: no HAO, no matching binding (the runtime answers Binding Error status 1,
    §9.3.3), a Mobility Header (a BU, which the runtime processes), or malformed.
    """
    if has_home_address_option(raw):
        home = raw[48:64]
        if bindings.get(home) != raw[8:24] or raw[40] == IPPROTO_MH:
            return None
        length = _payload_length(raw, -HAO_HEADER_LENGTH)
        if length is None:
            return None
        return b"".join((raw[:4], length, raw[40:41], raw[7:8], home, raw[24:40], raw[64:]))
    if len(raw) < 40 or raw[6] not in _EXTENSION_HEADERS or upper_layer_is_mh(raw):
        return None
    stripped = strip_hao_to_home_source(raw)
    if stripped is None or bindings.get(stripped[8:24]) != raw[8:24]:
        return None
    return stripped


# ---------------------------------------------------------------------------------------------
# Mobile node
# ---------------------------------------------------------------------------------------------


def mn_outbound(raw: bytes, home_address: bytes, bindings: Mapping[bytes, bytes]) -> bytes | None:
    """§11.3.1: a packet from ``home_address`` to a correspondent with an RO binding leaves
    from the care-of address with an HAO carrying the home address.

    ``bindings`` maps correspondent octets → CoA octets. ``None``: not from the HoA, no
    binding for the destination, a Mobility Header (a HoTI goes through the tunnel), or a
    shape the rewrite refuses (an HAO already present, oversize).
    """
    if len(raw) < 40 or raw[8:24] != home_address:
        return None
    care_of = bindings.get(raw[24:40])
    if care_of is None:
        return None
    next_header = raw[6]
    if next_header == IPPROTO_MH:
        return None
    if next_header not in _EXTENSION_HEADERS:
        length = _payload_length(raw, HAO_HEADER_LENGTH)
        if length is None:
            return None
        # IPv6 header with src := CoA and next header := destination options; HAO(HoA).
        return b"".join(
            (
                raw[:4],
                length,
                b"\x3c",
                raw[7:8],
                care_of,
                raw[24:40],
                bytes((next_header,)),
                _HAO_TAIL,
                home_address,
                raw[40:],
            )
        )
    if upper_layer_is_mh(raw):
        return None
    return insert_hao(raw, _address(care_of))


def mn_inbound(raw: bytes, home_addresses: Container[bytes]) -> bytes | None:
    """§11.3.3: a valid RH2 carrying one of ``home_addresses`` → destination := that HoA,
    RH2 removed.

    ``None``: no RH2, an invalid one (Hdr Ext Len ≠ 2 or Segments Left ≠ 1: silently
    discard), a home address that is not ours (discard, TAHI MN-4-1-2-2-011), a Mobility
    Header (a BA, which the runtime processes), or malformed.
    """
    if has_type2_routing_header(raw):
        home = raw[48:64]
        if home not in home_addresses or raw[40] == IPPROTO_MH:
            return None
        length = _payload_length(raw, -RH2_HEADER_LENGTH)
        if length is None:
            return None
        return b"".join((raw[:4], length, raw[40:41], raw[7:24], home, raw[64:]))
    if len(raw) < 40 or raw[6] not in _EXTENSION_HEADERS or upper_layer_is_mh(raw):
        return None
    stripped = strip_rh2_to_home_destination(raw)
    if stripped is None or stripped[24:40] not in home_addresses:
        return None
    return stripped


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def upper_layer_is_mh(raw: bytes) -> bool:
    """Walk the extension headers (general case) to see whether the upper layer is the MH.

    Malformed chains count as MH (the fast path then leaves the packet to the runtime).
    """
    next_header = raw[6]
    offset = 40
    end = len(raw)
    while next_header in _EXTENSION_HEADERS:
        if offset + 8 > end:
            return True
        if next_header == 44:  # fragment: the upper layer may be in a later fragment
            return True
        unit, extra = (4, 2) if next_header == 51 else (8, 1)  # AH counts 4-octet units
        length = (raw[offset + 1] + extra) * unit
        next_header = raw[offset]
        offset += length
    return next_header == IPPROTO_MH


def _address(octets: bytes) -> IPv6Address:
    return IPv6Address(octets)
