"""RFC 4285 MN-HA authentication of home registrations, with RFC 4283 MN-ID and RFC 4285 §6
timestamp replay protection. Pure: hashlib/hmac only; wall-clock time is injected.

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

Statuses the HA answers with (RFC 4285 §8 and the IANA registry), in check order:

====================================================  ================================
no Authentication option although one is required     **146** MIPV6-AUTH-FAIL
option not last / not subtype 1 / unknown or          **146**
reserved SPI / wrong length / authenticator wrong
home address not in the SA's policy, or an MN-ID      **146** (the key does not
other than the SA's NAI                               authenticate that claim)
no Mesg-ID option (after a good authenticator)        **145** MIPV6-MESG-ID-REQD
timestamp outside the window or not newer             **144** MIPV6-ID-MISMATCH, with a
                                                      Mesg-ID carrying the HA's time
====================================================  ================================

A BA with status 146 is never authenticated (the BU did not prove the key: signing it would
hand an attacker a valid BA that makes the real MN drop its registration). Every other BA to
a home address with an SA is authenticated, including 144 and 145, so that an MN only ever
re-synchronises its clock from an authenticated HA.

The HA runs these checks first in the BU processing (RFC 6275 §10.3.1 requires the MN–HA
protection before anything else; RFC 4285 §6: replay check after authentication), before the
sequence number check (§9.5.1), so that an unauthenticated sender learns nothing about the
Binding Cache (no 135, 132, 133 answers to forgeries).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import stat
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from enum import Enum
from ipaddress import IPv6Address, IPv6Network
from pathlib import Path
from typing import Final, TypeVar

from nfq_mip6.errors import ConfigurationError
from nfq_mip6.security.ratelimit import TokenBucket
from nfq_mip6.wire.errors import MalformedPacket
from nfq_mip6.wire.mh import (
    BAStatus,
    BindingAck,
    BindingUpdate,
    build_mh_unchecksummed,
)
from nfq_mip6.wire.options import (
    AlternateCareofAddress,
    AuthenticationOption,
    AuthenticationSubtype,
    MessageIdentifier,
    MNIdentifierSubtype,
    MobileNodeIdentifier,
    MobilityOption,
    MobilityOptionType,
)

log = logging.getLogger("nfq_mip6.security")

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

_OPTIONS_START: Final = 12
"""BU and BA: 6-octet MH header + 6 octets of fixed fields; options start here (§6.1.7/8)."""
_FIXED_BY_TYPE: Final = {5: 6, 6: 6}

Clock = Callable[[], float]


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
    """Find the (last) Authentication option of a BU or BA MH as received.

    Returns ``None`` when the message carries none; raises :class:`MalformedPacket` when the
    MH is not a BU/BA or its options do not parse.
    """
    if len(mh) < 8 or (mh[1] + 1) * 8 != len(mh):
        raise MalformedPacket("not a complete mobility header")
    fixed = _FIXED_BY_TYPE.get(mh[2])
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


_Signed = TypeVar("_Signed", BindingUpdate, BindingAck)


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
    """True when ``mh`` (raw BU/BA) ends with an MN-HA Authentication option that verifies."""
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
# Keys and security associations
# ---------------------------------------------------------------------------------------------


class KeyMaterialError(ConfigurationError):
    """A key file or variable is missing, unreadable or unsuitable (never shows the key)."""


@dataclass(frozen=True, slots=True)
class KeySource:
    """Where an SA's key comes from: a file (raw octets, or hex text) or an environment
    variable (hex). The configuration keeps only this reference, never the key."""

    file: Path | None = None
    env: str | None = None

    def describe(self) -> str:
        return f"key_file {self.file}" if self.file is not None else f"key_env {self.env}"


def _decode_key_text(text: str) -> bytes | None:
    cleaned = "".join(text.split())
    if cleaned.startswith(("0x", "0X")):
        cleaned = cleaned[2:]
    try:
        return bytes.fromhex(cleaned)
    except ValueError:
        return None


def load_key(source: KeySource, environ: Mapping[str, str] = os.environ) -> bytes:
    """Read a key. A file holds hex text (whitespace ignored, optional ``0x``) or raw octets;
    a variable holds hex. Files readable by group or others are refused.

    Raises:
        KeyMaterialError: with a message that names the source but never the key.
    """
    if source.file is not None:
        path = source.file
        try:
            info = path.stat()
            raw = path.read_bytes()
        except OSError as exc:
            raise KeyMaterialError(f"{path}: cannot read: {exc.strerror or exc}") from None
        if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise KeyMaterialError(f"{path}: key file must not be accessible by group/others")
        try:
            decoded = _decode_key_text(raw.decode("ascii"))
        except UnicodeDecodeError:
            decoded = None
        key = decoded if decoded is not None else raw
        where = str(path)
    elif source.env is not None:
        value = environ.get(source.env)
        if value is None:
            raise KeyMaterialError(f"environment variable {source.env} is not set")
        decoded = _decode_key_text(value)
        if decoded is None:
            raise KeyMaterialError(f"environment variable {source.env} is not hexadecimal")
        key = decoded
        where = f"environment variable {source.env}"
    else:
        raise KeyMaterialError("no key_file or key_env given")
    if len(key) < MIN_KEY_LENGTH:
        raise KeyMaterialError(f"{where}: key of {len(key)} octets, need ≥ {MIN_KEY_LENGTH}")
    return key


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


# ---------------------------------------------------------------------------------------------
# Home agent side
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuthRejection:
    """Why a home BU failed the RFC 4285 checks.

    ``status`` is the BA status to answer with (144/145/146), or ``None`` for a silent
    discard; ``options`` go into that BA (the HA's Mesg-ID for 144); ``reason`` is a slug for
    logs and counters.
    """

    status: int | None
    reason: str
    options: tuple[MobilityOption, ...] = ()


@dataclass(slots=True)
class _SignContext:
    association: SecurityAssociation
    timestamp: int | None


class HomeAgentVerifier:
    """Checks home BUs against per-MN SAs and authenticates the BAs that answer them.

    Args:
        associations: the configured SAs (SPIs must be unique).
        required: every home BU must authenticate. When ``False``, BUs for home addresses no
            SA covers are let through unauthenticated (legacy mode); BUs for covered home
            addresses must still authenticate.
        window: RFC 4285 §6 timestamp window in seconds (±).
        require_mesg_id: demand the Mesg-ID option (→ 145 without it).
        wall_clock: Unix time source (injected in tests).
    """

    def __init__(
        self,
        associations: Iterable[SecurityAssociation],
        *,
        required: bool = True,
        window: float = DEFAULT_TIMESTAMP_WINDOW,
        require_mesg_id: bool = True,
        wall_clock: Clock | None = None,
        auth_failure_limit: TokenBucket | None = None,
    ) -> None:
        self.associations: dict[int, SecurityAssociation] = {}
        for association in associations:
            if association.spi in self.associations:
                raise ValueError(f"mobility SPI {association.spi} configured twice")
            self.associations[association.spi] = association
        self.required = required
        self.window = window
        self.require_mesg_id = require_mesg_id
        self._clock: Clock = wall_clock if wall_clock is not None else _wall_clock
        self._last_timestamp: dict[int, int] = {}
        self._context: dict[IPv6Address, _SignContext] = {}
        self.counters: dict[str, int] = {}
        self._auth_failure_limit = auth_failure_limit
        self._last_log: float | None = None

    def __repr__(self) -> str:
        return (
            f"HomeAgentVerifier({len(self.associations)} SA(s), required={self.required}, "
            f"window={self.window})"
        )

    def _count(self, reason: str) -> None:
        self.counters[reason] = self.counters.get(reason, 0) + 1

    def covering(self, home_address: IPv6Address) -> list[SecurityAssociation]:
        return [sa for sa in self.associations.values() if sa.covers(home_address)]

    def check_home_binding_update(
        self,
        bu: BindingUpdate,
        mh_bytes: bytes,
        home_address: IPv6Address,
        care_of_address: IPv6Address,
        now: float,
    ) -> AuthRejection | None:
        """RFC 4285 checks of one home BU; ``None`` = authenticated (or not required).

        ``mh_bytes`` is the MH as received (empty: the parsed ``bu`` is re-encoded, for
        in-memory tests). ``now`` is the runtime's monotonic time, for the rate limit of 146
        answers (the timestamp window uses the injected wall clock). ``care_of_address`` is
        the Alternate CoA, else the source address (as the MN signs it).

        146 answers go to whatever source a forger chose: beyond ``auth_failure_limit`` they
        become silent discards (counted as ``auth-failure-ba-rate-limited``), so that forged
        BUs from many sources cannot make the HA reflect BAs at their rate.
        """
        rejection = self._check(bu, mh_bytes, home_address, care_of_address)
        if rejection is not None:
            self._count(rejection.reason)
            if rejection.status == BAStatus.MIPV6_AUTH_FAIL or rejection.status is None:
                self._context.pop(home_address, None)
            if (
                rejection.status == BAStatus.MIPV6_AUTH_FAIL
                and self._auth_failure_limit is not None
                and not self._auth_failure_limit.allow(now)
            ):
                self._count("auth-failure-ba-rate-limited")
                rejection = AuthRejection(None, rejection.reason)
            if self._last_log is None or not 0 <= now - self._last_log < 1.0:
                self._last_log = now  # at most one line per second; counters have the rest
                log.info(
                    "home BU for %s rejected: %s (%d rejection(s) so far)",
                    home_address,
                    rejection.reason,
                    sum(v for k, v in self.counters.items() if k != "accepted"),
                )
        else:
            self._count("accepted")
        return rejection

    def _check(
        self,
        bu: BindingUpdate,
        mh_bytes: bytes,
        home_address: IPv6Address,
        care_of_address: IPv6Address,
    ) -> AuthRejection | None:
        mh = mh_bytes or bytes(build_mh_unchecksummed(bu))
        fail = BAStatus.MIPV6_AUTH_FAIL
        try:
            located = locate_authentication_option(mh)
        except MalformedPacket:
            return AuthRejection(fail, "auth-option-malformed")
        if located is None:
            if not self.required and not self.covering(home_address):
                self._context.pop(home_address, None)
                return None
            return AuthRejection(fail, "auth-option-missing")
        # RFC 4285 §5.1: the MN-HA option is the last option of the message.
        if not located.last:
            return AuthRejection(fail, "auth-option-not-last")
        if located.subtype != AuthenticationSubtype.MN_HA:
            return AuthRejection(fail, "auth-subtype-unsupported")
        association = self.associations.get(located.spi)
        if association is None:
            return AuthRejection(fail, "auth-unknown-spi")
        if len(located.data) != AUTHENTICATOR_LENGTH:
            return AuthRejection(fail, "auth-data-length")
        expected = compute_authenticator(
            association.key, care_of_address, home_address, located.mh_data
        )
        if not hmac.compare_digest(expected, located.data):
            return AuthRejection(fail, "auth-authenticator-mismatch")
        # Policy: the key only speaks for its own home addresses and identity.
        if not association.covers(home_address):
            return AuthRejection(fail, "auth-home-address-not-authorized")
        timestamp: int | None = None
        for option in bu.options:
            if isinstance(option, MobileNodeIdentifier):
                if association.nai is not None and (option.subtype, option.identifier) != (
                    MNIdentifierSubtype.NAI,
                    association.nai,
                ):
                    return AuthRejection(fail, "auth-mn-id-mismatch")
            elif isinstance(option, MessageIdentifier):
                timestamp = option.identifier
        # The BU is authenticated from here on: answers are signed with this SA.
        self._context[home_address] = _SignContext(association, timestamp)
        # RFC 4285 §6: replay protection, after authentication.
        if timestamp is None:
            if self.require_mesg_id:
                return AuthRejection(BAStatus.MIPV6_MESG_ID_REQD, "mesg-id-missing")
            return None
        wall = self._clock()
        ha_time = MessageIdentifier(ntp_timestamp(wall))
        offset = unix_time_from_ntp(timestamp) - wall
        if abs(offset) > self.window:
            self._context[home_address].timestamp = None
            return AuthRejection(BAStatus.MIPV6_ID_MISMATCH, "mesg-id-out-of-window", (ha_time,))
        last = self._last_timestamp.get(association.spi)
        if last is not None and ntp_ordinal(timestamp) <= ntp_ordinal(last):
            self._context[home_address].timestamp = None
            return AuthRejection(BAStatus.MIPV6_ID_MISMATCH, "mesg-id-replayed", (ha_time,))
        self._last_timestamp[association.spi] = timestamp
        return None

    def protect_binding_ack(
        self, ba: BindingAck, care_of_address: IPv6Address, home_address: IPv6Address
    ) -> BindingAck:
        """Authenticate a BA to ``home_address`` (RFC 4285 §5.1, §6).

        Adds the echoed Mesg-ID (unless the BA already has one, e.g. the HA's time in a 144)
        and the Authentication option. BAs with status 146, and BAs to home addresses whose
        last BU did not authenticate, go out unchanged.
        """
        if ba.status == BAStatus.MIPV6_AUTH_FAIL:
            return ba
        context = self._context.get(home_address)
        if context is None:
            return ba
        options = ba.options
        if context.timestamp is not None and not any(
            isinstance(o, MessageIdentifier) for o in options
        ):
            options = (*options, MessageIdentifier(context.timestamp))
        return sign_message(
            replace(ba, options=options),
            key=context.association.key,
            spi=context.association.spi,
            care_of_address=care_of_address,
            home_address=home_address,
        )

    def last_timestamps(self) -> dict[int, int]:
        """Per-SPI last accepted Mesg-ID (for persistence across restarts)."""
        return dict(self._last_timestamp)

    def restore_timestamps(self, values: Mapping[int, int]) -> None:
        for spi, timestamp in values.items():
            if spi in self.associations:
                current = self._last_timestamp.get(spi)
                if current is None or ntp_ordinal(int(timestamp)) > ntp_ordinal(current):
                    self._last_timestamp[spi] = int(timestamp)


def _wall_clock() -> float:
    import time

    return time.time()


# ---------------------------------------------------------------------------------------------
# Mobile node side
# ---------------------------------------------------------------------------------------------


class BindingAckCheck(Enum):
    """What the MN does with a BA from its HA (RFC 4285 §5.1, §6)."""

    ACCEPT = "accept"
    """Authenticated (or no SA): hand it to the core."""
    DROP = "drop"
    """Not authenticated, or a stale echo: discard silently."""
    RESYNC = "resync"
    """An authenticated 144/145: the clock offset or Mesg-ID use was adjusted; discard it
    and let the BU retransmission carry a fresh Mesg-ID."""


class MobileNodeAuthenticator:
    """Adds MN-ID, Mesg-ID and Authentication options to home BUs; checks the BAs.

    Args:
        association: this MN's SA with its home agent.
        nai: send an MN-ID option with this NAI (RFC 4283), or ``None``.
        use_mesg_id: send the Mesg-ID option (RFC 4285 §6).
        wall_clock: Unix time source (injected in tests).
    """

    def __init__(
        self,
        association: SecurityAssociation,
        *,
        nai: bytes | None = None,
        use_mesg_id: bool = True,
        wall_clock: Clock | None = None,
    ) -> None:
        self.association = association
        self.nai = nai if nai is not None else association.nai
        self.use_mesg_id = use_mesg_id
        self._clock: Clock = wall_clock if wall_clock is not None else _wall_clock
        self.clock_offset = 0.0
        """Seconds added to the local clock, learnt from an authenticated 144 (§6)."""
        self._last_sent: int = 0
        self.counters: dict[str, int] = {}

    def __repr__(self) -> str:
        return f"MobileNodeAuthenticator(spi={self.association.spi}, key=<redacted>)"

    def _count(self, reason: str) -> None:
        self.counters[reason] = self.counters.get(reason, 0) + 1

    def sign_binding_update(
        self, bu: BindingUpdate, care_of_address: IPv6Address, home_address: IPv6Address
    ) -> BindingUpdate:
        """``bu`` with [MN-ID] Mesg-ID Authentication appended (a fresh, strictly increasing
        timestamp per call; a retransmission is a new message for replay protection)."""
        options: list[MobilityOption] = [
            o
            for o in bu.options
            if not isinstance(o, AuthenticationOption | MessageIdentifier | MobileNodeIdentifier)
        ]
        if self.nai is not None:
            options.append(MobileNodeIdentifier(MNIdentifierSubtype.NAI, self.nai))
        if self.use_mesg_id:
            timestamp = ntp_timestamp(self._clock() + self.clock_offset)
            if self._last_sent and ntp_ordinal(timestamp) <= ntp_ordinal(self._last_sent):
                timestamp = (self._last_sent + 1) & 0xFFFF_FFFF_FFFF_FFFF
            self._last_sent = timestamp
            options.append(MessageIdentifier(timestamp))
        self._count("bu-signed")
        return sign_message(
            replace(bu, options=tuple(options)),
            key=self.association.key,
            spi=self.association.spi,
            care_of_address=care_of_address,
            home_address=home_address,
        )

    def check_binding_ack(
        self,
        ba: BindingAck,
        mh_bytes: bytes,
        care_of_address: IPv6Address,
        home_address: IPv6Address,
    ) -> BindingAckCheck:
        """Verify a BA from the HA; adjust the clock on an authenticated 144 (§6)."""
        mh = mh_bytes or bytes(build_mh_unchecksummed(ba))
        if not verify_message(
            mh,
            key=self.association.key,
            care_of_address=care_of_address,
            home_address=home_address,
        ):
            self._count("ba-not-authenticated")
            return BindingAckCheck.DROP
        timestamp = next(
            (o.identifier for o in ba.options if isinstance(o, MessageIdentifier)), None
        )
        if ba.status == BAStatus.MIPV6_ID_MISMATCH:
            if timestamp is not None:
                self.clock_offset = unix_time_from_ntp(timestamp) - self._clock()
            self._count("ba-resync-clock")
            return BindingAckCheck.RESYNC
        if ba.status == BAStatus.MIPV6_MESG_ID_REQD:
            self.use_mesg_id = True
            self._count("ba-mesg-id-required")
            return BindingAckCheck.RESYNC
        if self.use_mesg_id and timestamp is not None and timestamp != self._last_sent:
            # §6: the BA echoes the BU's Mesg-ID; anything else answers an older BU.
            self._count("ba-stale-mesg-id")
            return BindingAckCheck.DROP
        self._count("ba-accepted")
        return BindingAckCheck.ACCEPT


# ---------------------------------------------------------------------------------------------
# Configuration: what the TOML file says (references to keys, never keys)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MobileNodeCredentials:
    """One ``[[ha.mobile_nodes]]`` table: policy, SPI and where the key is (not the key)."""

    spi: int
    key_source: KeySource
    home_addresses: tuple[IPv6Network, ...]
    nai: str | None = None

    def __str__(self) -> str:
        homes = ",".join(str(n) for n in self.home_addresses)
        return f"spi {self.spi} for {homes} ({self.key_source.describe()})"

    def load(self, environ: Mapping[str, str] = os.environ) -> SecurityAssociation:
        """Read the key; raises :class:`KeyMaterialError` (naming the SPI, not the key)."""
        try:
            key = load_key(self.key_source, environ)
        except KeyMaterialError as exc:
            raise KeyMaterialError(f"mobile node SPI {self.spi}: {exc}") from None
        nai = self.nai.encode() if self.nai is not None else None
        return SecurityAssociation(self.spi, key, self.home_addresses, nai)


_ENTRY_KEYS: Final = ("home_address", "home_prefix", "spi", "key_file", "key_env", "nai")


def parse_spi(value: object) -> int:
    """A mobility SPI: an integer in 256..4294967295 (RFC 4285 §4)."""
    if isinstance(value, bool):
        raise ValueError(f"SPI must be an integer, got {value!r}")
    try:
        spi = int(str(value), 0) if isinstance(value, str) else int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        raise ValueError(f"SPI must be an integer, got {value!r}") from None
    if not RESERVED_SPI_MAX < spi <= 0xFFFF_FFFF:
        raise ValueError(f"SPI {spi} outside 256..4294967295 (0-255 are reserved, RFC 4285)")
    return spi


def parse_mobile_node_entries(value: object) -> tuple[MobileNodeCredentials, ...]:
    """Parse ``[[ha.mobile_nodes]]`` (a list of tables) into credentials.

    Each table: ``home_address`` (one address) and/or ``home_prefix`` (a range), ``spi``,
    exactly one of ``key_file``/``key_env``, optional ``nai``. Raises ValueError naming the
    entry and key.
    """
    if not isinstance(value, list):
        raise ValueError("must be an array of tables: [[ha.mobile_nodes]]")
    entries: list[MobileNodeCredentials] = []
    seen: set[int] = set()
    for number, table in enumerate(value, start=1):
        where = f"entry {number}"
        if not isinstance(table, dict):
            raise ValueError(f"{where}: must be a table")
        unknown = sorted(set(table) - set(_ENTRY_KEYS))
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {', '.join(unknown)}")
        homes: list[IPv6Network] = []
        try:
            if "home_address" in table:
                homes.append(IPv6Network(f"{IPv6Address(str(table['home_address']))}/128"))
            if "home_prefix" in table:
                homes.append(IPv6Network(str(table["home_prefix"])))
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
        if not homes:
            raise ValueError(f"{where}: needs home_address or home_prefix (what it may register)")
        if "spi" not in table:
            raise ValueError(f"{where}: needs spi")
        try:
            spi = parse_spi(table["spi"])
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
        if spi in seen:
            raise ValueError(f"{where}: SPI {spi} used twice")
        seen.add(spi)
        key_file, key_env = table.get("key_file"), table.get("key_env")
        if (key_file is None) == (key_env is None):
            raise ValueError(f"{where}: needs exactly one of key_file or key_env")
        source = (
            KeySource(file=Path(str(key_file)))
            if key_file is not None
            else KeySource(env=str(key_env))
        )
        nai = str(table["nai"]) if "nai" in table else None
        entries.append(MobileNodeCredentials(spi, source, tuple(homes), nai))
    return tuple(entries)


def home_agent_verifier(
    credentials: Iterable[MobileNodeCredentials],
    *,
    required: bool | None,
    window: float = DEFAULT_TIMESTAMP_WINDOW,
    environ: Mapping[str, str] = os.environ,
    wall_clock: Clock | None = None,
    warn: bool = True,
    auth_failure_limit: TokenBucket | None = None,
) -> HomeAgentVerifier:
    """Build the HA verifier from the configuration (reads the keys).

    ``required=None`` (the default in the configuration) means "required when at least one
    SA is configured". Raises :class:`KeyMaterialError`.
    """
    associations = [entry.load(environ) for entry in credentials]
    if required is None:
        required = bool(associations)
    if warn and not associations and not required:
        log.warning(
            "no [[ha.mobile_nodes]] security associations configured: home Binding Updates "
            "are NOT authenticated (RFC 4285); anyone can redirect a home address"
        )
    return HomeAgentVerifier(
        associations,
        required=required,
        window=window,
        wall_clock=wall_clock,
        auth_failure_limit=auth_failure_limit,
    )


def mobile_node_authenticator(
    *,
    spi: int | None,
    key_file: Path | None,
    key_env: str | None,
    home_address: IPv6Address,
    nai: str | None = None,
    environ: Mapping[str, str] = os.environ,
    wall_clock: Clock | None = None,
) -> MobileNodeAuthenticator | None:
    """The MN's authenticator from its ``[mn]`` settings; ``None`` when no SPI is set.

    Raises:
        KeyMaterialError: SPI without exactly one key source, or an unusable key.
    """
    if spi is None:
        if key_file is not None or key_env is not None:
            raise KeyMaterialError("auth_key_file/auth_key_env given without auth_spi")
        log.warning(
            "SECURITY: no [mn] auth_spi: home Binding Updates are sent NOT authenticated "
            "(RFC 4285, docs/security.md); a home agent that requires authentication answers 146"
        )
        return None
    if (key_file is None) == (key_env is None):
        raise KeyMaterialError(f"SPI {spi}: needs exactly one of auth_key_file or auth_key_env")
    key = load_key(KeySource(file=key_file, env=key_env), environ)
    nai_bytes = nai.encode() if nai is not None else None
    association = SecurityAssociation(spi, key, (IPv6Network(f"{home_address}/128"),), nai_bytes)
    return MobileNodeAuthenticator(association, wall_clock=wall_clock)


def care_of_address_of(bu: BindingUpdate, src: IPv6Address) -> IPv6Address:
    """The CoA a home BU registers (Alternate CoA option, else the source, RFC 6275 §6.2.5)
    — the "care-of address" of the RFC 4285 Mobility Data."""
    for option in bu.options:
        if isinstance(option, AlternateCareofAddress):
            return option.address
    return src
