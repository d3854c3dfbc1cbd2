"""Binding Update List (RFC 6275 §11.1): one entry per destination the mobile node sent a
Binding Update to, with its lifecycle as a transition table (as the Binding Cache has in
:mod:`nfq_mip6.mobility.binding`).

Theory of operation:

* One :class:`BindingUpdateListEntry` per destination: the home agent (home registration,
  H = 1) and each correspondent node using route optimization (H = 0). The entry holds what
  was sent (sequence number, flags, lifetimes, retransmission timers) and, for a
  correspondent, the return routability state (cookies, keygen tokens, Kbm; §11.6).
* An entry's lifecycle is :class:`BulState`; every change goes through
  :meth:`BindingUpdateListEntry.transition`, which checks it against
  :data:`BUL_TRANSITIONS` and the guard that only a correspondent entry waits for return
  routability. An illegal change is a bug in the core and raises :class:`IllegalTransition`.
* :class:`BindingUpdateListRow` is the operator view (``mipdiag -l``) and
  :class:`BindingUpdateListRecord` what survives a restart; both are built here from an entry.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from enum import Enum
from ipaddress import IPv6Address
from typing import Any, Final

from nfq_mip6.constants import INITIAL_BINDACK_TIMEOUT, MAX_BINDACK_TIMEOUT, MAX_UPDATE_RATE
from nfq_mip6.mobility.binding import IllegalTransition
from nfq_mip6.mobility.common import flags_text


class BulState(Enum):
    """State of one Binding Update List entry."""

    RR_PENDING = "rr-pending"
    """CN: waiting for HoT and/or CoT before a BU can be sent."""
    REGISTERING = "registering"
    """A BU is outstanding and no binding is in force yet."""
    BOUND = "bound"
    """The binding is acknowledged and in force."""
    REFRESHING = "refreshing"
    """The binding is in force and a refreshing BU is outstanding."""
    DEREGISTERING = "deregistering"
    """A de-registration BU (lifetime 0) is outstanding."""


AWAITING_ACK: Final = frozenset({BulState.REGISTERING, BulState.REFRESHING, BulState.DEREGISTERING})
"""A BU is outstanding: a BA with its sequence number is expected (§11.7.3)."""
IN_FORCE: Final = frozenset({BulState.BOUND, BulState.REFRESHING})
"""An acknowledged binding is in force until ``expires_at``."""

BUL_TRANSITIONS: Final[dict[BulState, frozenset[BulState]]] = {
    BulState.RR_PENDING: frozenset(
        {
            BulState.RR_PENDING,  # the tests are restarted (new CoA, BE 1, expired nonces)
            BulState.REGISTERING,  # HoT and CoT in hand: the BU goes out
        }
    ),
    BulState.REGISTERING: frozenset(
        {
            BulState.REGISTERING,  # new CoA or BE 1 while the first BU is outstanding
            BulState.RR_PENDING,  # CN: moved, BE 1, or the tokens expired on retransmission
            BulState.BOUND,  # accepted BA
            BulState.DEREGISTERING,  # back home before the BA
        }
    ),
    BulState.BOUND: frozenset(
        {
            BulState.REFRESHING,  # refresh time, BRR, new CoA, shorter configured lifetime
            BulState.REGISTERING,  # the lifetime ran out, or BE 1 from the HA
            BulState.RR_PENDING,  # CN: moved, BE 1, or new tokens needed for the refresh
            BulState.DEREGISTERING,  # back home, or RO switched off (CN farewell)
        }
    ),
    BulState.REFRESHING: frozenset(
        {
            BulState.REFRESHING,  # new CoA or BRR while a refresh is outstanding
            BulState.BOUND,  # accepted BA
            BulState.REGISTERING,  # the lifetime ran out, or BE 1 from the HA
            BulState.RR_PENDING,  # CN: moved, BE 1, or new tokens needed
            BulState.DEREGISTERING,  # back home, or RO switched off (CN farewell)
        }
    ),
    BulState.DEREGISTERING: frozenset(
        {
            BulState.DEREGISTERING,  # back home again
            BulState.BOUND,  # the de-registration was refused: the binding stays
            BulState.REGISTERING,  # moved away again, or BE 1 from the HA
            BulState.RR_PENDING,  # CN: moved away again
        }
    ),
}
"""Legal state changes of a BUL entry. No entry becomes BOUND without an acknowledged BU
(except one restored as bound from a previous run, which starts in BOUND)."""

CORRESPONDENT_ONLY_STATES: Final = frozenset({BulState.RR_PENDING})
"""States a home registration never enters: the HA needs no return routability (§11.7.1)."""


class BindingUpdateListEntry:
    """§11.1: what the MN sent to one destination, and the return routability state."""

    __slots__ = (
        "auth_care_of_address",
        "bound_once",
        "care_of_address",
        "careof_cookie",
        "careof_nonce_index",
        "careof_token",
        "careof_token_at",
        "careof_token_coa",
        "deferred",
        "destination",
        "expires_at",
        "home_address",
        "home_cookie",
        "home_nonce_index",
        "home_registration",
        "home_token",
        "home_token_at",
        "kbm",
        "lifetime_granted",
        "lifetime_requested",
        "next_retransmit_at",
        "outstanding",
        "refresh_at",
        "retransmit_delay",
        "route_installed",
        "rr_delay",
        "rr_next_at",
        "send_times",
        "sent_at",
        "sent_flags",
        "sequence",
        "sequence_unknown",
        "state",
    )

    def __init__(
        self,
        destination: IPv6Address,
        home_address: IPv6Address,
        care_of_address: IPv6Address,
        *,
        home_registration: bool,
        sequence: int,
        state: BulState = BulState.REGISTERING,
    ) -> None:
        self.destination = destination
        self.home_address = home_address
        self.care_of_address = care_of_address
        self.home_registration = home_registration
        self.sequence = sequence
        # a random first sequence number for a binding the HA may hold (state lost)
        self.sequence_unknown = False
        self._check(state)
        self.state = state
        self.sent_flags = 0
        self.lifetime_requested = 0
        self.lifetime_granted = 0
        self.sent_at = -math.inf
        self.expires_at = -math.inf
        self.refresh_at = math.inf
        self.retransmit_delay = INITIAL_BINDACK_TIMEOUT
        self.next_retransmit_at = math.inf
        self.deferred = False
        self.send_times: deque[float] = deque(maxlen=MAX_UPDATE_RATE)
        self.outstanding: dict[int, float] = {}
        """Sequence number → send time of every BU of this registration attempt not yet
        acknowledged (§11.7.3: a BA matching any of them acknowledges the binding)."""
        self.bound_once = False
        self.route_installed = False
        # Return routability (CN entries only, see mn_return_routability).
        self.home_cookie: bytes | None = None
        self.careof_cookie: bytes | None = None
        self.home_token: bytes | None = None
        self.home_nonce_index = 0
        self.home_token_at = -math.inf
        self.careof_token: bytes | None = None
        self.careof_nonce_index = 0
        self.careof_token_at = -math.inf
        self.careof_token_coa: IPv6Address | None = None
        self.rr_delay = INITIAL_BINDACK_TIMEOUT
        self.rr_next_at = math.inf
        self.kbm = b""
        self.auth_care_of_address = care_of_address

    def __repr__(self) -> str:
        return (
            f"BindingUpdateListEntry({self.destination}: {self.home_address} -> "
            f"{self.care_of_address}, seq={self.sequence}, state={self.state.value})"
        )

    @property
    def awaiting_ack(self) -> bool:
        return self.state in AWAITING_ACK

    @property
    def in_force(self) -> bool:
        return self.state in IN_FORCE

    def _check(self, state: BulState) -> None:
        if self.home_registration and state in CORRESPONDENT_ONLY_STATES:
            raise IllegalTransition(
                f"home registration {self.destination}: never {state.value} "
                "(no return routability with the home agent)"
            )

    def transition(self, new_state: BulState) -> None:
        """Change state, checking :data:`BUL_TRANSITIONS` and the correspondent-only guard."""
        if new_state not in BUL_TRANSITIONS[self.state]:
            raise IllegalTransition(
                f"BUL entry {self.destination}: {self.state.value} -> {new_state.value}"
            )
        self._check(new_state)
        self.state = new_state

    def row(self, now: float) -> BindingUpdateListRow:
        """This entry as a ``mipdiag -l`` row."""
        in_force = self.state in IN_FORCE
        return BindingUpdateListRow(
            destination=self.destination,
            home_registration=self.home_registration,
            home_address=self.home_address,
            care_of_address=self.care_of_address,
            lifetime_remaining=max(0, int(self.expires_at - now)) if in_force else 0,
            lifetime_granted=self.lifetime_granted,
            flags=flags_text(self.sent_flags),
            sequence=self.sequence,
            state=self.state.value,
            retransmit_delay=self.retransmit_delay,
            max_delay=MAX_BINDACK_TIMEOUT,
            refresh_in=(
                max(0, int(self.refresh_at - now)) if self.state is BulState.BOUND else None
            ),
        )

    def record(self, now: float) -> BindingUpdateListRecord:
        """This entry as a persistence record (a correspondent binding in force with its
        keygen tokens, so that a restarted MN keeps it)."""
        rr: ReturnRoutabilityRecord | None = None
        if not self.home_registration and self.state in IN_FORCE and self.home_token is not None:
            rr = ReturnRoutabilityRecord(
                home_token=self.home_token,
                home_nonce_index=self.home_nonce_index,
                home_token_age=now - self.home_token_at,
                careof_token=self.careof_token,
                careof_nonce_index=self.careof_nonce_index,
                careof_token_age=(now - self.careof_token_at) if self.careof_token else 0.0,
                careof_token_coa=self.careof_token_coa,
            )
        return BindingUpdateListRecord(
            destination=self.destination,
            home_address=self.home_address,
            care_of_address=self.care_of_address,
            sequence=self.sequence,
            home_registration=self.home_registration,
            state=self.state.value,
            lifetime_granted=self.lifetime_granted,
            remaining=(self.expires_at - now) if self.state in IN_FORCE else 0.0,
            rr=rr,
        )


@dataclass(frozen=True, slots=True)
class BindingUpdateListRow:
    """One ``mipdiag -l`` / ``nfq-mip6 bul`` row (MIPL: recipient, HoA, CoA, expires,
    sequence, state, delay, max delay, callback time)."""

    destination: IPv6Address
    home_registration: bool
    home_address: IPv6Address
    care_of_address: IPv6Address
    lifetime_remaining: int
    lifetime_granted: int
    flags: str
    sequence: int
    state: str
    retransmit_delay: float
    max_delay: float
    refresh_in: int | None

    def control_json(self) -> dict[str, Any]:
        """The row as the control socket's ``bul`` answer lists it (MIPL ``mipdiag -l``)."""
        return {
            "recipient": str(self.destination),
            "home_address": str(self.home_address),
            "care_of_address": str(self.care_of_address),
            "expires": self.lifetime_remaining,
            "sequence": self.sequence,
            # MIPL: 1 = acknowledged binding in force, 0 = waiting for the BA
            "state": 1 if self.state in ("bound", "refreshing") else 0,
            "state_name": self.state,
            "flags": self.flags,
            "delay": round(self.retransmit_delay),
            "max_delay": round(self.max_delay),
            "callback_time": self.refresh_in if self.refresh_in is not None else 0,
            "home_registration": self.home_registration,
        }


@dataclass(frozen=True, slots=True)
class ReturnRoutabilityRecord:
    """The keygen tokens of a correspondent binding in force (RFC 6275 §5.2.5, §11.6.2):
    with them a restarted MN keeps its binding with the CN, and refreshes it without a new
    return routability exchange while they are younger than MAX_TOKEN_LIFETIME. Ages are
    seconds since the token was received, as of the record."""

    home_token: bytes = field(repr=False)  # secrets: never in logs
    home_nonce_index: int
    home_token_age: float
    careof_token: bytes | None = field(repr=False)
    careof_nonce_index: int
    careof_token_age: float
    careof_token_coa: IPv6Address | None


@dataclass(frozen=True, slots=True)
class BindingUpdateListRecord:
    """What of one BUL entry survives a restart of the agent (the runtime persists these,
    :mod:`nfq_mip6.store`; the core does no I/O).

    ``sequence`` is the last sequence number **sent** (RFC 6275 §11.7.1: the next BU must
    carry a greater one, else the HA/CN answers 135). ``remaining`` is how many seconds of
    the acknowledged binding are left (≤ 0: none in force); the runtime converts it to and
    from an absolute wall-clock expiry.
    """

    destination: IPv6Address
    home_address: IPv6Address
    care_of_address: IPv6Address
    sequence: int
    home_registration: bool
    state: str
    """A :class:`BulState` value."""
    lifetime_granted: int
    remaining: float
    rr: ReturnRoutabilityRecord | None = None
    """A correspondent binding in force: its keygen tokens (None for the home agent)."""


__all__ = [
    "AWAITING_ACK",
    "BUL_TRANSITIONS",
    "CORRESPONDENT_ONLY_STATES",
    "IN_FORCE",
    "BindingUpdateListEntry",
    "BindingUpdateListRecord",
    "BindingUpdateListRow",
    "BulState",
    "IllegalTransition",
    "ReturnRoutabilityRecord",
]
