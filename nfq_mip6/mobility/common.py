"""Helpers shared by the three roles: address checks, BA/BE construction, operator snapshots."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv6Address, IPv6Network
from typing import Any, Final

from nfq_mip6.mobility.binding import BindingCache, BindingCacheEntry, BindingState
from nfq_mip6.mobility.events import (
    Action,
    MessageDiscarded,
    MobilityHeaderRejected,
    SendMobilityMessage,
)
from nfq_mip6.mobility.stats import MobilityStats
from nfq_mip6.wire.mh import (
    BAFlags,
    BEStatus,
    BindingAck,
    BindingError,
    BUFlags,
    MHType,
)
from nfq_mip6.wire.options import MobilityOption

UNSPECIFIED: Final = IPv6Address("::")

_LINK_LOCAL_PREFIX: Final = 0xFE80 << 112
_IID_MASK: Final = (1 << 64) - 1

MIPL_TYPE_CACHE_ENTRY: Final = 1
"""``mipdiag -c`` "Type" column: a correspondent (route optimization) binding."""
MIPL_TYPE_HOME_REGISTRATION: Final = 2
"""``mipdiag -c`` "Type" column: a home registration (HOWTO §5.2 shows type 2 at the HA)."""


def count_rejected_mobility_header(stats: MobilityStats, event: MobilityHeaderRejected) -> None:
    """§9.2: a BU that failed the checks counts as received and dropped as invalid."""
    if event.mh_type == MHType.BU:
        stats.NBindUpdatesRcvd += 1
        stats.NBindUpdatesDropInvalid += 1


def is_unicast_routable(address: IPv6Address) -> bool:
    """§9.5.1/§10.3.1: a HoA or CoA must be a routable unicast address.

    Rejects ``::``, ``::1``, multicast (ff00::/8) and link-local (fe80::/10). Site-local
    (fec0::/10) is accepted: the MIPL HOWTO test bed uses it.
    """
    value = int(address)
    if value <= 1:
        return False
    top = value >> 120
    if top == 0xFF:
        return False
    return (value >> 118) != 0x3FA  # fe80::/10


def is_unicast(address: IPv6Address) -> bool:
    """Not multicast and not unspecified: a BE may be sent to it (§9.3.3)."""
    value = int(address)
    return value != 0 and (value >> 120) != 0xFF


def link_local_for(home_address: IPv6Address) -> IPv6Address:
    """§10.3.1 (L = 1): fe80::/64 with the home address's interface identifier."""
    return IPv6Address(_LINK_LOCAL_PREFIX | (int(home_address) & _IID_MASK))


def flags_text(flags: int) -> str:
    """BU flags as letters, e.g. ``"AH"`` (for operator output)."""
    return "".join(flag.name or "" for flag in BUFlags if flag and flags & flag)


def binding_ack(
    *,
    status: int,
    sequence: int,
    lifetime_units: int,
    bu_src: IPv6Address,
    bu_dst: IPv6Address,
    bu_home_address: IPv6Address | None,
    options: tuple[MobilityOption, ...] = (),
    stats: MobilityStats,
    flags: BAFlags = BAFlags.NONE,
) -> SendMobilityMessage:
    """§9.5.4/§10.3.1: a BA to the BU's source, with an RH2 = HoA when the BU had an HAO
    and came from a care-of address. A BU whose source is its home address (the MN at home,
    CoA = HoA, with or without an HAO) is answered straight to that address, without an RH2
    (§9.5.4, §10.3.2: the routing header only takes a packet from a CoA to the HoA).

    The lifetime is 0 for a rejection (§6.1.8: undefined when status ≥ 128).
    """
    if status >= 128:
        lifetime_units = 0
        stats.NBindNAcksSent += 1
    else:
        stats.NBindAcksSent += 1
    message = BindingAck(status, flags, sequence, lifetime_units, options)
    routing = bu_home_address if bu_home_address != bu_src else None
    return SendMobilityMessage(message, bu_dst, bu_src, None, routing, False)


def binding_error(
    *,
    status: BEStatus,
    offending_src: IPv6Address,
    home_address: IPv6Address | None,
    local_address: IPv6Address,
) -> SendMobilityMessage | None:
    """§9.3.3: a BE to the offending packet's source (never to a non-unicast source).

    The Home Address field is the offending packet's HAO, or ``::``. No RH2, no binding cache.
    """
    if not is_unicast(offending_src):
        return None
    message = BindingError(int(status), home_address or UNSPECIFIED)
    return SendMobilityMessage(message, local_address, offending_src)


def has_binding(cache: BindingCache, home_address: IPv6Address, src: IPv6Address) -> bool:
    """§9.3.1: ``cache`` holds a registered binding ``home_address`` → ``src`` (a packet from
    ``src`` with a Home Address option for ``home_address`` may then be delivered)."""
    entry = cache.get(home_address)
    return (
        entry is not None
        and entry.state is BindingState.REGISTERED
        and entry.care_of_address == src
    )


def unknown_binding_error(
    src: IPv6Address, home_address: IPv6Address, local_address: IPv6Address
) -> list[Action]:
    """§9.3.1/§9.3.3: the BE 1 (unknown binding for Home Address option) to ``src``, from
    ``local_address``; ``[]`` when ``src`` is not unicast. An HAO whose home address is not
    unicast routable (multicast, link-local) is dropped silently, without a BE (§9.3.1)."""
    if not is_unicast_routable(home_address):
        return [MessageDiscarded("home-address-not-unicast-routable", src, None)]
    error = binding_error(
        status=BEStatus.UNKNOWN_BINDING_FOR_HOME_ADDRESS_OPTION,
        offending_src=src,
        home_address=home_address,
        local_address=local_address,
    )
    return [error] if error is not None else []


@dataclass(frozen=True, slots=True)
class BindingCacheRow:
    """One ``mipdiag -c`` / ``nfq-mip6 cache`` row (UMIP ``vt`` columns)."""

    home_address: IPv6Address
    care_of_address: IPv6Address
    lifetime_remaining: int
    """Seconds left, rounded down."""
    lifetime_granted: int
    home_registration: bool
    mipl_type: int
    flags: str
    sequence: int
    state: str
    prefixes: tuple[IPv6Network, ...] = ()
    """A mobile router's registered Mobile Network Prefixes (RFC 3963)."""

    def control_json(self) -> dict[str, Any]:
        """The row as the control socket's ``cache`` answer lists it."""
        return {
            "home_address": str(self.home_address),
            "care_of_address": str(self.care_of_address),
            "lifetime": self.lifetime_remaining,
            "type": self.mipl_type,
            "sequence": self.sequence,
            "flags": self.flags,
            "state": self.state,
            "prefixes": [str(prefix) for prefix in self.prefixes],
        }


def binding_cache_row(entry: BindingCacheEntry, now: float) -> BindingCacheRow:
    return BindingCacheRow(
        home_address=entry.home_address,
        care_of_address=entry.care_of_address,
        lifetime_remaining=int(entry.remaining(now)),
        lifetime_granted=entry.lifetime,
        home_registration=entry.home_registration,
        mipl_type=MIPL_TYPE_HOME_REGISTRATION if entry.home_registration else MIPL_TYPE_CACHE_ENTRY,
        flags=flags_text(entry.flags),
        sequence=entry.sequence,
        state=entry.state.value,
        prefixes=entry.prefixes,
    )
