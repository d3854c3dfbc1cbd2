"""Home Agent runtime: the pure core (:class:`nfq_mip6.mobility.home_agent.HomeAgent`) on the
real kernel (RFC 6275 §10).

Theory of operation:

* ``rules/ha.rules`` queues, in the raw table, every Mobility Header to the HA (also behind an
  HAO), any other packet to the HA with a Destination Options header or an RH2, and DHAAD
  requests to the home agents anycast address; in FORWARD, the first packet of each new flow
  toward the home prefix (the slow path; bound HoAs have a seg6 route and never get there).
* :meth:`HomeAgentRuntime.on_queued_packet` parses with :mod:`nfq_mip6.wire`, applies the
  §9.2 checks (silent discard / Parameter Problem with pointer / BE 2), feeds the core and
  carries out its actions: BAs (with an RH2 to the CoA when the BU had an HAO) as whole raw
  packets, tunnels through :mod:`nfq_mip6.dataplane`, proxy ND and proxy DAD through
  :mod:`nfq_mip6.io.nd`. Every MH consumed gets NF_DROP (the kernel has no MIPv6 and would
  answer Parameter Problem); no packet with an HAO is ever given back unchanged.
* §10.3.2: the core marks the answer to a BU from the home link (source = a home address,
  no HAO, in on the home interface; :class:`~nfq_mip6.io.nfqueue.QueuedPacket` carries the
  interface and source MAC) with ``link_destination``; it is sent in a frame to that MAC
  through an ``AF_PACKET`` socket, because the kernel would route a BA to the HoA through the
  binding's tunnel route to the old CoA.
* Stop (SIGTERM): the ip6tables chains are removed; the kernel fast path (tunnel routes,
  decap routes, policy rules, proxy entries) **stays**, so flows survive a restart (and a
  kill -9). Every binding change is committed to ``<state_dir>/nfq-mip6.sqlite3``
  (:mod:`nfq_mip6.store`) before its BA is sent. The next start restores the bindings that
  have not expired and reconciles the kernel with them (no duplicates, nothing stale).
  ``handle_control({"cmd": "flush"})`` removes everything the HA owns.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Iterable
from ipaddress import IPv6Address
from pathlib import Path
from typing import Any, Final

from nfq_mip6.config import AgentConfig
from nfq_mip6.constants import DEFAULT_DRAIN_RATE, IPPROTO_ICMPV6
from nfq_mip6.dataplane import ND_FWMARK, Dataplane, DataplaneError
from nfq_mip6.io.host import HomeLinkAddressing, link_local_addresses, resolve_home_link
from nfq_mip6.mobility.binding import BindingState
from nfq_mip6.mobility.events import (
    Action,
    BindingEvent,
    BindingRefreshed,
    BindingRegistered,
    DataplaneCountersSampled,
    DhaadRequestReceived,
    ForwardingSetupFailed,
    HomeAgentDrainRequested,
    HomeAgentInput,
    HomePrefixAdvertised,
    InstallHomeTunnel,
    InstallRouteOptimization,
    MessageDiscarded,
    MobilePrefixSolicitationReceived,
    OwnHomeAgentInformation,
    ProxyDadCompleted,
    RemoveHomeTunnel,
    RemoveRouteOptimization,
    RouterAdvertisementReceived,
    SendDhaadReply,
    SendMobilePrefixAdvertisement,
    SendMobilityMessage,
    StartProxyDad,
    StartProxyNeighbor,
    StopProxyNeighbor,
)
from nfq_mip6.mobility.home_agent import HomeAgent
from nfq_mip6.mobility.home_agent import HomeAgentConfig as CoreHomeAgentConfig
from nfq_mip6.mobility.nemo import MobileRouterPolicy
from nfq_mip6.mobility.stats import MobilityStats
from nfq_mip6.runtime.base import QueuedPacket, RuntimeContext, Verdict
from nfq_mip6.runtime.home_agent_cluster import ACTIVE, STANDBY, HomeAgentCluster
from nfq_mip6.runtime.home_egress import EgressRewriter, HomeAgentEgress, is_redirect
from nfq_mip6.runtime.mh_endpoint import MobilityHeaderEndpoint, mobility_message_received
from nfq_mip6.runtime.mobile_network_sources import MobileNetworkSourceCheck
from nfq_mip6.runtime.mobile_network_sources import (
    rejected_packets as mobile_network_rejected_packets,
)
from nfq_mip6.security.guard import HomeAgentGuard
from nfq_mip6.security.keys import MobileNodeCredentials
from nfq_mip6.statedir import open_state
from nfq_mip6.store import HomeBindingPersistence, StoreError, WalCheckpointer
from nfq_mip6.wire import (
    IPPROTO_MH,
    DestinationUnreachable,
    DhaadReply,
    DhaadRequest,
    MalformedPacket,
    MHType,
    MobilePrefixAdvertisement,
    MobilePrefixSolicitation,
    ParsedPacket,
    PrefixInformation,
    RouterAdvertisement,
    build_icmpv6_packet,
    encapsulate,
    home_agents_anycast,
    parse_icmpv6,
    parse_ipv6,
    strip_hao_to_home_source,
)
from nfq_mip6.wire.icmp import MIN_MTU, ICMPv6Type
from nfq_mip6.wire.mh import BindingAck
from nfq_mip6.wire.mh import BindingError as BindingErrorMessage

__all__ = ["HomeAgentRuntime"]

log = logging.getLogger("nfq_mip6.ha")

ICMPV6_PARAMETER_PROBLEM: Final = int(ICMPv6Type.PARAMETER_PROBLEM)
STATE_FILE: Final = "ha-bindings.json"
TUNNEL_OVERHEAD: Final = 40  # one IPv6 header (encap.red, no SRH)
INFINITE: Final = 0xFFFFFFFF  # RFC 4861 infinite prefix lifetime


class HomeAgentRuntime(MobilityHeaderEndpoint):
    """:class:`~nfq_mip6.runtime.base.RoleRuntime` for ``role = "ha"``.

    The constructor arguments exist for tests: ``dataplane_factory`` builds the data plane
    from the resolved home link (default: the kernel), ``nd_factory`` the ND helper (``None``
    result = no ND socket), ``load_rules`` whether to load ``rules/ha.rules``,
    ``cluster_store``/``cluster_replica`` (a factory) replace a ``[cluster]`` member's etcd
    store and replica.
    """

    role = "ha"
    log = log

    def __init__(
        self,
        *,
        dataplane_factory: Callable[[HomeLinkAddressing, str], Dataplane] | None = None,
        nd_factory: Callable[[HomeLinkAddressing], Any] | None = None,
        load_rules: bool = True,
        home_link: HomeLinkAddressing | None = None,
        cluster_store: Any = None,
        cluster_replica: Callable[[Any], Any] | None = None,
    ) -> None:
        self._cluster_store = cluster_store  # tests: stand-ins for the etcd store and replica
        self._cluster_replica = cluster_replica
        self._dataplane_factory = dataplane_factory
        self._nd_factory = nd_factory
        self._load_rules = load_rules
        self._home_link = home_link
        self.core: HomeAgent | None = None
        self.dataplane: Dataplane | None = None
        self.nd: Any = None
        self.rules: Any = None
        self.link: HomeLinkAddressing | None = None
        # §9.3.2: the HA's own packets to a registered HoA leave directly with an RH2.
        self.egress: EgressRewriter | None = None
        self.sources: MobileNetworkSourceCheck | None = None  # RFC 3963 §6.5
        super().__init__(
            (
                "parameter_problems_sent",
                "binding_errors_sent",
                "silent_discards",
                "hao_rewritten",
                "rh2_dropped",
                "slow_path_accepted",
                "slow_path_tunnelled",
                "dataplane_errors",
                "home_link_answers",
                "redirects_suppressed",
                "tunnel_errors_relayed",
            )
        )
        self._own_link_locals: frozenset[IPv6Address] = frozenset()
        self._state_path: Path | None = None
        # RFC 4285 verifier + rate limits, SQLite store (nfq_mip6.security, nfq_mip6.store).
        self.guard: HomeAgentGuard | None = None
        self.persistence: HomeBindingPersistence | None = None
        self._checkpointer: WalCheckpointer | None = None
        # RFC 6275 §10.3.2: a BU from the home link (source = HoA, no HAO) is answered to the
        # sender's link-layer address on the home interface, not through the tunnel route.
        self._home_ifindex = 0
        self._link_sender: Any = None
        self._link_sender_failed = False
        # [cluster]: the bindings live in etcd (docs/cluster.md); None = single node (SQLite)
        self.cluster: HomeAgentCluster | None = None

    # ------------------------------------------------------------------------------------
    # Lifecycle
    # ------------------------------------------------------------------------------------
    def start(self, ctx: RuntimeContext) -> None:
        from nfq_mip6.dataplane.netlink import NetlinkDataplane, detect_tunnel_backend

        self.ctx = ctx
        config = ctx.config
        ha_config = config.ha
        link = self._home_link or resolve_home_link(
            config.interface,
            ha_config.address if ha_config else None,
            ha_config.home_prefix if ha_config else None,
        )
        self.link = link
        try:
            self._home_ifindex = socket.if_nametoindex(link.interface)
        except OSError:
            self._home_ifindex = 0  # tests with a made-up interface: always the raw socket
        requested = ha_config.tunnel_backend if ha_config else "auto"
        if self._dataplane_factory is not None:
            self.dataplane = self._dataplane_factory(link, requested)
        else:
            backend = detect_tunnel_backend(requested)
            log.info("tunnel backend: %s (configured %s)", backend, requested)
            self.dataplane = NetlinkDataplane(
                link.interface, link.address, link.prefix, backend=backend
            )
        self.dataplane.setup()
        self.backend = self.dataplane.backend
        self.guard = HomeAgentGuard.from_config(ha_config, legacy=config.legacy)
        self.core = HomeAgent(
            CoreHomeAgentConfig(
                address=link.address,
                home_prefixes=(link.prefix,),
                max_binding_lifetime=ha_config.max_binding_lifetime if ha_config else 262140,
                max_bindings=ha_config.max_tunnel_nr if ha_config else None,
                preference=ha_config.preference if ha_config else 0,
                switch_home_agents=ha_config.switch_home_agents if ha_config else (),
                home_interface_index=self._home_ifindex,
                mobile_routers=mobile_router_policies(ha_config.mobile_nodes if ha_config else ()),
            ),
            authorizer=self.guard.verifier,
        )
        self._state_path = Path(config.state_dir) / STATE_FILE
        if config.cluster is not None:
            # the store thread starts here; the snapshot or the replica is read below
            self.cluster = HomeAgentCluster(
                self,
                config.cluster,
                store=self._cluster_store,
                replica_factory=self._cluster_replica,
            )
        try:
            # Bindings only from a database written for this home link (nfq_mip6.statedir).
            identity = {"role": "ha", "interface": link.interface, "home_prefix": str(link.prefix)}
            self.persistence = HomeBindingPersistence(
                open_state(config.state_dir, identity),
                backend=self.cluster.store if self.cluster is not None else None,
            )
            if self.cluster is None:  # a cluster's timestamps come from the store
                self.guard.restore_state(self.persistence.store)
                self._checkpointer = WalCheckpointer(self.persistence.store.path)
                self._checkpointer.start()
        except StoreError as exc:
            log.error("state store unavailable; bindings will not survive a crash: %s", exc)
        self._restore_bindings(ctx.clock())
        # RFC 6275 §10.5: DHAAD requests go to the home agents anycast address, which no
        # interface holds; proxying it makes the home link's router deliver them to us
        # (ha.rules queues them in the raw table). A cluster standby proxies nothing.
        if self._answering:
            try:
                self.dataplane.add_proxy(home_agents_anycast(link.prefix))
            except DataplaneError as exc:
                log.warning("cannot proxy the home agents anycast address: %s", exc)
        if self._nd_factory is not None:
            self.nd = self._nd_factory(link)
        else:
            from nfq_mip6.io.nd import HomeLinkND

            self.nd = HomeLinkND(link.interface)
        if self.nd is not None:
            ctx.add_reader(self.nd.fileno(), self.nd.on_readable)
            if hasattr(self.nd, "on_router_advertisement"):
                self.nd.on_router_advertisement = self._on_router_advertisement
                self._own_link_locals = link_local_addresses(link.interface)
        if self._load_rules:
            from nfq_mip6.io.iptables import RuleSet, rules_path

            mss = tunnel_mss(link.mtu)
            self.rules = RuleSet.from_file(
                rules_path("ha.rules"),
                {
                    "queue": ctx.queue_num,
                    "bypass": " --queue-bypass" if ctx.queue_bypass else "",
                    "ha_address": link.address,
                    "home_prefix": link.prefix,
                    "ha_anycast": home_agents_anycast(link.prefix),
                    "mss": mss,
                    "mss_above": mss + 1,
                    "seg6_only": "" if self.dataplane.backend != "ip6tnl" else "#",
                    "interface": link.interface,
                    "nd_mark": hex(ND_FWMARK),
                },
            )
            self.rules.load()
        self.egress = HomeAgentEgress(ctx.queue_num, rules=self._load_rules)
        self.egress.install_many(
            (action.home_address, action.care_of_address)
            for action in self.core.route_optimizations()
        )
        self.sources = MobileNetworkSourceCheck(
            link.address, rules=self._load_rules, mss=tunnel_mss(link.mtu)
        )
        for entry in self.core.cache:
            if entry.state is BindingState.REGISTERED and entry.prefixes:
                self.sources.install(entry.home_address, entry.care_of_address, entry.prefixes)
        log.info(
            "home agent %s on %s serving %s (%s backend, %d binding(s) restored)",
            link.address, link.interface, link.prefix, self.dataplane.backend,
            len(self.core.cache),
        )  # fmt: skip

    def stop(self) -> None:
        self._send_failures.close()
        if self._link_sender is not None:
            self._link_sender.close()
            self._link_sender = None
        if self.rules is not None:
            try:
                self.rules.unload()
            except Exception:
                log.exception("removing ha.rules failed")
        if self.egress is not None:
            self.egress.forget()  # its rules went with the NFQMIP6-HA-OUT chain
        if self.sources is not None:
            self.sources.forget()  # its rules went with the NFQMIP6-HA-MR/-MRSRC/-MSS chains
        if self.core is not None and self.ctx is not None:
            self._save_bindings(self.ctx.clock())
        if self.cluster is not None:
            self.cluster.stop()
        if self.nd is not None:
            if self.ctx is not None:
                self.ctx.remove_reader(self.nd.fileno())
            self.nd.close()
            self.nd = None
        if self.dataplane is not None:
            # Kernel tunnels stay (flows survive a restart; the next start reconciles).
            self.dataplane.shutdown(flush=False)

    # ------------------------------------------------------------------------------------
    # Persistence across restarts
    # ------------------------------------------------------------------------------------
    def _save_bindings(self, now: float) -> None:
        """Stop: the whole cache once more (each change was already committed, _persist)."""
        assert self.core is not None
        if self._checkpointer is not None:
            self._checkpointer.stop()
            self._checkpointer = None
        if self.persistence is not None:
            self.persistence.save_all(self.core.cache, now)
            self.persistence.store.close()

    def _persist(self, actions: list[Action], now: float) -> None:
        """Commit the binding changes of ``actions`` **before** any BA among them is sent
        (docs/security.md: a crash then loses at most a BA, which the MN retransmits for)."""
        if self.persistence is not None and self.core is not None:
            # The binding and the RFC 4285 timestamps it advanced: one commit (BindingStore).
            mesg_ids = self.guard.unsaved_timestamps() if self.guard is not None else {}
            if self.persistence.record(self.core.cache, actions, now, mesg_ids) and mesg_ids:
                assert self.guard is not None
                self.guard.timestamps_saved(mesg_ids)

    def _restore_bindings(self, now: float) -> None:
        """Load saved bindings that have not expired; make the kernel match them."""
        assert self.core is not None and self.dataplane is not None
        if self.cluster is not None:
            self.cluster.restore(now)  # the store's snapshot, or a standby's replica
        elif self.persistence is not None:
            if self._state_path is not None:  # the former JSON file, imported once
                self.persistence.import_json(self._state_path)
            self.persistence.restore(self.core.cache, now)
        wanted = {
            e.home_address: e.care_of_address
            for e in self.core.cache
            if e.state is BindingState.REGISTERED
        }
        self.dataplane.reconcile(wanted)
        # RFC 3963 §6.4: the mobile routers' prefix routes, with their bindings
        self.dataplane.reconcile_prefixes(
            {
                prefix: e.care_of_address
                for e in self.core.cache
                if e.state is BindingState.REGISTERED
                for prefix in e.prefixes
            }
        )
        prefix = self.link.prefix if self.link is not None else None
        answering = self._answering
        for hoa in set(self.dataplane.proxies()) - (set(wanted) if answering else set()):
            if prefix is not None and hoa in prefix:  # a proxy left by a previous run
                self.dataplane.remove_proxy(hoa)
        if answering:
            self.dataplane.add_proxies([entry.home_address for entry in self.core.cache])

    @property
    def _answering(self) -> bool:
        """Single node, or the active member of a cluster (a standby answers nothing)."""
        return self.cluster is None or self.cluster.role == ACTIVE

    # ------------------------------------------------------------------------------------
    # Queued packets
    # ------------------------------------------------------------------------------------
    def on_queued_packet(self, queued: QueuedPacket, now: float) -> Verdict:
        payload = queued.payload
        egress = self.egress
        if egress is not None and queued.interface_index == 0 and payload[24:40] in egress.bindings:
            # NFQMIP6-HA-OUT (OUTPUT: no input interface, not FORWARD): our own packet to a
            # bound HoA (§9.3.2); an MH (a BA to the HoA) or a shape the rewrite refuses
            # leaves unchanged; the kernel's Redirect to it is dropped (§10.4.5).
            if is_redirect(payload):
                self.counters["redirects_suppressed"] += 1
                return Verdict.drop()
            out = egress.rewrite(payload)
            return Verdict.rewrite(out) if out is not None else Verdict.accept()
        try:
            packet = parse_ipv6(payload)
        except MalformedPacket as exc:
            self._malformed(f"unparsable IPv6 packet: {exc}")
            return Verdict.drop()
        if not self._answering and (
            packet.upper_layer == IPPROTO_MH
            or packet.home_address is not None
            or (packet.upper_layer == IPPROTO_ICMPV6 and packet.dst != self._address)
        ):
            assert self.cluster is not None
            self.cluster.counters["standby_dropped"] += 1  # no BA, no DHAAD on a standby
            return Verdict.drop()
        if packet.upper_layer == IPPROTO_MH:
            return self._on_mobility_header(packet, queued, now)
        if packet.rh2_address is not None:
            # An HA is never the final destination of an RH2 (§6.4 is for the MN).
            self.counters["rh2_dropped"] += 1
            return Verdict.drop()
        if packet.home_address is not None:
            return self._on_home_address_option(packet, now)
        if packet.upper_layer == IPPROTO_ICMPV6 and packet.dst != self._address:
            return self._on_icmp_to_anycast(packet, now)
        if packet.upper_layer == IPPROTO_ICMPV6 and packet.dst == self._address:
            self._relay_tunnel_error(packet)
            return Verdict.accept()
        return self._slow_path(packet, payload, now)

    @property
    def _address(self) -> IPv6Address:
        assert self.link is not None
        return self.link.address

    def _on_mobility_header(
        self, packet: ParsedPacket, queued: QueuedPacket, now: float
    ) -> Verdict:
        """RFC 6275 §9.2 then the core; the MH is always consumed (NF_DROP)."""
        assert self.core is not None
        started = time.perf_counter()
        screened = self._screen_mobility_header(packet, now, queued)
        if screened is None:
            return Verdict.drop()
        is_bu = screened.mh_type == MHType.BU
        if (
            is_bu
            and self.guard is not None
            and not self.guard.allow_binding_update(packet.src, now)
        ):
            return Verdict.drop()  # counted in guard.counters() (rate_limited_binding_updates)
        self._feed(mobility_message_received(packet, screened.accepted, queued), now)
        metrics = self._metrics
        if is_bu and metrics is not None:
            metrics.observe_bu_latency(time.perf_counter() - started)
        return Verdict.drop()

    def _answer_link(self, about: ParsedPacket, queued: QueuedPacket | None) -> bytes | None:
        """§10.3.2: answers (Parameter Problem, Binding Error) to an MH from the MN at home
        go on the home link to its link-layer address, like its BA; routing would send them
        to the old CoA (the tunnel, or the RH2 rewrite of NFQMIP6-HA-OUT)."""
        assert self.core is not None
        if queued is None:
            return None
        return self.core.home_link_destination(
            about.src, about.home_address, queued.interface_index, queued.link_source
        )

    def _send_answer(self, answer: bytes, about: ParsedPacket, queued: QueuedPacket | None) -> None:
        link = self._answer_link(about, queued)
        if link is None or not self._send_on_home_link(answer, link):
            self._send(answer)

    def _send_on_home_link(self, packet: bytes, link_address: bytes) -> bool:
        """Send ``packet`` in a frame to ``link_address`` on the home interface; ``False``
        (the caller falls back to the raw IPv6 socket) when that is impossible."""
        if self.link is None or self._link_sender_failed:
            return False
        try:
            if self._link_sender is None:
                from nfq_mip6.io.rawsock import LinkLayerIPv6Sender

                self._link_sender = LinkLayerIPv6Sender(self.link.interface)
            self._link_sender.send(packet, link_address)
        except (OSError, ValueError) as exc:
            if self._link_sender is None:  # no AF_PACKET socket (no CAP_NET_RAW): never retry
                self._link_sender_failed = True
            self.counters["send_errors"] += 1
            self._send_failures.log("sending on the home link failed: %s", exc)
            return False
        self.counters["home_link_answers"] += 1
        return True

    def _binding_error_answered(self) -> None:
        self.counters["binding_errors_sent"] += 1

    def _icmp_error_allowed(self) -> bool:
        """RFC 4443 §2.4(f) rate limit; a refusal is counted by the guard."""
        guard, ctx = self.guard, self.ctx
        return guard is None or ctx is None or guard.allow_icmp_error(ctx.clock())

    def _on_home_address_option(self, packet: ParsedPacket, now: float) -> Verdict:
        """§9.3.1/§10.3.1: a non-MH packet with an HAO (e.g. an MPS) needs a binding."""
        assert self.core is not None and packet.home_address is not None
        errors = self.core.check_home_address_option(packet.src, packet.home_address, now)
        if errors:
            self._perform(errors, now)
            return Verdict.drop()
        if packet.upper_layer == IPPROTO_ICMPV6:
            try:
                message = parse_icmpv6(packet.upper_layer_bytes)
            except MalformedPacket:
                message = None
            if isinstance(message, MobilePrefixSolicitation):
                self._feed(
                    MobilePrefixSolicitationReceived(
                        message.identifier, packet.src, packet.home_address
                    ),
                    now,
                )
                return Verdict.drop()
        rewritten = strip_hao_to_home_source(packet.raw)
        if rewritten is None:
            self._malformed("cannot strip the Home Address option")
            return Verdict.drop()
        self.counters["hao_rewritten"] += 1
        return Verdict.rewrite(rewritten)

    def _relay_tunnel_error(self, packet: ParsedPacket) -> None:
        """RFC 2473 §8.1: an ICMPv6 error about a packet we tunnelled goes back to the
        original sender (the core decides; RFC 4443 §2.4(f) rate limit)."""
        assert self.core is not None
        offset = packet.upper_offset
        if packet.end < offset + 8:
            return
        relay = self.core.tunnel_error_relay(
            packet.raw[offset], packet.raw[offset + 8 : packet.end]
        )
        if relay is None or not self._icmp_error_allowed():
            return
        message = DestinationUnreachable(relay.code, relay.invoking_packet)
        self._send(build_icmpv6_packet(message, self._address, relay.dst, hop_limit=64))
        self.counters["tunnel_errors_relayed"] += 1

    def _on_icmp_to_anycast(self, packet: ParsedPacket, now: float) -> Verdict:
        """§10.5: DHAAD Request to the home agents anycast address."""
        try:
            message = parse_icmpv6(packet.upper_layer_bytes)
        except MalformedPacket:
            return self._slow_path(packet, packet.raw, now)
        if isinstance(message, DhaadRequest):
            request = DhaadRequestReceived(
                message.identifier, packet.src, packet.dst, message.mobile_router
            )
            self._feed(request, now)
            return Verdict.drop()
        return self._slow_path(packet, packet.raw, now)

    def _slow_path(self, packet: ParsedPacket, payload: bytes, now: float) -> Verdict:
        """FORWARD: a new flow toward the home prefix without a fast-path entry.

        A registered HoA whose kernel route is missing (install failed, or between the BA and
        the route) is tunnelled from userspace (RFC 2473 encapsulation, §10.4.2) and the
        original dropped; anything else (a node at home) continues normally.
        """
        assert self.core is not None
        entry = self.core.cache.get(packet.dst)
        if entry is None or entry.state is not BindingState.REGISTERED:
            self.counters["slow_path_accepted"] += 1
            return Verdict.accept()
        try:
            self._send(encapsulate(payload, self._address, entry.care_of_address))
        except MalformedPacket:
            return Verdict.drop()
        self.counters["slow_path_tunnelled"] += 1
        return Verdict.drop()

    # ------------------------------------------------------------------------------------
    # Core and actions
    # ------------------------------------------------------------------------------------
    def _feed(self, event: HomeAgentInput, now: float) -> None:
        assert self.core is not None
        if self.cluster is not None:
            # committed in etcd first; the actions run when the commit is confirmed
            self.cluster.feed(event, now)
            return
        actions = self.core.handle(event, now)
        self._persist(actions, now)
        self._perform(actions, now)

    def _perform(self, actions: list[Action], now: float) -> None:
        refused: set[IPv6Address] = set()  # mobile routers whose prefix routes failed
        for action in actions:
            if refused and _announces_acceptance(action, refused):
                continue  # replaced by the 143 answer (RFC 3963 §6.2)
            try:
                self._perform_one(action, now)
            except DataplaneError as exc:
                self.counters["dataplane_errors"] += 1
                log.error("%s failed: %s", type(action).__name__, exc)
                self._dataplane_metric(type(action).__name__, ok=False)
                if isinstance(action, InstallHomeTunnel) and action.prefixes:
                    # RFC 3963 §6.2: forwarding for the mobile network could not be set up
                    refused.add(action.home_address)
                    self._feed(ForwardingSetupFailed(action.home_address, str(exc)), now)

    def _perform_one(self, action: Action, now: float) -> None:
        assert self.dataplane is not None
        if isinstance(action, SendMobilityMessage):
            self._send_mobility_message(action)
        elif isinstance(action, InstallHomeTunnel):
            self.dataplane.install_tunnel(action.home_address, action.care_of_address)
            if action.prefixes or action.withdrawn:
                # RFC 3963 §6.4: the mobile network's prefixes into the same tunnel
                self.dataplane.install_prefix_routes(
                    action.care_of_address, action.prefixes, action.withdrawn
                )
            if self.sources is not None:
                # RFC 3963 §6.5: what the router may send through the reverse tunnel
                if action.prefixes:
                    self.sources.install(
                        action.home_address, action.care_of_address, action.prefixes
                    )
                else:
                    self.sources.remove(action.home_address)
            self._dataplane_metric("install_tunnel", ok=True)
        elif isinstance(action, RemoveHomeTunnel):
            if self.sources is not None:
                self.sources.remove(action.home_address)
            if action.prefixes:
                self.dataplane.remove_prefix_routes(action.prefixes)
            self.dataplane.remove_tunnel(action.home_address)
            self._dataplane_metric("remove_tunnel", ok=True)
        elif isinstance(action, InstallRouteOptimization):
            if self.egress is not None:
                ok = self.egress.install(action.home_address, action.care_of_address)
                self._dataplane_metric("install_route_optimization", ok=ok)
        elif isinstance(action, RemoveRouteOptimization):
            if self.egress is not None:
                ok = self.egress.remove(action.home_address)
                self._dataplane_metric("remove_route_optimization", ok=ok)
        elif isinstance(action, StartProxyNeighbor):
            for address in (action.home_address, action.link_local):
                if address is None:
                    continue
                if self.cluster is not None:  # a takeover's pending add comes no later
                    self.cluster.proxy_settled(address)
                self.dataplane.add_proxy(address)
                if self.nd is not None:
                    self.nd.announce(address, self._address, now)
        elif isinstance(action, StopProxyNeighbor):
            for address in (action.home_address, action.link_local):
                if address is None:
                    continue
                if self.cluster is not None:  # no takeover chunk re-adds it afterwards
                    self.cluster.proxy_settled(address)
                self.dataplane.remove_proxy(address)
                if self.nd is not None:
                    self.nd.cancel_announcements(address)
        elif isinstance(action, StartProxyDad):
            if self.nd is not None:
                self.nd.start_dad(action.home_address, action.link_local, now)
            else:  # no ND socket (tests): nobody defends the address
                self._feed(ProxyDadCompleted(action.home_address, duplicate=False), now)
        elif isinstance(action, SendDhaadReply):
            reply = DhaadReply(action.identifier, action.home_agents, action.mobile_router)
            src = action.src if action.src is not None else self._address
            self._send(build_icmpv6_packet(reply, src, action.dst, hop_limit=64))
        elif isinstance(action, SendMobilePrefixAdvertisement):
            prefixes = tuple(
                PrefixInformation(net.network_address, net.prefixlen, True, True, False, v, p)
                for net, v, p in action.prefixes
            )
            mpa = MobilePrefixAdvertisement(action.identifier, prefixes=prefixes)
            self._send(
                build_icmpv6_packet(
                    mpa, action.src, action.dst, hop_limit=64, rh2_address=action.home_address
                )
            )
        elif isinstance(action, BindingEvent):
            self._log_binding_event(action)
        elif isinstance(action, MessageDiscarded):
            log.info("discarded from %s: %s", action.src, action.reason)
        else:
            log.debug("ignoring action %r", action)

    def _send_mobility_message(self, action: SendMobilityMessage) -> None:
        message = action.message
        if self.guard is not None:
            if (
                isinstance(message, BindingErrorMessage)
                and self.ctx is not None
                and not self.guard.allow_binding_error(self.ctx.clock())
            ):
                return  # RFC 6275 §9.3.3 rate limit, counted by the guard
            message = self.guard.outgoing(message, action.dst, action.routing_address)
        packet, mh_type = self._mobility_packet(action, message)
        if action.via_tunnel:
            packet = encapsulate(packet, self._address, action.dst)
        if action.link_destination is None or not self._send_on_home_link(
            packet, action.link_destination
        ):
            self._send(packet)
        self._mobility_message_sent(mh_type, action.message)

    def _on_router_advertisement(self, source: IPv6Address, ra: RouterAdvertisement) -> None:
        """Our own RA (radvd, looped back) gives the home prefix lifetimes (§10.3.1 caps,
        §10.6.1) and our advertised Home Agent Information preference (§7.4); another
        router's RA with the H bit maintains the Home Agents List (§10.5.1, for DHAAD
        replies). Ours: from one of the interface's link-local addresses at start, or
        carrying our HA address with the Router Address flag (§7.2): a virtual HA's RA comes
        from its VRRP link-local, which a member that started as a standby did not have."""
        if self.ctx is None or self.link is None:
            return
        now = self.ctx.clock()
        if source in self._own_link_locals or any(
            info.router_address and info.prefix == self._address for info in ra.prefixes
        ):
            if ra.home_agent_information is not None:
                self._feed(OwnHomeAgentInformation(ra.home_agent_information.preference), now)
            for info in ra.prefixes:
                if info.network == self.link.prefix:  # R = 1 (router address) included
                    self._feed(
                        HomePrefixAdvertised(
                            self.link.prefix,
                            None if info.valid_lifetime == INFINITE else info.valid_lifetime,
                            None
                            if info.preferred_lifetime == INFINITE
                            else info.preferred_lifetime,
                        ),
                        now,
                    )
            return
        info_option = ra.home_agent_information
        self._feed(
            RouterAdvertisementReceived(
                source=source,
                home_agent_flag=ra.home_agent,
                router_lifetime=ra.router_lifetime,
                ha_preference=info_option.preference if info_option else None,
                ha_lifetime=info_option.lifetime if info_option else None,
                global_addresses=tuple(p.prefix for p in ra.prefixes if p.router_address),
            ),
            now,
        )

    # ------------------------------------------------------------------------------------
    # Timers
    # ------------------------------------------------------------------------------------
    def next_deadline(self) -> float | None:
        deadlines = []
        if self.core is not None and self._answering:  # a standby expires nothing
            deadlines.append(self.core.next_deadline())
        if self.nd is not None:
            deadlines.append(self.nd.next_deadline())
        if self.cluster is not None and self.cluster.proxy_pending:
            deadlines.append(0.0)  # a takeover's proxy entries: a chunk per loop turn
        present = [d for d in deadlines if d is not None]
        return min(present) if present else None

    def on_timer(self, now: float) -> None:
        assert self.core is not None
        self._send_failures.flush()
        if self.nd is not None:
            for result in self.nd.poll(now):
                self._feed(ProxyDadCompleted(result.home_address, result.duplicate), now)
        if self.cluster is not None:
            self.cluster.add_pending_proxies()
            if self.cluster.role == ACTIVE:  # expiry: CAS deletes from the stored expiry
                self.cluster.commit_then_perform(None, self.core.handle_timer(now), now)
            return
        actions = self.core.handle_timer(now)
        self._persist(actions, now)
        self._perform(actions, now)

    # ------------------------------------------------------------------------------------
    # Control socket and reload
    # ------------------------------------------------------------------------------------
    def reload(self, config: AgentConfig) -> list[str]:
        """``[ha] max_binding_lifetime`` applies to the next registrations (§10.3.1 cap);
        existing bindings keep theirs."""
        assert self.core is not None
        changed: list[str] = []
        # RFC 3963 §6.1.2: the mobile router policy decides the next registrations; bindings
        # in force keep their prefixes until they are refreshed
        policies = mobile_router_policies(config.ha.mobile_nodes if config.ha else ())
        if policies != self.core.config.mobile_routers:
            self.core.set_mobile_routers(policies)
            changed.append(f"mobile routers: {len(policies)}")
        lifetime = config.ha.max_binding_lifetime if config.ha is not None else None
        if lifetime is None or lifetime == self.core.config.max_binding_lifetime:
            return changed
        self.core.set_max_binding_lifetime(lifetime)
        return [*changed, f"max_binding_lifetime: {lifetime}"]

    def role_command(self, cmd: object, request: dict[str, Any], now: float) -> dict[str, Any]:
        if cmd == "flush" and self.dataplane is not None:
            prefixes = list(self.dataplane.prefix_routes())
            if prefixes:
                self.dataplane.remove_prefix_routes(prefixes)
            if self.sources is not None and self.core is not None:
                for entry in self.core.cache:
                    self.sources.remove(entry.home_address)
            self.dataplane.remove_tunnels(list(self.dataplane.tunnels()))
            if self.egress is not None:
                for home_address in list(self.egress.bindings):
                    self.egress.remove(IPv6Address(home_address))
            return {"ok": True}
        if cmd == "drain":
            return self._drain(request, now)
        return super().role_command(cmd, request, now)

    def cluster_command(self, request: dict[str, Any], now: float) -> dict[str, Any]:
        """``nfq-mip6 cluster active|standby|status`` (docs/cluster.md)."""
        if self.cluster is None:
            return {
                "ok": False,
                "error": "not a cluster member (no [cluster] section in the configuration)",
            }
        action = request.get("action", "status")
        if action == "status":
            return {"ok": True, **self.cluster.status()}
        if action == "timeline":
            return {"ok": True, **self.cluster.timeline()}
        if action in (ACTIVE, STANDBY):
            return self.cluster.set_role(str(action), now)
        return {"ok": False, "error": f"unknown cluster action {action!r}"}

    def cache_extra(self, now: float) -> dict[str, Any]:
        if self.cluster is None:
            return {}
        status = self.cluster.status()
        return {
            "cluster": {
                key: status[key]
                for key in ("role", "name", "revision", "applied_revision", "store_reachable")
            }
        }

    def _drain(self, request: dict[str, Any], now: float) -> dict[str, Any]:
        """``{"cmd": "drain", "rate": N, "home_agents": [...], "stop": bool, "status": bool}``
        (``nfq-mip6 cluster drain``): RFC 5142 Home Agent Switch to every registered MN."""
        assert self.core is not None
        if not request.get("status"):
            if not self._answering:
                return {"ok": False, "error": "a standby member sends nothing: drain the active"}
            rate = request.get("rate", DEFAULT_DRAIN_RATE)
            if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 < rate < 1e6:
                return {"ok": False, "error": "drain rate must be a number of messages/s > 0"}
            listed = request.get("home_agents")
            home_agents: tuple[IPv6Address, ...] | None = None
            if listed is not None:
                try:
                    home_agents = tuple(IPv6Address(str(a)) for a in listed)
                except (TypeError, ValueError) as exc:
                    return {"ok": False, "error": f"drain home_agents: {exc}"}
            stop = bool(request.get("stop", False))
            self._feed(HomeAgentDrainRequested(float(rate), home_agents, stop), now)
            status = self.core.drain_status(now)
            if stop:
                log.info("drain stopped: %s", status)
            else:
                listing = status.get("home_agents")
                log.info(
                    "drain: Home Agent Switch to %s mobile nodes at %s/s, listing %s",
                    status.get("registered", 0),
                    rate,
                    ", ".join(listing) if isinstance(listing, list) and listing else "none (DHAAD)",
                )
        return {"ok": True, "drain": self.core.drain_status(now)}

    def mobility_stats(self) -> MobilityStats:
        assert self.core is not None
        return self.core.stats

    def cache_rows(self, now: float) -> list[dict[str, Any]]:
        assert self.core is not None
        return [row.control_json() for row in self.core.binding_cache_rows(now)]

    def binding_count(self, now: float) -> int:
        assert self.core is not None
        return len(self.core.cache)

    def role_stats(self, now: float) -> dict[str, Any]:
        assert self.core is not None and self.dataplane is not None
        extra = dict(self.counters)
        extra["reverse_tunnel_rejected"] = self._sample_kernel_counters(now)
        if self.guard is not None:
            extra.update(self.guard.counters())
        if self.persistence is not None:
            extra["store_errors"] = self.persistence.errors
        cluster = self.cluster.status() if self.cluster is not None else None
        if self.nd is not None and isinstance(getattr(self.nd, "stats", None), dict):
            extra.update({f"nd_{key}": value for key, value in self.nd.stats.items()})
        if isinstance(self.egress, HomeAgentEgress):
            extra["direct_rh2_inserted"] = self.egress.counters["rh2_inserted"]
            extra["direct_rule_errors"] = self.egress.counters["rule_errors"]
            extra["direct_bindings"] = len(self.egress.bindings)
        extra["max_binding_lifetime"] = self.core.config.max_binding_lifetime
        # RFC 5142: the drain (nfq-mip6 cluster drain) and its Home Agent Switch counters
        extra["draining"] = int(self.core.draining)
        extra.update({f"drain_{name}": value for name, value in self.core.drain_counters.items()})
        # RFC 3963: mobile routers and their prefixes in force
        routers = [e for e in self.core.cache if e.prefixes and e.state is BindingState.REGISTERED]
        extra["mobile_routers"] = len(routers)
        extra["mobile_network_prefixes"] = sum(len(e.prefixes) for e in routers)
        if self.sources is not None:
            extra["mobile_network_rule_errors"] = self.sources.counters["rule_errors"]
        if self.rules is not None:
            # RFC 3963 §6.5: reverse-tunnelled packets with a foreign inner source
            extra["mobile_network_source_rejected"] = mobile_network_rejected_packets()
        # the two states a home registration lives in are always present, 0 included
        by_state = dict.fromkeys((BindingState.REGISTERED.value, BindingState.DAD_PENDING.value), 0)
        for entry in self.core.cache:
            by_state[entry.state.value] = by_state.get(entry.state.value, 0) + 1
        counters = self.dataplane.counters
        return {
            **({"cluster": cluster} if cluster is not None else {}),
            "bindings_by_state": by_state,
            "home_agent": extra,
            "dataplane": {
                "tunnel_installs": counters.tunnel_installs,
                "tunnel_replacements": counters.tunnel_replacements,
                "tunnel_removals": counters.tunnel_removals,
                "enomem_retries": counters.enomem_retries,
                "errors": counters.errors,
            },
        }

    def _sample_kernel_counters(self, now: float) -> int:
        """Read the counting rules of ha.rules (one ``ip6tables-save -c``): feed the core
        NEncapsulations/NDecapsulations (the kernel does the tunnelling, MIPL counted it in
        its own tunnel code) and return the rejected reverse-tunnel packets."""
        if self.rules is None or self.core is None:
            return 0
        from nfq_mip6.io.iptables import home_agent_tunnel_counters

        kernel = home_agent_tunnel_counters()
        self.core.handle(
            DataplaneCountersSampled(
                encapsulations=kernel.encapsulations + self.counters["slow_path_tunnelled"],
                decapsulations=kernel.decapsulations,
            ),
            now,
        )
        return kernel.rejected


def _announces_acceptance(action: Action, refused: set[IPv6Address]) -> bool:
    """The accepting BA and registration notice of a registration the kernel refused."""
    if isinstance(action, SendMobilityMessage):
        message = action.message
        return (
            isinstance(message, BindingAck)
            and message.status < 128
            and (action.routing_address in refused or action.dst in refused)
        )
    return (
        isinstance(action, BindingRegistered | BindingRefreshed) and action.home_address in refused
    )


def tunnel_mss(mtu: int) -> int:
    """The TCP MSS that fits a segment plus the tunnel's outer header into ``mtu``
    (docs/kernel-notes.md §7): MTU − 40 (outer IPv6) − 40 (inner IPv6) − 20 (TCP)."""
    return max(MIN_MTU, mtu) - TUNNEL_OVERHEAD - 40 - 20


def mobile_router_policies(
    mobile_nodes: Iterable[MobileNodeCredentials],
) -> tuple[MobileRouterPolicy, ...]:
    """RFC 3963 §6.1.2: the ``[[ha.mobile_nodes]]`` entries with ``mobile_router = true``."""
    return tuple(
        MobileRouterPolicy(entry.home_addresses, entry.prefixes)
        for entry in mobile_nodes
        if entry.mobile_router
    )
