"""RFC 6275 §9.2 receiver checks on a Mobility Header, as a pure function.

:func:`validate_mh` takes a :class:`~nfq_mip6.wire.ipv6.ParsedPacket` whose upper layer is the
MH and returns exactly one verdict, in the order the RFC (and TAHI) checks them:

1. truncated (fewer than 6 octets, no checksum field, or fewer octets than Header Len
   announces) → :class:`SilentDiscard`;
2. checksum wrong → :class:`SilentDiscard`. The checksum covers the Mobility Header as its
   Header Len defines it, ``(Header Len + 1) × 8`` octets, and the pseudo-header length is
   that MH length (§6.1.1), not the whole IPv6 payload: a BU with a piggybacked payload or a
   Header Len below the type's minimum still has a valid checksum and reaches checks 3–4;
   the pseudo-header takes the HAO home address and the RH2 final destination;
3. Payload Proto ≠ 59 → :class:`ParameterProblem` code 0 pointing at the Payload Proto octet;
4. Header Len below the type's minimum → :class:`ParameterProblem` code 0 pointing at the
   Header Len octet;
5. MH Type unknown (≥ 8) → :class:`BindingErrorRequired` (status 2), or :class:`SilentDiscard`
   if the source is not unicast (no BE to multicast, §9.3.3);
6. length inconsistent or the type-specific body malformed → :class:`SilentDiscard`;
7. otherwise :class:`Accepted` with the decoded message.

Pointers count from the first octet of the IPv6 header (RFC 4443 §3.4).
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv6Address

from nfq_mip6.constants import IPPROTO_MH, IPPROTO_NONE
from nfq_mip6.wire.checksum import internet_checksum, mh_length_of
from nfq_mip6.wire.errors import MalformedPacket
from nfq_mip6.wire.ipv6 import ParsedPacket, parse_ipv6
from nfq_mip6.wire.mh import (
    MIN_HEADER_LEN,
    BEStatus,
    MobilityMessage,
    parse_mh,
)

UNSPECIFIED = IPv6Address("::")


@dataclass(frozen=True, slots=True)
class Accepted:
    """The MH passed §9.2; type-specific processing may start."""

    message: MobilityMessage
    packet: ParsedPacket

    @property
    def home_address(self) -> IPv6Address | None:
        """The HAO's address (None without an HAO)."""
        return self.packet.home_address

    @property
    def source(self) -> IPv6Address:
        """The IPv6 source as received (the care-of address when there is an HAO)."""
        return self.packet.src


@dataclass(frozen=True, slots=True)
class SilentDiscard:
    """Drop without any answer; ``reason`` is for logs and counters."""

    reason: str


@dataclass(frozen=True, slots=True)
class ParameterProblem:
    """Drop and SHOULD send ICMPv6 Parameter Problem ``code`` with ``pointer`` to ``to``
    (the packet's IPv6 source, no Binding Cache use, §9.2)."""

    code: int
    pointer: int
    to: IPv6Address
    reason: str


@dataclass(frozen=True, slots=True)
class BindingErrorRequired:
    """Drop and send a Binding Error (§9.3.3) with ``status`` and ``home_address`` (the HAO's
    address or ``::``) to ``to``, the IPv6 source as received."""

    status: int
    home_address: IPv6Address
    to: IPv6Address
    mh_type: int


MHVerdict = Accepted | SilentDiscard | ParameterProblem | BindingErrorRequired


def is_unicast(address: IPv6Address) -> bool:
    """Not multicast and not the unspecified address (§9.3.3: no BE otherwise)."""
    return not (address.is_multicast or address.is_unspecified)


def validate_mh(packet: ParsedPacket) -> MHVerdict:
    """Apply the §9.2 checks to ``packet`` (its upper layer must be the MH, 135)."""
    if packet.upper_layer != IPPROTO_MH:
        return SilentDiscard(f"upper layer is {packet.upper_layer}, not the mobility header")
    raw = packet.raw
    start = packet.upper_offset
    mh = raw[start : packet.end]
    size = len(mh)
    if size < 6:
        return SilentDiscard("truncated mobility header")
    # §6.1.1: the MH is (Header Len + 1) × 8 octets; what follows it (a piggybacked payload)
    # is not part of it and not covered by its checksum.
    mh_length = mh_length_of(mh)
    if mh_length > size:
        return SilentDiscard(f"header len {mh[1]} announces {mh_length} octets, {size} present")
    # §6.1.1 / §9.2: checksum over the pseudo-header (HoA from the HAO, final destination from
    # an RH2 with a segment left, RFC 8200 §8.1; length = the MH length) and the MH as
    # received; a correct one sums to zero.
    hao = packet.hao_offset
    rh2 = packet.rh2_offset
    pseudo = (
        (raw[8:24] if hao is None else raw[hao + 2 : hao + 18])
        + (raw[24:40] if rh2 is None or raw[rh2 + 3] == 0 else raw[rh2 + 8 : rh2 + 24])
        + mh_length.to_bytes(4, "big")
        + b"\x00\x00\x00\x87"
    )
    if internet_checksum(pseudo + mh[:mh_length]) != 0:
        return SilentDiscard("bad mobility header checksum")
    if mh[0] != IPPROTO_NONE:
        return ParameterProblem(0, start, packet.src, f"payload proto {mh[0]} is not 59")
    header_len = mh[1]
    mh_type = mh[2]
    minimum = MIN_HEADER_LEN.get(mh_type)
    if minimum is None:
        if not is_unicast(packet.src):
            return SilentDiscard(f"unknown MH type {mh_type} from a non-unicast source")
        home = packet.home_address
        return BindingErrorRequired(
            BEStatus.UNRECOGNIZED_MH_TYPE,
            home if home is not None else UNSPECIFIED,
            packet.src,
            mh_type,
        )
    if header_len < minimum:
        return ParameterProblem(
            0, start + 1, packet.src, f"header len {header_len} below {minimum} for type {mh_type}"
        )
    if (header_len + 1) * 8 != size:
        return SilentDiscard(f"header len {header_len} does not match {size} octets")
    try:
        message = parse_mh(mh)
    except MalformedPacket as exc:
        return SilentDiscard(f"malformed mobility header: {exc}")
    return Accepted(message, packet)


def parse_and_validate_mh(raw: bytes) -> MHVerdict:
    """:func:`parse_ipv6` then :func:`validate_mh` on a raw packet; a malformed IPv6 packet is
    a :class:`SilentDiscard`."""
    try:
        packet = parse_ipv6(raw)
    except MalformedPacket as exc:
        return SilentDiscard(f"malformed IPv6 packet: {exc}")
    return validate_mh(packet)
