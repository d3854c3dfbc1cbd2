"""Mobile node discovery: Dynamic Home Agent Address Discovery (RFC 6275 §11.4.1) and Mobile
Prefix Solicitation (§11.4.2, §11.4.3). Sans-I/O, ``now`` passed in.

Theory of operation:

* **DHAAD**: with no home agent configured, the MN sends an ICMP Home Agent Address Discovery
  Request from its CoA to the home prefix's Mobile IPv6 Home-Agents anycast address
  (RFC 2526), retransmitted after INITIAL_DHAAD_TIMEOUT (3 s), doubling, DHAAD_RETRIES
  (4) times. The reply's home agents are tried in order: the next one after a refused
  registration (TAHI MN-5-1-2-1-028/029).
* **Mobile Prefix Solicitation** (§11.4.2): when the HA's BA says the home prefix is changing
  (status 1), when the home prefix's valid lifetime (last advertised) runs low — at
  :data:`PREFIX_LIFETIME_SOLICIT_FRACTION` of it — and to acknowledge an unsolicited
  Advertisement (§11.4.3, the HA retransmits it until solicited), the MN solicits the prefix
  list through the HA, retransmitted after INITIAL_SOLICIT_TIMER (3 s), doubling up to
  MAX_BINDACK_TIMEOUT, MPS_RETRIES times. An Advertisement counts only from the HA with an
  RH2 and, when solicited, with the solicitation's identifier; a valid one updates the home
  prefix's valid lifetime.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from ipaddress import IPv6Address

from nfq_mip6.constants import (
    DHAAD_RETRIES,
    INITIAL_DHAAD_TIMEOUT,
    INITIAL_SOLICIT_TIMER,
    MAX_BINDACK_TIMEOUT,
)
from nfq_mip6.mobility.events import (
    Action,
    HomeAgentDiscovered,
    MessageDiscarded,
    MobilePrefixAdvertisementReceived,
    SendDhaadRequest,
    SendMobilePrefixSolicitation,
)
from nfq_mip6.wire.icmp import home_agents_anycast

INFINITE_LIFETIME = 0xFFFFFFFF
"""RFC 4861 §4.6.2: a Prefix Information lifetime of all ones is infinity."""
MPS_RETRIES = 3
"""Mobile Prefix Solicitation retransmissions before giving up (RFC 6275 sets no limit)."""
PREFIX_LIFETIME_SOLICIT_FRACTION = 0.8
"""§11.4.2: solicit when this much of the home prefix's advertised valid lifetime is gone
(the same 80 % the MN uses to refresh a binding)."""


@dataclass(slots=True)
class Solicitation:
    """One outstanding request: its identifier and retransmission bookkeeping."""

    identifier: int
    retransmissions: int
    delay: float
    next_at: float


class HomeAgentDiscovery:
    """§11.4.1: one outstanding DHAAD request and the home agents of the last reply.
    ``mobile_router``: a mobile router asks only for home agents that support mobile routers
    (the R flag of RFC 3963 §7.1 in every request)."""

    __slots__ = ("candidates", "mobile_router", "pending")

    def __init__(self, mobile_router: bool = False) -> None:
        self.pending: Solicitation | None = None
        self.candidates: list[IPv6Address] = []
        self.mobile_router = mobile_router

    def start(
        self, identifier: int, care_of_address: IPv6Address, anycast: IPv6Address, now: float
    ) -> list[Action]:
        self.pending = Solicitation(
            identifier, 0, INITIAL_DHAAD_TIMEOUT, now + INITIAL_DHAAD_TIMEOUT
        )
        return [SendDhaadRequest(identifier, care_of_address, anycast, self.mobile_router)]

    def cancel(self) -> None:
        self.pending = None

    def next_deadline(self) -> float | None:
        return None if self.pending is None else self.pending.next_at

    def timer(
        self, care_of_address: IPv6Address | None, anycast: IPv6Address, now: float
    ) -> list[Action]:
        """Retransmit a due request (from the current CoA), or give up after the last one."""
        pending = self.pending
        if pending is None or pending.next_at > now:
            return []
        if pending.retransmissions >= DHAAD_RETRIES:
            self.pending = None
            return [MessageDiscarded("dhaad-no-reply")]
        pending.retransmissions += 1
        pending.delay *= 2
        pending.next_at = now + pending.delay
        assert care_of_address is not None
        return [SendDhaadRequest(pending.identifier, care_of_address, anycast, self.mobile_router)]

    def reply(
        self, event: HomeAgentDiscovered, avoid: IPv6Address | None = None
    ) -> IPv6Address | MessageDiscarded:
        """The first home agent of a reply to the outstanding request (the others are kept
        for :meth:`next_candidate`), or why the reply is discarded. ``avoid``: a home agent
        not to choose (the one that sent a Home Agent Switch, RFC 5142 §6.2)."""
        pending = self.pending
        if pending is None or event.identifier != pending.identifier or not event.home_agents:
            return MessageDiscarded("unexpected-dhaad-reply", event.src)
        self.pending = None
        self.candidates = [a for a in event.home_agents if a != avoid]
        if not self.candidates:
            return MessageDiscarded("dhaad-reply-lists-no-other-home-agent", event.src)
        return self.candidates.pop(0)

    def next_candidate(self) -> IPv6Address | None:
        """The next home agent of the last reply, if any is left."""
        return self.candidates.pop(0) if self.candidates else None


class MobilePrefixDiscovery:
    """§11.4.2/§11.4.3: at most one outstanding Mobile Prefix Solicitation."""

    __slots__ = ("_identifier", "low_lifetime_at", "pending")

    def __init__(self) -> None:
        self._identifier = 0
        self.pending: Solicitation | None = None
        self.low_lifetime_at = math.inf
        """When the home prefix's valid lifetime runs low (§11.4.2); inf = not known."""

    def start(self, now: float) -> bool:
        """Open a solicitation; False when one is already outstanding."""
        if self.pending is not None:
            return False
        self._identifier = (self._identifier + 1) & 0xFFFF
        self.pending = Solicitation(
            self._identifier, 0, INITIAL_SOLICIT_TIMER, now + INITIAL_SOLICIT_TIMER
        )
        return True

    def next_deadline(self) -> float | None:
        if self.pending is not None:
            return self.pending.next_at
        return None if self.low_lifetime_at == math.inf else self.low_lifetime_at

    def lifetime_running_low(self, now: float) -> bool:
        """§11.4.2: the home prefix's lifetime ran low; True once (then it is forgotten until
        an Advertisement tells it again)."""
        if self.pending is None and self.low_lifetime_at <= now:
            self.low_lifetime_at = math.inf
            return True
        return False

    def solicit(
        self,
        care_of_address: IPv6Address | None,
        home_agent: IPv6Address | None,
        home_address: IPv6Address,
    ) -> list[Action]:
        """The solicitation to send now, from the CoA through the HA; with no home
        registration away from home (``care_of_address`` None) it is dropped."""
        if self.pending is None or care_of_address is None or home_agent is None:
            self.pending = None
            return []
        return [
            SendMobilePrefixSolicitation(
                self.pending.identifier, care_of_address, home_agent, home_address
            )
        ]

    def due(self, now: float) -> bool:
        return self.pending is not None and self.pending.next_at <= now

    def retransmit(self, now: float) -> MessageDiscarded | None:
        """§11.4.2: schedule the next retransmission, or give up (the discard to report)."""
        pending = self.pending
        assert pending is not None
        if pending.retransmissions >= MPS_RETRIES:
            self.pending = None
            return MessageDiscarded("mps-no-reply")
        pending.retransmissions += 1
        pending.delay = min(pending.delay * 2, MAX_BINDACK_TIMEOUT)
        pending.next_at = now + pending.delay
        return None

    def advertisement(
        self,
        event: MobilePrefixAdvertisementReceived,
        home_agent: IPv6Address | None,
        home_address: IPv6Address,
        now: float,
    ) -> list[Action] | None:
        """§11.4.3: an MPA counts only if it comes from the HA with an RH2 and, when
        solicited, echoes the identifier (TAHI MN-4-2-1-1-013/014). A valid one updates when
        the home prefix's lifetime runs low. Returns the discards, ``[]`` for a solicited
        MPA, or ``None`` for a valid unsolicited one (to be acknowledged with an MPS). Prefix
        changes themselves are applied by the runtime (address configuration)."""
        if event.src != home_agent or not event.via_routing_header:
            return [MessageDiscarded("mpa-not-from-home-agent", event.src)]
        solicited = self.pending is not None
        if self.pending is not None:
            if event.identifier != self.pending.identifier:
                return [MessageDiscarded("mpa-identifier-mismatch", event.src)]
            self.pending = None
        for prefix, valid_lifetime, _preferred in event.prefixes:
            if home_address in prefix:
                self.low_lifetime_at = (
                    math.inf
                    if valid_lifetime >= INFINITE_LIFETIME
                    else now + valid_lifetime * PREFIX_LIFETIME_SOLICIT_FRACTION
                )
        return [] if solicited else None


__all__ = [
    "MPS_RETRIES",
    "PREFIX_LIFETIME_SOLICIT_FRACTION",
    "HomeAgentDiscovery",
    "MobilePrefixDiscovery",
    "Solicitation",
    "home_agents_anycast",
]
