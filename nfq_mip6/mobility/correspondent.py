"""Correspondent Node role (RFC 6275 §9): return routability and route-optimization bindings.

Sans-I/O: ``handle(event, now) -> list[Action]``; randomness (Kcn, nonces) comes from an injected
``random_bytes`` callable.

Theory of operation:

* HoTI → HoT to the HoA (through the HA tunnel), CoTI → CoT to the CoA (§9.4.1–§9.4.4): the
  cookie is copied, the keygen token is computed from Kcn and the current nonce; the binding
  cache is not used. A HoTI/CoTI with an HAO is silently dropped (TAHI CN-2-1-2, CN-2-2-2).
* A BU (§9.5.1, UMIP ``cn.c`` order): addresses → H = 1 (131/139, or a silent drop with Nonce
  Indices) → Nonce Indices present → nonce indices still valid (136/137/138, sent even with
  A = 0 and without BAD) → BAD last and correct (else silent drop) → 139 → 135 → circular
  reference → create/update/delete. Lifetimes are capped at 420 s (MAX_RR_BINDING_LIFETIME).
* The BA is sent only when A = 1, or for the rejections 135–138. Every BA answering a BU whose
  BAD verified (accepted, 135, 139) carries a BAD computed with Kbm; 136/137/138 carry none
  (§9.5.4).
* After a deletion the entry stays as a *replay guard* until the nonces expire (§5.2.8), so a
  replayed BU is answered with 135 instead of re-creating the binding.
* Before a binding in active use (the runtime reports :class:`BindingsInUse`) expires, the CN
  sends one Binding Refresh Request to the HoA (§9.5.5); an idle binding just expires.
* A Home Address option naming a multicast (not unicast-routable) home address is dropped
  silently, without a Binding Error (§9.3.1); so is such a BU (§9.5.1).
* ``ro off`` (RouteOptimizationSwitched(False)) drops every binding and answers no HoTI/CoTI/BU.
"""

from __future__ import annotations

import dataclasses
import heapq
import os
from dataclasses import dataclass
from ipaddress import IPv6Address
from typing import assert_never

from nfq_mip6.constants import LIFETIME_UNIT, MAX_NONCE_LIFETIME, MAX_RR_BINDING_LIFETIME
from nfq_mip6.mobility.binding import (
    BindingCache,
    BindingCacheEntry,
    BindingState,
    seq_newer,
)
from nfq_mip6.mobility.common import (
    BindingCacheRow,
    binding_ack,
    binding_cache_row,
    binding_error,
    count_rejected_mobility_header,
    has_binding,
    is_unicast_routable,
    unknown_binding_error,
)
from nfq_mip6.mobility.events import (
    Action,
    BindingDeleted,
    BindingExpired,
    BindingRefreshed,
    BindingRegistered,
    BindingRejected,
    BindingsInUse,
    CorrespondentInput,
    DataplaneCountersSampled,
    IcmpErrorReceived,
    InstallRouteOptimization,
    MessageDiscarded,
    MobilityHeaderRejected,
    MobilityMessageReceived,
    RemoveRouteOptimization,
    RouteOptimizationSwitched,
    SendMobilityMessage,
)
from nfq_mip6.mobility.rr import (
    MhDataEncoder,
    NonceTable,
    RandomBytes,
    binding_management_key,
    careof_keygen_token,
    home_keygen_token,
    mh_data_for_authenticator,
    new_node_key,
    verify_authenticator,
    with_authenticator,
)
from nfq_mip6.mobility.stats import MobilityStats
from nfq_mip6.wire.icmp import ICMPv6Type
from nfq_mip6.wire.mh import (
    BAStatus,
    BEStatus,
    BindingAck,
    BindingRefreshRequest,
    BindingUpdate,
    BUFlags,
    CareofTest,
    CareofTestInit,
    HomeAgentSwitch,
    HomeTest,
    HomeTestInit,
    MHType,
    UnknownMobilityMessage,
)
from nfq_mip6.wire.options import AlternateCareofAddress, NonceIndices

ICMPV6_DESTINATION_UNREACHABLE = int(ICMPv6Type.DESTINATION_UNREACHABLE)
UNREACHABLE_THRESHOLD = 3
"""§9.3.4: Destination Unreachable errors about a binding before it is deleted (UMIP: 3)."""


@dataclass(frozen=True, slots=True)
class NodeKeyState:
    """What a restarted CN needs so that tokens it handed out stay valid (§5.2.3, §5.2.7):
    Kcn, the index of the current nonce and the nonces still valid with their age in seconds
    (relative, so that the runtime can carry them across clocks). ``repr`` hides the secrets.
    """

    node_key: bytes
    current_index: int
    nonces: tuple[tuple[int, bytes, float], ...]
    """(index, nonce, age in seconds), oldest first."""

    def __repr__(self) -> str:
        return (
            f"NodeKeyState(node_key=<redacted>, current_index={self.current_index}, "
            f"nonces={len(self.nonces)})"
        )


@dataclass(frozen=True, slots=True)
class CorrespondentConfig:
    """Correspondent node policy.

    Attributes:
        address: this node's address (source of BEs and BRRs when no better one is known).
        route_optimization: initial state of the ``ro on|off`` switch.
        max_binding_lifetime: cap in seconds (MAX_RR_BINDING_LIFETIME = 420, §5.2.6/§12).
        nonce_rotation_interval: a new nonce (and index) is generated this often (§5.2.7).
        refresh_request_lead: send a BRR this many seconds before a binding in active use
            expires (§9.5.5), at most a quarter of its lifetime; ``None`` = never.
    """

    address: IPv6Address
    route_optimization: bool = True
    max_binding_lifetime: int = MAX_RR_BINDING_LIFETIME
    nonce_rotation_interval: float = 30.0
    refresh_request_lead: float | None = 20.0


class CorrespondentNode:
    """RFC 6275 §9 correspondent node core (route optimization)."""

    def __init__(
        self,
        config: CorrespondentConfig,
        *,
        random_bytes: RandomBytes = os.urandom,
        stats: MobilityStats | None = None,
        home_registrations: BindingCache | None = None,
        encode_mh_data: MhDataEncoder = mh_data_for_authenticator,
    ) -> None:
        self.config = config
        self.stats = stats if stats is not None else MobilityStats()
        self.cache = BindingCache()
        self.home_registrations = home_registrations
        """The co-located home agent's cache (for status 139), if this node is also an HA."""
        self.route_optimization = config.route_optimization
        self._kcn = new_node_key(random_bytes)
        self.nonces = NonceTable(random_bytes, rotation_interval=config.nonce_rotation_interval)
        self._encode_mh_data = encode_mh_data
        self._brr_heap: list[tuple[float, float, IPv6Address]] = []
        self._unreachable_counts: dict[IPv6Address, int] = {}
        self._in_use: set[IPv6Address] = set()
        """HoAs whose binding carried data since it was (re-)registered (§9.5.5)."""

    # ----------------------------------------------------------------------------------------
    # Driving the core
    # ----------------------------------------------------------------------------------------

    def handle(self, event: CorrespondentInput, now: float) -> list[Action]:
        if isinstance(event, MobilityMessageReceived):
            return self._mobility_message(event, now)
        if isinstance(event, RouteOptimizationSwitched):
            return self._switch(event.enabled)
        if isinstance(event, IcmpErrorReceived):
            return self._icmp_error(event)
        if isinstance(event, BindingsInUse):
            self._in_use.update(event.home_addresses)
            return []
        if isinstance(event, DataplaneCountersSampled):
            self.stats.NEncapsulations = event.encapsulations
            self.stats.NDecapsulations = event.decapsulations
            return []
        if isinstance(event, MobilityHeaderRejected):
            count_rejected_mobility_header(self.stats, event)
            return []
        assert_never(event)

    def handle_timer(self, now: float) -> list[Action]:
        actions: list[Action] = []
        for entry, previous in self.cache.pop_expired(now):
            self._in_use.discard(entry.home_address)
            if previous is BindingState.REGISTERED:
                actions.append(RemoveRouteOptimization(entry.home_address))
                actions.append(BindingExpired(entry.home_address, entry.care_of_address, False))
        heap = self._brr_heap
        while heap and heap[0][0] <= now:
            _, registered_at, home_address = heapq.heappop(heap)
            bound = self.cache.get(home_address)
            if (
                bound is None
                or bound.state is not BindingState.REGISTERED
                or bound.registered_at != registered_at
                or bound.brr_sent
                or home_address not in self._in_use
            ):
                continue
            # §9.5.5: ask the MN to refresh a binding in active use that is about to expire.
            bound.brr_sent = True
            self.stats.NBindRqsSent += 1
            actions.append(
                SendMobilityMessage(BindingRefreshRequest(), self.config.address, home_address)
            )
        return actions

    def next_deadline(self) -> float | None:
        deadlines = [d for d in (self.cache.next_expiry(),) if d is not None]
        heap = self._brr_heap
        while heap:
            due, registered_at, home_address = heap[0]
            entry = self.cache.get(home_address)
            if (
                entry is not None
                and entry.state is BindingState.REGISTERED
                and entry.registered_at == registered_at
                and not entry.brr_sent
            ):
                deadlines.append(due)
                break
            heapq.heappop(heap)
        return min(deadlines) if deadlines else None

    # ----------------------------------------------------------------------------------------
    # Persistence hooks (pure: the runtime stores and loads, nfq_mip6.store)
    # ----------------------------------------------------------------------------------------

    def export_key_state(self, now: float) -> NodeKeyState:
        """Kcn and the nonces still valid at ``now`` (§5.2.7: at most MAX_NONCE_LIFETIME)."""
        table = self.nonces
        nonces = tuple(
            (index, nonce, now - created)
            for index, (nonce, created) in table._nonces.items()
            if now - created < table.lifetime
        )
        return NodeKeyState(self._kcn, table._current_index, nonces)

    def restore_key_state(self, state: NodeKeyState, now: float) -> None:
        """Take Kcn and the nonces of a previous run (call at start, before any event): keygen
        tokens computed before the restart verify again, and the nonce indices continue.
        Nonces older than MAX_NONCE_LIFETIME are dropped."""
        table = self.nonces
        self._kcn = state.node_key
        table._nonces.clear()
        for index, nonce, age in sorted(state.nonces, key=lambda item: -item[2]):
            if 0 <= age < table.lifetime:
                table._nonces[index & 0xFFFF] = (nonce, now - age)
        table._current_index = state.current_index & 0xFFFF

    def restore_binding(
        self,
        home_address: IPv6Address,
        care_of_address: IPv6Address,
        *,
        sequence: int,
        flags: int,
        lifetime: int,
        remaining: float,
        now: float,
    ) -> list[Action]:
        """Re-insert a binding saved by a previous run with ``remaining`` seconds left (none if
        ≤ 0, or if one exists); returns the action installing its route optimization."""
        if remaining <= 0 or home_address in self.cache or not self.route_optimization:
            return []
        entry = BindingCacheEntry(
            home_address,
            care_of_address,
            sequence=sequence & 0xFFFF,
            flags=flags,
            lifetime=lifetime,
            now=now,
            home_registration=False,
        )
        self.cache.insert(entry)
        self.cache.set_expiry(entry, now + remaining)
        self._schedule_brr(entry)
        return [InstallRouteOptimization(home_address, care_of_address)]

    def has_binding(self, home_address: IPv6Address) -> bool:
        """A route-optimization binding is in force for ``home_address``."""
        entry = self.cache.get(home_address)
        return entry is not None and entry.state is BindingState.REGISTERED

    def check_home_address_option(
        self,
        src: IPv6Address,
        home_address: IPv6Address,
        now: float,
        local_address: IPv6Address | None = None,
    ) -> list[Action]:
        """§9.3.1: a data packet with an HAO is accepted only if a binding maps
        ``home_address`` to ``src``; otherwise drop it and send BE 1 to ``src`` (§9.3.3).
        An existing binding is left unchanged (TAHI CN-6-2-x).

        Returns ``[]`` when the packet may be delivered (as if from the HoA).
        """
        if has_binding(self.cache, home_address, src):
            return []
        return unknown_binding_error(src, home_address, local_address or self.config.address)

    def binding_cache_rows(self, now: float) -> list[BindingCacheRow]:
        return [
            binding_cache_row(entry, now)
            for entry in self.cache
            if entry.state is BindingState.REGISTERED
        ]

    # ----------------------------------------------------------------------------------------
    # Messages
    # ----------------------------------------------------------------------------------------

    def _icmp_error(self, event: IcmpErrorReceived) -> list[Action]:
        """§9.3.4: persistent ICMP Destination Unreachable for a bound MN deletes the binding
        (after UNREACHABLE_THRESHOLD errors, as UMIP does); later HAO packets get BE 1."""
        destination = event.invoking_destination
        if event.icmp_type != ICMPV6_DESTINATION_UNREACHABLE or destination is None:
            return []
        for entry in self.cache:
            if entry.state is not BindingState.REGISTERED or destination not in (
                entry.care_of_address,
                entry.home_address,
            ):
                continue
            count = self._unreachable_counts.get(entry.home_address, 0) + 1
            self._unreachable_counts[entry.home_address] = count
            if count < UNREACHABLE_THRESHOLD:
                return []
            del self._unreachable_counts[entry.home_address]
            self.cache.remove(entry.home_address, BindingState.DELETED)
            return [
                RemoveRouteOptimization(entry.home_address),
                BindingDeleted(entry.home_address, entry.care_of_address, False),
            ]
        return []

    def _switch(self, enabled: bool) -> list[Action]:
        self.route_optimization = enabled
        if enabled:
            return []
        actions: list[Action] = []
        for entry in self.cache:
            state = entry.state
            self.cache.remove(entry.home_address, BindingState.DELETED)
            if state is BindingState.REGISTERED:
                actions.append(RemoveRouteOptimization(entry.home_address))
                actions.append(BindingDeleted(entry.home_address, entry.care_of_address, False))
        # Tokens handed out so far must not authorize anything later (§5.2.8).
        self.nonces.invalidate_all()
        return actions

    def _mobility_message(self, event: MobilityMessageReceived, now: float) -> list[Action]:
        message = event.message
        if isinstance(message, BindingUpdate):
            return self._binding_update(event, message, now)
        if isinstance(message, HomeTestInit):
            return self._test_init(event, message.cookie, home=True, now=now)
        if isinstance(message, CareofTestInit):
            return self._test_init(event, message.cookie, home=False, now=now)
        if isinstance(message, UnknownMobilityMessage | HomeAgentSwitch):
            # §9.2: unknown MH type → BE 2 to the source (not if it is not unicast). A Home
            # Agent Switch is for mobile nodes only (RFC 5142 §6): a CN does not process it.
            error = binding_error(
                status=BEStatus.UNRECOGNIZED_MH_TYPE,
                offending_src=event.src,
                home_address=event.home_address,
                local_address=self._local(event),
            )
            return [error] if error is not None else []
        return [MessageDiscarded("unexpected-mh-type", event.src, None)]

    def _local(self, event: MobilityMessageReceived) -> IPv6Address:
        return event.dst if is_unicast_routable(event.dst) else self.config.address

    def _test_init(
        self, event: MobilityMessageReceived, cookie: bytes, *, home: bool, now: float
    ) -> list[Action]:
        """§9.4.1/§9.4.2: answer HoTI with HoT (to the HoA), CoTI with CoT (to the CoA)."""
        mh_type = MHType.HOTI if home else MHType.COTI
        if not self.route_optimization:
            return [MessageDiscarded("route-optimization-off", event.src, mh_type)]
        if event.home_address is not None:
            return [MessageDiscarded("test-init-with-hao", event.src, mh_type)]
        if not is_unicast_routable(event.src):
            return [MessageDiscarded("address-not-unicast-routable", event.src, mh_type)]
        index, nonce = self.nonces.current(now)
        if home:
            token = home_keygen_token(self._kcn, event.src, nonce)
            reply: HomeTest | CareofTest = HomeTest(index, cookie, token)
        else:
            token = careof_keygen_token(self._kcn, event.src, nonce)
            reply = CareofTest(index, cookie, token)
        return [SendMobilityMessage(reply, self._local(event), event.src)]

    def _ba(
        self,
        event: MobilityMessageReceived,
        bu: BindingUpdate,
        status: int,
        *,
        sequence: int | None = None,
        lifetime_units: int = 0,
        signed_with: tuple[bytes, IPv6Address, IPv6Address] | None = None,
    ) -> SendMobilityMessage:
        """A BA to the BU's source; ``signed_with`` = (Kbm, care-of address, correspondent)
        adds the BAD (§9.5.4: every BA to an authorized BU, not 136/137/138)."""
        action = binding_ack(
            status=status,
            sequence=bu.sequence if sequence is None else sequence,
            lifetime_units=lifetime_units,
            bu_src=event.src,
            bu_dst=event.dst,
            bu_home_address=event.home_address,
            stats=self.stats,
        )
        if signed_with is None:
            return action
        kbm, care_of_address, correspondent = signed_with
        message = action.message
        assert isinstance(message, BindingAck)
        signed = with_authenticator(
            message, kbm, care_of_address, correspondent, self._encode_mh_data
        )
        return dataclasses.replace(action, message=signed)

    def _binding_update(
        self, event: MobilityMessageReceived, bu: BindingUpdate, now: float
    ) -> list[Action]:
        stats = self.stats
        stats.NBindUpdatesRcvd += 1
        if not self.route_optimization:
            stats.NBindUpdatesDropMisc += 1
            return [MessageDiscarded("route-optimization-off", event.src, MHType.BU)]
        home_address = event.home_address if event.home_address is not None else event.src
        care_of_address = event.src
        indices: NonceIndices | None = None
        for option in bu.options:
            if isinstance(option, AlternateCareofAddress):
                care_of_address = option.address
            elif isinstance(option, NonceIndices):
                indices = option
        if not is_unicast_routable(home_address) or not is_unicast_routable(care_of_address):
            stats.NBindUpdatesDropInvalid += 1
            return [MessageDiscarded("address-not-unicast-routable", event.src, MHType.BU)]

        # H = 1 at a correspondent: silent drop with Nonce Indices (UMIP, TAHI CN-5-3-4..6),
        # otherwise 139 if a correspondent binding exists, else 131 (§9.5.1, §10.3.1).
        if bu.flags & BUFlags.H:
            if indices is not None:
                stats.NBindUpdatesDropInvalid += 1
                return [MessageDiscarded("nonce-indices-in-home-bu", event.src, MHType.BU)]
            status = (
                BAStatus.REGISTRATION_TYPE_CHANGE_DISALLOWED
                if self.has_binding(home_address)
                else BAStatus.HOME_REGISTRATION_NOT_SUPPORTED
            )
            return [
                self._ba(event, bu, status),
                BindingRejected(home_address, care_of_address, False, status),
            ]
        # §9.5.1: a correspondent registration needs Nonce Indices.
        if indices is None:
            stats.NBindUpdatesDropInvalid += 1
            return [MessageDiscarded("missing-nonce-indices", event.src, MHType.BU)]
        deletion = bu.lifetime == 0 or care_of_address == home_address

        # §9.5.1: expired nonce indices → 136/137/138, even with A = 0, without BAD. A
        # deletion validates only the home nonce index; the care-of index is ignored.
        home_nonce = self.nonces.lookup(indices.home_nonce_index, now)
        careof_nonce = None if deletion else self.nonces.lookup(indices.careof_nonce_index, now)
        home_bad = home_nonce is None
        careof_bad = not deletion and careof_nonce is None
        if home_bad or careof_bad:
            if home_bad and careof_bad:
                status = BAStatus.EXPIRED_NONCES
            elif home_bad:
                status = BAStatus.EXPIRED_HOME_NONCE_INDEX
            else:
                status = BAStatus.EXPIRED_CAREOF_NONCE_INDEX
            stats.NBindUpdatesDropAuth += 1
            return [
                self._ba(event, bu, status),
                BindingRejected(home_address, care_of_address, False, status),
            ]
        assert home_nonce is not None
        # §5.2.5/§5.2.6: recompute the tokens and Kbm, verify the BAD (last, no padding).
        home_token = home_keygen_token(self._kcn, home_address, home_nonce)
        careof_token = (
            None
            if careof_nonce is None
            else careof_keygen_token(self._kcn, care_of_address, careof_nonce)
        )
        kbm = binding_management_key(home_token, careof_token)
        correspondent = event.routing_address or event.dst
        if not verify_authenticator(kbm, care_of_address, correspondent, event.mh_bytes):
            stats.NBindUpdatesDropAuth += 1
            return [MessageDiscarded("bad-authenticator", event.src, MHType.BU)]
        signing = (kbm, care_of_address, correspondent)

        # §9.5.1: registration type change → 139 (the home registration stays as it is).
        if self.home_registrations is not None:
            home_entry = self.home_registrations.get(home_address)
            if home_entry is not None and home_entry.state is not BindingState.DELETED:
                status = BAStatus.REGISTRATION_TYPE_CHANGE_DISALLOWED
                return [
                    self._ba(event, bu, status, signed_with=signing),
                    BindingRejected(home_address, care_of_address, False, status),
                ]
        entry = self.cache.get(home_address)
        # §9.5.1: sequence number not newer → 135 carrying the last accepted number.
        if entry is not None and not seq_newer(bu.sequence, entry.sequence):
            status = BAStatus.SEQUENCE_NUMBER_OUT_OF_WINDOW
            return [
                self._ba(event, bu, status, sequence=entry.sequence, signed_with=signing),
                BindingRejected(home_address, care_of_address, False, status),
            ]
        # §6.1.7: a CoA that is the HoA of another binding would loop (TAHI CN-5-4-2).
        if not deletion and self.has_binding(care_of_address):
            stats.NBindUpdatesDropInvalid += 1
            return [MessageDiscarded("circular-binding", event.src, MHType.BU)]

        actions: list[Action] = []
        if deletion:
            lifetime = 0
            if entry is not None and entry.state is BindingState.REGISTERED:
                actions.append(RemoveRouteOptimization(home_address))
                actions.append(BindingDeleted(home_address, entry.care_of_address, False))
            # §5.2.8: keep the sequence number until the nonces expire, against replays.
            if entry is None:
                entry = BindingCacheEntry(
                    home_address,
                    care_of_address,
                    sequence=bu.sequence,
                    flags=int(bu.flags),
                    lifetime=0,
                    now=now,
                    home_registration=False,
                )
                self.cache.insert(entry)
            entry.sequence = bu.sequence
            self.cache.guard(entry, now + MAX_NONCE_LIFETIME)
        else:
            lifetime = min(bu.lifetime * LIFETIME_UNIT, self.config.max_binding_lifetime)
            lifetime -= lifetime % LIFETIME_UNIT
            if entry is None:
                entry = BindingCacheEntry(
                    home_address,
                    care_of_address,
                    sequence=bu.sequence,
                    flags=int(bu.flags),
                    lifetime=lifetime,
                    now=now,
                    home_registration=False,
                )
                self.cache.insert(entry)
                actions.append(InstallRouteOptimization(home_address, care_of_address))
                actions.append(
                    BindingRegistered(
                        home_address, care_of_address, False, care_of_address, lifetime
                    )
                )
            else:
                was_registered = entry.state is BindingState.REGISTERED
                changed = not was_registered or entry.care_of_address != care_of_address
                self.cache.register(
                    entry,
                    care_of_address=care_of_address,
                    sequence=bu.sequence,
                    flags=int(bu.flags),
                    lifetime=lifetime,
                    now=now,
                )
                if changed:
                    actions.append(InstallRouteOptimization(home_address, care_of_address))
                event_cls = BindingRefreshed if was_registered else BindingRegistered
                actions.append(
                    event_cls(home_address, care_of_address, False, care_of_address, lifetime)
                )
            self._schedule_brr(entry)
            self._unreachable_counts.pop(home_address, None)
        # §9.5.4: BA only when A = 1; it carries a BAD computed with Kbm.
        if bu.flags & BUFlags.A:
            ba = self._ba(
                event,
                bu,
                BAStatus.ACCEPTED,
                lifetime_units=lifetime // LIFETIME_UNIT,
                signed_with=signing,
            )
            actions.insert(0, ba)
        return actions

    def _schedule_brr(self, entry: BindingCacheEntry) -> None:
        """§9.5.5: the BRR falls due ``refresh_request_lead`` (at most a quarter of the
        lifetime) before expiry; it is sent then only if the binding carried data meanwhile."""
        self._in_use.discard(entry.home_address)
        lead = self.config.refresh_request_lead
        if lead is None or entry.lifetime <= 0:
            return
        lead = min(lead, entry.lifetime / 4)
        heapq.heappush(
            self._brr_heap, (entry.expires_at - lead, entry.registered_at, entry.home_address)
        )
