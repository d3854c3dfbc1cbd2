"""Mobility Header messages (RFC 6275 §6.1).

Data model only here (the codec functions live beside it): one frozen, slotted dataclass per
message type, IntEnums for types and statuses, IntFlags for flags. Lifetimes are kept in the
on-the-wire 4-second units; ``lifetime_seconds`` converts.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, IntFlag
from ipaddress import IPv6Address

from nfq_mip6.wire.options import MobilityOption

IPPROTO_MH = 135
IPPROTO_NONE = 59


class MHType(IntEnum):
    BRR = 0
    HOTI = 1
    COTI = 2
    HOT = 3
    COT = 4
    BU = 5
    BA = 6
    BE = 7


class BAStatus(IntEnum):
    """§6.1.8 and IANA; statuses < 128 mean accepted."""

    ACCEPTED = 0
    ACCEPTED_PREFIX_DISCOVERY_NECESSARY = 1
    REASON_UNSPECIFIED = 128
    ADMINISTRATIVELY_PROHIBITED = 129
    INSUFFICIENT_RESOURCES = 130
    HOME_REGISTRATION_NOT_SUPPORTED = 131
    NOT_HOME_SUBNET = 132
    NOT_HOME_AGENT_FOR_THIS_MOBILE_NODE = 133
    DUPLICATE_ADDRESS_DETECTION_FAILED = 134
    SEQUENCE_NUMBER_OUT_OF_WINDOW = 135
    EXPIRED_HOME_NONCE_INDEX = 136
    EXPIRED_CAREOF_NONCE_INDEX = 137
    EXPIRED_NONCES = 138
    REGISTRATION_TYPE_CHANGE_DISALLOWED = 139
    MIPV6_ID_MISMATCH = 144  # RFC 4285
    MIPV6_MESG_ID_REQD = 145  # RFC 4285
    MIPV6_AUTH_FAIL = 146  # RFC 4285
    INVALID_CAREOF_ADDRESS = 174


class BEStatus(IntEnum):
    """§6.1.9."""

    UNKNOWN_BINDING_FOR_HOME_ADDRESS_OPTION = 1
    UNRECOGNIZED_MH_TYPE = 2


class BUFlags(IntFlag):
    """§6.1.7 and IANA: the 16-bit word after the sequence number."""

    NONE = 0
    A = 0x8000  # acknowledge
    H = 0x4000  # home registration
    L = 0x2000  # link-local address compatibility
    K = 0x1000  # key management mobility capability
    M = 0x0800  # MAP registration (RFC 5380)
    R = 0x0400  # mobile router (RFC 3963)
    P = 0x0200  # proxy registration (RFC 5213)
    F = 0x0100  # force UDP encapsulation (RFC 5555)
    T = 0x0080  # TLV header format (RFC 5845)
    B = 0x0040  # bulk binding (RFC 6602)


class BAFlags(IntFlag):
    """§6.1.8 and IANA: the octet after the status."""

    NONE = 0
    K = 0x80
    R = 0x40
    P = 0x20
    T = 0x10
    B = 0x08


def status_accepted(status: int) -> bool:
    """§11.7.3: a BA status below 128 means the BU was accepted."""
    return status < 128


@dataclass(frozen=True, slots=True)
class BindingRefreshRequest:
    """§6.1.2 (type 0)."""

    options: tuple[MobilityOption, ...] = ()


@dataclass(frozen=True, slots=True)
class HomeTestInit:
    """§6.1.3 (type 1): 64-bit home init cookie."""

    cookie: bytes
    options: tuple[MobilityOption, ...] = ()


@dataclass(frozen=True, slots=True)
class CareofTestInit:
    """§6.1.4 (type 2): 64-bit care-of init cookie."""

    cookie: bytes
    options: tuple[MobilityOption, ...] = ()


@dataclass(frozen=True, slots=True)
class HomeTest:
    """§6.1.5 (type 3)."""

    nonce_index: int
    cookie: bytes
    keygen_token: bytes
    options: tuple[MobilityOption, ...] = ()


@dataclass(frozen=True, slots=True)
class CareofTest:
    """§6.1.6 (type 4)."""

    nonce_index: int
    cookie: bytes
    keygen_token: bytes
    options: tuple[MobilityOption, ...] = ()


@dataclass(frozen=True, slots=True)
class BindingUpdate:
    """§6.1.7 (type 5). ``lifetime`` in 4-second units; 0 deletes the binding."""

    sequence: int
    flags: BUFlags
    lifetime: int
    options: tuple[MobilityOption, ...] = ()

    @property
    def lifetime_seconds(self) -> int:
        return self.lifetime * 4


@dataclass(frozen=True, slots=True)
class BindingAck:
    """§6.1.8 (type 6). ``status`` is a BAStatus value or any other 8-bit code received."""

    status: int
    flags: BAFlags
    sequence: int
    lifetime: int
    options: tuple[MobilityOption, ...] = ()

    @property
    def lifetime_seconds(self) -> int:
        return self.lifetime * 4


@dataclass(frozen=True, slots=True)
class BindingError:
    """§6.1.9 (type 7)."""

    status: int
    home_address: IPv6Address
    options: tuple[MobilityOption, ...] = ()


@dataclass(frozen=True, slots=True)
class UnknownMobilityMessage:
    """An MH type this node does not implement (≥ 8): kept so the receiver can send BE 2."""

    mh_type: int
    data: bytes


MobilityMessage = (
    BindingRefreshRequest
    | HomeTestInit
    | CareofTestInit
    | HomeTest
    | CareofTest
    | BindingUpdate
    | BindingAck
    | BindingError
    | UnknownMobilityMessage
)
