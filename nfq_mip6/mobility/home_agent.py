"""Home Agent role (RFC 6275 §10): home registrations, proxy DAD/ND decisions, tunnels, DHAAD,
mobile prefix answers. Sans-I/O: ``handle(event, now) -> list[Action]``.

Theory of operation — a Binding Update with H = 1 goes through these checks, in this order
(RFC 6275 §9.5.1, §10.3.1, §10.3.2 in UMIP ``ha.c``'s order, docs/protocol-notes.md §1):

1. HoA (HAO, else source) and CoA (AltCoA, else source) must be routable unicast → else
   silent discard; a home BU carrying Nonce Indices → silent discard (TAHI HA_2_2_7/8);
   a BU not protected by the MN–HA SA → silent discard (§10.3.1); with an ``authorizer``
   (RFC 4285, ``nfq_mip6.security``) a BU failing it → **146/145/144** or silent discard.
2. Not configured as a home agent → **131**.
3. A correspondent (H = 0) binding exists for the HoA → **139**.
4. The binding is waiting for proxy DAD → the retransmitted BU is ignored.
5. A binding exists and the sequence number is not newer → **135** with the last accepted one.
6. De-registration (lifetime 0 or CoA = HoA) without a binding → **133**.
7. HoA not on a home prefix → **132**.
8. No room → **130**.
9. De-registration → remove tunnel and proxy ND, BA 0 with lifetime 0 and no BRA (§10.3.2).
9a. RFC 3963 §6.2, a BU with R = 1 (mobile router): the home address may act as a router
    (else **140**), each Mobile Network Prefix option is a valid prefix (else **141**) that the
    router's policy authorizes and no other router holds (else **142**); without options the
    configured prefixes (implicit mode). The kernel refusing their routes → **143**
    (``ForwardingSetupFailed``). The accepting BA carries R (RFC 3963 §4.2).
10. First registration → proxy DAD (``StartProxyDad``); the BA follows ``ProxyDadCompleted``
    (0/1, or **134** when the address is in use). Otherwise update the binding at once.

The BA is sent whatever the A bit says (TAHI HA_2_1_2), to the BU's source, with an RH2 = HoA
when the BU had an HAO (§9.5.4). The granted lifetime is ≤ the BU's, ≤ the policy cap
(default 262140 s, UMIP; MIPL used 1000 s) and ≤ the home prefix's remaining valid lifetime.

**Drain** (RFC 5142, :class:`HomeAgentDrainRequested`): every MN registered here (and every
one registering while the drain lasts) gets a Home Agent Switch listing the other home agents
in preference order (empty: "run DHAAD"), sent like a BA (to the CoA with an RH2 = HoA), at
most ``rate`` messages a second from the timer. A switch not followed by a de-registration is
sent again after 2, 4 and 8 s (§5.2), then given up; a Binding Error 2 from the MN (§5.3: it
does not know the message) stops it at once. While draining, this HA leaves itself out of its
DHAAD replies as long as another home agent is known, so new MNs go elsewhere.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from ipaddress import IPv6Address, IPv6Network
from typing import Final, Protocol, assert_never

from nfq_mip6.constants import (
    DEFAULT_HA_MAX_BINDING_LIFETIME,
    DHAAD_REPLY_MAX_ADDRESSES,
    HOME_AGENT_SWITCH_RETRANSMISSIONS,
    HOME_AGENT_SWITCH_TIMEOUT,
    LIFETIME_UNIT,
    MAX_LIFETIME_UNITS,
)
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
    link_local_for,
    unknown_binding_error,
)
from nfq_mip6.mobility.correspondent import CorrespondentNode
from nfq_mip6.mobility.events import (
    Action,
    BindingDeleted,
    BindingExpired,
    BindingRefreshed,
    BindingRegistered,
    BindingRejected,
    BindingsInUse,
    DataplaneCountersSampled,
    DhaadRequestReceived,
    ForwardingSetupFailed,
    HomeAgentDrainRequested,
    HomeAgentInput,
    HomeBindingLoaded,
    HomePrefixAdvertised,
    IcmpErrorReceived,
    InstallHomeTunnel,
    InstallRouteOptimization,
    MessageDiscarded,
    MobilePrefixSolicitationReceived,
    MobilityHeaderRejected,
    MobilityMessageReceived,
    OwnHomeAgentInformation,
    ProxyDadCompleted,
    RemoveHomeTunnel,
    RemoveRouteOptimization,
    RouteOptimizationSwitched,
    RouterAdvertisementReceived,
    SendDhaadReply,
    SendMobilePrefixAdvertisement,
    SendMobilityMessage,
    StartProxyDad,
    StartProxyNeighbor,
    StopProxyNeighbor,
)
from nfq_mip6.mobility.nemo import MobileRouterPolicy, decide_prefixes, policy_for
from nfq_mip6.mobility.stats import MobilityStats
from nfq_mip6.wire.icmp import DestinationUnreachableCode, ICMPv6Type
from nfq_mip6.wire.mh import (
    MAX_HOME_AGENT_SWITCH_ADDRESSES,
    BAFlags,
    BAStatus,
    BEStatus,
    BindingError,
    BindingUpdate,
    BUFlags,
    HomeAgentSwitch,
    MHType,
    UnknownMobilityMessage,
)
from nfq_mip6.wire.options import (
    AlternateCareofAddress,
    BindingRefreshAdvice,
    MobilityOption,
    NonceIndices,
)

_H_FLAG: Final = int(BUFlags.H)
_L_FLAG: Final = int(BUFlags.L)
_R_FLAG: Final = int(BUFlags.R)

INFINITE_LIFETIME: Final = 0xFFFFFFFF
"""RFC 4861 "infinity" for prefix lifetimes in an MPA."""


@dataclass(frozen=True, slots=True)
class HomeAgentConfig:
    """Home agent policy.

    Attributes:
        address: the HA's global address on the home link (source of BAs, MPAs, DHAAD replies).
        home_prefixes: the home link's prefixes; a HoA must be on one of them (else 132).
        enabled: ``False`` makes every home registration fail with 131.
        max_binding_lifetime: policy cap in seconds (UMIP HaMaxBindingLife 262140 s; MIPL 1000).
        refresh_advice: Binding Refresh Advice interval in seconds (§6.2.4), sent only when
            shorter than the granted lifetime; ``None`` = no BRA.
        proxy_dad: run proxy DAD before accepting a first registration (§10.3.1).
        dad_timeout: forget a pending registration whose DAD never completed after this long.
        max_bindings: home registrations accepted at most (then 130); ``None`` = no limit.
        preference: this HA's preference in its own DHAAD replies (Home Agent Information
            option, §7.4; unsigned, 0xffff highest) until its own RA advertises one
            (:class:`OwnHomeAgentInformation`), which then wins: the other home agents on
            the link rank it by the advertised value.
        home_interface_index: the home link's interface (ifindex) for §10.3.2 answers on
            the link; 0 = unknown (every answer is routed).
        mobile_routers: RFC 3963 §6.1.2 prefix table: which home addresses may register as
            mobile routers and the Mobile Network Prefixes each may claim; empty = this HA
            does not support mobile routers (a BU with R gets 140).
        switch_home_agents: the home agents a drain lists in its Home Agent Switch messages
            (RFC 5142 §5.1), the preferred first; empty = the other home agents of the Home
            Agents List (§10.5.1) in preference order.
    """

    address: IPv6Address
    home_prefixes: tuple[IPv6Network, ...]
    enabled: bool = True
    max_binding_lifetime: int = DEFAULT_HA_MAX_BINDING_LIFETIME
    refresh_advice: int | None = None
    proxy_dad: bool = True
    dad_timeout: float = 10.0
    max_bindings: int | None = None
    preference: int = 0
    home_interface_index: int = 0
    mobile_routers: tuple[MobileRouterPolicy, ...] = ()
    switch_home_agents: tuple[IPv6Address, ...] = ()


class BindingUpdateRejection(Protocol):
    """What an authorizer answers for a refused home BU (``AuthRejection`` fits)."""

    @property
    def status(self) -> int | None: ...  # BA status, or None = silent discard
    @property
    def reason(self) -> str: ...
    @property
    def options(self) -> tuple[MobilityOption, ...]: ...  # for the BA (e.g. Mesg-ID)


class HomeRegistrationAuthorizer(Protocol):
    """MN–HA authentication of home BUs (RFC 4285; ``security.home_agent_auth``)."""

    def check_home_binding_update(
        self,
        bu: BindingUpdate,
        mh_bytes: bytes,
        home_address: IPv6Address,
        care_of_address: IPv6Address,
        now: float,
    ) -> BindingUpdateRejection | None: ...


@dataclass(frozen=True, slots=True)
class TunnelErrorRelay:
    """RFC 2473 §8.1 (RFC 6275 §10.4.2): the ICMPv6 error the HA, as the tunnel entry point,
    sends back to the original source of a packet it tunnelled, about the inner packet."""

    dst: IPv6Address
    icmp_type: int
    code: int
    invoking_packet: bytes


ICMPV6_DESTINATION_UNREACHABLE: Final = int(ICMPv6Type.DESTINATION_UNREACHABLE)
ICMPV6_TIME_EXCEEDED: Final = int(ICMPv6Type.TIME_EXCEEDED)
ICMPV6_PARAMETER_PROBLEM: Final = int(ICMPv6Type.PARAMETER_PROBLEM)
ADDRESS_UNREACHABLE: Final = int(DestinationUnreachableCode.ADDRESS_UNREACHABLE)
_IPPROTO_IPV6: Final = 41


@dataclass(slots=True)
class _PendingRegistration:
    """A first registration waiting for proxy DAD: what the BA will need."""

    bu: BindingUpdate
    src: IPv6Address
    dst: IPv6Address
    hao: IPv6Address | None
    care_of_address: IPv6Address
    lifetime: int  # granted, seconds
    status: int
    prefixes: tuple[IPv6Network, ...] | None = None  # None: not a mobile router BU


@dataclass(frozen=True, slots=True)
class _RouterBindingUpdate:
    """What a 143 answer needs if the kernel refuses a mobile router's routes (RFC 3963 §6.2)."""

    sequence: int
    src: IPv6Address
    dst: IPv6Address
    hao: IPv6Address | None


@dataclass(slots=True)
class _HomeAgentListEntry:
    """§10.5.1: one router that advertised itself as a home agent."""

    preference: int
    expires_at: float
    addresses: tuple[IPv6Address, ...]
    order: int


@dataclass(frozen=True, slots=True)
class HomeAgentListRow:
    """One Home Agents List entry for operators."""

    link_local: IPv6Address
    preference: int
    lifetime_remaining: int
    addresses: tuple[IPv6Address, ...]


@dataclass(slots=True)
class _SwitchRetry:
    """A Home Agent Switch sent to one MN, not yet followed (RFC 5142 §5.2)."""

    due_at: float
    delay: float
    retransmissions: int = 0


@dataclass(slots=True)
class _Drain:
    """The drain in progress: who still gets a first Home Agent Switch, who may get one again,
    and the rate limit (one message every ``interval`` seconds)."""

    interval: float
    home_agents: tuple[IPv6Address, ...] | None
    started_at: float
    queue: list[IPv6Address] = field(default_factory=list)
    retries: dict[IPv6Address, _SwitchRetry] = field(default_factory=dict)
    next_send_at: float = 0.0


DRAIN_COUNTERS: Final = (
    "switch_sent",
    "switch_retransmitted",
    "switch_followed",
    "switch_unsupported",
    "switch_unanswered",
)
"""The drain counters (:attr:`HomeAgent.drain_counters`): Home Agent Switch messages sent
(first time, again), MNs that de-registered after one, MNs that answered Binding Error 2
(RFC 5142 §5.3) and MNs still registered after the last retransmission."""


@dataclass(slots=True)
class _PrefixLifetime:
    """Remaining lifetimes (``*_until``) and the values the HA's own RA last advertised
    (``None``: infinite, or no RA seen yet)."""

    valid_until: float = math.inf
    preferred_until: float = math.inf
    valid_advertised: float | None = None
    preferred_advertised: float | None = None


@dataclass(slots=True)
class _HomePrefix:
    network: IPv6Network
    base: int
    mask: int
    lifetime: _PrefixLifetime = field(default_factory=_PrefixLifetime)


class HomeAgent:
    """RFC 6275 §10 home agent core. Owns the home-registration Binding Cache."""

    def __init__(
        self,
        config: HomeAgentConfig,
        *,
        stats: MobilityStats | None = None,
        correspondent: CorrespondentNode | None = None,
        authorizer: HomeRegistrationAuthorizer | None = None,
    ) -> None:
        self.config = config
        self.authorizer = authorizer
        self.stats = stats if stats is not None else MobilityStats()
        self.cache = BindingCache()
        self.correspondent = correspondent
        if correspondent is not None:
            correspondent.home_registrations = self.cache
        self._pending: dict[IPv6Address, _PendingRegistration] = {}
        self._prefixes = [
            _HomePrefix(net, int(net.network_address), int(net.netmask))
            for net in config.home_prefixes
        ]
        self._home_agents: dict[IPv6Address, _HomeAgentListEntry] = {}
        self.preference = config.preference
        """This HA's own preference (§7.4, §10.5.1): the configured one, or the advertised."""
        self._ha_order = 0
        self._router_bus: dict[IPv6Address, _RouterBindingUpdate] = {}
        self._drain: _Drain | None = None
        self.drain_counters: dict[str, int] = dict.fromkeys(DRAIN_COUNTERS, 0)

    # ----------------------------------------------------------------------------------------
    # Driving the core
    # ----------------------------------------------------------------------------------------

    def handle(self, event: HomeAgentInput, now: float) -> list[Action]:
        """Process one input event; returns the actions to carry out, in order."""
        actions = self._handle(event, now)
        if self._drain is not None:
            self._drain_follow(actions)
        return actions

    def _handle(self, event: HomeAgentInput, now: float) -> list[Action]:
        if isinstance(event, MobilityMessageReceived):
            return self._mobility_message(event, now)
        if isinstance(event, HomeAgentDrainRequested):
            return self._drain_requested(event, now)
        if isinstance(event, ProxyDadCompleted):
            return self._dad_completed(event, now)
        if isinstance(event, RouterAdvertisementReceived):
            self._router_advertisement(event, now)
            return []
        if isinstance(event, HomePrefixAdvertised):
            return self._home_prefix_advertised(event, now)
        if isinstance(event, OwnHomeAgentInformation):
            self.preference = event.preference
            return []
        if isinstance(event, DhaadRequestReceived):
            return [self._dhaad_reply(event, now)]
        if isinstance(event, ForwardingSetupFailed):
            return self._forwarding_setup_failed(event)
        if isinstance(event, MobilePrefixSolicitationReceived):
            return self._mobile_prefix_solicitation(event, now)
        if isinstance(event, DataplaneCountersSampled):
            self.stats.NEncapsulations = event.encapsulations
            self.stats.NDecapsulations = event.decapsulations
            return []
        if isinstance(event, MobilityHeaderRejected):
            count_rejected_mobility_header(self.stats, event)
            return []
        if isinstance(event, HomeBindingLoaded):
            return self._binding_loaded(event, now)
        if isinstance(event, RouteOptimizationSwitched | IcmpErrorReceived | BindingsInUse):
            # the correspondent-node part of a home agent (§9)
            if self.correspondent is None:
                return []
            return self.correspondent.handle(event, now)
        assert_never(event)

    def handle_timer(self, now: float) -> list[Action]:
        """Expire bindings, pending DADs and Home Agents List entries due at ``now``."""
        actions: list[Action] = []
        for entry, previous in self.cache.pop_expired(now):
            if previous is BindingState.DAD_PENDING:
                self._pending.pop(entry.home_address, None)
                actions.append(MessageDiscarded("proxy-dad-timeout", entry.care_of_address))
                continue
            # RFC 6275 §10.3.2 / §10.4: an expired binding is torn down like a de-registration.
            actions += self._teardown(entry)
            actions.append(BindingExpired(entry.home_address, entry.care_of_address, True))
        for link_local, ha in list(self._home_agents.items()):
            if ha.expires_at <= now:
                del self._home_agents[link_local]
        if self.correspondent is not None:
            actions += self.correspondent.handle_timer(now)
        if self._drain is not None:
            self._drain_follow(actions)
            actions += self._drain_timer(now)
        return actions

    def next_deadline(self) -> float | None:
        deadlines = [self.cache.next_expiry(), self._drain_deadline()]
        deadlines += [ha.expires_at for ha in self._home_agents.values()]
        if self.correspondent is not None:
            deadlines.append(self.correspondent.next_deadline())
        present = [d for d in deadlines if d is not None and d != math.inf]
        return min(present) if present else None

    def tunnel_error_relay(self, icmp_type: int, invoking_packet: bytes) -> TunnelErrorRelay | None:
        """RFC 2473 §8.1: an ICMPv6 error from inside the tunnel (Destination Unreachable,
        Time Exceeded, Parameter Problem) about a packet this HA encapsulated toward a CoA
        (outer source = the HA, next header 41, inner destination on a home prefix) is
        reported to the inner packet's source as Destination Unreachable, code 3 (address
        unreachable), carrying the inner packet. Every such error, whatever its code, makes the
        home address unreachable through the tunnel. ``None``: not about our tunnel, or an
        inner source no error may go to (RFC 4443 §2.4(e))."""
        if icmp_type not in (
            ICMPV6_DESTINATION_UNREACHABLE,
            ICMPV6_TIME_EXCEEDED,
            ICMPV6_PARAMETER_PROBLEM,
        ):
            return None
        if len(invoking_packet) < 80 or invoking_packet[6] != _IPPROTO_IPV6:
            return None
        if invoking_packet[8:24] != self.config.address.packed:
            return None
        inner = invoking_packet[40:]
        if inner[0] >> 4 != 6:
            return None
        source = IPv6Address(inner[8:24])
        if (
            not is_unicast_routable(source)
            or self._home_prefix_of(IPv6Address(inner[24:40])) is None
        ):
            return None
        return TunnelErrorRelay(source, ICMPV6_DESTINATION_UNREACHABLE, ADDRESS_UNREACHABLE, inner)

    def check_home_address_option(
        self, src: IPv6Address, home_address: IPv6Address, now: float
    ) -> list[Action]:
        """§9.3.1/§10.3.1: a packet with an HAO needs a binding HoA → ``src``; else BE 1."""
        if has_binding(self.cache, home_address, src):
            return []
        if self.correspondent is not None:
            return self.correspondent.check_home_address_option(src, home_address, now)
        return unknown_binding_error(src, home_address, self.config.address)

    # ----------------------------------------------------------------------------------------
    # Operator snapshots
    # ----------------------------------------------------------------------------------------

    def binding_cache_rows(self, now: float) -> list[BindingCacheRow]:
        """``mipdiag -c``: every binding (home registrations, then correspondent ones)."""
        rows = [binding_cache_row(entry, now) for entry in self.cache]
        if self.correspondent is not None:
            rows += self.correspondent.binding_cache_rows(now)
        return rows

    def home_agent_list_rows(self, now: float) -> list[HomeAgentListRow]:
        return [
            HomeAgentListRow(link_local, ha.preference, int(ha.expires_at - now), ha.addresses)
            for link_local, ha in self._home_agents.items()
        ]

    # ----------------------------------------------------------------------------------------
    # Mobility messages
    # ----------------------------------------------------------------------------------------

    def set_mobile_routers(self, policies: tuple[MobileRouterPolicy, ...]) -> None:
        """Reconfigure the RFC 3963 §6.1.2 prefix table; it applies to the next registrations,
        existing bindings keep their prefixes until refreshed."""
        self.config = replace(self.config, mobile_routers=policies)

    def set_max_binding_lifetime(self, lifetime: int) -> None:
        """Reconfigure the §10.3.1 lifetime cap; it applies to the next registrations,
        existing bindings keep theirs."""
        self.config = replace(self.config, max_binding_lifetime=lifetime)

    def home_link_destination(
        self,
        src: IPv6Address,
        home_address: IPv6Address | None,
        interface_index: int,
        link_source: bytes | None,
    ) -> bytes | None:
        """§10.3.2: a packet from a home address (without an HAO, or with one naming that
        same address) that came in on the home interface is from the MN at home: the answer
        to it (a BA, a Parameter Problem) goes in a frame to ``link_source``, because
        routing would take the HoA's tunnel route (or its RH2 rewrite) to the old CoA.
        ``None``: answer through routing as usual."""
        index = self.config.home_interface_index
        if (
            not index
            or interface_index != index
            or link_source is None
            or (home_address is not None and home_address != src)
            or self._home_prefix_of(src) is None
        ):
            return None
        return link_source

    def _on_home_link(self, event: MobilityMessageReceived, actions: list[Action]) -> list[Action]:
        """§10.3.2: the BA to the MN at home goes to its link-layer address
        (:meth:`home_link_destination`)."""
        link = self.home_link_destination(
            event.src, event.home_address, event.interface_index, event.link_source
        )
        if link is None:
            return actions
        return [
            replace(action, link_destination=link)
            if isinstance(action, SendMobilityMessage)
            and action.dst == event.src
            and action.routing_address is None
            and not action.via_tunnel
            else action
            for action in actions
        ]

    def _mobility_message(self, event: MobilityMessageReceived, now: float) -> list[Action]:
        message = event.message
        if isinstance(message, BindingUpdate):
            if int(message.flags) & _H_FLAG:
                return self._on_home_link(event, self._home_binding_update(event, message, now))
            if self.correspondent is not None:
                return self.correspondent.handle(event, now)
            self.stats.NBindUpdatesRcvd += 1
            self.stats.NBindUpdatesDropMisc += 1
            return [MessageDiscarded("route-optimization-not-supported", event.src, MHType.BU)]
        if isinstance(message, BindingError) and self._switch_not_understood(event, message):
            return []
        if isinstance(message, UnknownMobilityMessage | HomeAgentSwitch):
            # RFC 6275 §9.2: unknown MH type → BE status 2 to the source. A Home Agent Switch
            # is for mobile nodes (RFC 5142 §6): a home agent does not process one.
            error = binding_error(
                status=BEStatus.UNRECOGNIZED_MH_TYPE,
                offending_src=event.src,
                home_address=event.home_address,
                local_address=self._local_address(event.dst),
            )
            return [error] if error is not None else []
        if self.correspondent is not None:
            return self.correspondent.handle(event, now)
        return [MessageDiscarded("unexpected-mh-type", event.src, None)]

    def _local_address(self, dst: IPv6Address) -> IPv6Address:
        return dst if is_unicast_routable(dst) else self.config.address

    def _reject(
        self,
        event: MobilityMessageReceived,
        bu: BindingUpdate,
        home_address: IPv6Address,
        status: int,
        sequence: int | None = None,
        options: tuple[MobilityOption, ...] = (),
    ) -> list[Action]:
        ba = binding_ack(
            status=status,
            sequence=bu.sequence if sequence is None else sequence,
            lifetime_units=0,
            bu_src=event.src,
            bu_dst=event.dst,
            bu_home_address=event.home_address,
            options=options,
            stats=self.stats,
        )
        return [ba, BindingRejected(home_address, event.src, True, status)]

    def _discard(self, reason: str, event: MobilityMessageReceived) -> list[Action]:
        return [MessageDiscarded(reason, event.src, MHType.BU)]

    def _home_prefix_of(self, address: IPv6Address) -> _HomePrefix | None:
        value = int(address)
        for prefix in self._prefixes:
            if value & prefix.mask == prefix.base:
                return prefix
        return None

    def _home_binding_update(
        self, event: MobilityMessageReceived, bu: BindingUpdate, now: float
    ) -> list[Action]:
        stats = self.stats
        stats.NBindUpdatesRcvd += 1
        home_address = event.home_address if event.home_address is not None else event.src
        care_of_address = event.src
        has_nonce_indices = False
        for option in bu.options:
            if isinstance(option, AlternateCareofAddress):
                care_of_address = option.address
            elif isinstance(option, NonceIndices):
                has_nonce_indices = True

        # 1. RFC 6275 §9.5.1: HoA and CoA must be routable unicast; silent discard otherwise
        # (TAHI HA_2_2_9..14, the existing binding is kept).
        if not is_unicast_routable(home_address) or not is_unicast_routable(care_of_address):
            stats.NBindUpdatesDropInvalid += 1
            return self._discard("address-not-unicast-routable", event)
        # §6.2.6: Nonce Indices MUST NOT be in a home registration; HA drops (TAHI HA_2_2_7/8).
        if has_nonce_indices:
            stats.NBindUpdatesDropInvalid += 1
            return self._discard("nonce-indices-in-home-bu", event)
        # §10.3.1: the BU must be protected by the MN–HA security association.
        if not event.ipsec_protected:
            stats.NBindUpdatesDropAuth += 1
            return self._discard("home-bu-not-protected", event)
        # RFC 4285 §5-§6 (docs/security.md): MN-HA authentication, then replay protection,
        # before any status that would tell an unauthenticated sender about the binding
        # cache (139, 135, 133, 132, 130 below).
        if self.authorizer is not None:
            rejection = self.authorizer.check_home_binding_update(
                bu, event.mh_bytes, home_address, care_of_address, now
            )
            if rejection is not None:
                stats.NBindUpdatesDropAuth += 1
                if rejection.status is None:
                    return self._discard(rejection.reason, event)
                return self._reject(
                    event, bu, home_address, rejection.status, options=rejection.options
                )

        # 2. §10.3.1: not a home agent → 131.
        if not self.config.enabled:
            return self._reject(event, bu, home_address, BAStatus.HOME_REGISTRATION_NOT_SUPPORTED)
        # 3. §9.5.1: a correspondent binding exists → 139 (the stored flag is not changed).
        if self.correspondent is not None and self.correspondent.has_binding(home_address):
            return self._reject(
                event, bu, home_address, BAStatus.REGISTRATION_TYPE_CHANGE_DISALLOWED
            )

        entry = self.cache.get(home_address)
        # 4. UMIP: a retransmitted BU while proxy DAD runs is ignored.
        if entry is not None and entry.state is BindingState.DAD_PENDING:
            stats.NBindUpdatesDropMisc += 1
            return self._discard("dad-in-progress", event)
        # 5. §9.5.1: sequence number not newer → 135 with the last accepted number.
        if entry is not None and not seq_newer(bu.sequence, entry.sequence):
            return self._reject(
                event,
                bu,
                home_address,
                BAStatus.SEQUENCE_NUMBER_OUT_OF_WINDOW,
                sequence=entry.sequence,
            )
        deregistration = bu.lifetime == 0 or int(care_of_address) == int(home_address)
        # 6. §10.3.2: de-registration without a binding → 133.
        if deregistration and entry is None:
            return self._reject(
                event, bu, home_address, BAStatus.NOT_HOME_AGENT_FOR_THIS_MOBILE_NODE
            )
        # 7. §10.3.1: the HoA must be on-link on a home prefix → 132.
        prefix = self._home_prefix_of(home_address)
        if prefix is None or prefix.lifetime.valid_until <= now:
            return self._reject(event, bu, home_address, BAStatus.NOT_HOME_SUBNET)

        if deregistration:
            assert entry is not None
            return self._deregister(event, bu, entry)

        # 8. Local policy: room for a new binding → else 130.
        if (
            entry is None
            and self.config.max_bindings is not None
            and len(self.cache) >= self.config.max_bindings
        ):
            return self._reject(event, bu, home_address, BAStatus.INSUFFICIENT_RESOURCES)

        # 9a. RFC 3963 §6.2: a mobile router's prefixes (implicit or explicit mode).
        prefixes: tuple[IPv6Network, ...] | None = None
        if int(bu.flags) & _R_FLAG:
            decision = decide_prefixes(
                policy_for(self.config.mobile_routers, home_address),
                bu.options,
                self.config.home_prefixes,
                self._prefixes_held_except(home_address),
            )
            if decision.status is not None:
                return [
                    *self._reject(event, bu, home_address, decision.status),
                    MessageDiscarded(f"mobile-router: {decision.reason}", event.src, MHType.BU),
                ]
            prefixes = decision.prefixes

        lifetime, status = self._grant(bu, prefix, now)
        if entry is None:
            return self._first_registration(
                event, bu, home_address, care_of_address, lifetime, status, now, prefixes
            )
        return self._update(event, bu, entry, care_of_address, lifetime, status, now, prefixes)

    def _prefixes_held_except(self, home_address: IPv6Address) -> list[IPv6Network]:
        """Mobile Network Prefixes other routers' bindings hold (RFC 3963 §6.2: one owner)."""
        return [
            network
            for entry in self.cache
            if entry.home_address != home_address and entry.live
            for network in entry.prefixes
        ]

    def _forwarding_setup_failed(self, event: ForwardingSetupFailed) -> list[Action]:
        """RFC 3963 §6.2: the routes for a router's prefixes could not be installed → the BU
        is answered 143 and the binding removed (its routes with it)."""
        context = self._router_bus.pop(event.home_address, None)
        entry = self.cache.get(event.home_address)
        if context is None or entry is None or not entry.live:
            return [MessageDiscarded("unexpected-forwarding-failure", event.home_address)]
        self.cache.remove(entry.home_address, BindingState.DELETED)
        actions = self._teardown(entry)
        actions.append(
            binding_ack(
                status=BAStatus.FORWARDING_SETUP_FAILED,
                sequence=context.sequence,
                lifetime_units=0,
                bu_src=context.src,
                bu_dst=context.dst,
                bu_home_address=context.hao,
                stats=self.stats,
            )
        )
        actions.append(
            BindingRejected(
                entry.home_address,
                entry.care_of_address,
                True,
                BAStatus.FORWARDING_SETUP_FAILED,
            )
        )
        actions.append(BindingDeleted(entry.home_address, entry.care_of_address, True))
        return actions

    def _tunnel(
        self,
        entry: BindingCacheEntry,
        care_of_address: IPv6Address,
        prefixes: tuple[IPv6Network, ...],
        bu_context: _RouterBindingUpdate,
    ) -> InstallHomeTunnel:
        """The tunnel for a binding, with a router's prefixes; remembers the BU for a 143."""
        withdrawn = tuple(p for p in entry.prefixes if p not in prefixes)
        entry.prefixes = prefixes
        if prefixes:
            self._router_bus[entry.home_address] = bu_context
        else:
            self._router_bus.pop(entry.home_address, None)
        return InstallHomeTunnel(entry.home_address, care_of_address, prefixes, withdrawn)

    def _grant(self, bu: BindingUpdate, prefix: _HomePrefix, now: float) -> tuple[int, int]:
        """§10.3.1: granted lifetime (seconds, a multiple of 4) and status 0 or 1."""
        lifetime = min(bu.lifetime * LIFETIME_UNIT, self.config.max_binding_lifetime)
        valid_remaining = prefix.lifetime.valid_until - now
        if valid_remaining < lifetime:
            lifetime = int(valid_remaining)
        lifetime_units = min(lifetime // LIFETIME_UNIT, MAX_LIFETIME_UNITS)
        # Status 1 when the prefix is or becomes deprecated during the binding; lifetimes are
        # compared in 4-second units (§6.1.8, docs/protocol-notes.md §2).
        preferred_units = (prefix.lifetime.preferred_until - now) / LIFETIME_UNIT
        status = (
            BAStatus.ACCEPTED_PREFIX_DISCOVERY_NECESSARY
            if preferred_units < lifetime_units
            else BAStatus.ACCEPTED
        )
        return lifetime_units * LIFETIME_UNIT, int(status)

    def _ba_options(self, lifetime: int) -> tuple[MobilityOption, ...]:
        """§6.2.4/§10.3.1: optional BRA with an interval shorter than the granted lifetime."""
        advice = self.config.refresh_advice
        if advice is None:
            return ()
        units = advice // LIFETIME_UNIT
        if 0 < units < lifetime // LIFETIME_UNIT:
            return (BindingRefreshAdvice(units),)
        return ()

    def _accept_ba(
        self,
        event_src: IPv6Address,
        event_dst: IPv6Address,
        hao: IPv6Address | None,
        bu: BindingUpdate,
        lifetime: int,
        status: int,
        router: bool = False,
    ) -> Action:
        return binding_ack(
            status=status,
            sequence=bu.sequence,
            lifetime_units=lifetime // LIFETIME_UNIT,
            bu_src=event_src,
            bu_dst=event_dst,
            bu_home_address=hao,
            options=self._ba_options(lifetime),
            stats=self.stats,
            # RFC 3963 §4.2, §6.2: R is set when a mobile router's BU (R = 1) is accepted
            flags=BAFlags.R if router else BAFlags.NONE,
        )

    def _first_registration(
        self,
        event: MobilityMessageReceived,
        bu: BindingUpdate,
        home_address: IPv6Address,
        care_of_address: IPv6Address,
        lifetime: int,
        status: int,
        now: float,
        prefixes: tuple[IPv6Network, ...] | None = None,
    ) -> list[Action]:
        link_local = link_local_for(home_address) if int(bu.flags) & _L_FLAG else None
        if not self.config.proxy_dad:
            entry = BindingCacheEntry(
                home_address,
                care_of_address,
                sequence=bu.sequence,
                flags=int(bu.flags),
                lifetime=lifetime,
                now=now,
                home_registration=True,
                link_local=link_local,
            )
            self.cache.insert(entry)
            return self._activated(
                entry, event.src, event.dst, event.home_address, bu, status, prefixes
            )
        # §10.3.1: proxy DAD for the HoA (and the link-local address if L = 1) before the BA.
        entry = BindingCacheEntry(
            home_address,
            care_of_address,
            sequence=bu.sequence,
            flags=int(bu.flags),
            lifetime=0,
            now=now,
            home_registration=True,
            state=BindingState.DAD_PENDING,
            link_local=link_local,
        )
        entry.expires_at = now + self.config.dad_timeout
        self.cache.insert(entry)
        self._pending[home_address] = _PendingRegistration(
            bu,
            event.src,
            event.dst,
            event.home_address,
            care_of_address,
            lifetime,
            status,
            prefixes,
        )
        return [StartProxyDad(home_address, link_local)]

    def _dad_completed(self, event: ProxyDadCompleted, now: float) -> list[Action]:
        pending = self._pending.pop(event.home_address, None)
        entry = self.cache.get(event.home_address)
        if pending is None or entry is None or entry.state is not BindingState.DAD_PENDING:
            return [MessageDiscarded("unexpected-dad-result", event.home_address)]
        if event.duplicate:
            # §10.3.1: DAD failed → 134, whatever the A bit (TAHI HA_2_4_x).
            self.cache.remove(event.home_address, BindingState.DELETED)
            ba = binding_ack(
                status=BAStatus.DUPLICATE_ADDRESS_DETECTION_FAILED,
                sequence=pending.bu.sequence,
                lifetime_units=0,
                bu_src=pending.src,
                bu_dst=pending.dst,
                bu_home_address=pending.hao,
                stats=self.stats,
            )
            return [
                ba,
                BindingRejected(
                    event.home_address,
                    pending.care_of_address,
                    True,
                    BAStatus.DUPLICATE_ADDRESS_DETECTION_FAILED,
                ),
            ]
        # The lifetime counts from now: DAD took about a second of it.
        self.cache.register(
            entry,
            care_of_address=pending.care_of_address,
            sequence=pending.bu.sequence,
            flags=int(pending.bu.flags),
            lifetime=pending.lifetime,
            now=now,
        )
        return self._activated(
            entry,
            pending.src,
            pending.dst,
            pending.hao,
            pending.bu,
            pending.status,
            pending.prefixes,
        )

    def _activated(
        self,
        entry: BindingCacheEntry,
        src: IPv6Address,
        dst: IPv6Address,
        hao: IPv6Address | None,
        bu: BindingUpdate,
        status: int,
        prefixes: tuple[IPv6Network, ...] | None = None,
    ) -> list[Action]:
        """A new home registration is in force: tunnel (with a mobile router's prefixes,
        RFC 3963 §6.4), direct delivery of the HA's own packets (§9.3.2), proxy ND (§10.4.1),
        then the BA."""
        context = _RouterBindingUpdate(bu.sequence, src, dst, hao)
        return [
            self._tunnel(entry, entry.care_of_address, prefixes or (), context),
            InstallRouteOptimization(entry.home_address, entry.care_of_address),
            StartProxyNeighbor(entry.home_address, entry.link_local),
            self._accept_ba(src, dst, hao, bu, entry.lifetime, status, prefixes is not None),
            BindingRegistered(
                entry.home_address,
                entry.care_of_address,
                True,
                entry.care_of_address,
                entry.lifetime,
            ),
        ]

    def _update(
        self,
        event: MobilityMessageReceived,
        bu: BindingUpdate,
        entry: BindingCacheEntry,
        care_of_address: IPv6Address,
        lifetime: int,
        status: int,
        now: float,
        prefixes: tuple[IPv6Network, ...] | None = None,
    ) -> list[Action]:
        actions: list[Action] = []
        registered = prefixes or ()
        moved = int(care_of_address) != int(entry.care_of_address)
        if moved or registered != entry.prefixes:
            # RFC 3963 §6.4: a new CoA or prefix set replaces the routes in one step
            context = _RouterBindingUpdate(bu.sequence, event.src, event.dst, event.home_address)
            actions.append(self._tunnel(entry, care_of_address, registered, context))
        if moved:
            actions.append(InstallRouteOptimization(entry.home_address, care_of_address))
        self.cache.register(
            entry,
            care_of_address=care_of_address,
            sequence=bu.sequence,
            flags=int(bu.flags),
            lifetime=lifetime,
            now=now,
        )
        actions.append(
            self._accept_ba(
                event.src, event.dst, event.home_address, bu, lifetime, status, prefixes is not None
            )
        )
        actions.append(
            BindingRefreshed(entry.home_address, care_of_address, True, care_of_address, lifetime)
        )
        return actions

    def _deregister(
        self, event: MobilityMessageReceived, bu: BindingUpdate, entry: BindingCacheEntry
    ) -> list[Action]:
        """§10.3.2: delete the binding, stop proxy ND, remove the tunnel; BA 0, lifetime 0."""
        self.cache.remove(entry.home_address, BindingState.DELETED)
        actions = self._teardown(entry)
        actions.append(
            binding_ack(
                status=BAStatus.ACCEPTED,
                sequence=bu.sequence,
                lifetime_units=0,
                bu_src=event.src,
                bu_dst=event.dst,
                bu_home_address=event.home_address,
                stats=self.stats,
            )
        )
        actions.append(BindingDeleted(entry.home_address, entry.care_of_address, True))
        return actions

    def _teardown(self, entry: BindingCacheEntry) -> list[Action]:
        self._router_bus.pop(entry.home_address, None)
        return [
            RemoveHomeTunnel(entry.home_address, entry.prefixes),
            StopProxyNeighbor(entry.home_address, entry.link_local),
            RemoveRouteOptimization(entry.home_address),
        ]

    def _binding_loaded(self, event: HomeBindingLoaded, now: float) -> list[Action]:
        """HA cluster: the store's state of one home address replaces ours (docs/cluster.md).

        Whatever this core decided for it and did not see committed is forgotten (a pending
        proxy DAD, a mobile router's BU context). The answer is what makes the fast path
        match the loaded state, whatever it held before: the tunnel (with a mobile router's
        prefixes), direct delivery and proxy ND for a binding; their removal (tolerant of
        absence) without one. No BA and no binding event: nothing new was decided here, and
        nothing is to be committed again."""
        home_address = event.home_address
        self._pending.pop(home_address, None)
        self._router_bus.pop(home_address, None)
        old = self.cache.get(home_address)
        if old is not None:
            self.cache.remove(home_address, BindingState.DELETED)
        stored = event.binding
        if stored is None:
            if old is not None:
                return self._teardown(old)
            return [
                RemoveHomeTunnel(home_address),
                StopProxyNeighbor(home_address),
                RemoveRouteOptimization(home_address),
            ]
        entry = self.cache.insert_home(home_address, stored, now)
        actions: list[Action] = []
        if old is not None and old.link_local is not None and old.link_local != entry.link_local:
            actions.append(StopProxyNeighbor(home_address, old.link_local))
        withdrawn = tuple(p for p in old.prefixes if p not in stored.prefixes) if old else ()
        actions += [
            InstallHomeTunnel(home_address, stored.care_of_address, stored.prefixes, withdrawn),
            InstallRouteOptimization(home_address, stored.care_of_address),
            StartProxyNeighbor(home_address, stored.link_local),
        ]
        return actions

    def route_optimizations(self) -> list[InstallRouteOptimization]:
        """§9.3.2, §10.3.1: one :class:`InstallRouteOptimization` per registered home binding,
        for a runtime that restored the cache (its own packets to each HoA go directly to the
        CoA with a type 2 routing header; forwarded ones keep the tunnel)."""
        return [
            InstallRouteOptimization(entry.home_address, entry.care_of_address)
            for entry in self.cache
            if entry.state is BindingState.REGISTERED
            and entry.home_registration
            and int(entry.care_of_address) != int(entry.home_address)
        ]

    # ----------------------------------------------------------------------------------------
    # Home prefixes, Home Agents List, DHAAD, mobile prefixes
    # ----------------------------------------------------------------------------------------

    def _home_prefix_advertised(self, event: HomePrefixAdvertised, now: float) -> list[Action]:
        for prefix in self._prefixes:
            if prefix.network == event.prefix:
                prefix.lifetime.valid_advertised = event.valid_lifetime
                prefix.lifetime.preferred_advertised = event.preferred_lifetime
                prefix.lifetime.valid_until = (
                    math.inf if event.valid_lifetime is None else now + event.valid_lifetime
                )
                prefix.lifetime.preferred_until = (
                    math.inf if event.preferred_lifetime is None else now + event.preferred_lifetime
                )
                # §10.3.1: bindings must not outlive the prefix's valid lifetime.
                for entry in self.cache:
                    if (
                        entry.state is BindingState.REGISTERED
                        and self._home_prefix_of(entry.home_address) is prefix
                        and entry.expires_at > prefix.lifetime.valid_until
                    ):
                        self.cache.set_expiry(entry, prefix.lifetime.valid_until)
        return []

    def _router_advertisement(self, event: RouterAdvertisementReceived, now: float) -> None:
        """§10.5.1: maintain the Home Agents List from RAs with the H bit."""
        lifetime = event.ha_lifetime if event.ha_lifetime is not None else event.router_lifetime
        if not event.home_agent_flag or lifetime == 0:
            self._home_agents.pop(event.source, None)
            return
        existing = self._home_agents.get(event.source)
        addresses = event.global_addresses or (existing.addresses if existing else ())
        self._ha_order += 1
        self._home_agents[event.source] = _HomeAgentListEntry(
            preference=event.ha_preference or 0,
            expires_at=now + lifetime,
            addresses=addresses,
            order=existing.order if existing else self._ha_order,
        )

    def home_agent_addresses(self, now: float) -> list[IPv6Address]:
        """Global HA addresses in decreasing preference (§10.5.1), this HA included."""
        candidates: list[tuple[int, int, IPv6Address]] = []
        for ha in self._home_agents.values():
            if ha.expires_at <= now:
                continue
            candidates += [(ha.preference, ha.order, address) for address in ha.addresses]
        others = any(address != self.config.address for _, _, address in candidates)
        # RFC 5142 §3.3: a draining HA sends new MNs elsewhere while another one is known.
        if self.config.enabled and not (self._drain is not None and others):
            candidates.append((self.preference, 0, self.config.address))
        # Decreasing unsigned preference; equal preferences keep the order they were learnt
        # (the RFC allows randomising; a stable order keeps tests deterministic).
        candidates.sort(key=lambda item: (-item[0], item[1]))
        seen: set[IPv6Address] = set()
        ordered: list[IPv6Address] = []
        for _, _, address in candidates:
            if address not in seen:
                seen.add(address)
                ordered.append(address)
        return ordered

    def _dhaad_reply(self, event: DhaadRequestReceived, now: float) -> Action:
        """§10.5: reply to the source, ≤ 77 addresses so it fits 1280 octets (TAHI HA_7_5_1).

        RFC 3963 §7: a request with R asks for home agents that support mobile routers; the
        reply (with R) lists this HA only if it has a mobile router policy. Other home agents'
        support is not advertised on the link, so they are left out of such a reply.
        """
        if event.mobile_router:
            supported = self.config.enabled and bool(self.config.mobile_routers)
            addresses = [self.config.address] if supported else []
            return SendDhaadReply(
                event.identifier, self.config.address, event.src, tuple(addresses), True
            )
        addresses = self.home_agent_addresses(now)[:DHAAD_REPLY_MAX_ADDRESSES]
        return SendDhaadReply(event.identifier, self.config.address, event.src, tuple(addresses))

    def _mobile_prefix_solicitation(
        self, event: MobilePrefixSolicitationReceived, now: float
    ) -> list[Action]:
        """§10.6.4: answer an MPS at once with the prefix list; BE 1 without a binding.

        §10.6.2: the MPA carries the prefix lifetimes as the HA's own RAs advertise them on
        the home link (what a Router Solicitation would get now; radvd renews them with every
        RA), so every binding lifetime granted since (≤ the remaining valid lifetime,
        §10.3.1) is ≤ the MPA's valid lifetime (TAHI HA_8_1_7); 0 once the prefix expired.
        """
        if event.home_address is None:
            return [MessageDiscarded("mps-without-home-address", event.src)]
        entry = self.cache.get(event.home_address)
        if entry is None or entry.state is not BindingState.REGISTERED:
            # TAHI HA_8_1_3: an MPS with an HAO but no binding → BE 1.
            return self.check_home_address_option(event.src, event.home_address, now)
        prefixes: list[tuple[IPv6Network, int, int]] = []
        for prefix in self._prefixes:
            lifetime = prefix.lifetime
            valid = _advertised(lifetime.valid_advertised, lifetime.valid_until, now)
            preferred = _advertised(lifetime.preferred_advertised, lifetime.preferred_until, now)
            prefixes.append((prefix.network, valid, preferred))
        return [
            SendMobilePrefixAdvertisement(
                event.identifier,
                self.config.address,
                event.src,
                event.home_address,
                tuple(prefixes),
            )
        ]

    # ----------------------------------------------------------------------------------------
    # Drain: Home Agent Switch to every registered MN (RFC 5142 §5)
    # ----------------------------------------------------------------------------------------

    @property
    def draining(self) -> bool:
        return self._drain is not None

    def drain_status(self, now: float) -> dict[str, object]:
        """What ``nfq-mip6 cluster drain`` and ``status`` report: the drain's progress and the
        counters (which survive the drain's end)."""
        drain = self._drain
        status: dict[str, object] = {"draining": drain is not None, **self.drain_counters}
        status["home_agents"] = [str(a) for a in self._switch_home_agents(now)]
        # §10.5.1: what DHAAD replies and the switch's list are ranked by (§7.4 preference)
        status["preference"] = self.preference
        status["home_agents_list"] = [
            {
                "link_local": str(row.link_local),
                "preference": row.preference,
                "lifetime": row.lifetime_remaining,
                "addresses": [str(a) for a in row.addresses],
            }
            for row in self.home_agent_list_rows(now)
            if row.lifetime_remaining > 0
        ]
        if drain is not None:
            status["rate"] = round(1.0 / drain.interval, 3)
            status["queued"] = len(drain.queue)
            status["awaiting"] = len(drain.retries)
            status["registered"] = sum(1 for _ in self._registered_home_bindings())
            status["elapsed"] = round(now - drain.started_at, 3)
        return status

    def _registered_home_bindings(self) -> list[BindingCacheEntry]:
        return [entry for entry in self.cache if _switchable(entry)]

    def _drain_requested(self, event: HomeAgentDrainRequested, now: float) -> list[Action]:
        if event.stop:
            self._drain = None
            return []
        if not event.rate > 0 or math.isinf(event.rate):
            return [MessageDiscarded("drain-rate-not-positive")]
        drain = self._drain
        if drain is None:
            drain = self._drain = _Drain(1.0 / event.rate, event.home_agents, now)
            drain.next_send_at = now
            drain.queue = [entry.home_address for entry in self._registered_home_bindings()]
        else:  # a new rate or list for the drain in progress
            drain.interval = 1.0 / event.rate
            drain.home_agents = event.home_agents
            drain.next_send_at = min(drain.next_send_at, now + drain.interval)
        return self._drain_timer(now)

    def _switch_home_agents(self, now: float) -> tuple[IPv6Address, ...]:
        """RFC 5142 §5.1: the alternate home agents, the preferred first (never this one)."""
        drain = self._drain
        if drain is not None and drain.home_agents is not None:
            listed: tuple[IPv6Address, ...] = drain.home_agents
        elif self.config.switch_home_agents:
            listed = self.config.switch_home_agents
        else:
            listed = tuple(self.home_agent_addresses(now))
        ordered = [a for a in dict.fromkeys(listed) if a != self.config.address]
        return tuple(ordered[:MAX_HOME_AGENT_SWITCH_ADDRESSES])

    def _drain_deadline(self) -> float | None:
        drain = self._drain
        if drain is None:
            return None
        if drain.queue:
            return drain.next_send_at
        if drain.retries:
            due = min(retry.due_at for retry in drain.retries.values())
            return max(due, drain.next_send_at)
        return None

    def _drain_timer(self, now: float) -> list[Action]:
        """Send what is due, one message per ``interval``: first switches before
        retransmissions, so a large cache drains at the rate asked."""
        drain = self._drain
        if drain is None:
            return []
        actions: list[Action] = []
        while drain.next_send_at <= now:
            home_address, retransmission = self._next_switch(drain, now)
            if home_address is None:
                break
            entry = self.cache.get(home_address)
            if entry is None or not _switchable(entry):
                drain.retries.pop(home_address, None)
                continue
            actions.append(self._home_agent_switch(entry, now))
            retry = drain.retries.get(home_address)
            if retransmission and retry is not None:
                retry.retransmissions += 1
                retry.delay *= 2
                retry.due_at = now + retry.delay
                self.drain_counters["switch_retransmitted"] += 1
            else:
                drain.retries[home_address] = _SwitchRetry(
                    now + HOME_AGENT_SWITCH_TIMEOUT, HOME_AGENT_SWITCH_TIMEOUT
                )
                self.drain_counters["switch_sent"] += 1
            # the budget starts again from now after an idle spell (no burst of saved sends)
            drain.next_send_at = max(drain.next_send_at, now - drain.interval) + drain.interval
        return actions

    def _next_switch(self, drain: _Drain, now: float) -> tuple[IPv6Address | None, bool]:
        if drain.queue:
            return drain.queue.pop(0), False
        for home_address, retry in list(drain.retries.items()):
            if retry.due_at > now:
                continue
            if retry.retransmissions >= HOME_AGENT_SWITCH_RETRANSMISSIONS:
                del drain.retries[home_address]
                self.drain_counters["switch_unanswered"] += 1
                continue
            return home_address, True
        return None, False

    def _home_agent_switch(self, entry: BindingCacheEntry, now: float) -> SendMobilityMessage:
        """RFC 5142 §5.1, sent as a BA is (§9.5.4): to the CoA, with an RH2 = the HoA."""
        message = HomeAgentSwitch(self._switch_home_agents(now))
        return SendMobilityMessage(
            message, self.config.address, entry.care_of_address, None, entry.home_address
        )

    def _drain_follow(self, actions: list[Action]) -> None:
        """Bindings registered during the drain get a switch too; deleted ones are done."""
        drain = self._drain
        assert drain is not None
        for action in actions:
            if isinstance(action, BindingRegistered) and action.home_registration:
                if action.home_address not in drain.queue:
                    drain.queue.append(action.home_address)
            elif isinstance(action, BindingDeleted | BindingExpired) and action.home_registration:
                if drain.retries.pop(action.home_address, None) is not None:
                    self.drain_counters["switch_followed"] += 1
                if action.home_address in drain.queue:
                    drain.queue.remove(action.home_address)

    def _switch_not_understood(self, event: MobilityMessageReceived, error: BindingError) -> bool:
        """RFC 5142 §5.3: Binding Error 2 from an MN this HA sent a switch to (from its CoA or
        home address): it does not know the message; no more switches to it."""
        drain = self._drain
        if drain is None or error.status != BEStatus.UNRECOGNIZED_MH_TYPE:
            return False
        for home_address in list(drain.retries):
            entry = self.cache.get(home_address)
            if event.src == home_address or (
                entry is not None and entry.care_of_address == event.src
            ):
                del drain.retries[home_address]
                self.drain_counters["switch_unsupported"] += 1
                return True
        return False


def _switchable(entry: BindingCacheEntry) -> bool:
    """A registered home binding of an MN away from home: one a Home Agent Switch can move."""
    return (
        entry.state is BindingState.REGISTERED
        and entry.home_registration
        and int(entry.care_of_address) != int(entry.home_address)
    )


def _advertised(advertised: float | None, until: float, now: float) -> int:
    """An MPA lifetime: as advertised in the RA while it has not run out, else 0."""
    if until <= now:
        return 0
    if advertised is None:
        return _seconds(until, now)
    return max(0, min(INFINITE_LIFETIME - 1, int(advertised)))


def _seconds(until: float, now: float) -> int:
    if until == math.inf:
        return INFINITE_LIFETIME
    return max(0, min(INFINITE_LIFETIME - 1, int(until - now)))
