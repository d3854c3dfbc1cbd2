"""The contract between the sans-I/O mobility core and its runtimes: events in, actions out.

Theory of operation (aioquic/h11/faucet style):

* A runtime (the NFQUEUE agent, a test's in-memory network) turns what it observes into an
  **input event** (a frozen dataclass below) and calls ``role.handle(event, now)`` on a
  :class:`~nfq_mip6.mobility.home_agent.HomeAgent`,
  :class:`~nfq_mip6.mobility.correspondent.CorrespondentNode` or
  :class:`~nfq_mip6.mobility.mobile_node.MobileNode`.
* The role returns a list of **actions**, in the order they must be carried out. The runtime
  performs them (builds and sends packets, installs tunnels and routes, proxies ND) and never
  decides protocol questions itself.
* Timers: after every call the runtime asks ``role.next_deadline()`` (``None`` = nothing
  scheduled) and calls ``role.handle_timer(now)`` when that time has come. ``now`` is always a
  monotonic time in seconds chosen by the runtime; the core never reads a clock.
* Rejections by a peer become statuses (BA/BE), counted drops or :class:`MessageDiscarded`
  actions, never exceptions. An exception from the core is a bug in the core or its caller.

This module is a stable contract: fields and classes are only ever added, never renamed.
Addresses are :class:`ipaddress.IPv6Address`. Mobility messages are the data model of
:mod:`nfq_mip6.wire.mh`; the runtime owns the codec (parsing, building, checksums).
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv6Address, IPv6Network

from nfq_mip6.wire.mh import MobilityMessage

# --------------------------------------------------------------------------------------------
# Input events
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MobilityMessageReceived:
    """A Mobility Header message arrived (RFC 6275 §9.2 checks already passed in the codec).

    Attributes:
        message: the parsed message (``UnknownMobilityMessage`` for MH types ≥ 8 → BE 2).
        src: the IPv6 Source Address as received (a CoA when an HAO is present).
        dst: the IPv6 Destination Address as received (a CoA when an RH2 is present).
        home_address: the Home Address destination option's address, or ``None`` (§6.3).
        routing_address: the Type 2 Routing Header's address (the MN's HoA), or ``None`` (§6.4).
        via_tunnel: the message arrived IPv6-in-IPv6 encapsulated (a HoTI/HoT through the HA).
        mh_bytes: the Mobility Header octets exactly as received (Payload Proto octet first).
            A correspondent node needs them to verify the Binding Authorization Data
            authenticator (§5.2.6); other receivers may leave this empty.
        ipsec_protected: the runtime verified MN–HA protection for this message (§5.1). The
            project runs without IPsec, so runtimes pass ``True`` unless a policy says otherwise.
        interface_index: the interface it came in on (ifindex; 0 = unknown or local).
        link_source: the link-layer source address of its frame, ``None`` when unknown. With
            ``interface_index`` it lets the HA answer a BU from the home link on that link
            (§10.3.2).
    """

    message: MobilityMessage
    src: IPv6Address
    dst: IPv6Address
    home_address: IPv6Address | None = None
    routing_address: IPv6Address | None = None
    via_tunnel: bool = False
    mh_bytes: bytes = b""
    ipsec_protected: bool = True
    interface_index: int = 0
    link_source: bytes | None = None


@dataclass(frozen=True, slots=True)
class ProxyDadCompleted:
    """HA: the proxy Duplicate Address Detection started by :class:`StartProxyDad` finished.

    ``duplicate`` is ``True`` when some other node defended the address (→ BA 134, §10.3.1).
    """

    home_address: IPv6Address
    duplicate: bool


@dataclass(frozen=True, slots=True)
class MovedToForeignLink:
    """MN: movement detection (§11.5.1) found a new link and a care-of address was configured.

    Attributes:
        care_of_address: the new primary CoA (already usable: DAD done or optimistic).
        coa_valid_lifetime: remaining valid lifetime of the CoA in seconds (``None`` = infinite);
            the home registration lifetime is bounded by it (§11.7.1).
        router: the default router on the new link (its link-local address), if known.
    """

    care_of_address: IPv6Address
    coa_valid_lifetime: float | None = None
    router: IPv6Address | None = None


@dataclass(frozen=True, slots=True)
class ReturnedToHomeLink:
    """MN: movement detection found the home link again (§11.5.5)."""


@dataclass(frozen=True, slots=True)
class RouterLost:
    """MN: the current default router became unreachable (§11.5.1); solicit a new one."""


@dataclass(frozen=True, slots=True)
class RouterAdvertisementReceived:
    """HA (and MN): a Router Advertisement seen on the home link (§7.1–§7.4, §10.5.1).

    Maintains the Home Agents List. ``home_agent_flag`` is the RA's H bit.

    Attributes:
        source: the RA's source (the router's link-local address; the list's key).
        home_agent_flag: H bit set (§7.1). H = 0 removes the entry.
        router_lifetime: the RA's Router Lifetime in seconds.
        ha_preference: Home Agent Information option preference (unsigned 16-bit, 0xffff
            highest), or ``None`` when the option is absent (then 0).
        ha_lifetime: Home Agent Information option lifetime in seconds, or ``None`` (then the
            router lifetime).
        global_addresses: router addresses from Prefix Information options with R = 1 (§7.2).
    """

    source: IPv6Address
    home_agent_flag: bool
    router_lifetime: int
    ha_preference: int | None = None
    ha_lifetime: int | None = None
    global_addresses: tuple[IPv6Address, ...] = ()


@dataclass(frozen=True, slots=True)
class HomePrefixAdvertised:
    """HA: the (remaining) lifetimes of one of the home prefixes (§10.6.1; from the RA config).

    The granted home registration lifetime never exceeds the prefix's remaining valid lifetime
    (§10.3.1). Lifetimes are in seconds from ``now``; ``None`` means infinite.
    """

    prefix: IPv6Network
    valid_lifetime: float | None
    preferred_lifetime: float | None


@dataclass(frozen=True, slots=True)
class OwnHomeAgentInformation:
    """HA: its own Router Advertisement (radvd) carries a Home Agent Information option
    (§7.4): the preference the link ranks this HA by, so its own DHAAD replies rank it the
    same way (§10.5.1)."""

    preference: int


@dataclass(frozen=True, slots=True)
class DhaadRequestReceived:
    """HA: ICMPv6 Home Agent Address Discovery Request (type 144, §10.5) arrived.

    ``src`` is the requester's CoA; the answer is a :class:`SendDhaadReply` to it.
    """

    identifier: int
    src: IPv6Address
    dst: IPv6Address
    mobile_router: bool = False
    """RFC 3963 §7.1: the R flag, only home agents that support mobile routers may answer."""


@dataclass(frozen=True, slots=True)
class ForwardingSetupFailed:
    """HA: the kernel refused the routes of a mobile router's registration (RFC 3963 §6.2:
    the BU is answered with status 143 instead of the acceptance)."""

    home_address: IPv6Address
    reason: str = ""


@dataclass(frozen=True, slots=True)
class HomeAgentDrainRequested:
    """HA: the operator drains this home agent (``nfq-mip6 cluster drain``): send a Home Agent
    Switch (RFC 5142 §5.1) to every MN registered here, at most ``rate`` a second.

    ``home_agents``: the alternate home agents to list, the preferred first; ``None`` = the
    configured ones, else the other home agents of the Home Agents List (§10.5.1) in
    preference order; an empty list asks the MNs to run DHAAD. ``stop`` ends the drain.
    """

    rate: float
    home_agents: tuple[IPv6Address, ...] | None = None
    stop: bool = False


@dataclass(frozen=True, slots=True)
class HomeAgentDiscovered:
    """MN: an ICMPv6 DHAAD Reply (type 145, §11.4.1) arrived, listing home agents in order."""

    identifier: int
    src: IPv6Address
    home_agents: tuple[IPv6Address, ...]


@dataclass(frozen=True, slots=True)
class MobilePrefixSolicitationReceived:
    """HA: ICMPv6 Mobile Prefix Solicitation (type 146, §10.6.4) from ``src`` (the CoA).

    ``home_address`` is the HAO's address (``None`` if the MPS had no HAO).
    """

    identifier: int
    src: IPv6Address
    home_address: IPv6Address | None


@dataclass(frozen=True, slots=True)
class MobilePrefixAdvertisementReceived:
    """MN: ICMPv6 Mobile Prefix Advertisement (type 147, §11.4.3) from ``src``.

    ``prefixes`` are (prefix, valid lifetime s, preferred lifetime s) of the home link.
    """

    identifier: int
    src: IPv6Address
    prefixes: tuple[tuple[IPv6Network, int, int], ...]
    via_routing_header: bool = True


@dataclass(frozen=True, slots=True)
class IcmpErrorReceived:
    """An ICMPv6 error about a packet this node sent (§9.3.4, §11.3.5).

    Attributes:
        source: who sent the error (for RO decisions: the correspondent node).
        icmp_type: ICMPv6 type (1 Destination Unreachable, 4 Parameter Problem, …).
        code: ICMPv6 code (Parameter Problem 1 = unrecognized Next Header, i.e. the peer does
            not know MH; 2 = unrecognized option, i.e. the HAO).
        invoking_destination: destination of the invoking packet, if the runtime parsed it.
        invoking_mh_type: the MH type of the invoking packet if it was a Mobility Header.
    """

    source: IPv6Address
    icmp_type: int
    code: int
    invoking_destination: IPv6Address | None = None
    invoking_mh_type: int | None = None


@dataclass(frozen=True, slots=True)
class RouteOptimizationSwitched:
    """Operator command ``ro on|off`` (MN and CN): enable or disable route optimization."""

    enabled: bool


@dataclass(frozen=True, slots=True)
class DataPacketFromCorrespondent:
    """MN: a data packet with correspondent ``correspondent`` arrived through the HA tunnel.

    The MN may start return routability with that CN (§11.7.2), if RO is enabled.
    """

    correspondent: IPv6Address


@dataclass(frozen=True, slots=True)
class MobilityHeaderRejected:
    """A queued Mobility Header failed the RFC 6275 §9.2 checks and was silently discarded
    before it could become a :class:`MobilityMessageReceived` (the core keeps the counters).

    Attributes:
        src: its IPv6 Source Address.
        mh_type: its MH Type octet.
        reason: which check it failed.
    """

    src: IPv6Address
    mh_type: int
    reason: str


@dataclass(frozen=True, slots=True)
class DataplaneCountersSampled:
    """The runtime read the kernel's tunnel packet counters (for the MIPL statistics).

    The core keeps the 19 MIPL counters; the kernel fast path is where packets are actually
    encapsulated, so the runtime reports cumulative totals here.
    """

    encapsulations: int
    decapsulations: int


@dataclass(frozen=True, slots=True)
class BindingsInUse:
    """CN: the runtime sent data to these home addresses through their bindings (RH2) since
    its last report. A Binding Refresh Request is only sent for a binding in active use
    (RFC 6275 §9.5.5)."""

    home_addresses: tuple[IPv6Address, ...]


@dataclass(frozen=True, slots=True)
class StoredHomeBinding:
    """A home registration as a shared binding store holds it (HA cluster, docs/cluster.md):
    what another instance decided, or what this one last committed. ``expires_at`` is on the
    core's clock."""

    care_of_address: IPv6Address
    sequence: int
    flags: int
    lifetime: int
    expires_at: float
    link_local: IPv6Address | None = None
    prefixes: tuple[IPv6Network, ...] = ()


@dataclass(frozen=True, slots=True)
class HomeBindingLoaded:
    """HA (cluster): the shared store's state of ``home_address`` replaces the core's
    (``binding`` ``None`` = no binding there). It comes from a commit conflict (the fresh
    state, the BU is then decided again), a commit that timed out (the last committed state:
    the decision is undone) or a standby's replica. No protocol check applies (the store's
    state was decided by RFC 6275 §10.3.1 already); the core answers with the kernel actions
    that make the fast path match it."""

    home_address: IPv6Address
    binding: StoredHomeBinding | None


InputEvent = (
    MobilityMessageReceived
    | ProxyDadCompleted
    | MovedToForeignLink
    | ReturnedToHomeLink
    | RouterLost
    | RouterAdvertisementReceived
    | HomePrefixAdvertised
    | OwnHomeAgentInformation
    | DhaadRequestReceived
    | ForwardingSetupFailed
    | HomeAgentDiscovered
    | MobilePrefixSolicitationReceived
    | MobilePrefixAdvertisementReceived
    | IcmpErrorReceived
    | RouteOptimizationSwitched
    | DataPacketFromCorrespondent
    | DataplaneCountersSampled
    | BindingsInUse
    | MobilityHeaderRejected
    | HomeAgentDrainRequested
    | HomeBindingLoaded
)

# What each role's core takes; its ``handle`` ends in ``assert_never``, so mypy flags an event
# added here that the core does not handle.
CorrespondentInput = (
    MobilityMessageReceived
    | RouteOptimizationSwitched
    | IcmpErrorReceived
    | BindingsInUse
    | DataplaneCountersSampled
    | MobilityHeaderRejected
)
HomeAgentInput = (
    CorrespondentInput
    | ProxyDadCompleted
    | RouterAdvertisementReceived
    | HomePrefixAdvertised
    | OwnHomeAgentInformation
    | DhaadRequestReceived
    | ForwardingSetupFailed
    | MobilePrefixSolicitationReceived
    | HomeAgentDrainRequested
    | HomeBindingLoaded
)
MobileNodeInput = (
    MobilityMessageReceived
    | MovedToForeignLink
    | ReturnedToHomeLink
    | RouterLost
    | HomeAgentDiscovered
    | IcmpErrorReceived
    | RouteOptimizationSwitched
    | DataPacketFromCorrespondent
    | MobilePrefixAdvertisementReceived
    | DataplaneCountersSampled
)

# --------------------------------------------------------------------------------------------
# Actions: packets to send
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SendMobilityMessage:
    """Send a Mobility Header message; the runtime builds the packet and the checksum.

    Attributes:
        message: the message to encode (``nfq_mip6.wire`` data model).
        src: IPv6 Source Address (the CoA when ``home_address`` is set).
        dst: IPv6 Destination Address (the CoA when ``routing_address`` is set).
        home_address: add a Home Address destination option with this address (§6.3; only
            for a BU, §11.7.1). The MH checksum then uses it as the pseudo-header source.
        routing_address: add a Type 2 Routing Header with this address (§6.4; only a BA). The
            MH checksum then uses it as the pseudo-header destination.
        via_tunnel: send it through the MN–HA tunnel (a HoTI from the MN's HoA, §11.6.1):
            outer src = the CoA, outer dst = the HA, inner src = ``src`` (the HoA).
        link_destination: send it in a frame to this link-layer address on the home link
            (HA, §10.3.2: the answer to a BU from the home link), not through routing, which
            would take the HoA's tunnel route to the old CoA. ``None``: route it.
    """

    message: MobilityMessage
    src: IPv6Address
    dst: IPv6Address
    home_address: IPv6Address | None = None
    routing_address: IPv6Address | None = None
    via_tunnel: bool = False
    link_destination: bytes | None = None


@dataclass(frozen=True, slots=True)
class SendRouterSolicitation:
    """MN: send a Router Solicitation on the current link (§11.5.1, movement detection)."""


@dataclass(frozen=True, slots=True)
class SendMobilePrefixSolicitation:
    """MN: ICMPv6 MPS (type 146, §11.4.2): src = the CoA, HAO = the HoA, dst = the HA."""

    identifier: int
    src: IPv6Address
    dst: IPv6Address
    home_address: IPv6Address


@dataclass(frozen=True, slots=True)
class SendMobilePrefixAdvertisement:
    """HA: ICMPv6 MPA (type 147, §10.6.3): to ``dst`` (the CoA) with RH2 = ``home_address``.

    ``prefixes`` are (prefix, valid lifetime s, preferred lifetime s); the valid lifetime is
    never below the binding's remaining lifetime (TAHI HA_8_1_7).
    """

    identifier: int
    src: IPv6Address
    dst: IPv6Address
    home_address: IPv6Address
    prefixes: tuple[tuple[IPv6Network, int, int], ...]


@dataclass(frozen=True, slots=True)
class SendDhaadRequest:
    """MN: ICMPv6 DHAAD Request (type 144, §11.4.1): src = the CoA, dst = the HA anycast.
    ``mobile_router``: the R flag of a mobile router's request (RFC 3963 §7.1)."""

    identifier: int
    src: IPv6Address
    dst: IPv6Address
    mobile_router: bool = False


@dataclass(frozen=True, slots=True)
class SendDhaadReply:
    """HA: ICMPv6 DHAAD Reply (type 145, §10.5): to the request's source; ≤ 77 addresses in
    decreasing preference order."""

    identifier: int
    src: IPv6Address | None
    dst: IPv6Address
    home_agents: tuple[IPv6Address, ...]
    mobile_router: bool = False  # RFC 3963 §7.2: answering a request with R


@dataclass(frozen=True, slots=True)
class SendNeighborAdvertisement:
    """MN: unsolicited NA for ``home_address`` to ff02::1, from that address.

    Back home (§11.5.5) for the HoA with O = 1. Also for a new (optimistic) CoA with
    ``override`` False (RFC 4429 §3.3 forbids O = 1 before DAD ends): an access router whose
    neighbour entry for the address went stale while the MN was away learns it at once.
    """

    home_address: IPv6Address
    override: bool = True


# --------------------------------------------------------------------------------------------
# Actions: Home Agent data plane (§10.4)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StartProxyDad:
    """HA: run Duplicate Address Detection on the home link on behalf of the MN (§10.3.1).

    Send NS from ``::`` to the solicited-node address for ``home_address`` (and ``link_local``
    when the BU had L = 1); report the result with :class:`ProxyDadCompleted`.
    """

    home_address: IPv6Address
    link_local: IPv6Address | None = None


@dataclass(frozen=True, slots=True)
class StartProxyNeighbor:
    """HA: defend ``home_address`` (and ``link_local`` if not ``None``) on the home link.

    Proxy-reply to NS and send unsolicited NA to ff02::1 (O = 1, up to 3 times) (§10.4.1).
    Idempotent: may repeat for an already proxied address.
    """

    home_address: IPv6Address
    link_local: IPv6Address | None = None


@dataclass(frozen=True, slots=True)
class StopProxyNeighbor:
    """HA: stop proxy ND for ``home_address`` (and ``link_local``) (§10.3.2)."""

    home_address: IPv6Address
    link_local: IPv6Address | None = None


@dataclass(frozen=True, slots=True)
class InstallHomeTunnel:
    """HA: tunnel traffic for ``home_address`` to ``care_of_address`` (RFC 2473, §10.4.2) and
    accept reverse-tunnelled traffic whose outer source is that CoA (§10.4.5).

    Creates, or replaces the CoA of, the tunnel for that HoA. For a mobile router
    (RFC 3963 §6.4, §6.5) ``prefixes`` are its registered Mobile Network Prefixes, routed
    into the same tunnel and accepted as inner sources from it; ``withdrawn`` are prefixes it
    held before and no longer registers (their routes go).
    """

    home_address: IPv6Address
    care_of_address: IPv6Address
    prefixes: tuple[IPv6Network, ...] = ()
    withdrawn: tuple[IPv6Network, ...] = ()


@dataclass(frozen=True, slots=True)
class RemoveHomeTunnel:
    """HA: remove the tunnel for ``home_address`` (de-registration or expiry, §10.3.2),
    with the routes of the Mobile Network ``prefixes`` it carried (RFC 3963 §6.2)."""

    home_address: IPv6Address
    prefixes: tuple[IPv6Network, ...] = ()


# --------------------------------------------------------------------------------------------
# Actions: Mobile Node data plane (§11.2, §11.5)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InstallReverseTunnel:
    """MN: send traffic from ``home_address`` through a tunnel CoA → ``home_agent`` and accept
    traffic tunnelled from the HA (§11.3.1). Creates or replaces (new CoA)."""

    home_address: IPv6Address
    care_of_address: IPv6Address
    home_agent: IPv6Address


@dataclass(frozen=True, slots=True)
class RemoveReverseTunnel:
    """MN: remove the MN–HA tunnel for ``home_address`` (back home, §11.5.5)."""

    home_address: IPv6Address


@dataclass(frozen=True, slots=True)
class PrepareCareOfAddress:
    """MN, right after the home BU from a new CoA: decapsulation for ``care_of_address`` and
    the tunnel source, so the HA's first tunnelled packet after it processes the BU is
    delivered (the InstallReverseTunnel after the BA, §11.3.1, then only re-points the rest)."""

    care_of_address: IPv6Address


@dataclass(frozen=True, slots=True)
class RestoreHomeLink:
    """MN back home, right after the de-registration BU (§11.5.5): the HoA back on the home
    interface and the tunnel rules undone. Not before the BU: its Neighbor Solicitation for
    the HA would come from the HoA, which the HA still proxies, and the answer would be
    tunnelled to the old CoA. Not after the BA: the BA goes to the HoA on the home link and
    the kernel answers Neighbor Solicitations only for addresses on the receiving interface."""

    home_address: IPv6Address


@dataclass(frozen=True, slots=True)
class HomeAddressAway:
    """MN: the HoA must live where it is not defended on the visited link (e.g. on ``lo``,
    no DAD), because the HA proxies it at home (§11.5.1)."""

    home_address: IPv6Address


@dataclass(frozen=True, slots=True)
class HomeAddressAtHome:
    """MN: put the HoA back on the home interface (after the de-registration BA, §11.5.5)."""

    home_address: IPv6Address


# --------------------------------------------------------------------------------------------
# Actions: route optimization (CN §9.3.2, MN §11.3.1)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InstallRouteOptimization:
    """Route traffic for a binding directly, bypassing the home agent.

    At a CN (``correspondent`` is ``None``): packets to ``home_address`` go to
    ``care_of_address`` with an RH2 = ``home_address``; packets from ``care_of_address`` with an
    HAO = ``home_address`` are accepted (§9.3.1, §9.3.2).
    At an MN (``correspondent`` set): packets from ``home_address`` to ``correspondent`` leave
    from ``care_of_address`` with an HAO, and RH2 packets from it are accepted (§11.3.1).
    At an HA (``correspondent`` is ``None``, a home registration): the HA's *own* packets to
    ``home_address`` leave directly for ``care_of_address`` with an RH2 (§9.3.2, §10.3.1);
    packets it forwards keep the tunnel of :class:`InstallHomeTunnel`.
    Creates or replaces.
    """

    home_address: IPv6Address
    care_of_address: IPv6Address
    correspondent: IPv6Address | None = None


@dataclass(frozen=True, slots=True)
class RemoveRouteOptimization:
    """Undo :class:`InstallRouteOptimization` for this HoA (and ``correspondent`` at an MN)."""

    home_address: IPv6Address
    correspondent: IPv6Address | None = None


# --------------------------------------------------------------------------------------------
# Actions: facts for logs and metrics (past tense; the runtime logs/counts, nothing to apply)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BindingEvent:
    """Base of the binding facts below. ``home_registration`` is ``True`` for an HA binding (or
    the MN's home registration), ``False`` for a CN binding. ``peer`` is the other end: at an
    HA/CN the CoA, at an MN the HA or CN the BU went to."""

    home_address: IPv6Address
    peer: IPv6Address | None
    home_registration: bool


@dataclass(frozen=True, slots=True)
class BindingRegistered(BindingEvent):
    """A new binding was created (HA/CN) or acknowledged (MN). ``lifetime`` is granted seconds."""

    care_of_address: IPv6Address | None = None
    lifetime: int = 0


@dataclass(frozen=True, slots=True)
class BindingRefreshed(BindingEvent):
    """An existing binding was renewed (possibly with a new CoA)."""

    care_of_address: IPv6Address | None = None
    lifetime: int = 0


@dataclass(frozen=True, slots=True)
class BindingDeleted(BindingEvent):
    """A binding was removed on request (de-registration BU, or RO switched off)."""


@dataclass(frozen=True, slots=True)
class BindingExpired(BindingEvent):
    """A binding's lifetime ran out without a refresh."""


@dataclass(frozen=True, slots=True)
class BindingRejected(BindingEvent):
    """A BU was answered with an error status (at the HA/CN) or rejected by the peer (MN)."""

    status: int = 0


@dataclass(frozen=True, slots=True)
class HomeAgentSwitchFollowed:
    """MN: a Home Agent Switch from its home agent ``old`` was accepted (RFC 5142 §6.1): the
    MN registers with ``new`` next (``None``: it runs DHAAD first, §11.4.1) and de-registers
    from ``old``."""

    old: IPv6Address
    new: IPv6Address | None


@dataclass(frozen=True, slots=True)
class MobileRouterNotAcknowledged(BindingEvent):
    """MN: a mobile router's home registration was accepted with the Mobile Router flag (R)
    clear (RFC 3963 §4.2, §5.3): the home agent took it as a plain mobile node's, so the home
    address is served and the mobile network prefixes are not. ``peer`` is the home agent."""

    status: int = 0


@dataclass(frozen=True, slots=True)
class MessageDiscarded:
    """A received message was silently discarded (counted); ``reason`` is a short slug such as
    ``"nonce-indices-in-home-bu"`` for logs. Nothing to apply."""

    reason: str
    src: IPv6Address | None = None
    mh_type: int | None = None


Action = (
    SendMobilityMessage
    | SendRouterSolicitation
    | SendMobilePrefixSolicitation
    | SendMobilePrefixAdvertisement
    | SendDhaadRequest
    | SendDhaadReply
    | SendNeighborAdvertisement
    | StartProxyDad
    | StartProxyNeighbor
    | StopProxyNeighbor
    | InstallHomeTunnel
    | RemoveHomeTunnel
    | InstallReverseTunnel
    | RemoveReverseTunnel
    | HomeAddressAway
    | PrepareCareOfAddress
    | RestoreHomeLink
    | HomeAddressAtHome
    | InstallRouteOptimization
    | RemoveRouteOptimization
    | BindingRegistered
    | BindingRefreshed
    | BindingDeleted
    | BindingExpired
    | BindingRejected
    | HomeAgentSwitchFollowed
    | MobileRouterNotAcknowledged
    | MessageDiscarded
)

__all__ = [
    "Action",
    "BindingDeleted",
    "BindingEvent",
    "BindingExpired",
    "BindingRefreshed",
    "BindingRegistered",
    "BindingRejected",
    "BindingsInUse",
    "DataPacketFromCorrespondent",
    "DataplaneCountersSampled",
    "DhaadRequestReceived",
    "HomeAddressAtHome",
    "HomeAddressAway",
    "HomeAgentDiscovered",
    "HomeAgentDrainRequested",
    "HomeAgentSwitchFollowed",
    "HomeBindingLoaded",
    "HomePrefixAdvertised",
    "IcmpErrorReceived",
    "InputEvent",
    "InstallHomeTunnel",
    "InstallReverseTunnel",
    "InstallRouteOptimization",
    "MessageDiscarded",
    "MobilePrefixAdvertisementReceived",
    "MobilePrefixSolicitationReceived",
    "MobileRouterNotAcknowledged",
    "MobilityMessageReceived",
    "MovedToForeignLink",
    "OwnHomeAgentInformation",
    "ProxyDadCompleted",
    "RemoveHomeTunnel",
    "RemoveReverseTunnel",
    "RemoveRouteOptimization",
    "ReturnedToHomeLink",
    "RouteOptimizationSwitched",
    "RouterAdvertisementReceived",
    "RouterLost",
    "SendDhaadReply",
    "SendDhaadRequest",
    "SendMobilePrefixAdvertisement",
    "SendMobilePrefixSolicitation",
    "SendMobilityMessage",
    "SendNeighborAdvertisement",
    "SendRouterSolicitation",
    "StartProxyDad",
    "StartProxyNeighbor",
    "StopProxyNeighbor",
    "StoredHomeBinding",
]
