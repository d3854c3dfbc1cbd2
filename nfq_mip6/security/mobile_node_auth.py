"""RFC 4285 MN-HA authentication, the Mobile Node side: :class:`MobileNodeAuthenticator` adds
the MN-ID, Mesg-ID and Authentication options to home Binding Updates and checks the home
agent's Binding Acknowledgements (RFC 4285 §5.1, §6). Pure: the wall clock is injected.

A BA must end with an MN-HA Authentication option that verifies with the SA; an authenticated
144 (timestamp mismatch) re-synchronises the MN's clock offset from the HA's Mesg-ID, an
authenticated 145 turns the Mesg-ID on; any other BA must echo the last BU's Mesg-ID.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import replace
from ipaddress import IPv6Address, IPv6Network
from pathlib import Path

from nfq_mip6.mobility.mobile_node import BindingAckCheck as BindingAckCheck
from nfq_mip6.security.auth_codec import (
    Clock,
    SecurityAssociation,
    ntp_ordinal,
    ntp_timestamp,
    sign_message,
    system_clock,
    unix_time_from_ntp,
    verify_message,
)
from nfq_mip6.security.keys import KeyMaterialError, KeySource, load_key
from nfq_mip6.wire.mh import BAStatus, BindingAck, BindingUpdate, build_mh_unchecksummed
from nfq_mip6.wire.options import (
    AuthenticationOption,
    MessageIdentifier,
    MNIdentifierSubtype,
    MobileNodeIdentifier,
    MobilityOption,
)

log = logging.getLogger("nfq_mip6.security")


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
        self._clock: Clock = wall_clock if wall_clock is not None else system_clock
        self.clock_offset = 0.0
        """Seconds added to the local clock, learnt from an authenticated 144 (§6)."""
        self._last_sent: int = 0
        self._registered_care_of: IPv6Address | None = None  # of the last BU signed
        self.counters: dict[str, int] = {}

    @property
    def last_sent(self) -> int:
        """The last Mesg-ID sent (persisted so that timestamps keep increasing, §6)."""
        return self._last_sent

    def restore(self, last_sent: int, clock_offset: float) -> None:
        """The state of the previous run: Mesg-IDs keep increasing across the restart and
        the clock offset learnt from the HA stays (RFC 4285 §6)."""
        self._last_sent = max(self._last_sent, last_sent)
        self.clock_offset = clock_offset

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
        self._registered_care_of = care_of_address
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
        """Verify a BA from the HA; adjust the clock on an authenticated 144 (§6).

        The Mobility Data's care-of address is the one the last BU registered (its Alternate
        CoA), which need not be the BA's destination ``care_of_address`` (used only before
        any BU was signed, e.g. just after a restart)."""
        mh = mh_bytes or bytes(build_mh_unchecksummed(ba))
        registered = self._registered_care_of
        if not verify_message(
            mh,
            key=self.association.key,
            care_of_address=registered if registered is not None else care_of_address,
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

    def check_home_agent_switch(
        self, mh_bytes: bytes, care_of_address: IPv6Address, home_address: IPv6Address
    ) -> bool:
        """A Home Agent Switch from the HA (RFC 5142 §6.1) must carry the MN-HA
        Authentication option of this association, computed as for a BA (RFC 4285 §5.1)."""
        registered = self._registered_care_of
        ok = verify_message(
            mh_bytes,
            key=self.association.key,
            care_of_address=registered if registered is not None else care_of_address,
            home_address=home_address,
        )
        self._count("switch-accepted" if ok else "switch-not-authenticated")
        return ok


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


__all__ = ["BindingAckCheck", "MobileNodeAuthenticator", "mobile_node_authenticator"]
