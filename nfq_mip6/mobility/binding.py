"""Binding Cache (RFC 6275 §9.1, §9.5, §10.3) and sequence number arithmetic (§9.5.1).

Theory of operation:

* One :class:`BindingCacheEntry` per home address. Home registrations (H = 1, at a home agent)
  and correspondent registrations (H = 0, route optimization) live in the same cache, so the
  "registration type change" rule (§9.5.1, status 139) can see both.
* An entry's lifecycle is :class:`BindingState`; every change goes through
  :meth:`BindingCacheEntry._transition`, which asserts that the change is in
  :data:`TRANSITIONS`. An illegal transition is a bug in the core and raises.
* Expiry is driven by a lazy min-heap of ``(expires_at, home_address)``: refreshing an entry
  pushes a new heap item and leaves the old one to be skipped when it surfaces. The heap is
  compacted when stale items outnumber live ones.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from enum import Enum
from ipaddress import IPv6Address, IPv6Network
from typing import Final

from nfq_mip6.constants import SEQUENCE_MODULUS
from nfq_mip6.errors import InternalError
from nfq_mip6.mobility.events import StoredHomeBinding


def seq_newer(new: int, last: int) -> bool:
    """True iff sequence number ``new`` is "greater than" ``last`` modulo 2^16 (RFC 6275 §9.5.1).

    A received number is "≤ last" when it lies in ``[last − 32768, last]`` (mod 65536);
    equivalent to UMIP/MIPL ``(int16_t)(new - last) > 0``.
    """
    return 1 <= ((new - last) & 0xFFFF) <= 0x7FFF


def seq_next(sequence: int) -> int:
    """The next sequence number, wrapping 65535 → 0 (§11.7.1, TAHI MN-2-2-1-1-016)."""
    return (sequence + 1) % SEQUENCE_MODULUS


class BindingState(Enum):
    """Lifecycle of a Binding Cache entry (after UMIP's ``dad``/``registered``/``dying``)."""

    DAD_PENDING = "dad"
    """HA: first home registration waiting for proxy DAD (§10.3.1); no BA sent yet."""
    REGISTERED = "registered"
    """The binding is in force: HA tunnels to the CoA, or CN route-optimizes to it."""
    REPLAY_GUARD = "replay-guard"
    """CN: the binding was deleted but its sequence number is kept until the nonces used to
    build it have expired, so a replayed BU is rejected (§5.2.8; UMIP "nonce-block")."""
    DELETED = "deleted"
    """Removed on request (de-registration, DAD failure, RO switched off). Terminal."""
    EXPIRED = "expired"
    """The lifetime ran out. Terminal."""


TRANSITIONS: Final[dict[BindingState, frozenset[BindingState]]] = {
    BindingState.DAD_PENDING: frozenset(
        {BindingState.REGISTERED, BindingState.DELETED, BindingState.EXPIRED}
    ),
    BindingState.REGISTERED: frozenset(
        {
            BindingState.REGISTERED,  # refresh / new CoA
            BindingState.REPLAY_GUARD,
            BindingState.DELETED,
            BindingState.EXPIRED,
        }
    ),
    BindingState.REPLAY_GUARD: frozenset(
        {
            BindingState.REGISTERED,
            BindingState.REPLAY_GUARD,  # a newer (retransmitted) deletion extends the guard
            BindingState.DELETED,
            BindingState.EXPIRED,
        }
    ),
    BindingState.DELETED: frozenset(),
    BindingState.EXPIRED: frozenset(),
}
"""Legal state changes; anything else is a bug and raises in :meth:`_transition`."""

LIVE_STATES: Final = frozenset(
    {BindingState.DAD_PENDING, BindingState.REGISTERED, BindingState.REPLAY_GUARD}
)


class IllegalTransition(InternalError):
    """A state change outside :data:`TRANSITIONS`: a bug in the core."""


class BindingCacheEntry:
    """One binding (§9.1): HoA → CoA with a lifetime, the last accepted sequence number and the
    BU flags. Slotted and mutable; owned by a :class:`BindingCache`.

    ``expires_at`` is an absolute time on the runtime's clock. ``lifetime`` is the granted
    lifetime in seconds. ``link_local`` is the MN's link-local address the HA also defends
    (L = 1, §10.3.1). ``prefixes`` are a mobile router's Mobile Network Prefixes (RFC 3963
    §6.1.1; empty for a plain mobile node).
    """

    __slots__ = (
        "brr_sent",
        "care_of_address",
        "expires_at",
        "flags",
        "home_address",
        "home_registration",
        "lifetime",
        "link_local",
        "prefixes",
        "registered_at",
        "sequence",
        "state",
    )

    def __init__(
        self,
        home_address: IPv6Address,
        care_of_address: IPv6Address,
        *,
        sequence: int,
        flags: int,
        lifetime: int,
        now: float,
        home_registration: bool,
        state: BindingState = BindingState.REGISTERED,
        link_local: IPv6Address | None = None,
    ) -> None:
        self.home_address = home_address
        self.care_of_address = care_of_address
        self.sequence = sequence
        self.flags = flags
        self.lifetime = lifetime
        self.registered_at = now
        self.expires_at = now + lifetime
        self.home_registration = home_registration
        self.state = state
        self.link_local = link_local
        self.brr_sent = False
        self.prefixes: tuple[IPv6Network, ...] = ()
        """A mobile router's registered Mobile Network Prefixes (RFC 3963 §6.1.1)."""

    def __repr__(self) -> str:
        return (
            f"BindingCacheEntry({self.home_address} -> {self.care_of_address}, "
            f"seq={self.sequence}, lifetime={self.lifetime}, state={self.state.value}, "
            f"home={self.home_registration})"
        )

    def remaining(self, now: float) -> float:
        """Seconds left before expiry (never negative)."""
        return max(0.0, self.expires_at - now)

    @property
    def live(self) -> bool:
        return self.state in LIVE_STATES

    def _transition(self, new_state: BindingState) -> None:
        """Change state, asserting the change is legal per :data:`TRANSITIONS`."""
        if new_state not in TRANSITIONS[self.state]:
            raise IllegalTransition(
                f"binding {self.home_address}: {self.state.value} -> {new_state.value}"
            )
        self.state = new_state


class BindingCache:
    """The Binding Cache, keyed by home address, with lifetime-ordered expiry.

    The cache only stores entries and expires them; the role objects decide protocol questions
    (which status to send, what to install) around it.
    """

    __slots__ = ("_entries", "_heap")

    def __init__(self) -> None:
        # Keyed by int(home address): hashing an int is much cheaper than an IPv6Address.
        self._entries: dict[int, BindingCacheEntry] = {}
        self._heap: list[tuple[float, int, int]] = []

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[BindingCacheEntry]:
        return iter(list(self._entries.values()))

    def __contains__(self, home_address: object) -> bool:
        return isinstance(home_address, IPv6Address) and int(home_address) in self._entries

    def get(self, home_address: IPv6Address) -> BindingCacheEntry | None:
        return self._entries.get(int(home_address))

    def count(self, *, home_registration: bool | None = None) -> int:
        """Number of entries in force (REGISTERED or DAD_PENDING), optionally of one kind."""
        return sum(
            1
            for entry in self._entries.values()
            if entry.state in (BindingState.REGISTERED, BindingState.DAD_PENDING)
            and (home_registration is None or entry.home_registration == home_registration)
        )

    def _schedule(self, entry: BindingCacheEntry) -> None:
        heapq.heappush(self._heap, (entry.expires_at, id(entry), int(entry.home_address)))
        if len(self._heap) > 64 and len(self._heap) > 2 * len(self._entries):
            self._compact()

    def _compact(self) -> None:
        self._heap = [(entry.expires_at, id(entry), key) for key, entry in self._entries.items()]
        heapq.heapify(self._heap)

    def insert(self, entry: BindingCacheEntry) -> None:
        """Add a new entry; the home address must not be in the cache (a bug otherwise)."""
        key = int(entry.home_address)
        if key in self._entries:
            raise KeyError(f"binding for {entry.home_address} already exists")
        self._entries[key] = entry
        self._schedule(entry)

    def register(
        self,
        entry: BindingCacheEntry,
        *,
        care_of_address: IPv6Address,
        sequence: int,
        flags: int,
        lifetime: int,
        now: float,
    ) -> None:
        """Put ``entry`` in force (new BU accepted, refresh, or DAD done) until now + lifetime."""
        entry._transition(BindingState.REGISTERED)
        entry.care_of_address = care_of_address
        entry.sequence = sequence
        entry.flags = flags
        entry.lifetime = lifetime
        entry.registered_at = now
        entry.brr_sent = False
        self.set_expiry(entry, now + lifetime)

    def insert_home(
        self, home_address: IPv6Address, stored: StoredHomeBinding, now: float
    ) -> BindingCacheEntry:
        """Add the registered home binding ``stored`` (from a binding store) for
        ``home_address``, expiring at its ``expires_at``; returns the new entry."""
        entry = BindingCacheEntry(
            home_address,
            stored.care_of_address,
            sequence=stored.sequence & 0xFFFF,
            flags=stored.flags,
            lifetime=stored.lifetime,
            now=now,
            home_registration=True,
            link_local=stored.link_local,
        )
        entry.prefixes = stored.prefixes
        self.insert(entry)
        self.set_expiry(entry, stored.expires_at)
        return entry

    def set_expiry(self, entry: BindingCacheEntry, expires_at: float) -> None:
        if entry.expires_at != expires_at or entry.state is BindingState.REPLAY_GUARD:
            entry.expires_at = expires_at
            self._schedule(entry)

    def guard(self, entry: BindingCacheEntry, until: float) -> None:
        """CN: keep the deleted entry's sequence number until ``until`` (§5.2.8)."""
        entry._transition(BindingState.REPLAY_GUARD)
        entry.expires_at = until
        self._schedule(entry)

    def remove(self, home_address: IPv6Address, state: BindingState) -> BindingCacheEntry:
        """Remove an entry, moving it to the terminal ``state`` (DELETED or EXPIRED)."""
        entry = self._entries.pop(int(home_address))
        entry._transition(state)
        return entry

    def next_expiry(self) -> float | None:
        """The earliest ``expires_at`` of any entry, or ``None`` when the cache is empty."""
        heap = self._heap
        while heap:
            expires_at, _, key = heap[0]
            entry = self._entries.get(key)
            if entry is not None and entry.expires_at == expires_at:
                return expires_at
            heapq.heappop(heap)
        return None

    def pop_expired(self, now: float) -> list[tuple[BindingCacheEntry, BindingState]]:
        """Remove and return every entry whose lifetime ended at or before ``now``.

        Each returned entry has moved to :attr:`BindingState.EXPIRED`; it comes with the state
        it had before, because a replay guard or a DAD that never completed is not a binding
        that "expired" for operators.
        """
        expired: list[tuple[BindingCacheEntry, BindingState]] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            expires_at, _, key = heapq.heappop(heap)
            entry = self._entries.get(key)
            if entry is None or entry.expires_at != expires_at:
                continue  # stale heap item: the entry was refreshed or removed
            previous_state = entry.state
            del self._entries[key]
            entry._transition(BindingState.EXPIRED)
            expired.append((entry, previous_state))
        return expired
