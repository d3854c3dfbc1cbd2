"""RFC 4285 MN-HA authentication, the Home Agent side: :class:`HomeAgentVerifier` checks home
Binding Updates against the Mobile Nodes' security associations and authenticates the Binding
Acknowledgements that answer them. Pure: the wall clock is injected.

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

import hmac
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from ipaddress import IPv6Address

from nfq_mip6.security.auth_codec import (
    AUTHENTICATOR_LENGTH,
    DEFAULT_TIMESTAMP_WINDOW,
    Clock,
    SecurityAssociation,
    compute_authenticator,
    locate_authentication_option,
    ntp_ordinal,
    ntp_timestamp,
    sign_message,
    system_clock,
    unix_time_from_ntp,
)
from nfq_mip6.security.keys import MobileNodeCredentials
from nfq_mip6.security.ratelimit import TokenBucket
from nfq_mip6.wire.errors import MalformedPacket
from nfq_mip6.wire.mh import (
    BAStatus,
    BindingAck,
    BindingUpdate,
    HomeAgentSwitch,
    build_mh_unchecksummed,
)
from nfq_mip6.wire.options import (
    AuthenticationSubtype,
    MessageIdentifier,
    MNIdentifierSubtype,
    MobileNodeIdentifier,
    MobilityOption,
)

log = logging.getLogger("nfq_mip6.security")


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
    care_of_address: IPv6Address  # the CoA the BU was verified with (Alternate CoA or source)


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
        self._clock: Clock = wall_clock if wall_clock is not None else system_clock
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
        self._context[home_address] = _SignContext(association, timestamp, care_of_address)
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

        The Mobility Data's care-of address is the one the BU was checked with (its Alternate
        CoA, else its source): the CoA the MN registered and checks the BA with, whatever the
        BA's destination ``care_of_address`` is.
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
            care_of_address=context.care_of_address,
            home_address=home_address,
        )

    def protect_home_agent_switch(
        self, message: HomeAgentSwitch, home_address: IPv6Address
    ) -> HomeAgentSwitch:
        """Authenticate a Home Agent Switch (RFC 5142 §5.1) with the association of the MN's
        last authenticated BU, as its BAs are (its registered CoA in the Mobility Data);
        unchanged for a home address whose BU did not authenticate."""
        context = self._context.get(home_address)
        if context is None:
            return message
        return sign_message(
            message,
            key=context.association.key,
            spi=context.association.spi,
            care_of_address=context.care_of_address,
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

    def reload_timestamps(self, values: Mapping[int, int | None]) -> None:
        """HA cluster: the shared store's last accepted Mesg-ID per SPI replaces ours, also
        when it is older (a decision that was not committed is undone) or absent (``None``)."""
        for spi, timestamp in values.items():
            if spi not in self.associations:
                continue
            if timestamp is None:
                self._last_timestamp.pop(spi, None)
            else:
                self._last_timestamp[spi] = int(timestamp)


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


__all__ = ["AuthRejection", "HomeAgentVerifier", "home_agent_verifier"]
