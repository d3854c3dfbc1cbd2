"""Mobility options (RFC 6275 §6.2; RFC 3963 §4.3 Mobile Network Prefix; RFC 4283 MN-ID;
RFC 4285 Authentication and Mesg-ID).

Data model only here: every option is a frozen, slotted dataclass. Padding (Pad1, PadN) is
never kept in a parsed message's ``options`` tuple and is inserted by the builder to meet each
option's ``8n+k`` alignment, counted from the first octet of the Mobility Header (§6.2).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from ipaddress import IPv6Address, IPv6Network
from struct import Struct

from nfq_mip6.wire.errors import MalformedPacket


class MobilityOptionType(IntEnum):
    PAD1 = 0
    PADN = 1
    BINDING_REFRESH_ADVICE = 2
    ALTERNATE_COA = 3
    NONCE_INDICES = 4
    BINDING_AUTHORIZATION_DATA = 5
    MOBILE_NETWORK_PREFIX = 6
    MN_ID = 8  # RFC 4283
    AUTHENTICATION = 9  # RFC 4285
    MESG_ID = 10  # RFC 4285


class MNIdentifierSubtype(IntEnum):
    """RFC 4283 §3: subtype 1 is the Network Access Identifier."""

    NAI = 1


class AuthenticationSubtype(IntEnum):
    """RFC 4285 §5: MN-HA (1) and MN-AAA (2) authentication."""

    MN_HA = 1
    MN_AAA = 2


@dataclass(frozen=True, slots=True)
class BindingRefreshAdvice:
    """§6.2.4: refresh interval in 4-second units. Alignment 2n."""

    interval: int

    @property
    def interval_seconds(self) -> int:
        return self.interval * 4


@dataclass(frozen=True, slots=True)
class AlternateCareofAddress:
    """§6.2.5: alignment 8n+6."""

    address: IPv6Address


@dataclass(frozen=True, slots=True)
class NonceIndices:
    """§6.2.6: alignment 2n."""

    home_nonce_index: int
    careof_nonce_index: int


@dataclass(frozen=True, slots=True)
class BindingAuthorizationData:
    """§6.2.7: 96-bit authenticator; alignment 8n+2; MUST be the last option."""

    authenticator: bytes


@dataclass(frozen=True, slots=True)
class MobileNetworkPrefix:
    """RFC 3963 §4.3 (type 6): a prefix of the Mobile Router's network. Alignment 8n+4.

    Kept as received (prefix length 0–255, any bits beyond it) so that a Home Agent can answer
    an impossible prefix with status 141 instead of the parser discarding the BU; ``network``
    is the prefix the fields describe, or None when the length exceeds 128.
    """

    prefix: IPv6Address
    prefix_length: int

    @classmethod
    def of(cls, network: IPv6Network) -> MobileNetworkPrefix:
        return cls(network.network_address, network.prefixlen)

    @property
    def network(self) -> IPv6Network | None:
        if not 0 <= self.prefix_length <= 128:
            return None
        return IPv6Network((self.prefix, self.prefix_length), strict=False)


@dataclass(frozen=True, slots=True)
class MobileNodeIdentifier:
    """RFC 4283: MN-ID option (type 8), subtype 1 = NAI."""

    subtype: int
    identifier: bytes


@dataclass(frozen=True, slots=True)
class AuthenticationOption:
    """RFC 4285 §5: subtype, SPI (32 bits), authentication data (HMAC-SHA1-96 → 12 octets)."""

    subtype: int
    spi: int
    data: bytes


@dataclass(frozen=True, slots=True)
class MessageIdentifier:
    """RFC 4285 §6: the 64-bit timestamp, in NTP format (RFC 5905 §6): 32-bit seconds since
    1900-01-01 and a 32-bit fraction of a second ("32.32")."""

    identifier: int


@dataclass(frozen=True, slots=True)
class UnknownOption:
    """An option type the receiver does not understand: kept so callers can see it (§6.2.1)."""

    option_type: int
    data: bytes


MobilityOption = (
    BindingRefreshAdvice
    | AlternateCareofAddress
    | NonceIndices
    | BindingAuthorizationData
    | MobileNetworkPrefix
    | MobileNodeIdentifier
    | AuthenticationOption
    | MessageIdentifier
    | UnknownOption
)


# ---------------------------------------------------------------------------------------------
# Codec. Offsets are counted from the first octet of the Mobility Header (RFC 6275 §6.2).
# ---------------------------------------------------------------------------------------------


AUTHENTICATOR_LENGTH = 12
"""§6.2.7: the BAD authenticator is First(96, HMAC_SHA1(...))."""

_U16 = Struct("!H")
_U16x2 = Struct("!HH")
_AUTH_HEAD = Struct("!BI")
_U64 = Struct("!Q")


def option_alignment(option: MobilityOption) -> tuple[int, int]:
    """Alignment ``(x, y)`` meaning "the option type octet sits at offset x·n + y".

    * BRA 2n (§6.2.4), AltCoA 8n+6 (§6.2.5), Nonce Indices 2n (§6.2.6), BAD 8n+2 (§6.2.7);
    * Mobile Network Prefix: RFC 3963 §4.3, 8n+4 (the 16-octet prefix starts on an 8-octet
      boundary);
    * MN-ID: RFC 4283 §3 states no alignment requirement;
    * Authentication: RFC 4285 §5 "The alignment requirement for this option is 4n + 1",
      which puts the 32-bit SPI on a 4-octet boundary, and the option "MUST be the last option"
      of the message: we place it at the 4n + 1 offset where it ends the MH on an 8-octet
      boundary, so no padding follows it (8n + 5 with the 12-octet HMAC-SHA1-96
      authenticator: 7 + 12 = 19 octets);
    * Mesg-ID: RFC 4285 §6, 8n + 2;
    * unknown options: none (we only ever re-emit them as received).
    """
    if isinstance(option, AlternateCareofAddress):
        return (8, 6)
    if isinstance(option, MobileNetworkPrefix):
        return (8, 4)
    if isinstance(option, BindingAuthorizationData | MessageIdentifier):
        return (8, 2)
    if isinstance(option, BindingRefreshAdvice | NonceIndices):
        return (2, 0)
    if isinstance(option, AuthenticationOption):
        end_aligned = -(_AUTH_HEAD.size + 2 + len(option.data)) % 8
        return (8, end_aligned) if end_aligned % 4 == 1 else (4, 1)
    return (1, 0)


def _tlv(option_type: int, data: bytes) -> bytes:
    if len(data) > 255:
        raise MalformedPacket(f"mobility option {option_type}: {len(data)} data octets > 255")
    return bytes((option_type, len(data))) + data


def encode_option(option: MobilityOption) -> bytes:
    """The TLV bytes of one option (no padding)."""
    try:
        if isinstance(option, AlternateCareofAddress):
            return b"\x03\x10" + option.address.packed
        if isinstance(option, NonceIndices):
            return b"\x04\x04" + _U16x2.pack(option.home_nonce_index, option.careof_nonce_index)
        if isinstance(option, BindingAuthorizationData):
            if len(option.authenticator) != AUTHENTICATOR_LENGTH:
                raise MalformedPacket("binding authorization data: authenticator must be 12 octets")
            return b"\x05\x0c" + option.authenticator
        if isinstance(option, BindingRefreshAdvice):
            return b"\x02\x02" + _U16.pack(option.interval)
        if isinstance(option, MobileNetworkPrefix):
            # RFC 3963 §4.3: Reserved (zero on sending), Prefix Length, 16-octet prefix
            return bytes((6, 18, 0, option.prefix_length)) + option.prefix.packed
        if isinstance(option, MobileNodeIdentifier):
            return _tlv(MobilityOptionType.MN_ID, bytes((option.subtype,)) + option.identifier)
        if isinstance(option, AuthenticationOption):
            head = _AUTH_HEAD.pack(option.subtype, option.spi)
            return _tlv(MobilityOptionType.AUTHENTICATION, head + option.data)
        if isinstance(option, MessageIdentifier):
            return b"\x0a\x08" + _U64.pack(option.identifier)
        if option.option_type in (MobilityOptionType.PAD1, MobilityOptionType.PADN):
            raise MalformedPacket("padding is inserted by the builder, not passed as an option")
        return _tlv(option.option_type, option.data)
    except MalformedPacket:
        raise
    except (struct.error, ValueError, OverflowError, TypeError) as exc:
        raise MalformedPacket(f"cannot encode {option!r}: {exc}") from exc


def padding(length: int) -> bytes:
    """Pad1 for one octet, PadN (type 1, zero data) otherwise (§6.2.2, §6.2.3)."""
    if length <= 0:
        return b""
    if length == 1:
        return b"\x00"
    return bytes((1, length - 2)) + bytes(length - 2)


def encode_options(options: Sequence[MobilityOption], start: int) -> bytes:
    """Options laid out from MH offset ``start``, padded to the end of the MH (8-octet multiple).

    Each option is preceded by the padding its alignment needs. The final padding goes after the
    last option, except that a Binding Authorization Data option placed last needs none: at
    8n+2 its 14 octets end on an 8-octet boundary (§6.2.7, "MUST be the last option" and no
    trailing padding, §9.5.1); likewise an RFC 4285 Authentication option placed last at
    8n+5 (see :func:`option_alignment`).
    """
    out = bytearray()
    offset = start
    for option in options:
        modulus, remainder = option_alignment(option)
        pad = (remainder - offset) % modulus
        if pad:
            out += padding(pad)
            offset += pad
        encoded = encode_option(option)
        out += encoded
        offset += len(encoded)
    tail = (-offset) % 8
    if tail:
        out += padding(tail)
    return bytes(out)


def decode_options(buf: bytes, start: int, end: int) -> tuple[tuple[MobilityOption, ...], bool]:
    """Parse options in ``buf[start:end]`` (offsets from the MH start).

    Returns ``(options, bad_misplaced)``: padding is dropped; options of unknown type are kept
    as :class:`UnknownOption` (§6.2.1, receivers skip them); ``bad_misplaced`` is True when a
    Binding Authorization Data option is followed by anything at all (another option or
    padding), which makes a CN silently discard the BU (§6.2.7, §9.5.1).
    """
    options: list[MobilityOption] = []
    bad_seen = False
    misplaced = False
    offset = start
    while offset < end:
        option_type = buf[offset]
        if bad_seen:
            misplaced = True
        if option_type == 0:  # Pad1
            offset += 1
            continue
        if offset + 2 > end:
            raise MalformedPacket(f"mobility option at offset {offset} truncated")
        length = buf[offset + 1]
        data_start = offset + 2
        offset = data_start + length
        if offset > end:
            raise MalformedPacket(f"mobility option type {option_type} overruns the header")
        if option_type == 1:  # PadN
            continue
        data = buf[data_start:offset]
        options.append(_decode_option(option_type, data))
        if option_type == 5:
            bad_seen = True
    return tuple(options), misplaced


def _expect(option_type: int, data: bytes, length: int) -> None:
    if len(data) != length:
        raise MalformedPacket(
            f"mobility option type {option_type}: length {len(data)}, expected {length}"
        )


def _decode_option(option_type: int, data: bytes) -> MobilityOption:
    if option_type == 3:
        _expect(3, data, 16)
        return AlternateCareofAddress(IPv6Address(data))
    if option_type == 4:
        _expect(4, data, 4)
        home, careof = _U16x2.unpack(data)
        return NonceIndices(home, careof)
    if option_type == 5:
        _expect(5, data, AUTHENTICATOR_LENGTH)
        return BindingAuthorizationData(data)
    if option_type == 2:
        _expect(2, data, 2)
        return BindingRefreshAdvice(_U16.unpack(data)[0])
    if option_type == 6:
        _expect(6, data, 18)  # the reserved octet is ignored on receipt (RFC 3963 §4.3)
        return MobileNetworkPrefix(IPv6Address(data[2:]), data[1])
    if option_type == 8:
        if not data:
            raise MalformedPacket("MN-ID option without a subtype")
        return MobileNodeIdentifier(data[0], data[1:])
    if option_type == 9:
        if len(data) < 5:
            raise MalformedPacket("authentication option shorter than subtype + SPI")
        subtype, spi = _AUTH_HEAD.unpack_from(data)
        return AuthenticationOption(subtype, spi, data[5:])
    if option_type == 10:
        _expect(10, data, 8)
        return MessageIdentifier(_U64.unpack(data)[0])
    return UnknownOption(option_type, data)
