"""RFC 4285 MN-HA authentication of home registrations, with RFC 4283 MN-ID and RFC 4285 §6
timestamp replay protection: the codec and the crypto. Pure: hashlib/hmac only; wall-clock
time is injected.

Theory of operation
-------------------

RFC 6275 protects home registrations with IPsec ESP (RFC 3776/4877). This kernel has no IPv6
ESP and no xfrm, so the alternative of RFC 4285 is used: a shared-key mobility security
association (SA) per Mobile Node, named by a **mobility SPI** (≥ 256; 0–255 are reserved).

* Authentication option (type 9, subtype 1 = MN-HA, alignment 4n+1, RFC 4285 §5.1), the
  **last** option of the BU and of the BA::

      Authentication Data = First(96, HMAC_SHA1(MN-HA key, Mobility Data))
      Mobility Data       = care-of address | home address | MH Data

  where MH Data is the Mobility Header from its first octet up to and including the SPI
  field of this option, with the MH Checksum field set to zero. The same formula
  authenticates the BA (the HA signs it with the SA the BU was verified with).
* Mesg-ID option (type 10, alignment 8n+2, RFC 4285 §6): a 64-bit NTP timestamp (32 bits of
  seconds since 1900, 32 bits of fraction). It precedes the Authentication option. The HA
  checks it **after** the authenticator (§6): it must be within ``window`` seconds (default
  7 s, the RFC's "close enough" default) of the HA's clock and strictly greater than the last
  timestamp accepted for that SA. The BA echoes the BU's Mesg-ID so the MN can match it.
* MN-ID option (type 8, subtype 1 = NAI, RFC 4283): optional; when an SA is configured with
  an NAI, a BU that carries an MN-ID must carry that NAI.

This module is the pure part: the option codec, the HMAC, the NTP timestamps and the
security association. The Home Agent side (:mod:`nfq_mip6.security.home_agent_auth`), the
Mobile Node side (:mod:`nfq_mip6.security.mobile_node_auth`) and the key files
(:mod:`nfq_mip6.security.keys`) build on it.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from ipaddress import IPv6Address, IPv6Network
from typing import Final, TypeVar

from nfq_mip6.wire.errors import MalformedPacket
from nfq_mip6.wire.mh import (
    BindingAck,
    BindingUpdate,
    HomeAgentSwitch,
    build_mh_unchecksummed,
    fixed_length_of,
)
from nfq_mip6.wire.options import (
    AlternateCareofAddress,
    AuthenticationOption,
    AuthenticationSubtype,
    MobilityOption,
    MobilityOptionType,
)

AUTHENTICATOR_LENGTH: Final = 12
"""RFC 4285 §5.1: First(96, HMAC_SHA1(...))."""
RESERVED_SPI_MAX: Final = 255
"""RFC 4285 §4: mobility SPIs 0–255 are reserved."""
MIN_KEY_LENGTH: Final = 16
"""RFC 4285 §4 describes a 16-octet key; shorter keys are refused."""
DEFAULT_TIMESTAMP_WINDOW: Final = 7.0
"""RFC 4285 §4/§6: "close enough" default of 7 seconds (should be more than 3)."""
NTP_UNIX_OFFSET: Final = 2_208_988_800
"""Seconds from 1900-01-01 (NTP era 0) to 1970-01-01."""

_AUTHENTICATED_TYPES: Final = frozenset((5, 6, 12))
"""BU and BA (RFC 4285 §5.1), and the Home Agent Switch (RFC 5142 §4) the HA sends over
the same security association."""

Clock = Callable[[], float]
"""A Unix time source (wall clock), injected so that tests control it."""


def system_clock() -> float:
    """The default :data:`Clock`: the system's Unix time."""
    return time.time()


# ---------------------------------------------------------------------------------------------
# Timestamps (RFC 4285 §6: NTP format)
# ---------------------------------------------------------------------------------------------


def ntp_timestamp(unix_time: float) -> int:
    """The 64-bit NTP timestamp (32.32 fixed point, seconds since 1900) of a Unix time."""
    value = round((unix_time + NTP_UNIX_OFFSET) * (1 << 32))
    return value & 0xFFFF_FFFF_FFFF_FFFF


def ntp_ordinal(timestamp: int) -> int:
    """A timestamp as an integer that orders across the 2036 wrap (RFC 4330 §3 convention:
    a seconds field with its top bit clear is in era 1, 2036-2104; else era 0, 1968-2036)."""
    value = timestamp & 0xFFFF_FFFF_FFFF_FFFF
    return value + (1 << 64) if not value >> 63 else value


def unix_time_from_ntp(timestamp: int) -> float:
    """Inverse of :func:`ntp_timestamp` (era by :func:`ntp_ordinal`)."""
    return ntp_ordinal(timestamp) / (1 << 32) - NTP_UNIX_OFFSET


# ---------------------------------------------------------------------------------------------
# The authenticator (RFC 4285 §5.1)
# ---------------------------------------------------------------------------------------------


def compute_authenticator(
    key: bytes, care_of_address: IPv6Address, home_address: IPv6Address, mh_data: bytes
) -> bytes:
    """``First(96, HMAC_SHA1(key, care-of address | home address | MH Data))``."""
    mobility_data = care_of_address.packed + home_address.packed + mh_data
    return hmac.new(key, mobility_data, hashlib.sha1).digest()[:AUTHENTICATOR_LENGTH]


@dataclass(frozen=True, slots=True)
class LocatedAuthentication:
    """The Authentication option found in raw MH bytes.

    Attributes:
        subtype: 1 MN-HA, 2 MN-AAA.
        spi: the mobility SPI.
        data: the Authentication Data as received.
        mh_data: the MH from its first octet up to and including the SPI, checksum zeroed —
            the "MH Data" of RFC 4285 §5.1.
        last: only padding (Pad1/PadN) follows the option.
    """

    subtype: int
    spi: int
    data: bytes
    mh_data: bytes
    last: bool


def locate_authentication_option(mh: bytes) -> LocatedAuthentication | None:
    """Find the (last) Authentication option of a BU, BA or Home Agent Switch MH as received.

    Returns ``None`` when the message carries none; raises :class:`MalformedPacket` when the
    MH is not one of these or its options do not parse.
    """
    if len(mh) < 8 or (mh[1] + 1) * 8 != len(mh):
        raise MalformedPacket("not a complete mobility header")
    fixed = fixed_length_of(mh) if mh[2] in _AUTHENTICATED_TYPES else None
    if fixed is None:
        raise MalformedPacket(f"MH type {mh[2]} carries no Authentication option")
    offset = 6 + fixed
    end = len(mh)
    found: tuple[int, int] | None = None  # (option offset, option end)
    last = False
    while offset < end:
        option_type = mh[offset]
        if option_type == MobilityOptionType.PAD1:
            offset += 1
            continue
        if offset + 2 > end:
            raise MalformedPacket(f"mobility option at offset {offset} truncated")
        option_end = offset + 2 + mh[offset + 1]
        if option_end > end:
            raise MalformedPacket(f"mobility option type {option_type} overruns the header")
        if option_type == MobilityOptionType.AUTHENTICATION:
            found = (offset, option_end)
            last = True
        elif option_type != MobilityOptionType.PADN:
            last = False
        offset = option_end
    if found is None:
        return None
    start, option_end = found
    if option_end - start < 2 + 5:
        raise MalformedPacket("authentication option shorter than subtype + SPI")
    spi_end = start + 2 + 5
    mh_data = bytes(mh[:4]) + b"\x00\x00" + bytes(mh[6:spi_end])
    return LocatedAuthentication(
        subtype=mh[start + 2],
        spi=int.from_bytes(mh[start + 3 : spi_end], "big"),
        data=bytes(mh[spi_end:option_end]),
        mh_data=mh_data,
        last=last,
    )


_Signed = TypeVar("_Signed", BindingUpdate, BindingAck, HomeAgentSwitch)


def sign_message(
    message: _Signed,
    *,
    key: bytes,
    spi: int,
    care_of_address: IPv6Address,
    home_address: IPv6Address,
) -> _Signed:
    """``message`` with an MN-HA Authentication option appended as its last option.

    Any Authentication option already present is replaced. The authenticator is computed on
    the encoding this codec produces, so the message must be sent through
    :func:`nfq_mip6.wire.build_mh` unchanged (the checksum is not part of the MAC).
    """
    others: tuple[MobilityOption, ...] = tuple(
        o for o in message.options if not isinstance(o, AuthenticationOption)
    )
    placeholder = AuthenticationOption(
        AuthenticationSubtype.MN_HA, spi, bytes(AUTHENTICATOR_LENGTH)
    )
    draft = replace(message, options=(*others, placeholder))
    located = locate_authentication_option(bytes(build_mh_unchecksummed(draft)))
    assert located is not None
    data = compute_authenticator(key, care_of_address, home_address, located.mh_data)
    option = AuthenticationOption(AuthenticationSubtype.MN_HA, spi, data)
    return replace(message, options=(*others, option))


def verify_message(
    mh: bytes,
    *,
    key: bytes,
    care_of_address: IPv6Address,
    home_address: IPv6Address,
) -> bool:
    """True when ``mh`` (raw BU/BA/Home Agent Switch) ends with an MN-HA Authentication
    option that verifies."""
    try:
        located = locate_authentication_option(mh)
    except MalformedPacket:
        return False
    if (
        located is None
        or not located.last
        or located.subtype != AuthenticationSubtype.MN_HA
        or len(located.data) != AUTHENTICATOR_LENGTH
    ):
        return False
    expected = compute_authenticator(key, care_of_address, home_address, located.mh_data)
    return hmac.compare_digest(expected, located.data)


# ---------------------------------------------------------------------------------------------
# Security associations
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SecurityAssociation:
    """An MN-HA mobility security association (RFC 4285 §4).

    Attributes:
        spi: mobility SPI (> 255).
        key: the shared HMAC-SHA1 key. Never shown by ``repr``/``str``.
        home_addresses: policy — the home addresses this key may register (a /128 names one
            address, a shorter prefix a range).
        nai: the Mobile Node's NAI (RFC 4283); ``None`` = not checked.
    """

    spi: int
    key: bytes
    home_addresses: tuple[IPv6Network, ...]
    nai: bytes | None = None

    def __post_init__(self) -> None:
        if not RESERVED_SPI_MAX < self.spi <= 0xFFFF_FFFF:
            raise ValueError(f"mobility SPI {self.spi} must be in 256..4294967295")
        if len(self.key) < MIN_KEY_LENGTH:
            raise ValueError(f"SPI {self.spi}: key shorter than {MIN_KEY_LENGTH} octets")

    def __repr__(self) -> str:
        prefixes = ", ".join(str(p) for p in self.home_addresses)
        nai = f", nai={self.nai!r}" if self.nai is not None else ""
        return f"SecurityAssociation(spi={self.spi}, key=<redacted>, home=[{prefixes}]{nai})"

    __str__ = __repr__

    def covers(self, home_address: IPv6Address) -> bool:
        return any(home_address in network for network in self.home_addresses)


def care_of_address_of(bu: BindingUpdate, src: IPv6Address) -> IPv6Address:
    """The CoA a home BU registers (Alternate CoA option, else the source, RFC 6275 §6.2.5)
    — the "care-of address" of the RFC 4285 Mobility Data."""
    for option in bu.options:
        if isinstance(option, AlternateCareofAddress):
            return option.address
    return src


__all__ = [
    "AUTHENTICATOR_LENGTH",
    "DEFAULT_TIMESTAMP_WINDOW",
    "MIN_KEY_LENGTH",
    "NTP_UNIX_OFFSET",
    "RESERVED_SPI_MAX",
    "Clock",
    "LocatedAuthentication",
    "SecurityAssociation",
    "care_of_address_of",
    "compute_authenticator",
    "locate_authentication_option",
    "ntp_ordinal",
    "ntp_timestamp",
    "sign_message",
    "system_clock",
    "unix_time_from_ntp",
    "verify_message",
]
