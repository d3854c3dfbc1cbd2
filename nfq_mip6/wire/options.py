"""Mobility options (RFC 6275 §6.2; RFC 4283 MN-ID; RFC 4285 Authentication and Mesg-ID).

Data model only here: every option is a frozen, slotted dataclass. Padding (Pad1, PadN) is
never kept in a parsed message's ``options`` tuple and is inserted by the builder to meet each
option's ``8n+k`` alignment, counted from the first octet of the Mobility Header (§6.2).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from ipaddress import IPv6Address


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
    """RFC 4285 §6: 64-bit timestamp (NTP-like: 48-bit seconds + 16-bit fraction) or counter."""

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
    | MobileNodeIdentifier
    | AuthenticationOption
    | MessageIdentifier
    | UnknownOption
)
