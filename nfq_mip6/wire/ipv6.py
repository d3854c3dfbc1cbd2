"""IPv6 header, extension-header walk and the Mobile IPv6 rewrites (RFC 8200, RFC 6275 §6.3–§6.4).

:func:`parse_ipv6` walks a raw IPv6 packet exactly as NFQUEUE hands it over (no link layer):
hop-by-hop, routing, destination options, fragment and AH headers, stopping at the upper layer
(anything else, including the Mobility Header 135, ESP 50 and No Next Header 59). It reports
the Home Address option (HAO, destination option 201, §6.3) and the type 2 routing header
(RH2, §6.4) that Mobile IPv6 adds.

The byte-level rewrites (:func:`strip_hao_to_home_source`, :func:`strip_rh2_to_home_destination`,
:func:`insert_hao`, :func:`insert_rh2`) run per data packet: they return new packet bytes, or
``None`` when the packet does not have the expected shape, and never allocate dataclasses.
Upper-layer checksums stay valid across them because Mobile IPv6 computes them with the home
address on both ends (§6.1.1, §11.3.1; RFC 8200 §8.1 "final destination").
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv6Address
from struct import Struct

from nfq_mip6.constants import (
    IPPROTO_AH,
    IPPROTO_DSTOPTS,
    IPPROTO_FRAGMENT,
    IPPROTO_HOPOPTS,
    IPPROTO_IPV6,
    IPPROTO_ROUTING,
)
from nfq_mip6.wire.errors import MalformedPacket

IPV6_HEADER_LENGTH = 40


HOME_ADDRESS_OPTION = 0xC9
"""§6.3: destination option type 201; top bits 11 = discard + ICMP code 2 if not understood."""

ROUTING_TYPE_2 = 2
RH2_LENGTH = 24
HAO_DESTOPTS_LENGTH = 24

_IPV6 = Struct("!IHBB16s16s")  # version/class/flow, payload length, next header, hop limit
_OPTION_HEADERS = frozenset((IPPROTO_HOPOPTS, IPPROTO_DSTOPTS))


@dataclass(frozen=True, slots=True)
class ExtensionHeader:
    """One extension header met while walking: its protocol number, offset and length."""

    header_type: int
    offset: int
    length: int


@dataclass(frozen=True, slots=True)
class ParsedPacket:
    """A decoded IPv6 packet: header fields, extension chain and the Mobile IPv6 additions.

    Offsets count from the first octet of the IPv6 header. ``end`` is 40 + Payload Length (any
    octets after it are ignored). ``upper_layer`` is the protocol that ends the walk (59 when
    nothing follows; 44 for a non-first fragment, whose ``upper_offset`` is then the fragment
    header's offset).

    Only offsets are stored (the walk runs per queued packet); addresses and header fields are
    read from ``raw`` when asked for, so keep the object rather than re-reading properties in
    a tight loop.
    """

    raw: bytes
    chain: tuple[tuple[int, int, int], ...]
    """``(header type, offset, length)`` per extension header; see :attr:`headers`."""
    upper_layer: int
    upper_offset: int
    end: int
    hao_offset: int | None = None
    """Offset of the HAO's option type octet (inside a Destination Options header)."""
    rh2_offset: int | None = None
    fragmented: bool = False

    @property
    def src(self) -> IPv6Address:
        return IPv6Address(self.raw[8:24])

    @property
    def dst(self) -> IPv6Address:
        return IPv6Address(self.raw[24:40])

    @property
    def hop_limit(self) -> int:
        return self.raw[7]

    @property
    def traffic_class(self) -> int:
        return ((self.raw[0] & 0x0F) << 4) | (self.raw[1] >> 4)

    @property
    def flow_label(self) -> int:
        raw = self.raw
        return ((raw[1] & 0x0F) << 16) | (raw[2] << 8) | raw[3]

    @property
    def headers(self) -> tuple[ExtensionHeader, ...]:
        return tuple(ExtensionHeader(t, o, n) for t, o, n in self.chain)

    @property
    def header_types(self) -> tuple[int, ...]:
        return tuple(t for t, _o, _n in self.chain)

    @property
    def home_address(self) -> IPv6Address | None:
        """The Home Address option's address (§6.3), or None."""
        hao = self.hao_offset
        return None if hao is None else IPv6Address(self.raw[hao + 2 : hao + 18])

    @property
    def rh2_address(self) -> IPv6Address | None:
        """The type 2 routing header's home address (§6.4), or None."""
        rh2 = self.rh2_offset
        return None if rh2 is None else IPv6Address(self.raw[rh2 + 8 : rh2 + 24])

    @property
    def rh2_segments_left(self) -> int | None:
        rh2 = self.rh2_offset
        return None if rh2 is None else self.raw[rh2 + 3]

    @property
    def rh2_valid(self) -> bool:
        """§6.4 / §11.3.3: Hdr Ext Len = 2 and Segments Left = 1 (else silently discard)."""
        rh2 = self.rh2_offset
        return rh2 is not None and self.raw[rh2 + 1] == 2 and self.raw[rh2 + 3] == 1

    @property
    def upper_layer_bytes(self) -> bytes:
        return self.raw[self.upper_offset : self.end]

    @property
    def checksum_source(self) -> IPv6Address:
        """The pseudo-header source: the HAO home address if present (§6.1.1), else ``src``."""
        hao = self.hao_offset
        raw = self.raw
        return IPv6Address(raw[8:24] if hao is None else raw[hao + 2 : hao + 18])

    @property
    def checksum_destination(self) -> IPv6Address:
        """The pseudo-header destination: the final destination (RFC 8200 §8.1).

        That is the RH2 home address while the RH2 still has a segment left (as a packet sent
        by a CN or HA arrives), else ``dst``.
        """
        rh2 = self.rh2_offset
        raw = self.raw
        if rh2 is None or raw[rh2 + 3] == 0:
            return IPv6Address(raw[24:40])
        return IPv6Address(raw[rh2 + 8 : rh2 + 24])


# ---------------------------------------------------------------------------------------------
# Walker
# ---------------------------------------------------------------------------------------------


def _end_of(raw: bytes) -> int:
    size = len(raw)
    if size < IPV6_HEADER_LENGTH:
        raise MalformedPacket(f"{size} octets: shorter than an IPv6 header")
    if raw[0] >> 4 != 6:
        raise MalformedPacket(f"IP version {raw[0] >> 4}, expected 6")
    end = IPV6_HEADER_LENGTH + ((raw[4] << 8) | raw[5])
    if end > size:
        raise MalformedPacket(f"payload length says {end} octets, packet has {size}")
    return end


def _find_hao(raw: bytes, start: int, stop: int) -> int:
    """Offset of a HAO among the TLV options in ``raw[start:stop]``, or -1."""
    i = start
    while i < stop:
        option_type = raw[i]
        if option_type == 0:  # Pad1
            i += 1
            continue
        if i + 2 > stop:
            raise MalformedPacket(f"destination option at {i} truncated")
        length = raw[i + 1]
        if i + 2 + length > stop:
            raise MalformedPacket(f"destination option type {option_type} overruns its header")
        if option_type == HOME_ADDRESS_OPTION:
            if length != 16:
                raise MalformedPacket(f"home address option of length {length}, expected 16")
            return i
        i += 2 + length
    return -1


def _walk(
    raw: bytes,
) -> tuple[list[tuple[int, int, int]], int, int, int, int, int, bool]:
    """The lean walk used by the parser and the rewrites.

    Returns ``(headers [(type, offset, length)], upper_layer, upper_offset, end, hao_offset,
    rh2_offset, fragmented)`` with -1 for an absent HAO/RH2.
    """
    end = _end_of(raw)
    next_header = raw[6]
    offset = IPV6_HEADER_LENGTH
    headers: list[tuple[int, int, int]] = []
    hao = -1
    rh2 = -1
    fragmented = False
    while True:
        if next_header in _OPTION_HEADERS or next_header == IPPROTO_ROUTING:
            if offset + 8 > end:
                raise MalformedPacket(f"extension header {next_header} at {offset} truncated")
            length = (raw[offset + 1] + 1) * 8
            if offset + length > end:
                raise MalformedPacket(f"extension header {next_header} at {offset} overruns")
            if next_header == IPPROTO_DSTOPTS:
                found = _find_hao(raw, offset + 2, offset + length)
                if found >= 0:
                    if hao >= 0:
                        raise MalformedPacket("more than one home address option")
                    hao = found
            elif next_header == IPPROTO_ROUTING and raw[offset + 2] == ROUTING_TYPE_2:
                if rh2 >= 0:
                    raise MalformedPacket("more than one type 2 routing header")
                if length < RH2_LENGTH:
                    raise MalformedPacket("type 2 routing header shorter than 24 octets")
                rh2 = offset
        elif next_header == IPPROTO_FRAGMENT:
            length = 8
            if offset + 8 > end:
                raise MalformedPacket(f"fragment header at {offset} truncated")
            fragmented = True
            if ((raw[offset + 2] << 8) | raw[offset + 3]) >> 3:
                headers.append((next_header, offset, length))
                return headers, IPPROTO_FRAGMENT, offset, end, hao, rh2, fragmented
        elif next_header == IPPROTO_AH:
            if offset + 8 > end:
                raise MalformedPacket(f"authentication header at {offset} truncated")
            length = (raw[offset + 1] + 2) * 4
            if offset + length > end:
                raise MalformedPacket(f"authentication header at {offset} overruns")
        else:
            return headers, next_header, offset, end, hao, rh2, fragmented
        headers.append((next_header, offset, length))
        next_header = raw[offset]
        offset += length


def parse_ipv6(raw: bytes | bytearray | memoryview) -> ParsedPacket:
    """Decode a raw IPv6 packet; raises :class:`MalformedPacket` on anything inconsistent."""
    if not isinstance(raw, bytes):
        raw = bytes(raw)
    headers, upper, upper_offset, end, hao, rh2, fragmented = _walk(raw)
    return ParsedPacket(
        raw,
        tuple(headers),
        upper,
        upper_offset,
        end,
        hao if hao >= 0 else None,
        rh2 if rh2 >= 0 else None,
        fragmented,
    )


# ---------------------------------------------------------------------------------------------
# Builders
# ---------------------------------------------------------------------------------------------


def build_ipv6_header(
    src: IPv6Address,
    dst: IPv6Address,
    next_header: int,
    payload_length: int,
    hop_limit: int = 64,
    traffic_class: int = 0,
    flow_label: int = 0,
) -> bytes:
    """The fixed 40-octet IPv6 header (RFC 8200 §3)."""
    if not 0 <= payload_length <= 0xFFFF:
        raise MalformedPacket(
            f"payload of {payload_length} octets does not fit (jumbograms unsupported)"
        )
    word = (6 << 28) | ((traffic_class & 0xFF) << 20) | (flow_label & 0xFFFFF)
    return _IPV6.pack(word, payload_length, next_header, hop_limit & 0xFF, src.packed, dst.packed)


def rh2_header(next_header: int, home_address: IPv6Address) -> bytes:
    """§6.4: Next Header | Hdr Ext Len 2 | Routing Type 2 | Segments Left 1 | Reserved | HoA."""
    return bytes((next_header, 2, ROUTING_TYPE_2, 1, 0, 0, 0, 0)) + home_address.packed


def hao_destination_options(next_header: int, home_address: IPv6Address) -> bytes:
    """§6.3: a 24-octet Destination Options header: PadN(4 octets) then the HAO at 8n+6."""
    return bytes((next_header, 2, 1, 2, 0, 0, HOME_ADDRESS_OPTION, 16)) + home_address.packed


def build_ipv6_packet(
    src: IPv6Address,
    dst: IPv6Address,
    next_header: int,
    payload: bytes,
    hop_limit: int = 64,
    home_address: IPv6Address | None = None,
    rh2_address: IPv6Address | None = None,
    traffic_class: int = 0,
    flow_label: int = 0,
) -> bytes:
    """An IPv6 packet carrying ``payload`` (an upper-layer protocol ``next_header``).

    With ``rh2_address`` a type 2 routing header is added (``dst`` is then the care-of address);
    with ``home_address`` a Destination Options header with the HAO (``src`` is then the
    care-of address). Order per RFC 8200 §4.1 and RFC 6275 §6.3: RH2 before the Destination
    Options header. The payload's own checksum is the caller's business (compute it with the
    home address and the final destination).
    """
    chain = b""
    first = next_header
    if home_address is not None:
        chain = hao_destination_options(first, home_address)
        first = IPPROTO_DSTOPTS
    if rh2_address is not None:
        chain = rh2_header(first, rh2_address) + chain
        first = IPPROTO_ROUTING
    body = chain + payload
    header = build_ipv6_header(src, dst, first, len(body), hop_limit, traffic_class, flow_label)
    return header + body


# ---------------------------------------------------------------------------------------------
# Data-path rewrites
# ---------------------------------------------------------------------------------------------


def _set_next_header(
    out: bytearray, headers: list[tuple[int, int, int]], index: int, value: int
) -> None:
    """Write ``value`` into the Next Header field that announces ``headers[index]``."""
    if index == 0:
        out[6] = value
    else:
        out[headers[index - 1][1]] = value


def _set_payload_length(out: bytearray, delta: int) -> bool:
    length = ((out[4] << 8) | out[5]) + delta
    if not 0 <= length <= 0xFFFF:
        return False
    out[4] = length >> 8
    out[5] = length & 0xFF
    return True


def _options_other_than(raw: bytes, start: int, stop: int, hao: int) -> bool:
    """True if ``raw[start:stop]`` holds any option but padding and the HAO at ``hao``."""
    i = start
    while i < stop:
        option_type = raw[i]
        if option_type == 0:
            i += 1
            continue
        if option_type != 1 and i != hao:
            return True
        i += 2 + raw[i + 1]
    return False


def strip_hao_to_home_source(raw: bytes) -> bytes | None:
    """§9.3.1 "as if" processing: source := the HAO's home address, HAO removed.

    The Destination Options header goes entirely when it held only the HAO and padding;
    otherwise the HAO is overwritten with PadN. ``None`` if there is no HAO or the packet is
    malformed.
    """
    try:
        headers, _upper, _uo, end, hao, _rh2, _frag = _walk(raw)
    except MalformedPacket:
        return None
    if hao < 0:
        return None
    index = next(
        i for i, h in enumerate(headers) if h[0] == IPPROTO_DSTOPTS and h[1] < hao < h[1] + h[2]
    )
    _type, offset, length = headers[index]
    home = raw[hao + 2 : hao + 18]
    if _options_other_than(raw, offset + 2, offset + length, hao):
        out = bytearray(raw[:end])
        out[hao : hao + 18] = b"\x01\x10" + bytes(16)
    else:
        out = bytearray(raw[:offset]) + raw[offset + length : end]
        _set_next_header(out, headers, index, raw[offset])
        _set_payload_length(out, -length)
    out[8:24] = home
    return bytes(out)


def strip_rh2_to_home_destination(raw: bytes) -> bytes | None:
    """§11.3.3 processing of a valid RH2: destination := its home address, RH2 removed.

    ``None`` without an RH2, with an invalid one (Hdr Ext Len ≠ 2 or Segments Left ≠ 1, which
    the MN silently discards) or if the packet is malformed.
    """
    try:
        headers, _upper, _uo, end, _hao, rh2, _frag = _walk(raw)
    except MalformedPacket:
        return None
    if rh2 < 0 or raw[rh2 + 1] != 2 or raw[rh2 + 3] != 1:
        return None
    index = next(i for i, h in enumerate(headers) if h[1] == rh2)
    home = raw[rh2 + 8 : rh2 + 24]
    out = bytearray(raw[:rh2]) + raw[rh2 + RH2_LENGTH : end]
    _set_next_header(out, headers, index, raw[rh2])
    _set_payload_length(out, -RH2_LENGTH)
    out[24:40] = home
    return bytes(out)


def insert_hao(raw: bytes, care_of_address: IPv6Address) -> bytes | None:
    """MN route optimisation (§11.3.1): the source becomes ``care_of_address`` and a Destination
    Options header with an HAO carrying the former source (the home address) is inserted.

    Placement (§6.3): after the hop-by-hop header, any routing header (and a Destination
    Options header that precedes a routing header), before Fragment/AH/ESP and the upper layer.
    ``None`` if the packet already has an HAO, is malformed or would grow past 65535 octets.
    """
    try:
        headers, _upper, upper_offset, end, hao, _rh2, _frag = _walk(raw)
    except MalformedPacket:
        return None
    if hao >= 0:
        return None
    position = 0
    for index, (header_type, _offset, _length) in enumerate(headers):
        follows_routing = (
            header_type == IPPROTO_DSTOPTS
            and index + 1 < len(headers)
            and headers[index + 1][0] == IPPROTO_ROUTING
        )
        if header_type in (IPPROTO_HOPOPTS, IPPROTO_ROUTING) or follows_routing:
            position = index + 1
        else:
            break
    insert_at = headers[position][1] if position < len(headers) else upper_offset
    announcing = 6 if position == 0 else headers[position - 1][1]
    inserted = bytes((raw[announcing], 2, 1, 2, 0, 0, HOME_ADDRESS_OPTION, 16)) + raw[8:24]
    out = bytearray(raw[:insert_at]) + inserted + raw[insert_at:end]
    out[announcing] = IPPROTO_DSTOPTS
    if not _set_payload_length(out, HAO_DESTOPTS_LENGTH):
        return None
    out[8:24] = care_of_address.packed
    return bytes(out)


def insert_rh2(raw: bytes, care_of_address: IPv6Address) -> bytes | None:
    """CN/HA route optimisation (§9.3.2): the destination becomes ``care_of_address`` and a type
    2 routing header carrying the former destination (the home address) is inserted right
    after the IPv6 header (or the hop-by-hop header).

    ``None`` if the packet already has a routing header, is malformed or would be too long.
    """
    try:
        headers, _upper, upper_offset, end, _hao, _rh2, _frag = _walk(raw)
    except MalformedPacket:
        return None
    if any(h[0] == IPPROTO_ROUTING for h in headers):
        return None
    position = 1 if headers and headers[0][0] == IPPROTO_HOPOPTS else 0
    insert_at = headers[position][1] if position < len(headers) else upper_offset
    announcing = 6 if position == 0 else headers[0][1]
    inserted = bytes((raw[announcing], 2, ROUTING_TYPE_2, 1, 0, 0, 0, 0)) + raw[24:40]
    out = bytearray(raw[:insert_at]) + inserted + raw[insert_at:end]
    out[announcing] = IPPROTO_ROUTING
    if not _set_payload_length(out, RH2_LENGTH):
        return None
    out[24:40] = care_of_address.packed
    return bytes(out)


# ---------------------------------------------------------------------------------------------
# IPv6-in-IPv6 (RFC 2473)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Decapsulated:
    """The outer addresses of an IPv6-in-IPv6 packet and the inner packet bytes."""

    outer_source: IPv6Address
    outer_destination: IPv6Address
    inner: bytes


def encapsulate(
    inner: bytes, src: IPv6Address, dst: IPv6Address, hop_limit: int = 64, traffic_class: int = 0
) -> bytes:
    """RFC 2473 §3: an outer IPv6 header (next header 41) in front of ``inner``.

    HA → MN (§10.4.2): outer src = the HA, outer dst = the primary care-of address.
    """
    header = build_ipv6_header(src, dst, IPPROTO_IPV6, len(inner), hop_limit, traffic_class)
    return header + inner


def decapsulate(outer: bytes) -> Decapsulated | None:
    """RFC 2473: the inner packet of an IPv6-in-IPv6 packet (outer extension headers skipped).

    ``None`` if ``outer`` is malformed or its upper layer is not IPv6 (41). The reverse-tunnel
    check (outer source = the primary care-of address, §10.4.5) is the caller's.
    """
    try:
        _headers, upper, upper_offset, end, _hao, _rh2, _frag = _walk(outer)
    except MalformedPacket:
        return None
    if upper != IPPROTO_IPV6 or end - upper_offset < IPV6_HEADER_LENGTH:
        return None
    return Decapsulated(
        IPv6Address(outer[8:24]), IPv6Address(outer[24:40]), outer[upper_offset:end]
    )
