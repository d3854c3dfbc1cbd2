"""Mobile Node role (RFC 6275 §11): home registration, movement, and correspondent
registrations, composed from the Binding Update List, discovery and return routability.
Sans-I/O: ``handle(event, now) -> list[Action]``.

The parts it composes (each sans-I/O, each with its own tests):

* :mod:`~nfq_mip6.mobility.binding_update_list`: the BUL entries (§11.1) and their state
  transition table;
* :mod:`~nfq_mip6.mobility.discovery`: DHAAD (§11.4.1) and Mobile Prefix Solicitation
  (§11.4.2);
* :mod:`~nfq_mip6.mobility.mn_return_routability`: the MN side of return routability with one
  correspondent (§11.6, §11.7.2).

Theory of operation:

* The **Binding Update List** (§11.1) has one :class:`BindingUpdateListEntry` per destination:
  the home agent (home registration) and each correspondent node using route optimization.
* **Home registration** (§11.7.1): BU with A|H (and L if configured), HAO = HoA, AltCoA = CoA,
  lifetime ≤ min(configured, remaining CoA lifetime), from the CoA to the HA. Unanswered BUs are
  retransmitted after 1.5 s for a first registration (InitialBindackTimeoutFirstReg, it covers
  the HA's proxy DAD) and 1 s otherwise, doubling up to 32 s and then continuing at 32 s;
  every (re)transmission carries a new sequence number (§11.8). No destination gets more than
  MAX_UPDATE_RATE = 3 BUs per second.
* **BA** (§11.7.3): the sequence number must match the outstanding BU (except status 135,
  whose BA carries the HA's last accepted number: resend with that + 1). Status < 128 means
  accepted; 1 additionally asks for a Mobile Prefix Solicitation. The binding is refreshed
  at the BRA interval when present, else at 80 % of the granted lifetime, counted from when
  the BU was sent.
* **Movement** (§11.5): a new CoA sends a new home BU and re-runs the care-of half of return
  routability for each correspondent. Back on the home link, the MN de-registers (BU from
  the HoA, no HAO, lifetime 0); when the BA arrives it removes the tunnel, puts the HoA back
  on the home interface and multicasts a Neighbor Advertisement for it (§11.5.5).
* **Return routability** (§11.6): HoTI through the reverse tunnel (src HoA), CoTI directly
  (src CoA); a HoT/CoT is accepted only with the outstanding cookie, from the CN, to the
  right address. Tokens are used for MAX_TOKEN_LIFETIME = 210 s. Then the CN BU carries
  Nonce Indices and a BAD (§11.7.2); the CN's BA must carry a valid BAD.
* **Fallback to the tunnel**: BE 2 from a CN, an ICMP Parameter Problem code 1 (the CN does not
  know MH), or ``ro off`` stop route optimization with that CN.
* **DHAAD** (§11.4.1) when no HA is configured: request to the home prefix's home-agents
  anycast address, retransmitted after 3 s, doubling, 4 times; the HAs are tried in order.
* **Home Agent Switch** (RFC 5142 §6): accepted only away from home, from the home agent the
  MN is registered with, protected as its BAs are (MN–HA authentication, RFC 4285). The MN
  takes the first listed home agent other than the sender (none listed: DHAAD, leaving the
  sender out), **de-registers from the old home agent first** (BU from the CoA, lifetime 0)
  and then registers with the new one: on a shared home link the old HA's proxy ND would
  defend the home address against the new HA's proxy DAD (RFC 6275 §10.4.1, status 134) if
  both held a binding. An old HA that does not answer its de-registration (3 BUs over 7 s) is
  left anyway. A refused registration tries the next listed HA, and after the last one
  registers with the old HA again. A move or a return home ends the switch.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, replace
from enum import Enum
from ipaddress import IPv6Address, IPv6Network
from typing import Protocol, assert_never

from nfq_mip6.constants import (
    DEFAULT_HA_MAX_BINDING_LIFETIME,
    HOME_AGENT_SWITCH_DEREGISTRATION_GIVE_UP,
    INITIAL_BINDACK_TIMEOUT,
    INITIAL_BINDACK_TIMEOUT_FIRST_REG,
    LIFETIME_UNIT,
    MAX_BINDACK_TIMEOUT,
    MAX_LIFETIME_UNITS,
    MAX_RR_BINDING_LIFETIME,
    MAX_UPDATE_RATE,
    RESTORED_HOME_AGENT_GIVE_UP,
)
from nfq_mip6.mobility import mn_return_routability as mn_rr
from nfq_mip6.mobility.binding import seq_next
from nfq_mip6.mobility.binding_update_list import (
    AWAITING_ACK,
    IN_FORCE,
    BindingUpdateListEntry,
    BindingUpdateListRecord,
    BindingUpdateListRow,
    BulState,
)
from nfq_mip6.mobility.common import binding_error, is_unicast_routable
from nfq_mip6.mobility.discovery import (
    HomeAgentDiscovery,
    MobilePrefixDiscovery,
    home_agents_anycast,
)
from nfq_mip6.mobility.events import (
    Action,
    BindingDeleted,
    BindingExpired,
    BindingRefreshed,
    BindingRegistered,
    BindingRejected,
    DataPacketFromCorrespondent,
    DataplaneCountersSampled,
    HomeAddressAtHome,
    HomeAddressAway,
    HomeAgentDiscovered,
    HomeAgentSwitchFollowed,
    IcmpErrorReceived,
    InstallReverseTunnel,
    InstallRouteOptimization,
    MessageDiscarded,
    MobileNodeInput,
    MobilePrefixAdvertisementReceived,
    MobileRouterNotAcknowledged,
    MobilityMessageReceived,
    MovedToForeignLink,
    PrepareCareOfAddress,
    RemoveReverseTunnel,
    RemoveRouteOptimization,
    RestoreHomeLink,
    ReturnedToHomeLink,
    RouteOptimizationSwitched,
    RouterLost,
    SendMobilityMessage,
    SendNeighborAdvertisement,
    SendRouterSolicitation,
)
from nfq_mip6.mobility.rr import MhDataEncoder, RandomBytes, mh_data_for_authenticator
from nfq_mip6.mobility.stats import MobilityStats
from nfq_mip6.wire.icmp import ICMPv6Type, ParameterProblemCode
from nfq_mip6.wire.mh import (
    BAFlags,
    BAStatus,
    BEStatus,
    BindingAck,
    BindingError,
    BindingRefreshRequest,
    BindingUpdate,
    BUFlags,
    CareofTest,
    HomeAgentSwitch,
    HomeTest,
    HomeTestInit,
    MHType,
    UnknownMobilityMessage,
)
from nfq_mip6.wire.options import (
    AlternateCareofAddress,
    BindingRefreshAdvice,
    MobileNetworkPrefix,
    MobilityOption,
)

ICMPV6_PARAMETER_PROBLEM = int(ICMPv6Type.PARAMETER_PROBLEM)
PARAMETER_PROBLEM_UNRECOGNIZED_NEXT_HEADER = int(ParameterProblemCode.UNRECOGNIZED_NEXT_HEADER)
PARAMETER_PROBLEM_UNRECOGNIZED_OPTION = int(ParameterProblemCode.UNRECOGNIZED_OPTION)
SEQUENCE_QUARTER_SPACE = 1 << 14
"""RFC 1982 serial arithmetic on 16 bits: a number less than 2 ** 15 ahead is newer."""
REFRESH_FRACTION = 0.8
"""Refresh a binding after this fraction of its granted lifetime when the HA sent no BRA."""


@dataclass(frozen=True, slots=True)
class MobileNodeConfig:
    """Mobile node settings (network-mip6.conf / UMIP ``mip6d.conf`` equivalents).

    Attributes:
        home_address: the MN's home address.
        home_prefix: the home link prefix (for the DHAAD anycast address and home detection).
        home_agent: the HA's address; ``None`` = find one with DHAAD (§11.4.1).
        home_registration_lifetime: requested home binding lifetime in seconds
            (UMIP MnMaxHaBindingLife, 262140 s).
        correspondent_lifetime: requested CN binding lifetime (≤ MAX_RR_BINDING_LIFETIME).
        route_optimization: initial ``ro on|off`` state.
        link_local_compatibility: set the L flag in home registrations (§6.1.7).
        first_registration_timeout: InitialBindackTimeoutFirstReg (§13), 1.5 s.
        mobile_router: register as a mobile router (RFC 3963 §5.1): R = 1 in home BUs.
        mobile_network_prefixes: the router's Mobile Network Prefixes; in explicit mode
            (``explicit_prefixes``) each goes into every home registration BU as a Mobile
            Network Prefix option (RFC 3963 §5.2, §4.3); in implicit mode the HA knows them.
    """

    home_address: IPv6Address
    home_prefix: IPv6Network
    home_agent: IPv6Address | None = None
    home_registration_lifetime: int = DEFAULT_HA_MAX_BINDING_LIFETIME
    correspondent_lifetime: int = MAX_RR_BINDING_LIFETIME
    route_optimization: bool = True
    link_local_compatibility: bool = False
    first_registration_timeout: float = INITIAL_BINDACK_TIMEOUT_FIRST_REG
    mobile_router: bool = False
    mobile_network_prefixes: tuple[IPv6Network, ...] = ()
    explicit_prefixes: bool = True


class BindingAckCheck(Enum):
    """What the MN does with a BA from its HA after MN–HA authentication (RFC 4285 §5.1, §6)."""

    ACCEPT = "accept"
    """Authenticated (or no SA): process it."""
    DROP = "drop"
    """Not authenticated, or a stale echo: it counts as unprotected (NBindAcksDropAuth)."""
    RESYNC = "resync"
    """An authenticated 144/145: the clock offset or Mesg-ID use was adjusted; discard it
    silently, the BU retransmission carries the fix."""


class HomeRegistrationAuthenticator(Protocol):
    """MN–HA authentication of home registrations (RFC 4285:
    ``security.mobile_node_auth.MobileNodeAuthenticator``), the MN's counterpart of the HA's
    ``HomeRegistrationAuthorizer``."""

    def sign_binding_update(
        self, bu: BindingUpdate, care_of_address: IPv6Address, home_address: IPv6Address
    ) -> BindingUpdate: ...

    def check_binding_ack(
        self,
        ba: BindingAck,
        mh_bytes: bytes,
        care_of_address: IPv6Address,
        home_address: IPv6Address,
    ) -> BindingAckCheck: ...

    def check_home_agent_switch(
        self, mh_bytes: bytes, care_of_address: IPv6Address, home_address: IPv6Address
    ) -> bool: ...


@dataclass(slots=True)
class _HomeAgentSwitch:
    """A Home Agent Switch being followed (RFC 5142 §6.1): the home agent that sent it, the
    listed ones still to try, and the one chosen (``None`` while DHAAD runs)."""

    old: IPv6Address
    candidates: list[IPv6Address]
    new: IPv6Address | None = None


SWITCH_COUNTERS: tuple[str, ...] = ("switch_received", "switch_followed", "switch_completed")
"""Home Agent Switch messages received (valid or not), followed, and ended with an accepted
registration at the new home agent (:attr:`MobileNode.switch_counters`)."""


class Location(Enum):
    UNKNOWN = "unknown"
    HOME = "home"
    AWAY = "away"


def _restored_entry(
    record: BindingUpdateListRecord, hoa: IPv6Address, now: float, *, home_registration: bool
) -> BindingUpdateListEntry:
    """A BOUND BUL entry for a saved ``record`` still in force, its route counted as
    installed, with the lifetime it has left at ``now``."""
    entry = BindingUpdateListEntry(
        record.destination,
        hoa,
        record.care_of_address,
        home_registration=home_registration,
        sequence=record.sequence & 0xFFFF,
        state=BulState.BOUND,
    )
    entry.bound_once = True
    entry.route_installed = True
    entry.sent_flags = int(BUFlags.A | BUFlags.H) if home_registration else int(BUFlags.A)
    entry.lifetime_granted = record.lifetime_granted
    entry.expires_at = now + record.remaining
    entry.refresh_at = now + record.remaining * (1 - REFRESH_FRACTION)
    entry.sent_at = entry.expires_at - max(record.lifetime_granted, record.remaining)
    return entry


class MobileNode:
    """RFC 6275 §11 mobile node core."""

    def __init__(
        self,
        config: MobileNodeConfig,
        *,
        random_bytes: RandomBytes = os.urandom,
        stats: MobilityStats | None = None,
        encode_mh_data: MhDataEncoder = mh_data_for_authenticator,
        authenticator: HomeRegistrationAuthenticator | None = None,
    ) -> None:
        self.config = config
        self.authenticator = authenticator
        self.stats = stats if stats is not None else MobilityStats()
        self._random_bytes = random_bytes
        self._encode_mh_data = encode_mh_data
        self.location = Location.UNKNOWN
        self.care_of_address: IPv6Address | None = None
        self.coa_valid_until = math.inf
        self.home_agent = config.home_agent
        self.route_optimization = config.route_optimization
        self.bul: dict[IPv6Address, BindingUpdateListEntry] = {}
        self._discovery = HomeAgentDiscovery(mobile_router=config.mobile_router)
        self._no_route_optimization: set[IPv6Address] = set()
        self._wanted_correspondents: set[IPv6Address] = set()
        self._acknowledged_coa: IPv6Address | None = None
        """The CoA the HA acknowledged last (None after a move until the new one is)."""
        self._home_agent_direct: tuple[IPv6Address, IPv6Address] | None = None
        """(HA, CoA) while packets from the HoA to the HA leave directly with an HAO."""
        self._prefix_discovery = MobilePrefixDiscovery()
        # restored last sequence numbers (§11.7.1) of destinations with no entry yet
        self._sequence_floor: dict[IPv6Address, int] = {}
        self._ha_switch: _HomeAgentSwitch | None = None
        self.switch_counters: dict[str, int] = dict.fromkeys(SWITCH_COUNTERS, 0)
        self._restored_home_agent: IPv6Address | None = None
        """The home agent a previous run was switched to (RFC 5142), until it answers."""

    # ----------------------------------------------------------------------------------------
    # Driving the core
    # ----------------------------------------------------------------------------------------

    def handle(self, event: MobileNodeInput, now: float) -> list[Action]:
        if isinstance(event, MobilityMessageReceived):
            return self._mobility_message(event, now)
        if isinstance(event, MovedToForeignLink):
            return self._moved(event, now)
        if isinstance(event, ReturnedToHomeLink):
            return self._returned_home(now)
        if isinstance(event, RouterLost):
            return [SendRouterSolicitation()]
        if isinstance(event, HomeAgentDiscovered):
            return self._home_agents_discovered(event, now)
        if isinstance(event, IcmpErrorReceived):
            return self._icmp_error(event)
        if isinstance(event, RouteOptimizationSwitched):
            return self._switch(event.enabled, now)
        if isinstance(event, DataPacketFromCorrespondent):
            return self._data_from_correspondent(event.correspondent, now)
        if isinstance(event, MobilePrefixAdvertisementReceived):
            return self._mobile_prefix_advertisement(event, now)
        if isinstance(event, DataplaneCountersSampled):
            self.stats.NEncapsulations = event.encapsulations
            self.stats.NDecapsulations = event.decapsulations
            return []
        assert_never(event)

    def handle_timer(self, now: float) -> list[Action]:
        actions: list[Action] = []
        for entry in list(self.bul.values()):
            if self.bul.get(entry.destination) is not entry:
                continue
            actions += self._entry_timer(entry, now)
        actions += self._discovery.timer(self.care_of_address, self.home_agents_anycast(), now)
        actions += self._mps_timer(now)
        return actions

    def next_deadline(self) -> float | None:
        deadlines: list[float] = []
        for entry in self.bul.values():
            if entry.state in AWAITING_ACK or entry.deferred:
                deadlines.append(entry.next_retransmit_at)
            if entry.state is BulState.RR_PENDING:
                deadlines.append(entry.rr_next_at)
            if entry.state is BulState.BOUND:
                deadlines.append(entry.refresh_at)
            if entry.state in IN_FORCE:
                deadlines.append(entry.expires_at)
        for deadline in (self._discovery.next_deadline(), self._prefix_discovery.next_deadline()):
            if deadline is not None:
                deadlines.append(deadline)
        finite = [d for d in deadlines if d != math.inf]
        return min(finite) if finite else None

    # ----------------------------------------------------------------------------------------
    # Operator snapshots
    # ----------------------------------------------------------------------------------------

    def binding_update_list_rows(self, now: float) -> list[BindingUpdateListRow]:
        """``mipdiag -l``: one row per destination, the home agent first."""
        entries = sorted(self.bul.values(), key=lambda e: not e.home_registration)
        return [entry.row(now) for entry in entries]

    def binding_update_list_records(self, now: float) -> list[BindingUpdateListRecord]:
        """The BUL as :class:`BindingUpdateListRecord` for persistence (with the restored
        sequence floors of destinations that have no entry yet, as ``state`` "none")."""
        records = [entry.record(now) for entry in self.bul.values()]
        hoa = self.config.home_address
        for destination, sequence in self._sequence_floor.items():
            if destination not in self.bul:
                home = destination == self.home_agent
                records.append(
                    BindingUpdateListRecord(destination, hoa, hoa, sequence, home, "none", 0, 0.0)
                )
        return records

    def restore_home_agent(self, home_agent: IPv6Address) -> None:
        """A previous run followed a Home Agent Switch (RFC 5142 §6.2) to ``home_agent`` and
        was registered with it: this run registers with it too, not with the configured one
        (call once, before :meth:`restore_binding_update_list`). Until it answers a BU, the
        configured home agent (DHAAD without one) is the fallback: when it refuses the
        registration, or does not answer by the time the retransmission delay reaches
        ``RESTORED_HOME_AGENT_GIVE_UP`` (BUs at 0, 1 and 3 s, left at 7 s)."""
        if home_agent == self.home_agent:
            return
        self.home_agent = home_agent
        self._restored_home_agent = home_agent

    @property
    def registered_home_agent(self) -> IPv6Address | None:
        """The home agent whose BA accepted the current home registration (what a restart
        registers with again), ``None`` when no home registration is in force."""
        entry = self.home_entry
        if entry is None or not entry.bound_once or entry.state not in IN_FORCE:
            return None
        return entry.destination

    def _restored_home_agent_failed(self, now: float) -> list[Action]:
        """The home agent restored from the previous run refused or did not answer: its
        entry goes (its sequence number stays the floor) and the MN registers with the
        configured home agent, or runs DHAAD."""
        failed = self._restored_home_agent
        assert failed is not None
        self._restored_home_agent = None
        hoa = self.config.home_address
        actions: list[Action] = []
        entry = self.bul.pop(failed, None)
        if entry is not None:
            self._sequence_floor[failed] = entry.sequence
            actions += self._home_agent_indirect()
            if entry.route_installed:
                actions.append(RemoveReverseTunnel(hoa))
            actions.append(BindingDeleted(hoa, failed, True))
        self.home_agent = self.config.home_agent
        if self.location is not Location.AWAY or self.care_of_address is None:
            return actions
        if self.home_agent is None:
            return actions + self._dhaad_start(now)
        return actions + self._start_home_registration(now)

    def restore_binding_update_list(
        self, records: Iterable[BindingUpdateListRecord], now: float
    ) -> list[BindingUpdateListEntry]:
        """Seed the BUL from records saved by a previous run (call once, before any event).

        * Every record's ``sequence`` becomes the floor for that destination: its next BU
          carries ``sequence + 1`` (§11.7.1), not a fresh random number that the HA or CN
          would refuse with 135.
        * A home registration still in force (``remaining`` > 0) becomes a BOUND entry
          with that much lifetime left, its tunnel counted as installed (the runtime adopts
          the kernel state); the next movement decision refreshes it (or de-registers, at
          home). Without a configured home agent, its destination is the home agent again
          (no DHAAD needed).
        * A correspondent binding still in force whose record carries its keygen tokens
          becomes a BOUND entry too, its route optimization counted as installed (the
          runtime adopts or re-installs the data path), when the home registration was
          restored for the same CoA and route optimization is on. Its next refresh uses
          the tokens while they are young enough (§5.2.7), else return routability runs
          again. Any other correspondent record gives only its sequence floor; RR starts
          again when data flows.

        Returns the entries restored as bound (the home registration first).
        """
        records = list(records)
        restored: list[BindingUpdateListEntry] = []
        hoa = self.config.home_address
        for record in records:
            if record.home_address != hoa:
                continue
            self._sequence_floor[record.destination] = record.sequence & 0xFFFF
            if not record.home_registration or record.remaining <= 0:
                continue
            if self.home_agent is None:
                self.home_agent = record.destination
            if record.destination != self.home_agent or record.destination in self.bul:
                continue
            entry = _restored_entry(record, hoa, now, home_registration=True)
            self.bul[record.destination] = entry
            self._sequence_floor.pop(record.destination, None)
            restored.append(entry)
        home = self.home_entry
        if home is None or not self.route_optimization:
            return restored
        for record in records:
            rr = record.rr
            if (
                rr is None
                or record.home_registration
                or record.home_address != hoa
                or record.remaining <= 0
                or record.care_of_address != home.care_of_address
                or record.destination in self.bul
                or record.destination in self._no_route_optimization
            ):
                continue
            entry = _restored_entry(record, hoa, now, home_registration=False)
            entry.home_token = rr.home_token
            entry.home_nonce_index = rr.home_nonce_index
            entry.home_token_at = now - rr.home_token_age
            entry.careof_token = rr.careof_token
            entry.careof_nonce_index = rr.careof_nonce_index
            entry.careof_token_at = now - rr.careof_token_age if rr.careof_token else -math.inf
            entry.careof_token_coa = rr.careof_token_coa
            self.bul[record.destination] = entry
            self._sequence_floor.pop(record.destination, None)
            restored.append(entry)
        return restored

    @property
    def home_entry(self) -> BindingUpdateListEntry | None:
        if self.home_agent is None:
            return None
        entry = self.bul.get(self.home_agent)
        return entry if entry is not None and entry.home_registration else None

    # ----------------------------------------------------------------------------------------
    # Sending Binding Updates (§11.7, §11.8)
    # ----------------------------------------------------------------------------------------

    def _initial_sequence(self, destination: IPv6Address | None = None) -> int:
        # A sequence number restored from a previous run continues (§11.7.1: increasing).
        if destination is not None and destination in self._sequence_floor:
            return self._sequence_floor.pop(destination)
        # §11.7.1, docs/protocol-notes.md §3: the RFC recommends a random initial sequence number.
        return int.from_bytes(self._random_bytes(2), "big")

    def _coa_remaining(self, now: float) -> float:
        return self.coa_valid_until - now

    def _transmit(self, entry: BindingUpdateListEntry, now: float) -> list[Action]:
        """Send the entry's next BU (new sequence number), honouring MAX_UPDATE_RATE."""
        times = entry.send_times
        if len(times) == MAX_UPDATE_RATE and now - times[0] < 1.0:
            # §11.8: at most MAX_UPDATE_RATE BUs per second to one destination.
            entry.deferred = True
            entry.next_retransmit_at = times[0] + 1.0
            return []
        entry.deferred = False
        times.append(now)
        entry.sequence = seq_next(entry.sequence)
        entry.sent_at = now
        entry.outstanding[entry.sequence] = now
        entry.next_retransmit_at = now + entry.retransmit_delay
        self.stats.NBindUpdatesSent += 1
        if entry.home_registration:
            return [self._home_bu(entry, now)]
        return [self._correspondent_bu(entry, now)]

    def _home_bu(self, entry: BindingUpdateListEntry, now: float) -> SendMobilityMessage:
        hoa = self.config.home_address
        flags = BUFlags.A | BUFlags.H
        if self.config.link_local_compatibility:
            flags |= BUFlags.L
        if self.config.mobile_router:
            flags |= BUFlags.R  # RFC 3963 §5.2: also in the de-registration
        entry.sent_flags = int(flags)
        if entry.state is BulState.DEREGISTERING and self._switching_from(entry.destination):
            # RFC 5142 §6.1, away: lifetime 0 from the CoA with an HAO, as a home BU is sent;
            # the BA comes back to the CoA with an RH2.
            entry.lifetime_requested = 0
            coa = entry.care_of_address
            bu = BindingUpdate(entry.sequence, flags, 0, (AlternateCareofAddress(coa),))
            return SendMobilityMessage(
                self._signed(bu, coa), coa, entry.destination, home_address=hoa
            )
        if entry.state is BulState.DEREGISTERING:
            # §11.5.5: from the HoA, no HAO, lifetime 0, CoA = HoA; §11.7.1: the Alternate
            # Care-of Address option is in every home registration BU (ESP does not cover
            # the IPv6 source), the de-registration too.
            entry.lifetime_requested = 0
            bu = BindingUpdate(entry.sequence, flags, 0, (AlternateCareofAddress(hoa),))
            return SendMobilityMessage(self._signed(bu, hoa), hoa, entry.destination)
        coa = entry.care_of_address
        # §11.7.1: lifetime ≤ the remaining CoA lifetime and the configured maximum.
        lifetime = min(
            float(self.config.home_registration_lifetime),
            self._coa_remaining(now),
            MAX_LIFETIME_UNITS * LIFETIME_UNIT,
        )
        units = max(1, int(lifetime) // LIFETIME_UNIT)
        entry.lifetime_requested = units * LIFETIME_UNIT
        options: tuple[MobilityOption, ...] = (AlternateCareofAddress(coa),)
        if self.config.mobile_router and self.config.explicit_prefixes:
            # RFC 3963 §5.2 explicit mode: one Mobile Network Prefix option per prefix
            options += tuple(
                MobileNetworkPrefix.of(prefix) for prefix in self.config.mobile_network_prefixes
            )
        bu = BindingUpdate(entry.sequence, flags, units, options)
        return SendMobilityMessage(self._signed(bu, coa), coa, entry.destination, home_address=hoa)

    def _signed(self, bu: BindingUpdate, care_of_address: IPv6Address) -> BindingUpdate:
        """RFC 4285: [MN-ID] Mesg-ID Authentication, a fresh timestamp per transmission."""
        if self.authenticator is None:
            return bu
        return self.authenticator.sign_binding_update(bu, care_of_address, self.config.home_address)

    def accepts_routing_header(self, address: IPv6Address) -> bool:
        """§11.3.3: a type 2 routing header must name this node's home address."""
        return address == self.config.home_address

    def _correspondent_bu(self, entry: BindingUpdateListEntry, now: float) -> SendMobilityMessage:
        hoa = self.config.home_address
        if entry.state is BulState.DEREGISTERING:
            units = 0
            coa = hoa if self.location is not Location.AWAY else entry.care_of_address
        else:
            # §11.7.2: ≤ 420 s, ≤ the home registration's and the CoA's remaining lifetimes.
            home = self.home_entry
            # (a home registration never acknowledged has expires_at = -inf: nothing left)
            home_remaining = max(0.0, home.expires_at - now) if home is not None else 0.0
            lifetime = min(
                float(self.config.correspondent_lifetime),
                float(MAX_RR_BINDING_LIFETIME),
                home_remaining,
                self._coa_remaining(now),
            )
            units = max(1, int(lifetime) // LIFETIME_UNIT)
            coa = entry.care_of_address
        entry.lifetime_requested = units * LIFETIME_UNIT
        return mn_rr.correspondent_binding_update(
            entry,
            home_address=hoa,
            care_of_address=coa,
            units=units,
            encode_mh_data=self._encode_mh_data,
        )

    def _start_home_registration(self, now: float) -> list[Action]:
        ha = self.home_agent
        coa = self.care_of_address
        if ha is None or coa is None:
            return []
        entry = self.bul.get(ha)
        if entry is None:
            entry = BindingUpdateListEntry(
                ha,
                self.config.home_address,
                coa,
                home_registration=True,
                sequence=self._initial_sequence(ha),
            )
            self.bul[ha] = entry
        if entry.care_of_address != coa:
            entry.outstanding.clear()  # a BA to a BU for another CoA does not count
        entry.care_of_address = coa
        first = not entry.bound_once or entry.state not in IN_FORCE
        entry.transition(BulState.REFRESHING if entry.state in IN_FORCE else BulState.REGISTERING)
        # §11.8: 1.5 s for a first home registration (DAD at the HA), 1 s otherwise.
        entry.retransmit_delay = (
            self.config.first_registration_timeout if first else INITIAL_BINDACK_TIMEOUT
        )
        return self._transmit(entry, now)

    def _entry_timer(self, entry: BindingUpdateListEntry, now: float) -> list[Action]:
        actions: list[Action] = []
        if entry.state in IN_FORCE and entry.expires_at <= now:
            actions += self._binding_lapsed(entry, now)
            if self.bul.get(entry.destination) is not entry:
                return actions
        if entry.state in AWAITING_ACK and entry.next_retransmit_at <= now:
            if (
                entry.home_registration
                and entry.destination == self._restored_home_agent
                and entry.state is not BulState.DEREGISTERING
                and entry.retransmit_delay >= RESTORED_HOME_AGENT_GIVE_UP
            ):
                return actions + self._restored_home_agent_failed(now)
            if (
                entry.state is BulState.DEREGISTERING
                and self._switching_from(entry.destination)
                and entry.retransmit_delay >= HOME_AGENT_SWITCH_DEREGISTRATION_GIVE_UP
            ):
                # RFC 5142 §6.1: the old home agent does not answer (it may be gone already):
                # register with the new one anyway
                del self.bul[entry.destination]
                hoa = self.config.home_address
                actions += self._home_agent_indirect()
                actions.append(BindingDeleted(hoa, entry.destination, True))
                return actions + self._switch_register(now)
            if (
                entry.home_registration
                and entry.state is BulState.DEREGISTERING
                and not entry.bound_once
                and entry.retransmit_delay >= MAX_BINDACK_TIMEOUT
            ):
                # a de-registration of a binding never acknowledged (home_link_found_at_start):
                # the HA does not answer; stop asking
                del self.bul[entry.destination]
                return actions
            if (
                entry.sequence_unknown
                and entry.state is BulState.DEREGISTERING
                and not entry.deferred
            ):
                # A random sequence number is older than the HA's last accepted one half the
                # time, and the HA's 135 goes to the HoA through the stale binding's tunnel,
                # never here. Each retransmission steps a quarter of the sequence space ahead
                # (still an increase, §11.7.1; RFC 1982 on 16 bits): one of any four
                # consecutive BUs is newer than the HA's number, whatever it is.
                # (_transmit adds the last 1.)
                entry.sequence = (entry.sequence + SEQUENCE_QUARTER_SPACE - 1) & 0xFFFF
            if not entry.deferred:
                # §11.8: exponential back-off up to MAX_BINDACK_TIMEOUT, then keep going.
                entry.retransmit_delay = min(entry.retransmit_delay * 2, MAX_BINDACK_TIMEOUT)
            if entry.home_registration:
                actions += self._transmit(entry, now)
            elif (
                entry.state is BulState.DEREGISTERING
                and entry.retransmit_delay >= MAX_BINDACK_TIMEOUT
            ):
                self.bul.pop(entry.destination, None)  # give up deleting the CN binding
            else:
                actions += self._correspondent_progress(entry, now, retransmit=True)
        elif entry.state is BulState.BOUND and entry.refresh_at <= now:
            entry.retransmit_delay = INITIAL_BINDACK_TIMEOUT
            if entry.home_registration:
                entry.transition(BulState.REFRESHING)
                actions += self._transmit(entry, now)
            else:
                actions += self._correspondent_progress(entry, now)
        elif entry.state is BulState.RR_PENDING and entry.rr_next_at <= now:
            entry.rr_delay = min(entry.rr_delay * 2, MAX_BINDACK_TIMEOUT)
            actions += self._send_test_inits(entry, now)
        return actions

    def _binding_lapsed(self, entry: BindingUpdateListEntry, now: float) -> list[Action]:
        """The binding's lifetime ran out before a refresh was acknowledged."""
        actions: list[Action] = [
            BindingExpired(entry.home_address, entry.destination, entry.home_registration)
        ]
        if entry.home_registration:
            # Keep retransmitting the refresh; the tunnel stays until we move or go home.
            entry.transition(BulState.REGISTERING)
            return actions
        return actions + self._drop_correspondent(entry, deleted=False)

    # ----------------------------------------------------------------------------------------
    # Movement (§11.5)
    # ----------------------------------------------------------------------------------------

    def _moved(self, event: MovedToForeignLink, now: float) -> list[Action]:
        actions = self._moved_away(event, now)
        # The order the kernel needs: the old CoA's direct routes gone (the HA's entry, whose
        # next hop is on the old link) and the HoA off the visited link before any BU is
        # routed (else the HA is resolved on the visited link), the BUs, an NA for the
        # optimistic CoA, decapsulation for it ahead of the BA, then the rest.
        gone = [a for a in actions if isinstance(a, RemoveRouteOptimization)]
        first = [a for a in actions if isinstance(a, HomeAddressAway | SendMobilityMessage)]
        rest = [
            a
            for a in actions
            if not isinstance(a, HomeAddressAway | SendMobilityMessage | RemoveRouteOptimization)
        ]
        coa = event.care_of_address
        return [
            *gone,
            *first,
            SendNeighborAdvertisement(coa, override=False),
            PrepareCareOfAddress(coa),
            *rest,
        ]

    def _moved_away(self, event: MovedToForeignLink, now: float) -> list[Action]:
        actions: list[Action] = []
        if self.location is not Location.AWAY:
            # §11.5.1: away from home the HoA is not defended on the visited link.
            actions.append(HomeAddressAway(self.config.home_address))
        same_coa = self.location is Location.AWAY and event.care_of_address == self.care_of_address
        self.location = Location.AWAY
        self.care_of_address = event.care_of_address
        self.coa_valid_until = (
            math.inf if event.coa_valid_lifetime is None else now + event.coa_valid_lifetime
        )
        if same_coa:
            return actions
        self._acknowledged_coa = None
        actions += self._switch_abandoned()
        actions += self._home_agent_indirect()  # the old CoA is gone
        if self.home_agent is None:
            return actions + self._dhaad_start(now)
        actions += self._start_home_registration(now)
        # Correspondents: the old CoA is gone; fall back to the tunnel until the new CoA is
        # registered with them (care-of half of return routability again, §11.6).
        for entry in list(self.bul.values()):
            if entry.home_registration:
                continue
            if entry.in_force and entry.care_of_address == event.care_of_address:
                # restored from a previous run for this very CoA (the first movement
                # decision of a restarted MN): the CN's binding and our data path hold
                continue
            actions += self._uninstall_route(entry)
            entry.care_of_address = event.care_of_address
            entry.outstanding.clear()
            entry.transition(BulState.RR_PENDING)
            entry.retransmit_delay = INITIAL_BINDACK_TIMEOUT
            entry.rr_delay = INITIAL_BINDACK_TIMEOUT
            entry.rr_next_at = math.inf
            mn_rr.forget_tests(entry)
            # §11.6.1, §11.8: the care-of test needs nothing from the HA: the first CoTI
            # leaves from the new CoA at once (retransmitted with the INITIAL_BINDACK_TIMEOUT
            # back-off). The HoTI needs the tunnel to the new CoA: it waits for the home BA,
            # and so does the BU to the CN (§11.7.2).
            mn_rr.new_cookies(entry, False, True, self._random_bytes)
            actions += self._send_test_inits(entry, now)
        return actions

    def _returned_home(self, now: float) -> list[Action]:
        actions = self._back_home(now)
        # §11.5.5: the de-registration BU first (routed on the home link whatever the tunnel
        # rules say), then the HoA back on the interface and the tunnel rules gone.
        sends = [a for a in actions if isinstance(a, SendMobilityMessage)]
        rest = [a for a in actions if not isinstance(a, SendMobilityMessage)]
        return [*sends, RestoreHomeLink(self.config.home_address), *rest]

    def _back_home(self, now: float) -> list[Action]:
        was = self.location
        self._switch_abandoned()
        self.location = Location.HOME
        self.care_of_address = self.config.home_address
        self.coa_valid_until = math.inf
        self._discovery.cancel()
        self._acknowledged_coa = None
        actions: list[Action] = self._home_agent_indirect()
        for entry in list(self.bul.values()):
            if not entry.home_registration:
                actions += self._correspondent_go_home(entry, now)
        home = self.home_entry
        if home is None and was is Location.UNKNOWN:
            # the runtime found leftovers of a run that ended away (kernel state, no BUL)
            return actions + self._deregister_unknown_binding(now)
        if home is None:
            if was is Location.AWAY:
                actions.append(HomeAddressAtHome(self.config.home_address))
                actions.append(SendNeighborAdvertisement(self.config.home_address))
            return actions
        # §11.5.5: de-register from the home address, no HAO, lifetime 0, A = H = 1.
        home.care_of_address = self.config.home_address
        home.outstanding.clear()  # a BA to an earlier registration BU is no de-registration
        home.transition(BulState.DEREGISTERING)
        home.retransmit_delay = INITIAL_BINDACK_TIMEOUT
        return actions + self._transmit(home, now)

    def home_link_found_at_start(self, now: float) -> list[Action]:
        """The first link found at start is the home link: nothing to send.

        RFC 6275 calls for a de-registration when the MN returns home with a binding
        (§11.5.5); at start this run has none, and a BU that is not due is one a tester
        counts against us (§11.7.1, §11.8). When a previous run did end away from home, the
        runtime knows it (kernel leftovers, restored bindings) and reports the home link as
        ReturnedToHomeLink instead, which de-registers (:meth:`_deregister_unknown_binding`).
        A binding the HA kept although every trace of it was lost here runs out with its
        lifetime.
        """
        if self.location is not Location.UNKNOWN:
            return []
        self.location = Location.HOME
        self.care_of_address = self.config.home_address
        self.coa_valid_until = math.inf
        return []

    def _deregister_unknown_binding(self, now: float) -> list[Action]:
        """§11.5.5 at home with no home entry in the BUL, after a previous run that ended
        away (kernel leftovers): a de-registration BU, as the HA may still hold its binding."""
        ha = self.home_agent
        if ha is None or ha in self.bul:
            return []
        hoa = self.config.home_address
        known = ha in self._sequence_floor
        entry = BindingUpdateListEntry(
            ha,
            hoa,
            hoa,
            home_registration=True,
            sequence=self._initial_sequence(ha),
            state=BulState.DEREGISTERING,
        )
        entry.sequence_unknown = not known
        self.bul[ha] = entry
        return self._transmit(entry, now)

    def _home_agent_direct_install(self, entry: BindingUpdateListEntry) -> list[Action]:
        """§11.3.1: packets from the HoA to the HA leave from the acknowledged CoA with an HAO
        (while route optimization is on: ``ro off`` sends everything through the tunnel)."""
        direct = (entry.destination, entry.care_of_address)
        if not self.route_optimization or self._home_agent_direct == direct:
            return []
        actions = self._home_agent_indirect()
        hoa = self.config.home_address
        actions.append(InstallRouteOptimization(hoa, entry.care_of_address, entry.destination))
        self._home_agent_direct = direct
        return actions

    def _home_agent_indirect(self) -> list[Action]:
        """Packets to the HA go through the reverse tunnel again (no binding for the CoA)."""
        if self._home_agent_direct is None:
            return []
        home_agent, _ = self._home_agent_direct
        self._home_agent_direct = None
        return [RemoveRouteOptimization(self.config.home_address, home_agent)]

    def _home_bound(self) -> bool:
        home = self.home_entry
        return home is not None and home.state in IN_FORCE

    def _home_deregistered(self, entry: BindingUpdateListEntry) -> list[Action]:
        """§11.5.5 after the de-registration BA: tunnel down, HoA home, NA for it."""
        del self.bul[entry.destination]
        hoa = self.config.home_address
        return [
            RemoveReverseTunnel(hoa),
            HomeAddressAtHome(hoa),
            SendNeighborAdvertisement(hoa),
            BindingDeleted(hoa, entry.destination, True),
        ]

    # ----------------------------------------------------------------------------------------
    # DHAAD (§11.4.1)
    # ----------------------------------------------------------------------------------------

    def home_agents_anycast(self) -> IPv6Address:
        """RFC 2526: the Mobile IPv6 Home-Agents anycast address of the home prefix."""
        return home_agents_anycast(self.config.home_prefix)

    def _dhaad_start(self, now: float) -> list[Action]:
        assert self.care_of_address is not None
        identifier = int.from_bytes(self._random_bytes(2), "big")
        return self._discovery.start(
            identifier, self.care_of_address, self.home_agents_anycast(), now
        )

    def _home_agents_discovered(self, event: HomeAgentDiscovered, now: float) -> list[Action]:
        switch = self._ha_switch
        chosen = self._discovery.reply(event, avoid=switch.old if switch else None)
        if isinstance(chosen, MessageDiscarded):
            if switch is not None and switch.new is None:
                self._ha_switch = None  # nobody else to go to: stay with the old home agent
            return [chosen]
        if switch is not None and switch.new is None:
            switch.new = chosen
            switch.candidates = list(self._discovery.candidates)
            return self._switch_deregister(switch, now)
        self.home_agent = chosen
        return self._start_home_registration(now)

    def _try_next_home_agent(self, now: float) -> list[Action]:
        """TAHI MN-5-1-2-1-028/029: after a failure try the next HA from the DHAAD reply."""
        if self._ha_switch is not None:
            return self._switch_next(now)
        if self.config.home_agent is not None:
            return []
        candidate = self._discovery.next_candidate()
        if candidate is None:
            return []
        self.home_agent = candidate
        return self._start_home_registration(now)

    # ----------------------------------------------------------------------------------------
    # Mobile prefix discovery (§11.4.2, §11.4.3)
    # ----------------------------------------------------------------------------------------

    def _mps_start(self, now: float) -> list[Action]:
        if not self._prefix_discovery.start(now):
            return []  # one solicitation at a time
        return self._mps_send()

    def _mps_send(self) -> list[Action]:
        home = self.home_entry
        if home is None or self.location is not Location.AWAY:
            return self._prefix_discovery.solicit(None, None, self.config.home_address)
        return self._prefix_discovery.solicit(
            home.care_of_address, home.destination, self.config.home_address
        )

    def _mps_timer(self, now: float) -> list[Action]:
        """§11.4.2: retransmit after INITIAL_SOLICIT_TIMER (3 s), doubling, a few times; a
        first solicitation when the home prefix's lifetime runs low."""
        if self._prefix_discovery.lifetime_running_low(now):
            return self._mps_start(now)
        if not self._prefix_discovery.due(now):
            return []
        gave_up = self._prefix_discovery.retransmit(now)
        if gave_up is not None:
            return [gave_up]
        return self._mps_send()

    def _mobile_prefix_advertisement(
        self, event: MobilePrefixAdvertisementReceived, now: float
    ) -> list[Action]:
        discarded = self._prefix_discovery.advertisement(
            event, self.home_agent, self.config.home_address, now
        )
        if discarded is not None:
            return discarded
        # §11.4.3: a valid unsolicited Advertisement is processed and acknowledged with a
        # Solicitation (the HA retransmits it until one arrives, §10.6.2).
        return self._mps_start(now)

    # ----------------------------------------------------------------------------------------
    # Mobility messages
    # ----------------------------------------------------------------------------------------

    def _mobility_message(self, event: MobilityMessageReceived, now: float) -> list[Action]:
        if (
            not event.via_tunnel
            and self.location is Location.AWAY
            and event.dst == self.config.home_address
            and event.routing_address is None
        ):
            # Away, an MH to the HoA without an RH2 can only have come through the HA tunnel
            # (decapsulated by the kernel): a HoT or a BRR (§11.6.2).
            event = replace(event, via_tunnel=True)
        message = event.message
        if isinstance(message, BindingAck):
            return self._binding_ack(event, message, now)
        if isinstance(message, BindingRefreshRequest):
            return self._refresh_request(event, now)
        if isinstance(message, HomeTest | CareofTest):
            return self._test(event, message, now)
        if isinstance(message, BindingError):
            return self._binding_error(event, message, now)
        if isinstance(message, HomeAgentSwitch):
            return self._home_agent_switch(event, message, now)
        if isinstance(message, UnknownMobilityMessage):
            local = self.care_of_address or self.config.home_address
            error = binding_error(
                status=BEStatus.UNRECOGNIZED_MH_TYPE,
                offending_src=event.src,
                home_address=event.home_address,
                local_address=local,
            )
            return [error] if error is not None else []
        return [MessageDiscarded("unexpected-mh-type", event.src, None)]

    def _binding_ack(
        self, event: MobilityMessageReceived, ba: BindingAck, now: float
    ) -> list[Action]:
        protected = event.ipsec_protected
        if self.authenticator is not None:
            check = self.authenticator.check_binding_ack(
                ba, event.mh_bytes, event.dst, event.routing_address or event.dst
            )
            if check is BindingAckCheck.RESYNC:
                return [MessageDiscarded("binding-ack-resync", event.src, MHType.BA)]
            protected = protected and check is BindingAckCheck.ACCEPT
        stats = self.stats
        stats.NBindAcksRcvd += 1
        if ba.status >= 128:
            stats.NBindNAcksRcvd += 1
        entry = self.bul.get(event.src)
        if entry is None or entry.state not in AWAITING_ACK:
            stats.NBindAcksDropMisc += 1
            return [MessageDiscarded("unexpected-binding-ack", event.src, MHType.BA)]
        if entry.home_registration and not protected:
            stats.NBindAcksDropAuth += 1
            return [MessageDiscarded("binding-ack-not-protected", event.src, MHType.BA)]
        status = ba.status
        if status == BAStatus.SEQUENCE_NUMBER_OUT_OF_WINDOW:
            # §11.7.3: resend with the HA's/CN's last accepted sequence number + 1.
            if entry.destination == self._restored_home_agent:
                self._restored_home_agent = None  # it answers: it is this MN's home agent
            entry.sequence = ba.sequence
            entry.sequence_unknown = False
            entry.outstanding.clear()  # all answered by this rejection
            entry.retransmit_delay = INITIAL_BINDACK_TIMEOUT
            rejected = BindingRejected(
                entry.home_address, entry.destination, entry.home_registration, status
            )
            return [rejected, *self._resend(entry, now)]
        sent_at = entry.outstanding.get(ba.sequence)
        if sent_at is None:
            # §11.7.3: must match an outstanding BU (TAHI MN-2-2-1-1-017). Every BU of this
            # attempt (a retransmission has a new number, §11.8) is outstanding until one is
            # acknowledged: a late BA to an earlier one ends the retransmissions too.
            stats.NBindAcksDropInvalid += 1
            return [MessageDiscarded("binding-ack-sequence-mismatch", event.src, MHType.BA)]
        # §11.7.3: a CN's BA must carry a valid BAD (last option).
        if (
            not entry.home_registration
            and status < 128
            and not mn_rr.binding_ack_authentic(entry, event.mh_bytes)
        ):
            stats.NBindAcksDropAuth += 1
            return [MessageDiscarded("binding-ack-bad-authenticator", event.src, MHType.BA)]
        entry.sent_at = sent_at  # the lifetime counts from the acknowledged BU
        entry.outstanding.clear()
        if entry.home_registration:
            return self._home_binding_ack(entry, ba, now)
        return self._correspondent_binding_ack(entry, ba, now)

    def _resend(self, entry: BindingUpdateListEntry, now: float) -> list[Action]:
        if entry.home_registration:
            return self._transmit(entry, now)
        return self._correspondent_progress(entry, now, retransmit=True)

    def _schedule_refresh(
        self, entry: BindingUpdateListEntry, ba: BindingAck, granted: int
    ) -> None:
        """§11.7.3: refresh at the BRA interval, else before the granted lifetime ends."""
        entry.lifetime_granted = granted
        entry.expires_at = entry.sent_at + granted
        interval = granted * REFRESH_FRACTION
        for option in ba.options:
            if isinstance(option, BindingRefreshAdvice) and 0 < option.interval_seconds < granted:
                interval = option.interval_seconds
        entry.refresh_at = entry.sent_at + interval
        entry.next_retransmit_at = math.inf
        entry.retransmit_delay = INITIAL_BINDACK_TIMEOUT

    def _home_binding_ack(
        self, entry: BindingUpdateListEntry, ba: BindingAck, now: float
    ) -> list[Action]:
        status = ba.status
        hoa = self.config.home_address
        if entry.destination == self._restored_home_agent:
            if status >= 128 and entry.state is not BulState.DEREGISTERING:
                return [
                    BindingRejected(hoa, entry.destination, True, status),
                    *self._restored_home_agent_failed(now),
                ]
            self._restored_home_agent = None  # it answers: it is this MN's home agent
        if entry.state is BulState.DEREGISTERING and self._switching_from(entry.destination):
            return self._switch_deregistered(entry, status, now)
        if entry.state is BulState.DEREGISTERING:
            # §11.5.5: accepted, or 133 (the HA had no binding): we are home either way.
            if status < 128 or status == BAStatus.NOT_HOME_AGENT_FOR_THIS_MOBILE_NODE:
                return self._home_deregistered(entry)
            rejected = BindingRejected(hoa, entry.destination, True, status)
            if not entry.bound_once:
                # A refused de-registration of a binding this run never had acknowledged
                # (home_link_found_at_start): nothing is known to be in force; stop asking.
                del self.bul[entry.destination]
                return [rejected]
            entry.next_retransmit_at = math.inf
            entry.transition(BulState.BOUND)
            return [rejected]
        if status >= 128:
            del self.bul[entry.destination]
            actions: list[Action] = [
                *self._home_agent_indirect(),
                BindingRejected(hoa, entry.destination, True, status),
            ]
            if entry.route_installed:
                actions.append(RemoveReverseTunnel(hoa))
            return actions + self._try_next_home_agent(now)
        granted = ba.lifetime * LIFETIME_UNIT
        if granted == 0:
            del self.bul[entry.destination]
            return [*self._home_agent_indirect(), BindingDeleted(hoa, entry.destination, True)]
        was_bound = entry.bound_once and entry.route_installed
        self._acknowledged_coa = entry.care_of_address
        self._schedule_refresh(entry, ba, granted)
        entry.transition(BulState.BOUND)
        entry.bound_once = True
        actions = []
        # §11.3.1: data traffic waits for the BA; now tunnel it through the HA.
        actions.append(InstallReverseTunnel(hoa, entry.care_of_address, entry.destination))
        entry.route_installed = True
        # §11.3.1, §9.3.1: the HA holds a binding HoA → CoA, so our packets to the HA itself
        # (e.g. the Echo Reply to its Echo Request that came with an RH2, §11.3.3) go
        # directly from the CoA with an HAO, as to any correspondent with a binding.
        actions += self._home_agent_direct_install(entry)
        event_cls = BindingRefreshed if was_bound else BindingRegistered
        actions.append(event_cls(hoa, entry.destination, True, entry.care_of_address, granted))
        if self.config.mobile_router and not ba.flags & BAFlags.R:
            # RFC 3963 §4.2, §5.3: accepted, but not as a mobile router's: the home address
            # is served, the mobile network is not (the runtime logs and counts it)
            actions.append(MobileRouterNotAcknowledged(hoa, entry.destination, True, status))
        if self._ha_switch is not None and self._ha_switch.new == entry.destination:
            self._ha_switch = None  # RFC 5142 §6.1: registered with the new home agent
            self.switch_counters["switch_completed"] += 1
        if status == BAStatus.ACCEPTED_PREFIX_DISCOVERY_NECESSARY:
            # §11.4.2: the home prefix is changing: solicit the prefix list.
            actions += self._mps_start(now)
        # Correspondents waiting for the tunnel (HoTI goes through it) can start now.
        for cn_entry in list(self.bul.values()):
            if (
                cn_entry.home_registration
                or cn_entry.state is not BulState.RR_PENDING
                or cn_entry.home_cookie is not None
            ):
                continue
            if cn_entry.careof_cookie is None:
                actions += self._correspondent_progress(cn_entry, now)
            elif self._tokens_needed(cn_entry, now)[0]:
                # the CoTI sent at the move is still out: the HoTI joins it now
                mn_rr.new_cookies(cn_entry, True, False, self._random_bytes)
                actions += [
                    action
                    for action in self._send_test_inits(cn_entry, now)
                    if isinstance(action, SendMobilityMessage)
                    and isinstance(action.message, HomeTestInit)
                ]
        for correspondent in sorted(self._wanted_correspondents):
            actions += self._data_from_correspondent(correspondent, now)
        self._wanted_correspondents.clear()
        return actions

    # ----------------------------------------------------------------------------------------
    # Home Agent Switch (RFC 5142 §6)
    # ----------------------------------------------------------------------------------------

    def _switching_from(self, home_agent: IPv6Address) -> bool:
        return self._ha_switch is not None and self._ha_switch.old == home_agent

    def _home_agent_switch(
        self, event: MobilityMessageReceived, message: HomeAgentSwitch, now: float
    ) -> list[Action]:
        """RFC 5142 §6.1: check the message, choose the new home agent (§6.2), de-register."""
        self.switch_counters["switch_received"] += 1
        if self._ha_switch is not None and event.src == self._ha_switch.old:
            return [MessageDiscarded("home-agent-switch-in-progress", event.src)]
        home = self.home_entry
        if self.location is not Location.AWAY or home is None or home.state not in IN_FORCE:
            return [MessageDiscarded("home-agent-switch-without-binding", event.src)]
        if event.src != home.destination:
            return [MessageDiscarded("home-agent-switch-not-from-home-agent", event.src)]
        protected = event.ipsec_protected
        if self.authenticator is not None:
            protected = protected and self.authenticator.check_home_agent_switch(
                event.mh_bytes, home.care_of_address, self.config.home_address
            )
        if not protected:
            return [MessageDiscarded("home-agent-switch-not-protected", event.src)]
        old = home.destination
        candidates = [
            address
            for address in dict.fromkeys(message.home_agents)
            if address != old and is_unicast_routable(address)
        ]
        self.switch_counters["switch_followed"] += 1
        if not candidates:
            # RFC 5142 §6.2: no address listed: find one (DHAAD), leaving the sender out
            self._ha_switch = _HomeAgentSwitch(old, [])
            return [HomeAgentSwitchFollowed(old, None), *self._dhaad_start(now)]
        switch = self._ha_switch = _HomeAgentSwitch(old, candidates[1:], candidates[0])
        return [HomeAgentSwitchFollowed(old, switch.new), *self._switch_deregister(switch, now)]

    def _switch_deregister(self, switch: _HomeAgentSwitch, now: float) -> list[Action]:
        """De-register from the old home agent; the registration with the new one follows
        its BA (:meth:`_switch_deregistered`)."""
        entry = self.bul.get(switch.old)
        if entry is None or entry.state not in IN_FORCE:
            return self._switch_register(now)
        entry.outstanding.clear()
        entry.transition(BulState.DEREGISTERING)
        entry.retransmit_delay = INITIAL_BINDACK_TIMEOUT
        return self._transmit(entry, now)

    def _switch_deregistered(
        self, entry: BindingUpdateListEntry, status: int, now: float
    ) -> list[Action]:
        hoa = self.config.home_address
        if status >= 128 and status != BAStatus.NOT_HOME_AGENT_FOR_THIS_MOBILE_NODE:
            # the old home agent keeps the binding (and defends the HoA): stay with it
            self._ha_switch = None
            entry.next_retransmit_at = math.inf
            entry.transition(BulState.BOUND)
            return [BindingRejected(hoa, entry.destination, True, status)]
        del self.bul[entry.destination]
        actions: list[Action] = [
            *self._home_agent_indirect(),
            BindingDeleted(hoa, entry.destination, True),
        ]
        # the reverse tunnel still points at the old home agent until the new BA re-points it
        return actions + self._switch_register(now)

    def _switch_register(self, now: float) -> list[Action]:
        switch = self._ha_switch
        assert switch is not None and switch.new is not None
        self.home_agent = switch.new
        return self._start_home_registration(now)

    def _switch_next(self, now: float) -> list[Action]:
        """The new home agent refused: the next listed one, else the old one again."""
        switch = self._ha_switch
        assert switch is not None
        if switch.candidates:
            switch.new = switch.candidates.pop(0)
            return self._switch_register(now)
        self._ha_switch = None
        self.home_agent = switch.old
        return self._start_home_registration(now)

    def _switch_abandoned(self) -> list[Action]:
        """A move or a return home ends the switch; the HA the MN is at stays its HA."""
        self._ha_switch = None
        return []

    def _refresh_request(self, event: MobilityMessageReceived, now: float) -> list[Action]:
        """§11.7.4: answer a BRR from a node in the BUL with a new BU; ignore the others."""
        self.stats.NBindRqsRcvd += 1
        entry = self.bul.get(event.src)
        if entry is None or entry.state not in IN_FORCE:
            self.stats.NBindRqsDropMisc += 1
            return [MessageDiscarded("unexpected-binding-refresh-request", event.src, MHType.BRR)]
        entry.retransmit_delay = INITIAL_BINDACK_TIMEOUT
        if entry.home_registration:
            entry.transition(BulState.REFRESHING)
            return self._transmit(entry, now)
        return self._correspondent_progress(entry, now)

    def _binding_error(
        self, event: MobilityMessageReceived, error: BindingError, now: float
    ) -> list[Action]:
        """§11.3.6: BE 2 → stop RO with that CN; BE 1 → register again if RO is wanted."""
        entry = self.bul.get(event.src)
        if entry is None:
            return [MessageDiscarded("unexpected-binding-error", event.src, MHType.BE)]
        if entry.home_registration:
            if error.status == BEStatus.UNKNOWN_BINDING_FOR_HOME_ADDRESS_OPTION and (
                self.location is Location.AWAY
            ):
                entry.transition(BulState.REGISTERING)
                entry.retransmit_delay = INITIAL_BINDACK_TIMEOUT
                return self._transmit(entry, now)
            return []
        if error.status == BEStatus.UNRECOGNIZED_MH_TYPE:
            self._no_route_optimization.add(entry.destination)
            return self._drop_correspondent(entry, deleted=True)
        if self.route_optimization and self.location is Location.AWAY:
            entry.transition(BulState.RR_PENDING)
            return self._uninstall_route(entry) + self._correspondent_progress(entry, now)
        return self._drop_correspondent(entry, deleted=True)

    def _icmp_error(self, event: IcmpErrorReceived) -> list[Action]:
        """§11.3.5: a CN that does not understand MH (or the HAO) gets no more RO."""
        if event.icmp_type != ICMPV6_PARAMETER_PROBLEM:
            return []
        entry = self.bul.get(event.source)
        if entry is None or entry.home_registration:
            if event.code == PARAMETER_PROBLEM_UNRECOGNIZED_NEXT_HEADER:
                self._no_route_optimization.add(event.source)
            return []
        if event.code == PARAMETER_PROBLEM_UNRECOGNIZED_OPTION and entry.state in IN_FORCE:
            return []  # TAHI MN-4-2-2-2-011: ignore from an already registered CN.
        if event.code in (
            PARAMETER_PROBLEM_UNRECOGNIZED_NEXT_HEADER,
            PARAMETER_PROBLEM_UNRECOGNIZED_OPTION,
        ):
            self._no_route_optimization.add(entry.destination)
            return self._drop_correspondent(entry, deleted=True)
        return []

    def set_home_registration_lifetime(self, seconds: int, now: float) -> list[Action]:
        """SIGHUP ``[mn] binding_lifetime``: the next home BU requests ``seconds`` (§11.7.1).

        A home binding in force that would outlive the new lifetime is refreshed at once (one
        BU/BA exchange), so the HA's entry is shortened now rather than at the next refresh;
        a longer lifetime waits for the scheduled refresh.
        """
        if seconds == self.config.home_registration_lifetime:
            return []
        self.config = replace(self.config, home_registration_lifetime=seconds)
        entry = self.home_entry
        if entry is None or entry.state is not BulState.BOUND or entry.expires_at - now <= seconds:
            return []
        entry.transition(BulState.REFRESHING)
        entry.retransmit_delay = INITIAL_BINDACK_TIMEOUT
        return self._transmit(entry, now)

    def _switch(self, enabled: bool, now: float = 0.0) -> list[Action]:
        self.route_optimization = enabled
        home = self.home_entry
        if enabled:
            if home is not None and home.state in IN_FORCE and self.location is Location.AWAY:
                return self._home_agent_direct_install(home)
            return []
        actions: list[Action] = self._home_agent_indirect()
        for entry in list(self.bul.values()):
            if not entry.home_registration:
                actions += self._correspondent_farewell(entry, now)
                actions += self._drop_correspondent(entry, deleted=True)
        self._wanted_correspondents.clear()
        return actions

    # ----------------------------------------------------------------------------------------
    # Return routability and correspondent registrations (§11.6, §11.7.2)
    # ----------------------------------------------------------------------------------------

    def _data_from_correspondent(self, correspondent: IPv6Address, now: float) -> list[Action]:
        if (
            not self.route_optimization
            or self.location is not Location.AWAY
            or correspondent in self.bul
            or correspondent in self._no_route_optimization
            or correspondent == self.home_agent
            or correspondent == self.config.home_address
        ):
            return []
        if not self._home_bound():
            self._wanted_correspondents.add(correspondent)
            return []
        assert self.care_of_address is not None
        entry = BindingUpdateListEntry(
            correspondent,
            self.config.home_address,
            self.care_of_address,
            home_registration=False,
            sequence=self._initial_sequence(correspondent),
        )
        entry.transition(BulState.RR_PENDING)
        self.bul[correspondent] = entry
        return self._correspondent_progress(entry, now)

    def _tokens_needed(self, entry: BindingUpdateListEntry, now: float) -> tuple[bool, bool]:
        deletion = entry.state is BulState.DEREGISTERING
        return mn_rr.tokens_needed(entry, now, deletion=deletion)

    def _correspondent_progress(
        self, entry: BindingUpdateListEntry, now: float, *, retransmit: bool = False
    ) -> list[Action]:
        """Send the CN BU if valid tokens are at hand, else (re)start return routability."""
        need_home, need_careof = self._tokens_needed(entry, now)
        if not need_home and not need_careof:
            if entry.state is not BulState.DEREGISTERING:
                entry.transition(
                    BulState.REFRESHING if entry.state in IN_FORCE else BulState.REGISTERING
                )
            if not retransmit:
                entry.retransmit_delay = INITIAL_BINDACK_TIMEOUT
            return self._transmit(entry, now)
        if entry.state is not BulState.DEREGISTERING:
            entry.transition(BulState.RR_PENDING)
        entry.next_retransmit_at = math.inf
        # §11.8: HoTI/CoTI retransmissions use the INITIAL_BINDACK_TIMEOUT back-off.
        entry.rr_delay = (
            min(entry.rr_delay * 2, MAX_BINDACK_TIMEOUT) if retransmit else INITIAL_BINDACK_TIMEOUT
        )
        mn_rr.new_cookies(entry, need_home, need_careof, self._random_bytes)
        return self._send_test_inits(entry, now)

    def _send_test_inits(self, entry: BindingUpdateListEntry, now: float) -> list[Action]:
        """§11.6.1: HoTI through the reverse tunnel from the HoA; CoTI directly from the CoA."""
        away = self.location is Location.AWAY
        actions = mn_rr.test_inits(entry, self.config.home_address, away=away, now=now)
        if entry.state is BulState.DEREGISTERING:
            entry.next_retransmit_at = entry.rr_next_at
        return actions

    def _test(
        self, event: MobilityMessageReceived, message: HomeTest | CareofTest, now: float
    ) -> list[Action]:
        """§11.6.2: keep the token of a HoT/CoT for the outstanding test; with both tokens
        in hand the BU goes out."""
        entry = self.bul.get(event.src)
        if entry is None or entry.home_registration:
            return [MessageDiscarded("unexpected-test", event.src, None)]
        away = self.location is Location.AWAY
        hoa = self.config.home_address
        discarded = mn_rr.accept_test(entry, event, message, hoa, away=away, now=now)
        if discarded is not None:
            return [discarded]
        if mn_rr.tests_complete(entry):
            entry.rr_next_at = math.inf
            if entry.state is BulState.RR_PENDING and self._acknowledged_coa != (
                entry.care_of_address
            ):
                return []  # §11.7.2: the BU to the CN waits for the home BA for this CoA
            if entry.state in (BulState.RR_PENDING, BulState.DEREGISTERING):
                return self._correspondent_progress(entry, now)
        return []

    def _correspondent_binding_ack(
        self, entry: BindingUpdateListEntry, ba: BindingAck, now: float
    ) -> list[Action]:
        status = ba.status
        hoa = self.config.home_address
        if entry.state is BulState.DEREGISTERING:
            del self.bul[entry.destination]
            return [BindingDeleted(hoa, entry.destination, False)]
        if status in (
            BAStatus.EXPIRED_HOME_NONCE_INDEX,
            BAStatus.EXPIRED_CAREOF_NONCE_INDEX,
            BAStatus.EXPIRED_NONCES,
        ):
            # §11.7.3: get fresh tokens for the expired nonce(s) and try again.
            mn_rr.expire_tokens(entry, status)
            rejected = BindingRejected(hoa, entry.destination, False, status)
            return [rejected, *self._correspondent_progress(entry, now)]
        if status >= 128:
            self._no_route_optimization.add(entry.destination)
            rejected = BindingRejected(hoa, entry.destination, False, status)
            return [rejected, *self._drop_correspondent(entry, deleted=False)]
        granted = ba.lifetime * LIFETIME_UNIT
        if granted == 0:
            return self._drop_correspondent(entry, deleted=True)
        was_bound = entry.state is BulState.REFRESHING
        self._schedule_refresh(entry, ba, granted)
        entry.transition(BulState.BOUND)
        entry.bound_once = True
        actions: list[Action] = []
        if not entry.route_installed or not was_bound:
            actions.append(InstallRouteOptimization(hoa, entry.care_of_address, entry.destination))
            entry.route_installed = True
        event_cls = BindingRefreshed if was_bound else BindingRegistered
        actions.append(event_cls(hoa, entry.destination, False, entry.care_of_address, granted))
        return actions

    def _uninstall_route(self, entry: BindingUpdateListEntry) -> list[Action]:
        if not entry.route_installed:
            return []
        entry.route_installed = False
        return [RemoveRouteOptimization(self.config.home_address, entry.destination)]

    def _drop_correspondent(self, entry: BindingUpdateListEntry, *, deleted: bool) -> list[Action]:
        """Stop route optimization with this CN: traffic falls back to the HA tunnel."""
        self.bul.pop(entry.destination, None)
        actions = self._uninstall_route(entry)
        if deleted and entry.bound_once:
            actions.append(BindingDeleted(self.config.home_address, entry.destination, False))
        return actions

    def _correspondent_farewell(self, entry: BindingUpdateListEntry, now: float) -> list[Action]:
        """RO switched off while away: one de-registration BU (lifetime 0, home keygen token
        only, §5.2.5/§11.7.2) so that the CN stops sending directly as well and its traffic
        returns to the HA tunnel. Not retransmitted: the entry is dropped and the CN binding
        expires anyway; without a valid home token nothing is sent."""
        if (
            entry.state not in IN_FORCE
            or self.location is not Location.AWAY
            or not mn_rr.home_token_valid(entry, now)
        ):
            return []
        entry.transition(BulState.DEREGISTERING)
        return self._transmit(entry, now)

    def _correspondent_go_home(self, entry: BindingUpdateListEntry, now: float) -> list[Action]:
        """§11.5.5: back home, delete the CN binding (BU from the HoA, lifetime 0) if one is
        in force; the route optimization stops at once either way."""
        actions = self._uninstall_route(entry)
        if entry.state not in IN_FORCE or not self.route_optimization:
            self.bul.pop(entry.destination, None)
            return actions
        entry.care_of_address = self.config.home_address
        entry.transition(BulState.DEREGISTERING)
        entry.retransmit_delay = INITIAL_BINDACK_TIMEOUT
        need_home, _ = self._tokens_needed(entry, now)
        if need_home:
            mn_rr.forget_tests(entry)
            mn_rr.new_cookies(entry, True, False, self._random_bytes)
            entry.rr_delay = INITIAL_BINDACK_TIMEOUT
            return actions + self._send_test_inits(entry, now)
        return actions + self._transmit(entry, now)


__all__ = [
    "BindingUpdateListEntry",
    "BindingUpdateListRecord",
    "BindingUpdateListRow",
    "BulState",
    "Location",
    "MobileNode",
    "MobileNodeConfig",
]
