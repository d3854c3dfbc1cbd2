"""Mobile Node runtime: movement detection + MN core + kernel data plane + packets (RFC 6275 §11).

Theory of operation:

* :class:`~nfq_mip6.runtime.movement.MovementMonitor` watches RAs (raw ICMPv6 socket) and
  link/address events (rtnetlink); :class:`~nfq_mip6.runtime.movement.MovementDetector` turns
  them into :class:`MovedToForeignLink` / :class:`ReturnedToHomeLink` for the core, plus
  Router Solicitations and purges of visited-link state that this runtime performs itself.
* The core (:class:`nfq_mip6.mobility.mobile_node.MobileNode`) returns actions: BUs to send,
  tunnel and home-address changes for
  :class:`~nfq_mip6.dataplane.mobile_node.MobileNodeDataplane`, NAs, MPSs.
* Binding Acknowledgements arrive with a Type 2 Routing Header, which this kernel drops
  (no CONFIG_IPV6_MIP6): the rules in ``rules/mn.rules`` queue raw PREROUTING ``-m rt
  --rt-type 2`` and ``-p mh`` packets; MH packets and Mobile Prefix Advertisements are
  consumed here (NF_DROP), other RH2 packets (route-optimised data) are rewritten to their
  home destination and accepted.
* Kernel constraints the core does not know about are handled here, each explained where
  it is: the order of the HoA move and the BU, decapsulation prepared ahead of the BA, and
  the HoA back on the interface right after the de-registration BU.
* Route optimization (§11.3, §11.6; docs/route-optimization.md): the
  :class:`~nfq_mip6.runtime.ro_datapath.MobileNodeRouteOptimization` helper sees every queued
  packet first (HAO/RH2 rewrites, correspondent data sampled in mangle INPUT to start return
  routability, Parameter Problems); HoTIs leave through the MN–HA tunnel, encapsulated here.
  ``ro on|off`` and SIGHUP (``route_optimization`` / ``accept_return_routability``) switch it.
* Without a configured home agent the core runs DHAAD (§11.4.1); requests and replies
  (ICMPv6 144/145) are built and parsed here.
* Started at home (§11.5.5), the MN sends one de-registration BU when the home agent is known:
  the HA may still hold a binding from a run that ended away (crashed, state directory lost)
  and tunnel the HoA's traffic away. A 133 answer means there was nothing to delete.
* SIGHUP: the agent's merged configuration arrives through :meth:`MobileNodeRuntime.reload`;
  ``route_optimization`` and ``[mn] binding_lifetime`` (next home BU; a binding in force
  longer than the new lifetime is refreshed at once) are applied without a restart.
* ``stop()`` removes the rules, the tunnels and policy rules, puts the HoA back on the
  interface and the ``local`` rule back at pref 0; a run that crashed away from home leaves
  state that the next run adopts and removes when it finds the home link.
* Router reachability (§11.5.1, §7.3): :class:`~nfq_mip6.runtime.movement.RouterReachability`
  times the followed router's RAs (Advertisement Interval option, else Router Lifetime); when
  they stop (a move without a carrier change) Router Solicitations go out from
  :meth:`on_timer`, and the new link's RA drives the detector.
* Persistence (docs/security.md, "Persistence and crash safety"): the Binding Update List
  is committed to ``<state_dir>/nfq-mip6.sqlite3`` (:class:`~nfq_mip6.store.
  MobileNodePersistence`) before the actions of each core call are carried out, so a BU's
  sequence number is stored before the BU leaves. A restarted MN (kill -9 while away)
  restores it: sequence numbers continue (no 135 from the HA, §11.7.1), a home binding
  still in force is BOUND again, the kernel state is adopted and the next movement decision
  refreshes the binding. A correspondent binding in force comes back with its keygen tokens
  (same CoA as the restored home binding): the RO data path is reconciled with it after
  ``mn.rules`` is loaded (the adopted BPF map keeps its entry and loses the stale ones; on
  NFQUEUE its rule and routes come back once).
* BUs are whole IPv6 packets built with :mod:`nfq_mip6.wire` (source = the CoA, HAO = the
  HoA, Alternate CoA option) sent through ``ctx.send_packet`` (IPV6_HDRINCL).
"""

from __future__ import annotations

import contextlib
import logging
from ipaddress import IPv6Address, IPv6Interface, IPv6Network
from pathlib import Path
from typing import Any, Final

from nfq_mip6.config import AgentConfig
from nfq_mip6.constants import IPPROTO_ICMPV6
from nfq_mip6.dataplane import DataplaneError
from nfq_mip6.dataplane.ro_fastpath import RouteOptimizationFastPath
from nfq_mip6.dataplane.ro_routes import BindingRoutes
from nfq_mip6.io.host import mobile_node_interface, routable_addresses
from nfq_mip6.io.iptables import RuleSet, mobile_node_tunnel_counters, rules_path
from nfq_mip6.io.nd import send_unsolicited_neighbor_advertisement
from nfq_mip6.io.radvd import Radvd, advertised_lan_prefixes, mobile_network_config
from nfq_mip6.mobility.events import (
    Action,
    BindingDeleted,
    BindingEvent,
    BindingRegistered,
    BindingRejected,
    DataplaneCountersSampled,
    HomeAddressAtHome,
    HomeAddressAway,
    HomeAgentDiscovered,
    HomeAgentSwitchFollowed,
    InstallReverseTunnel,
    InstallRouteOptimization,
    MessageDiscarded,
    MobilePrefixAdvertisementReceived,
    MobileRouterNotAcknowledged,
    MobilityMessageReceived,
    MovedToForeignLink,
    PrepareCareOfAddress,
    RemoveReverseTunnel,
    RemoveRouteOptimization,
    RestoreHomeLink,
    RouteOptimizationSwitched,
    SendDhaadRequest,
    SendMobilePrefixSolicitation,
    SendMobilityMessage,
    SendNeighborAdvertisement,
    SendRouterSolicitation,
)
from nfq_mip6.mobility.mobile_node import MobileNode, MobileNodeConfig
from nfq_mip6.mobility.stats import MobilityStats
from nfq_mip6.runtime.base import QueuedPacket, RoleRuntime, RuntimeContext, Verdict
from nfq_mip6.runtime.movement import (
    AddressObservation,
    HeardRouterAdvertisement,
    LinkLocation,
    LinkObservation,
    MovementDecision,
    MovementDetector,
    MovementMonitor,
    PurgeVisitedLinks,
    RouterReachability,
    SolicitRouter,
)
from nfq_mip6.runtime.ro_datapath import MobileNodeRouteOptimization
from nfq_mip6.security.mobile_node_auth import MobileNodeAuthenticator, mobile_node_authenticator
from nfq_mip6.statedir import open_state
from nfq_mip6.store import MobileNodePersistence, StoreError
from nfq_mip6.wire import (
    Accepted,
    BindingAck,
    BindingUpdate,
    DhaadReply,
    DhaadRequest,
    MalformedPacket,
    MobilePrefixAdvertisement,
    MobilePrefixSolicitation,
    build_icmpv6_packet,
    build_ipv6_packet,
    build_mh,
    encapsulate,
    mh_type_of,
    parse_and_validate_mh,
    parse_icmpv6,
    parse_ipv6,
    strip_rh2_to_home_destination,
    verify_icmpv6_checksum,
)
from nfq_mip6.wire.icmp import ICMPv6Type
from nfq_mip6.wire.mh import IPPROTO_MH

LOG = logging.getLogger("nfq_mip6.mn")

ICMPV6_MOBILE_PREFIX_ADVERTISEMENT: Final = int(ICMPv6Type.MOBILE_PREFIX_ADVERTISEMENT)
ICMPV6_DHAAD_REPLY: Final = int(ICMPv6Type.DHAAD_REPLY)
DATAPLANE_ACTIONS: Final = (
    InstallReverseTunnel,
    RemoveReverseTunnel,
    HomeAddressAway,
    HomeAddressAtHome,
)
INTERFACE_SYSCTLS: Final = {
    # RFC 4429 optimistic DAD: the new CoA is usable at once (docs/kernel-notes.md §9).
    "optimistic_dad": "1",
    "use_optimistic": "1",
    # RFC 6275 §11.5.4 / RFC 4862 §5.4: DAD runs for every new address (optimistic is
    # fine, skipping it is not), whatever the host's defaults.
    "accept_dad": "1",
    "accept_ra": "1",
    "autoconf": "1",
}


FORCE_FORWARDING: Final = "force_forwarding"  # per interface, Linux 6.17+
ALL_FORWARDING: Final = "/proc/sys/net/ipv6/conf/all/forwarding"


def node_sysctls(
    interface: str, mobile_router: bool, lan_interface: str | None = None
) -> list[tuple[str, str]]:
    """(``/proc/sys`` path, value) to write, in order. A mobile router forwards between its
    LAN and the tunnel (RFC 3963 §5.5) and keeps hearing Router Advertisements for movement
    detection: ``accept_ra = 2`` goes in first, then forwarding on the moving interface and
    the LAN, per interface (``force_forwarding``), so that the moving interface stays a host
    on the links it visits (SLAAC with optimistic DAD, which ``all.forwarding`` turns off).
    A kernel without ``force_forwarding`` gets :data:`ALL_FORWARDING` instead (the runtime)."""
    conf = "/proc/sys/net/ipv6/conf"
    values = dict(INTERFACE_SYSCTLS)
    if mobile_router:
        values["accept_ra"] = "2"
    paths = [(f"{conf}/{interface}/{key}", value) for key, value in values.items()]
    if mobile_router:
        for name in (interface, *((lan_interface,) if lan_interface else ())):
            paths.append((f"{conf}/{name}/{FORCE_FORWARDING}", "1"))
    return paths


def _make_core(
    home_address: IPv6Interface,
    home_agent: IPv6Address | None,
    binding_lifetime: int,
    route_optimization: bool = False,
    authenticator: MobileNodeAuthenticator | None = None,
    mobile_router: bool = False,
    prefixes: tuple[IPv6Network, ...] = (),
    explicit_prefixes: bool = True,
) -> MobileNode:
    """The pure core (``nfq_mip6.mobility.mobile_node``) configured for this node.

    ``home_agent`` None: the core finds one with DHAAD (§11.4.1). ``route_optimization``:
    MIPL's ``accept_return_routability`` (HOWTO FAQ 4), switchable at run time.
    ``authenticator``: RFC 4285 MN–HA authentication of home registrations.
    """
    config = MobileNodeConfig(
        home_address=home_address.ip,
        home_prefix=home_address.network,
        home_agent=home_agent,
        home_registration_lifetime=binding_lifetime,
        route_optimization=route_optimization,
        mobile_router=mobile_router,
        mobile_network_prefixes=prefixes,
        explicit_prefixes=explicit_prefixes,
    )
    return MobileNode(config, authenticator=authenticator)


# --------------------------------------------------------------------------------------------
# The runtime
# --------------------------------------------------------------------------------------------


class MobileNodeRuntime(RoleRuntime):
    """:class:`~nfq_mip6.runtime.base.RoleRuntime` for ``role = "mn"``."""

    role = "mn"
    log = LOG
    backend = "seg6"

    def __init__(self) -> None:
        super().__init__(
            (
                "bu_sent",
                "ba_received",
                "dataplane_errors",
                "rh2_rewritten",
                "router_solicitations",
                "moves",
                "start_deregistrations",  # §11.5.5 BUs for a binding the HA may still hold
                "mobile_router_not_acknowledged",  # RFC 3963 §5.3: accepted with R clear
            )
        )
        self.core: MobileNode | None = None
        self.detector: MovementDetector | None = None
        self.monitor: MovementMonitor | None = None
        self.dataplane: Any = None
        self.rules: RuleSet | None = None
        self.interface = "eth0"
        self.home_address: IPv6Interface | None = None
        self.home_agent: IPv6Address | None = None
        self.events: list[tuple[float, str]] = []  # (time, what) for handover measurements
        self._coa_dad_pending: set[IPv6Address] = set()
        self.authenticator: MobileNodeAuthenticator | None = None  # RFC 4285 (docs/security.md)
        self.ro: MobileNodeRouteOptimization | None = None  # §11.3 data path (ro_datapath)
        self.ro_datapath_reason = "not started"
        self.persistence: MobileNodePersistence | None = None  # BUL in SQLite (store)
        self.restored_bindings = 0
        self._restored_ro: dict[IPv6Address, IPv6Address] = {}
        """Correspondent -> CoA of the correspondent bindings restored from the store."""
        # §11.5.1: the followed router's RAs stopping means a move (or a dead router)
        self.reachability = RouterReachability()
        self.lan_radvd: Radvd | None = None  # RFC 3963 §5.6: the mobile network's RAs
        self.lan_prefixes: tuple[IPv6Network, ...] = ()  # what it advertises

    @property
    def _core(self) -> MobileNode:
        assert self.core is not None, "mobile node not started"
        return self.core

    # -- lifecycle -------------------------------------------------------------------------
    def start(self, ctx: RuntimeContext) -> None:
        from nfq_mip6.dataplane.mobile_node import MobileNodeDataplane

        self.ctx = ctx
        mn = ctx.config.mn
        if mn is None:
            raise ValueError("role mn needs the mobile node settings (HOMEADDRESS, HOMEAGENT)")
        self.home_address = mn.home_address
        self.home_agent = mn.home_agent
        self.interface = mobile_node_interface(ctx.config.interface)
        self._set_sysctls()
        self.authenticator = mobile_node_authenticator(
            spi=mn.auth_spi,
            key_file=mn.auth_key_file,
            key_env=mn.auth_key_env,
            home_address=mn.home_address.ip,
            nai=mn.nai,
        )
        self.core = _make_core(
            mn.home_address,
            mn.home_agent,
            mn.binding_lifetime,
            ctx.config.route_optimization,
            self.authenticator,
            mobile_router=mn.mobile_router,
            prefixes=mn.prefixes,
            explicit_prefixes=mn.prefix_mode == "explicit",
        )
        fast_path = self._open_fast_path(ctx)
        self.ro = MobileNodeRouteOptimization(
            mn.home_address.ip,
            mn.home_agent,
            ctx.queue_num,
            ctx.queue_bypass,
            fast_path=fast_path,
            routes=BindingRoutes("mn", user_space_rewrite=True) if fast_path is None else None,
        )
        self._restore_state(ctx)
        self.dataplane = MobileNodeDataplane(
            self.interface,
            mn.home_address,
            mobile_network_prefixes=mn.prefixes if mn.mobile_router else (),
            mobile_network_interface=mn.mobile_network_interface,
        )
        self.rules = RuleSet.from_file(
            rules_path("mn.rules"),
            {
                "queue": ctx.queue_num,
                "bypass": " --queue-bypass" if ctx.queue_bypass else "",
                "home_address": mn.home_address.ip,
            },
        )
        self.rules.load()
        self._adopt_route_optimization()
        self.detector = MovementDetector(mn.home_address, mn.home_agent)
        if self.dataplane.adopt_leftovers() or self.restored_bindings:
            # a previous run ended away from home: finding the home link again must undo it
            self.detector.location = LinkLocation.FOREIGN
        self._advertise_mobile_network(ctx)
        self.monitor = MovementMonitor(self.interface)
        ctx.add_reader(self.monitor.ra_fd, self._on_ra_readable)
        ctx.add_reader(self.monitor.netlink_fd, self._on_netlink_readable)
        now = ctx.clock()
        carrier, carrier_changes = self.dataplane.carrier_state()
        self.detector.on_carrier(carrier, carrier_changes)
        for entry in self.dataplane.interface_addresses():
            self._decide(
                self.detector.on_address(
                    AddressObservation(entry.interface, entry.usable, entry.valid_lifetime)
                ),
                now,
            )
        self._decide(self.detector.start(), now)
        ctx.logger.info(
            "mobile node %s, home agent %s, interface %s",
            mn.home_address.ip,
            mn.home_agent,
            self.interface,
        )

    def _advertise_mobile_network(self, ctx: RuntimeContext) -> None:
        """RFC 3963 §5.6: a mobile router is the router of its LAN wherever it is: radvd on
        ``mobile_network_interface`` advertises the mobile network's /64s there
        (:func:`~nfq_mip6.io.radvd.advertised_lan_prefixes`), so that its nodes
        autoconfigure addresses from them. Never on the interface that moves. radvd failing
        to start is a start-up failure (DataplaneError: the agent exits 1 naming it)."""
        mn = ctx.config.mn
        if mn is None or not mn.mobile_router or not mn.mobile_network_interface:
            return
        lan = mn.mobile_network_interface
        prefixes = advertised_lan_prefixes(mn.prefixes, routable_addresses(lan))
        if not prefixes:
            LOG.warning(
                "mobile network: nothing to advertise on %s (no /64 among the prefixes %s and "
                "no address of %s inside them); its nodes get no address from this router",
                lan, ", ".join(map(str, mn.prefixes)), lan,
            )  # fmt: skip
            return
        radvd = Radvd(Path(ctx.config.state_dir) / f"radvd-{lan}")
        pid = radvd.start(mobile_network_config(lan, prefixes))
        self.lan_radvd, self.lan_prefixes = radvd, prefixes
        LOG.info(
            "mobile network: advertising %s on %s (radvd pid %d)",
            ", ".join(map(str, prefixes)), lan, pid,
        )  # fmt: skip

    def _open_fast_path(self, ctx: RuntimeContext) -> RouteOptimizationFastPath | None:
        """``[agent] ro_datapath``: the tc BPF programs (adopted from a previous run when
        they are still attached), or None for the NFQUEUE rewrites."""
        from nfq_mip6.dataplane.ro_bpf import open_ro_fast_path

        fast_path, self.ro_datapath_reason = open_ro_fast_path(
            "mn", ctx.config.ro_datapath, interfaces=(self.interface,)
        )
        return fast_path

    def _adopt_route_optimization(self) -> None:
        """Make the RO data path equal the correspondent bindings restored from the state
        store (after ``mn.rules`` is loaded): the BPF map a killed agent left keeps the
        entries of those bindings and loses the others, the NFQUEUE path gets their rules
        and routes back, and routes and rules of bindings that are gone are removed — no
        duplicates, nothing stale."""
        ro = self.ro
        if ro is None or self.home_address is None:
            return
        home_address = self.home_address.ip
        wanted = {(home_address, cn): coa for cn, coa in self._restored_ro.items()}
        if ro.fast_path is not None:
            report = ro.fast_path.reconcile(wanted)
            LOG.info("RO data path: tc BPF, %s; %s", self.ro_datapath_reason, report)
        else:
            LOG.info("RO data path: NFQUEUE (%s)", self.ro_datapath_reason)
        for correspondent, care_of_address in self._restored_ro.items():
            ro.install(
                correspondent, care_of_address, home_agent=correspondent == self._core.home_agent
            )
            LOG.info("route optimization with %s restored", correspondent)
        if ro.routes is not None:
            ro.routes.remove_stale(wanted)

    def _restore_state(self, ctx: RuntimeContext) -> None:
        """Open the state store and seed the core with the BUL of the previous run (its
        sequence numbers continue, a home binding still in force is BOUND again) and the
        authenticator with its RFC 4285 Mesg-ID state. Without a store the MN still runs
        (a warning: sequence numbers start at random again, the HA may answer 135 once)."""
        try:
            home = ctx.config.mn.home_address if ctx.config.mn is not None else None
            identity = {"role": "mn", "home_address": str(home)}  # nfq_mip6.statedir
            self.persistence = MobileNodePersistence(open_state(ctx.config.state_dir, identity))
        except StoreError as exc:
            LOG.warning("state store unavailable; the BUL will not survive a restart: %s", exc)
            return
        self._restore_home_agent(ctx)
        restored = self._core.restore_binding_update_list(self.persistence.load(), ctx.clock())
        self.restored_bindings = len(restored)
        self._restored_ro = {
            e.destination: e.care_of_address for e in restored if not e.home_registration
        }
        for entry in restored:
            LOG.info(
                "restored binding with %s: %s -> %s, seq %d, %.0f s left",
                entry.destination,
                entry.home_address,
                entry.care_of_address,
                entry.sequence,
                entry.expires_at - ctx.clock(),
            )
        if self.authenticator is not None:
            self.authenticator.restore(*self.persistence.load_auth())

    def _restore_home_agent(self, ctx: RuntimeContext) -> None:
        """RFC 5142: the previous run was switched to another home agent and registered with
        it; this one registers with it again (the core falls back to the configured one when
        it does not answer). Not when the configuration names another home agent since."""
        assert self.persistence is not None
        configured = ctx.config.mn.home_agent if ctx.config.mn is not None else None
        stored = self.persistence.load_home_agent()
        if stored is None or configured is None:
            return
        home_agent, configured_then = stored
        if home_agent == configured or configured_then != configured:
            return
        self._core.restore_home_agent(home_agent)
        LOG.info(
            "home agent %s (followed a Home Agent Switch in the previous run; configured: %s, "
            "the fallback)",
            home_agent,
            configured,
        )

    def _persist(self, now: float) -> None:
        """Commit the BUL (and the Mesg-ID state) before the actions of a core call are
        carried out; nothing is written when nothing changed (MobileNodePersistence.save)."""
        if self.persistence is None or self.core is None:
            return
        self.persistence.save(self.core.binding_update_list_records(now))
        registered = self.core.registered_home_agent
        if registered is not None:
            mn = self.ctx.config.mn if self.ctx is not None else None
            self.persistence.save_home_agent(registered, mn.home_agent if mn else None)
        if self.authenticator is not None:
            self.persistence.save_auth(
                self.authenticator.last_sent, self.authenticator.clock_offset
            )

    def _set_sysctls(self) -> None:
        mn = self.ctx.config.mn if self.ctx is not None else None
        router = mn is not None and mn.mobile_router
        lan = mn.mobile_network_interface if mn is not None else None
        for path, value in node_sysctls(self.interface, router, lan):
            try:
                with open(path, "w", encoding="ascii") as handle:
                    handle.write(value)
            except OSError as exc:
                if path.endswith(f"/{FORCE_FORWARDING}"):
                    LOG.info("%s: %s; forwarding on every interface instead", path, exc)
                    path, value = ALL_FORWARDING, "1"
                    with contextlib.suppress(OSError), open(path, "w", encoding="ascii") as h:
                        h.write(value)
                    continue
                LOG.debug("sysctl %s: %s", path, exc)

    def stop(self) -> None:
        if self.lan_radvd is not None:
            self.lan_radvd.stop()  # its last RAs carry a zero router lifetime
            self.lan_radvd = None
            LOG.info("mobile network: radvd stopped")
        if self.ctx is not None and self.monitor is not None:
            self.ctx.remove_reader(self.monitor.ra_fd)
            self.ctx.remove_reader(self.monitor.netlink_fd)
            self.monitor.close()
            self.monitor = None
        if self.ro is not None:
            self.ro.clear()
            if self.ro.fast_path is not None:  # a clean stop: programs and routes go
                try:
                    self.ro.fast_path.stop(flush=True)
                except DataplaneError as exc:
                    LOG.warning("removing the RO data path failed: %s", exc)
                self.ro.fast_path = None
        if self.rules is not None:
            self.rules.unload()
            self.rules = None
        if self.dataplane is not None:
            try:
                self.dataplane.cleanup()
            except Exception as exc:  # stop must finish: log and go on
                LOG.error("data plane cleanup failed: %s", exc)
            self.dataplane.close()
            self.dataplane = None
        if self.persistence is not None:
            if self.ctx is not None:
                self._persist(self.ctx.clock())
            self.persistence.store.close()
            self.persistence = None

    # -- timers ----------------------------------------------------------------------------
    def next_deadline(self) -> float | None:
        if self.core is None:
            return None
        deadlines = [self.core.next_deadline(), self.reachability.next_deadline()]
        finite: list[float] = [deadline for deadline in deadlines if deadline is not None]
        return min(finite) if finite else None

    def on_timer(self, now: float) -> None:
        if self.core is not None:
            self._apply(self.core.handle_timer(now), now)
        lost = self.reachability.routers_lost
        solicitations = self.reachability.on_timer(now)
        if self.reachability.routers_lost != lost:
            self._note(now, f"router lost {self.reachability.router}")
        if self.detector is not None:
            self._decide(solicitations, now)

    # -- movement --------------------------------------------------------------------------
    def _on_ra_readable(self) -> None:
        assert self.monitor is not None and self.detector is not None and self.ctx is not None
        now = self.ctx.clock()
        for ra in self.monitor.read_router_advertisements():
            self._observe(ra, now)

    def _on_netlink_readable(self) -> None:
        assert self.monitor is not None and self.ctx is not None
        now = self.ctx.clock()
        lost = self.monitor.lost_events
        for observation in self.monitor.read_netlink():
            self._observe(observation, now)
        if self.monitor.lost_events != lost:
            self._resync_addresses(now)  # the socket overflowed: read the state instead

    def _resync_addresses(self, now: float) -> None:
        """Feed the interface's current addresses to the detector (idempotent)."""
        if self.detector is None or self.dataplane is None:
            return
        try:
            entries = self.dataplane.interface_addresses()
        except Exception as exc:
            LOG.debug("reading the interface addresses failed: %s", exc)
            return
        for entry in entries:
            observation = AddressObservation(entry.interface, entry.usable, entry.valid_lifetime)
            self._decide(self.detector.on_address(observation), now)

    def _observe(
        self,
        observation: HeardRouterAdvertisement | AddressObservation | LinkObservation | IPv6Address,
        now: float,
    ) -> None:
        assert self.detector is not None
        if isinstance(observation, HeardRouterAdvertisement):
            self.reachability.on_router_advertisement(observation, now)
            first_link = self.detector.location == LinkLocation.UNKNOWN
            decisions = self.detector.on_router_advertisement(observation)
            if first_link and self.detector.location == LinkLocation.HOME:
                self._decide(decisions, now)
                self._home_link_found_at_start(now)
                return
            if self.detector.waiting_for_address:
                # The kernel autoconfigures the CoA while it processes the RA, before this
                # process reads it: take the address now rather than wait for its event.
                self._decide(decisions, now)
                self._resync_addresses(now)
                return
        elif isinstance(observation, AddressObservation):
            if (
                not observation.tentative
                and observation.interface.ip == self.detector.care_of_address
                and observation.interface.ip in self._coa_dad_pending
            ):
                # RFC 4429: the optimistic CoA passed DAD (off the handover's critical path)
                self._coa_dad_pending.discard(observation.interface.ip)
                self._note(now, f"coa dad done {observation.interface.ip}")
            decisions = self.detector.on_address(observation)
        elif isinstance(observation, LinkObservation):
            if observation.carrier != self.detector.carrier:
                self._note(now, f"carrier {'up' if observation.carrier else 'down'}")
            elif (
                observation.carrier
                and observation.carrier_changes is not None
                and self.detector.carrier_changes is not None
                and observation.carrier_changes > self.detector.carrier_changes
            ):
                self._note(now, "carrier up (flap seen as one event)")
            decisions = self.detector.on_carrier(observation.carrier, observation.carrier_changes)
        else:
            decisions = self.detector.on_address_removed(observation)
        self._decide(decisions, now)

    def _home_link_found_at_start(self, now: float) -> None:
        """§11.5.5: the first link found is the home link and no previous run ended away
        (that case starts as FOREIGN and de-registers on ReturnedToHomeLink): the core
        sends nothing, as no binding is known to exist (a BU would not be due)."""
        actions = self._core.home_link_found_at_start(now)
        if any(isinstance(action, SendMobilityMessage) for action in actions):
            self.counters["start_deregistrations"] += 1
            self._note(now, "home at start: de-registration")
        self._apply(actions, now)

    def _decide(self, decisions: list[MovementDecision], now: float) -> None:
        self._decide_each(decisions, now)
        if self.detector is not None:
            self.reachability.follow(self.detector.router)

    def _decide_each(self, decisions: list[MovementDecision], now: float) -> None:
        for decision in decisions:
            if isinstance(decision, SolicitRouter):
                self._send_router_solicitation()
            elif isinstance(decision, PurgeVisitedLinks):
                self._purge(decision)
            else:
                if isinstance(decision, MovedToForeignLink):
                    self._note(now, f"moved coa={decision.care_of_address}")
                    self._coa_dad_pending.add(decision.care_of_address)
                else:
                    self._note(now, "home")
                self.counters["moves"] += 1
                self._apply(self._core.handle(decision, now), now)

    def _restore_home_link(self) -> None:
        """:class:`RestoreHomeLink`: the HoA back on the interface, then the tunnel rules and
        the ``local`` rule move undone (each only when it is in place)."""
        try:
            if self.dataplane.home_address_away:
                self.dataplane.move_home_address_home()
            if self.dataplane.care_of_address is not None or self.dataplane.local_rule_moved:
                self.dataplane.remove_reverse_tunnel()
        except Exception as exc:
            self.counters["dataplane_errors"] += 1
            LOG.error("restoring the home link failed: %s", exc)

    def _send_router_solicitation(self) -> None:
        if self.monitor is not None:
            self.monitor.send_router_solicitation()
            self.counters["router_solicitations"] += 1

    def _purge(self, decision: PurgeVisitedLinks) -> None:
        try:
            self.dataplane.purge_visited_link_state(decision.keep_prefixes, decision.keep_router)
        except Exception as exc:
            self.counters["dataplane_errors"] += 1
            LOG.error("purging visited-link state failed: %s", exc)

    def _note(self, now: float, what: str) -> None:
        """Event log for operators and the handover benchmark (timestamped when it happens,
        on the agent's monotonic clock, not at the start of the batch being handled)."""
        if self.ctx is not None:
            now = self.ctx.clock()
        self.events.append((now, what))
        del self.events[:-1024]
        LOG.info("%s", what)

    # -- actions ---------------------------------------------------------------------------
    def _apply(self, actions: list[Action], now: float) -> None:
        if actions:
            self._persist(now)  # committed before any BU among the actions leaves
        for action in actions:
            name = type(action).__name__
            ok = False
            try:
                self._apply_one(action, now)
                ok = True
            except (OSError, MalformedPacket, ValueError) as exc:
                self.counters["send_errors"] += 1
                LOG.error("%s failed: %s", name, exc)
            except Exception as exc:  # a data-plane failure must not kill the agent
                self.counters["dataplane_errors"] += 1
                LOG.error("%s failed: %s", name, exc)
            if isinstance(action, DATAPLANE_ACTIONS) and self.ctx and self.ctx.metrics:
                with contextlib.suppress(Exception):
                    self.ctx.metrics.dataplane_op(name, ok)

    def _apply_one(self, action: Action, now: float) -> None:
        assert self.ctx is not None and self.home_address is not None
        if isinstance(action, SendMobilityMessage) and action.via_tunnel:
            self._send_through_tunnel(action)
        elif isinstance(action, SendMobilityMessage):
            pseudo_src = action.home_address or action.src
            pseudo_dst = action.routing_address or action.dst
            message = action.message
            mh = build_mh(message, pseudo_src, pseudo_dst)
            packet = build_ipv6_packet(
                action.src,
                action.dst,
                IPPROTO_MH,
                mh,
                home_address=action.home_address,
                rh2_address=action.routing_address,
            )
            self.ctx.send_packet(packet)
            if isinstance(action.message, BindingUpdate):
                self.counters["bu_sent"] += 1
                self._note(now, f"bu seq={action.message.sequence} from {action.src}")
            if self.ctx.metrics is not None:
                with contextlib.suppress(Exception):
                    self.ctx.metrics.mh_sent(mh_type_of(action.message))
        elif isinstance(action, InstallReverseTunnel):
            self.dataplane.install_reverse_tunnel(action.care_of_address, action.home_agent)
            self._note(now, "tunnel installed")
        elif isinstance(action, RemoveReverseTunnel):
            self.dataplane.remove_reverse_tunnel()
        elif isinstance(action, HomeAddressAway):
            self.dataplane.move_home_address_away()
            # the home prefix must not stay on-link on the visited link
            assert self.detector is not None
            if self.detector.foreign_prefix is not None:
                self.dataplane.purge_visited_link_state(
                    (self.detector.foreign_prefix,), self.detector.router
                )
        elif isinstance(action, HomeAddressAtHome):
            self.dataplane.move_home_address_home()
        elif isinstance(action, SendNeighborAdvertisement) and not action.override:
            try:  # an optional hint for the access router (a new optimistic CoA)
                self._send_neighbor_advertisement(action.home_address, override=False)
            except OSError as exc:
                LOG.debug("NA for the CoA not sent: %s", exc)
        elif isinstance(action, SendNeighborAdvertisement):
            self._send_neighbor_advertisement(action.home_address)
        elif isinstance(action, PrepareCareOfAddress):
            try:
                self.dataplane.prepare_care_of_address(action.care_of_address)
                # §11.5.4 / RFC 4862 §5.4: DAD for the link-local address on the new link
                # (the kernel's autoconfiguration runs it for the new CoA).
                for address in self.dataplane.recheck_link_local():
                    self._note(now, f"dad {address}")
            except Exception as exc:
                self.counters["dataplane_errors"] += 1
                LOG.error("preparing the data plane failed: %s", exc)
        elif isinstance(action, RestoreHomeLink):
            self._restore_home_link()
        elif isinstance(action, SendRouterSolicitation):
            self._send_router_solicitation()
        elif isinstance(action, InstallRouteOptimization):
            if self.ro is not None and action.correspondent is not None:
                # the HA's entry takes only packets from the HoA, never the tunnel or BUs
                self.ro.install(
                    action.correspondent,
                    action.care_of_address,
                    home_agent=action.correspondent == self._core.home_agent,
                )
                self._note(now, f"route optimization with {action.correspondent}")
        elif isinstance(action, RemoveRouteOptimization):
            if self.ro is not None:
                if action.correspondent is None:
                    self.ro.clear()
                else:
                    self.ro.remove(action.correspondent)
        elif isinstance(action, SendDhaadRequest):
            # §11.4.1: from the CoA to the home agents anycast address of the home prefix
            packet = build_icmpv6_packet(
                DhaadRequest(action.identifier, action.mobile_router),
                action.src,
                action.dst,
                hop_limit=64,
            )
            self.ctx.send_packet(packet)
            self._note(now, f"dhaad request id={action.identifier}")
        elif isinstance(action, SendMobilePrefixSolicitation):
            packet = build_icmpv6_packet(
                MobilePrefixSolicitation(action.identifier),
                action.src,
                action.dst,
                hop_limit=64,
                home_address=action.home_address,
            )
            self.ctx.send_packet(packet)
        elif isinstance(action, MobileRouterNotAcknowledged):
            self.counters["mobile_router_not_acknowledged"] += 1
            LOG.warning(
                "home agent %s accepted the registration of %s without the Mobile Router flag "
                "(status %d): it serves the home address, not the mobile network prefixes "
                "(RFC 3963 §5.3)",
                action.peer, action.home_address, action.status,
            )  # fmt: skip
            self._note(now, "mobile router not acknowledged")
        elif isinstance(action, BindingRejected):
            self._log_binding_event(action)  # 140-143: a warning naming the reason, counted
        elif isinstance(action, BindingEvent):
            LOG.info("%s", action)
            if isinstance(action, BindingRegistered | BindingDeleted):
                self._note(now, f"{type(action).__name__}")
        elif isinstance(action, HomeAgentSwitchFollowed):
            # RFC 5142 §6.1: the home agent asked us to go elsewhere
            target = str(action.new) if action.new is not None else "one found by DHAAD"
            self._note(now, f"home agent switch from {action.old}: registering with {target}")
        elif isinstance(action, MessageDiscarded):
            LOG.debug("discarded: %s", action)
        else:
            LOG.debug("no MN handler for %s", type(action).__name__)

    def _send_through_tunnel(self, action: SendMobilityMessage) -> None:
        """§11.6.1: a HoTI leaves from the HoA through the MN–HA tunnel, built by hand (RFC
        2473: outer source = the CoA, outer destination = the HA): a raw packet is routed
        without its source, so the kernel's ``from HoA`` tunnel rule would not catch it."""
        assert self.ctx is not None and self.detector is not None
        care_of = self.detector.care_of_address
        home_agent = (self.core.home_agent if self.core else None) or self.home_agent
        if care_of is None or home_agent is None:
            raise ValueError("no tunnel to the home agent to send through")
        mh = build_mh(action.message, action.src, action.dst)
        inner = build_ipv6_packet(action.src, action.dst, IPPROTO_MH, mh)
        self.ctx.send_packet(encapsulate(inner, care_of, home_agent))
        if self.ctx.metrics is not None:
            with contextlib.suppress(Exception):
                self.ctx.metrics.mh_sent(mh_type_of(action.message))

    def _send_neighbor_advertisement(
        self, home_address: IPv6Address, *, override: bool = True
    ) -> None:
        lladdr = self.monitor._lladdr if self.monitor is not None else None
        send_unsolicited_neighbor_advertisement(
            self.interface, home_address, lladdr, override=override
        )

    # -- queued packets --------------------------------------------------------------------
    def on_queued_packet(self, queued: QueuedPacket, now: float) -> Verdict:
        payload = queued.payload
        try:
            packet = parse_ipv6(payload)
        except MalformedPacket:
            self._count_malformed()
            return Verdict.drop()
        if packet.rh2_address is not None and not (
            packet.rh2_valid and self._core.accepts_routing_header(packet.rh2_address)
        ):
            self._count_malformed()
            return Verdict.drop()
        if packet.upper_layer == IPPROTO_ICMPV6 and packet.rh2_address is not None:
            body = packet.upper_layer_bytes
            if body[:1] == bytes((ICMPV6_MOBILE_PREFIX_ADVERTISEMENT,)):
                return self._mobile_prefix_advertisement(packet, body, now)
        if packet.upper_layer == IPPROTO_ICMPV6 and packet.upper_layer_bytes[:1] == bytes(
            (ICMPV6_DHAAD_REPLY,)
        ):
            return self._dhaad_reply(packet, now)
        away = self.detector is not None and self.detector.location == LinkLocation.FOREIGN
        if self.ro is not None:
            # §11.3: route-optimized data both ways, correspondent data (starts RR, §11.7.2)
            # and Parameter Problems from correspondents (§11.3.5)
            ro_verdict, ro_events = self.ro.handle_packet(payload, away=away)
            for ro_event in ro_events:
                if self.core is not None:
                    self._apply(self.core.handle(ro_event, now), now)
            if ro_verdict is not None:
                return ro_verdict
        if packet.upper_layer != IPPROTO_MH:
            if packet.rh2_address is not None:
                rewritten = strip_rh2_to_home_destination(payload)
                if rewritten is None:
                    return Verdict.drop()
                self.counters["rh2_rewritten"] += 1
                return Verdict.rewrite(rewritten)
            return Verdict.accept()
        verdict = parse_and_validate_mh(payload)
        if not isinstance(verdict, Accepted):
            self._count_malformed()
            LOG.debug("MH dropped: %s", verdict)
            return Verdict.drop()
        if isinstance(verdict.message, BindingAck):
            self.counters["ba_received"] += 1
            self._note(now, f"ba seq={verdict.message.sequence} status={verdict.message.status}")
        if self.ctx is not None and self.ctx.metrics is not None:
            with contextlib.suppress(Exception):
                self.ctx.metrics.mh_received(mh_type_of(verdict.message))
        event = MobilityMessageReceived(
            message=verdict.message,
            src=packet.src,
            dst=packet.dst,
            home_address=packet.home_address,
            routing_address=packet.rh2_address,
            mh_bytes=packet.upper_layer_bytes,
        )
        if self.core is not None:
            self._apply(self.core.handle(event, now), now)
        return Verdict.drop()  # consumed: the kernel would only answer Parameter Problem

    def _dhaad_reply(self, packet: Any, now: float) -> Verdict:
        """§11.4.1: a DHAAD Reply (type 145) to our CoA goes to the core; consumed."""
        body = packet.upper_layer_bytes
        if not verify_icmpv6_checksum(body, packet.src, packet.dst):
            self._count_malformed()
            return Verdict.drop()
        try:
            message = parse_icmpv6(body)
        except MalformedPacket:
            self._count_malformed()
            return Verdict.drop()
        if isinstance(message, DhaadReply) and self.core is not None:
            self._note(now, f"dhaad reply id={message.identifier}")
            event = HomeAgentDiscovered(message.identifier, packet.src, message.home_agents)
            self._apply(self.core.handle(event, now), now)
        return Verdict.drop()

    def _count_malformed(self) -> None:
        self.counters["malformed"] += 1
        if self.ctx is not None and self.ctx.metrics is not None:
            with contextlib.suppress(Exception):
                self.ctx.metrics.malformed()

    def _mobile_prefix_advertisement(self, packet: Any, body: bytes, now: float) -> Verdict:
        """§11.4.3: an MPA (type 147, with an RH2 to the CoA) goes to the core; consumed."""
        source = packet.src
        if not verify_icmpv6_checksum(body, source, packet.rh2_address):
            self._count_malformed()
            return Verdict.drop()
        try:
            message = parse_icmpv6(body)
        except MalformedPacket:
            self._count_malformed()
            return Verdict.drop()
        if not isinstance(message, MobilePrefixAdvertisement):
            return Verdict.drop()
        event = MobilePrefixAdvertisementReceived(
            identifier=message.identifier,
            src=source,
            prefixes=tuple(
                (info.network, info.valid_lifetime, info.preferred_lifetime)
                for info in message.prefixes
            ),
            via_routing_header=True,
        )
        self._note(now, f"mpa id={message.identifier}")
        if self.core is not None:
            self._apply(self.core.handle(event, now), now)
        return Verdict.drop()

    # -- control ---------------------------------------------------------------------------
    def mobility_stats(self) -> MobilityStats:
        stats: MobilityStats = self._core.stats
        return stats

    def bul_rows(self, now: float) -> list[dict[str, Any]]:
        rows = [] if self.core is None else self.core.binding_update_list_rows(now)
        return [row.control_json() for row in rows]

    def _sample_tunnel_counters(self, now: float) -> None:
        """MIPL NEncapsulations/NDecapsulations from the counting rules of rules/mn.rules
        (the kernel fast path does the work; ``ip6tables -L -v`` tells how much)."""
        if self.rules is None or self.core is None:
            return
        kernel = mobile_node_tunnel_counters()
        self.core.handle(
            DataplaneCountersSampled(kernel.encapsulations, kernel.decapsulations), now
        )

    def route_optimization(self) -> bool:
        return bool(self._core.route_optimization)

    def set_route_optimization(self, enabled: bool, now: float) -> bool:
        """``nfq-mip6 ro on|off``: off drops every correspondent binding and its rule, so the
        traffic is back in the HA tunnel at once (docs/route-optimization.md)."""
        if enabled != self.route_optimization():
            LOG.info("route optimization switched %s", "on" if enabled else "off")
        self._apply(self._core.handle(RouteOptimizationSwitched(enabled), now), now)
        return self.route_optimization()

    def reload(self, config: AgentConfig) -> list[str]:
        """``route_optimization`` (legacy ``accept_return_routability``) and ``[mn]
        binding_lifetime``: the new lifetime goes into the next home BU; a binding in force
        longer than it is refreshed at once
        (:meth:`~nfq_mip6.mobility.mobile_node.MobileNode.set_home_registration_lifetime`)."""
        assert self.ctx is not None
        now = self.ctx.clock()
        reloaded: list[str] = []
        if config.route_optimization != self.route_optimization():
            self.set_route_optimization(config.route_optimization, now)
            reloaded.append(f"route_optimization: {'on' if config.route_optimization else 'off'}")
        if config.mn is not None:
            lifetime = config.mn.binding_lifetime
            if lifetime != self._core.config.home_registration_lifetime:
                self._apply(self._core.set_home_registration_lifetime(lifetime, now), now)
                reloaded.append(f"binding_lifetime: {lifetime}")
        return reloaded

    def _mobile_network_stats(self) -> dict[str, Any] | None:
        """A mobile router's LAN side: the advertised /64s and whether radvd runs."""
        mn = self.ctx.config.mn if self.ctx is not None else None
        if mn is None or not mn.mobile_router:
            return None
        radvd = self.lan_radvd
        return {
            "interface": mn.mobile_network_interface,
            "prefixes": [str(p) for p in mn.prefixes],
            "advertised": [str(p) for p in self.lan_prefixes],
            "radvd_pid": radvd.proc.pid if radvd is not None and radvd.proc is not None else None,
            "radvd_running": radvd is not None and radvd.running(),
        }

    def ro_datapath_stats(self) -> dict[str, Any]:
        fast_path = self.ro.fast_path if self.ro is not None else None
        if fast_path is None:
            return {"datapath": "nfqueue", "reason": self.ro_datapath_reason}
        return {"datapath": "bpf", "reason": self.ro_datapath_reason, **fast_path.snapshot()}

    def role_stats(self, now: float) -> dict[str, Any]:
        try:
            self._sample_tunnel_counters(now)
        except OSError as exc:
            LOG.debug("tunnel counters unavailable: %s", exc)
        detector = self.detector
        care_of = detector.care_of_address if detector is not None else None
        return {
            "mobile_node": {
                "interface": self.interface,
                "location": detector.location.name.lower() if detector else "unknown",
                "care_of_address": str(care_of) if care_of else None,
                "counters": dict(self.counters),
                "home_agent": str(self._core.home_agent) if self._core.home_agent else None,
                "home_agent_switch": dict(self._core.switch_counters),
                "restored_bindings": self.restored_bindings,
                "routers_lost": self.reachability.routers_lost,
                "store_errors": self.persistence.errors if self.persistence else 0,
                "events": [[round(t, 6), what] for t, what in self.events],
                "dataplane": self.dataplane.snapshot() if self.dataplane else None,
                "mobile_network": self._mobile_network_stats(),
            },
        }


__all__ = ["MobileNodeRuntime"]
