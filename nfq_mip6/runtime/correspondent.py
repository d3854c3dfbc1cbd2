"""Correspondent Node runtime: the pure core (:class:`nfq_mip6.mobility.correspondent.
CorrespondentNode`) and the route-optimization data path on the real kernel (RFC 6275 §9).

Theory of operation:

* ``rules/cn.rules`` queues, in raw PREROUTING, every Mobility Header to this node, every
  local packet with a Destination Options header (an HAO) and every Type 2 Routing Header;
  it creates the mangle OUTPUT chain ``NFQMIP6-CN-OUT`` that holds one rule per binding,
  ``-d <HoA>/128 -j NFQUEUE``, added and removed as bindings come and go
  (:class:`~nfq_mip6.io.iptables.DestinationRules`).
* Data packets take the byte-level fast path of :mod:`nfq_mip6.runtime.ro_datapath`:
  outbound to a bound HoA → destination := CoA plus an RH2 (§9.3.2; the kernel re-routes the
  reinjected packet at LOCAL_OUT); inbound with an HAO from the binding's CoA → source :=
  HoA, HAO removed (§9.3.1). No parsing into objects, no scapy.
* Anything the fast path does not take goes through :mod:`nfq_mip6.wire`: Mobility Headers
  get the §9.2 checks (silent discard, Parameter Problem with pointer, BE 2) and then the
  core (HoTI → HoT, CoTI → CoT, BU → BA with BAD / 136 / 137 / 138 …), and are always
  consumed (NF_DROP); an HAO without a matching binding is dropped with a Binding Error
  status 1 (§9.3.1, §9.3.3; rate-limited); an RH2 is dropped (TAHI CN-6-5); ICMPv6
  Destination Unreachable errors go to the core (§9.3.4: persistent ones delete the binding)
  and on to the sockets.
* Replies (HoT, CoT, BA with an RH2 to the CoA, BE, BRR) are whole IPv6 packets sent through
  ``ctx.send_packet`` (IPV6_HDRINCL): the kernel refuses an RH2 through socket options.
  A reply to a bound HoA passes the binding's own ``NFQMIP6-CN-OUT`` rule and comes back
  into the queue; a Mobility Header generated here (no input interface) is always let out —
  e.g. the BA of a home de-registration (§9.5.3), sent while the deleted binding's rule is
  still in place, is not mistaken for an incoming MH.
* A packet is judged only after the timers that fell due ran (an expired binding is gone,
  so its HAO gets BE 1, §9.3.1). Data sent through a binding is reported to the core
  (:class:`~nfq_mip6.mobility.events.BindingsInUse`), which asks for a refresh (BRR) only for
  bindings in active use (§9.5.5).
* ``ro off`` (control socket, ``accept_return_routability`` on reload): the core drops every
  binding and invalidates its nonces; HoTI/CoTI/BU are then discarded, so mobile nodes keep
  using their home agent. ``ro on`` takes effect for the next return-routability exchange.
* Kernel Mobile IPv6 (``CONFIG_IPV6_MIP6`` with xfrm route-optimization states, as UMIP uses)
  is detected and reported (``kernel_mip6`` in ``stats``) but not used: this project's target
  kernels lack it, and the NFQUEUE data path works without it.
* Stop: every bound MN gets a Binding Error status 1 (its binding is gone, so it returns to
  its HA tunnel at once, §11.3.6), then the rules (and with them the per-binding rules) are
  removed; CN bindings are soft state and are not kept (the MN re-runs return routability
  with the next agent, §5.2.9).
* Persistence (docs/security.md, "Persistence and crash safety";
  :class:`~nfq_mip6.store.CorrespondentPersistence`): Kcn, the nonces (§5.2.7, ≤ 240 s) and
  the bindings are committed to ``<state_dir>/nfq-mip6.sqlite3`` before the actions of each
  core call are carried out (a new nonce before the HoT/CoT that depends on it, a binding
  before its BA). After a crash (kill -9) the next run restores them: tokens handed out
  before stay valid and bindings still in force keep their route optimization. A clean stop
  keeps Kcn and the nonces but forgets the bindings it announced as lost.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from ipaddress import IPv6Address
from typing import Any, Final

from nfq_mip6.config import AgentConfig
from nfq_mip6.constants import IPPROTO_ICMPV6
from nfq_mip6.dataplane import DataplaneError
from nfq_mip6.dataplane.ro_fastpath import FastPathFactory, RouteOptimizationFastPath
from nfq_mip6.dataplane.ro_routes import BindingRoutes
from nfq_mip6.io.host import detect_kernel_mip6, resolve_local_address
from nfq_mip6.io.iptables import DestinationRules
from nfq_mip6.mobility.correspondent import CorrespondentConfig, CorrespondentNode
from nfq_mip6.mobility.events import (
    Action,
    BindingEvent,
    BindingsInUse,
    CorrespondentInput,
    IcmpErrorReceived,
    InstallRouteOptimization,
    MessageDiscarded,
    RemoveRouteOptimization,
    RouteOptimizationSwitched,
    SendMobilityMessage,
)
from nfq_mip6.mobility.stats import MobilityStats
from nfq_mip6.runtime.base import QueuedPacket, RuntimeContext, Verdict
from nfq_mip6.runtime.mh_endpoint import MobilityHeaderEndpoint, mobility_message_received
from nfq_mip6.runtime.ro_datapath import cn_inbound, cn_outbound
from nfq_mip6.security.ratelimit import TokenBucket
from nfq_mip6.statedir import open_state
from nfq_mip6.store import CorrespondentPersistence, StoreError
from nfq_mip6.wire import (
    IPPROTO_MH,
    MalformedPacket,
    MHType,
    ParsedPacket,
    build_ipv6_packet,
    build_mh,
    insert_rh2,
    mh_data_for_authenticator,
    parse_ipv6,
    strip_hao_to_home_source,
)
from nfq_mip6.wire.icmp import ICMPv6Type
from nfq_mip6.wire.mh import BindingError as BindingErrorMessage

__all__ = [
    "CorrespondentRuntime",
]

log = logging.getLogger("nfq_mip6.cn")

ICMPV6_DESTINATION_UNREACHABLE: Final = int(ICMPv6Type.DESTINATION_UNREACHABLE)
OUTPUT_CHAIN: Final = "NFQMIP6-CN-OUT"
BE_RATE_PER_S: Final = 10.0
"""§9.3.3: Binding Errors are rate-limited like ICMPv6 errors (token bucket, this many per s)."""
BE_BURST: Final = 10.0


def _open_ro_fast_path(
    role: str, mode: str, interfaces: tuple[str, ...]
) -> tuple[RouteOptimizationFastPath | None, str]:
    from nfq_mip6.dataplane.ro_bpf import open_ro_fast_path

    return open_ro_fast_path(role, mode, interfaces=interfaces)


class CorrespondentRuntime(MobilityHeaderEndpoint):
    """:class:`~nfq_mip6.runtime.base.RoleRuntime` for ``role = "cn"`` (``FUNCTIONALITY=cn``).

    The constructor arguments exist for tests: ``load_rules`` whether to load
    ``rules/cn.rules`` and the per-binding rules, ``address`` the CN address (default: the
    interface's global address), ``random_bytes`` the core's randomness, ``persist`` whether
    to keep Kcn, nonces and bindings under ``state_dir`` (default: as ``load_rules``, so a
    runtime built without the kernel rules writes nothing to disk), ``wall_clock`` the Unix
    time of the stored expiries and nonce creation times.
    """

    role = "cn"
    log = log
    backend = "nfqueue-ro"

    def __init__(
        self,
        *,
        load_rules: bool = True,
        address: IPv6Address | None = None,
        random_bytes: Callable[[int], bytes] | None = None,
        persist: bool | None = None,
        wall_clock: Callable[[], float] = time.time,
        fast_path_factory: FastPathFactory | None = None,
    ) -> None:
        self._load_rules = load_rules
        self._fast_path_factory = fast_path_factory
        self._persist = load_rules if persist is None else persist
        self._wall_clock = wall_clock
        self._address_override = address
        self._random_bytes = random_bytes
        self.core: CorrespondentNode | None = None
        self.address: IPv6Address | None = None
        self.interface: str | None = None
        self.rules: Any = None
        self.binding_rules: DestinationRules | None = None
        self.fast_path: RouteOptimizationFastPath | None = None
        """The tc BPF data path (``[agent] ro_datapath``); None: NFQUEUE rewrites."""
        self.ro_datapath_reason = "no kernel rules (test runtime)"
        self.ro_routes: BindingRoutes | None = None
        """NFQUEUE data path: the per-binding host routes (MTU less 24, §9.3.2)."""
        self.kernel_mip6: bool | None = None
        self.bindings: dict[bytes, bytes] = {}
        """The data path's view: HoA octets → CoA octets of every binding in force."""
        super().__init__(
            (
                "rh2_inserted",
                "hao_stripped",
                "parameter_problems_sent",
                "binding_errors_sent",
                "binding_errors_rate_limited",
                "silent_discards",
                "rh2_dropped",
                "accepted_unchanged",
                "rule_errors",
                "destination_unreachables_seen",
            )
        )
        # §9.3.3: Binding Errors are rate-limited like ICMPv6 errors
        self._binding_errors = TokenBucket(BE_RATE_PER_S, BE_BURST)
        self._in_use: set[bytes] = set()
        """HoA octets of bindings that carried data since the last timer (§9.5.5)."""
        self._fast_path_rewritten = 0
        """The BPF data path's ``out_rewritten`` counter at the last timer."""
        self.persistence: CorrespondentPersistence | None = None  # Kcn, nonces, bindings

    # ------------------------------------------------------------------------------------
    # Lifecycle
    # ------------------------------------------------------------------------------------
    def start(self, ctx: RuntimeContext) -> None:
        self.ctx = ctx
        config = ctx.config
        if self._address_override is not None:
            self.address = self._address_override
            self.interface = config.interface
        else:
            self.interface, self.address = resolve_local_address(config.interface)
        kwargs: dict[str, Any] = {"encode_mh_data": mh_data_for_authenticator}
        if self._random_bytes is not None:
            kwargs["random_bytes"] = self._random_bytes
        self.core = CorrespondentNode(
            CorrespondentConfig(address=self.address, route_optimization=config.route_optimization),
            **kwargs,
        )
        self.kernel_mip6 = detect_kernel_mip6()
        if self.kernel_mip6:
            log.info("kernel has CONFIG_IPV6_MIP6; the NFQUEUE data path is used regardless")
        if self._load_rules:
            from nfq_mip6.io.iptables import RuleSet, rules_path

            self.rules = RuleSet.from_file(
                rules_path("cn.rules"),
                {"queue": ctx.queue_num, "bypass": " --queue-bypass" if ctx.queue_bypass else ""},
            )
            self.rules.load()
            self.binding_rules = DestinationRules(
                OUTPUT_CHAIN, ctx.queue_num, bypass=ctx.queue_bypass
            )
        factory = self._fast_path_factory or (_open_ro_fast_path if self._load_rules else None)
        if factory is not None:
            self.fast_path, self.ro_datapath_reason = factory(
                "cn", config.ro_datapath, (self.interface,) if self.interface else ()
            )
            if self.fast_path is None and self._load_rules:
                self.ro_routes = BindingRoutes("cn", user_space_rewrite=True)
        self._restore_state(ctx)
        wanted = {(IPv6Address(hoa), self._address): IPv6Address(coa)
                  for hoa, coa in self.bindings.items()}  # fmt: skip
        if self.fast_path is not None:
            report = self.fast_path.reconcile(wanted)
            log.info("RO data path: tc BPF, %s; %s", self.ro_datapath_reason, report)
        else:
            if self.ro_routes is not None:  # routes a killed agent left for bindings now gone
                self.ro_routes.remove_stale(wanted)
            log.info("RO data path: NFQUEUE (%s)", self.ro_datapath_reason)
        log.info(
            "correspondent node %s on %s, route optimization %s",
            self.address, self.interface or "?", "on" if config.route_optimization else "off",
        )  # fmt: skip

    def _restore_state(self, ctx: RuntimeContext) -> None:
        """Kcn, nonces and unexpired bindings of the previous run (nfq_mip6.store)."""
        assert self.core is not None
        if not self._persist:
            return
        try:
            store = open_state(ctx.config.state_dir, {"role": "cn"})  # nfq_mip6.statedir
        except StoreError as exc:
            log.warning("state store unavailable; CN state will not survive a restart: %s", exc)
            return
        self.persistence = CorrespondentPersistence(store, self._wall_clock)
        now = ctx.clock()
        actions = self.persistence.restore(self.core, now)
        if actions:
            log.info("%d correspondent binding(s) restored", len(actions))
        self._perform(actions, now)

    def stop(self) -> None:
        self._announce_lost_bindings()
        if self.persistence is not None:  # announced as lost: not restored by the next run
            self.persistence.forget_bindings()
            self.persistence.store.close()
            self.persistence = None
        if self.rules is not None:
            try:
                self.rules.unload()  # flushes NFQMIP6-CN-OUT with the per-binding rules
            except Exception:
                log.exception("removing cn.rules failed")
            self.rules = None
        if self.binding_rules is not None:
            self.binding_rules.forget()
        if self.ro_routes is not None:
            self.ro_routes.clear()
            self.ro_routes = None
        if self.fast_path is not None:  # a clean stop: programs, entries and routes go
            try:
                self.fast_path.stop(flush=True)
            except DataplaneError as exc:
                log.warning("removing the RO data path failed: %s", exc)
            self.fast_path = None
        self.bindings.clear()

    def _announce_lost_bindings(self) -> None:
        """The binding cache dies with the agent: tell every bound MN with a Binding Error
        status 1 (§9.3.3: "no binding for this home address"), so that it stops sending with
        an HAO (which this kernel would then drop) and goes back to its HA tunnel (§11.3.6)
        instead of waiting for its binding to run out."""
        if self.core is None or self.ctx is None:
            return
        for row in self.core.binding_cache_rows(self.ctx.clock()):
            message = BindingErrorMessage(1, row.home_address)
            mh = build_mh(message, self._address, row.care_of_address)
            self._send(build_ipv6_packet(self._address, row.care_of_address, IPPROTO_MH, mh))
            self.counters["binding_errors_sent"] += 1

    # ------------------------------------------------------------------------------------
    # Queued packets
    # ------------------------------------------------------------------------------------
    def on_queued_packet(self, queued: QueuedPacket, now: float) -> Verdict:
        payload = queued.payload
        deadline = self.next_deadline()
        if deadline is not None and deadline <= now:
            self.on_timer(now)  # §9.3.1: a binding whose lifetime ended no longer counts
        bindings = self.bindings
        if bindings:
            out = cn_outbound(payload, bindings)
            if out is not None:
                self.counters["rh2_inserted"] += 1
                self._in_use.add(payload[24:40])
                return Verdict.rewrite(out)
            out = cn_inbound(payload, bindings)
            if out is not None:
                self.counters["hao_stripped"] += 1
                return Verdict.rewrite(out)
        return self._slow_path(queued, now)

    def _slow_path(self, queued: QueuedPacket, now: float) -> Verdict:
        payload = queued.payload
        try:
            packet = parse_ipv6(payload)
        except MalformedPacket as exc:
            self._malformed(f"unparsable IPv6 packet: {exc}")
            return Verdict.drop()
        if packet.raw[24:40] in self.bindings:
            return self._outbound_general(packet)
        if packet.upper_layer == IPPROTO_MH:
            if queued.interface_index == 0:
                # Our own answer (e.g. the BA of a de-registration, §9.5.3) that met the
                # per-binding OUTPUT rule of the binding it has just deleted: let it out.
                self.counters["accepted_unchanged"] += 1
                return Verdict.accept()
            return self._on_mobility_header(packet, queued, now)
        if packet.rh2_address is not None:
            # A correspondent node that is not a mobile node discards RH2 packets (TAHI CN-6-5).
            self.counters["rh2_dropped"] += 1
            return Verdict.drop()
        if packet.home_address is not None:
            return self._on_home_address_option(packet, now)
        if (
            packet.upper_layer == IPPROTO_ICMPV6
            and packet.end >= packet.upper_offset + 8 + 40
            and packet.raw[packet.upper_offset] == ICMPV6_DESTINATION_UNREACHABLE
        ):
            self._on_destination_unreachable(packet, now)
        self.counters["accepted_unchanged"] += 1
        return Verdict.accept()

    def _on_destination_unreachable(self, packet: ParsedPacket, now: float) -> None:
        """§9.3.4: persistent Destination Unreachable about packets to a bound MN (its CoA or
        HoA) deletes the binding; the error itself still goes to the sockets (accepted)."""
        offset = packet.upper_offset
        invoking = packet.raw[offset + 8 : packet.end]
        self.counters["destination_unreachables_seen"] += 1
        self._feed(
            IcmpErrorReceived(
                source=packet.src,
                icmp_type=ICMPV6_DESTINATION_UNREACHABLE,
                code=packet.raw[offset + 1],
                invoking_destination=IPv6Address(invoking[24:40]),
            ),
            now,
        )

    def _outbound_general(self, packet: ParsedPacket) -> Verdict:
        """A packet to a bound HoA the fast path left alone (MH, unusual header chain)."""
        if packet.upper_layer == IPPROTO_MH:
            # §6.1: HoT and BRR go to the HoA through the home agent, never with an RH2.
            self.counters["accepted_unchanged"] += 1
            return Verdict.accept()
        care_of = self.bindings[packet.raw[24:40]]
        out = insert_rh2(packet.raw, IPv6Address(care_of))
        if out is None:
            self.counters["accepted_unchanged"] += 1
            return Verdict.accept()
        self.counters["rh2_inserted"] += 1
        return Verdict.rewrite(out)

    def _on_home_address_option(self, packet: ParsedPacket, now: float) -> Verdict:
        """§9.3.1: an HAO is accepted only with a binding HoA → this source; else BE 1."""
        assert self.core is not None and packet.home_address is not None
        errors = self.core.check_home_address_option(
            packet.src, packet.home_address, now, packet.dst
        )
        if errors:
            self._perform(errors, now)
            return Verdict.drop()
        rewritten = strip_hao_to_home_source(packet.raw)
        if rewritten is None:
            self._malformed("cannot strip the Home Address option")
            return Verdict.drop()
        self.counters["hao_stripped"] += 1
        return Verdict.rewrite(rewritten)

    def _on_mobility_header(
        self, packet: ParsedPacket, queued: QueuedPacket, now: float
    ) -> Verdict:
        """RFC 6275 §9.2 then the core; the MH is always consumed (NF_DROP)."""
        assert self.core is not None
        screened = self._screen_mobility_header(packet, now)
        if screened is None:
            return Verdict.drop()
        metrics = self._metrics
        event = mobility_message_received(packet, screened.accepted, queued)
        started = time.perf_counter()
        self._feed(event, now)
        if screened.mh_type == MHType.BU and metrics is not None:
            metrics.observe_bu_latency(time.perf_counter() - started)
        return Verdict.drop()

    @property
    def _address(self) -> IPv6Address:
        assert self.address is not None
        return self.address

    # ------------------------------------------------------------------------------------
    # Core and actions
    # ------------------------------------------------------------------------------------
    def _feed(self, event: CorrespondentInput, now: float) -> None:
        assert self.core is not None
        self._perform(self.core.handle(event, now), now)

    def _perform(self, actions: list[Action], now: float) -> None:
        if actions and self.persistence is not None and self.core is not None:
            self.persistence.record(self.core, actions, now)  # before any of them is sent
        # Removals first: a packet sent now must not take the host route of a binding that
        # is going (e.g. the BA of a home de-registration, §9.5.3, queued by the binding's
        # rule and re-injected after the route is deleted, would be discarded with it).
        gone = [a for a in actions if isinstance(a, RemoveRouteOptimization)]
        for action in [*gone, *(a for a in actions if not isinstance(a, RemoveRouteOptimization))]:
            if isinstance(action, SendMobilityMessage):
                self._send_mobility_message(action, now)
            elif isinstance(action, InstallRouteOptimization):
                self._install(action.home_address, action.care_of_address)
            elif isinstance(action, RemoveRouteOptimization):
                self._remove(action.home_address)
            elif isinstance(action, BindingEvent):
                self._log_binding_event(action)
            elif isinstance(action, MessageDiscarded):
                self.counters["silent_discards"] += 1
                log.info("discarded from %s: %s", action.src, action.reason)
            else:
                log.debug("ignoring action %r", action)

    def _install(self, home_address: IPv6Address, care_of_address: IPv6Address) -> None:
        """§9.3.2: from now on, packets to the HoA go to the CoA with an RH2."""
        self.bindings[home_address.packed] = care_of_address.packed
        if self.fast_path is not None:
            try:  # the programs rewrite the binding's packets: nothing to queue
                self.fast_path.install(home_address, self._address, care_of_address)
            except DataplaneError as exc:
                log.warning("RO data path: %s; NFQUEUE for %s", exc, home_address)
                self.counters["rule_errors"] += 1
            else:
                self._dataplane_metric("install_route_optimization", ok=True)
                if self.binding_rules is not None:
                    self.binding_rules.remove(home_address)
                return
        if self.binding_rules is not None:
            ok = self.binding_rules.add(home_address)
            if not ok:
                self.counters["rule_errors"] += 1
            self._dataplane_metric("install_route_optimization", ok=ok)
        if self.ro_routes is not None:
            try:  # segments sized for the 24-octet RH2 (the rule is in place first)
                self.ro_routes.install(home_address, self._address, care_of_address)
            except DataplaneError as exc:
                log.warning("RO route for %s: %s", home_address, exc)
                self.counters["rule_errors"] += 1

    def _remove(self, home_address: IPv6Address) -> None:
        self.bindings.pop(home_address.packed, None)
        if self.ro_routes is not None:
            self.ro_routes.remove(home_address, self._address)
        if self.fast_path is not None:
            try:
                self.fast_path.remove(home_address, self._address)
            except DataplaneError as exc:
                log.warning("RO data path: %s", exc)
                self.counters["rule_errors"] += 1
        if self.binding_rules is not None:
            ok = self.binding_rules.remove(home_address)
            if not ok:
                self.counters["rule_errors"] += 1
            self._dataplane_metric("remove_route_optimization", ok=ok)

    def _send_mobility_message(self, action: SendMobilityMessage, now: float) -> None:
        message = action.message
        if isinstance(message, BindingErrorMessage):
            if not self._binding_errors.allow(now):
                self.counters["binding_errors_rate_limited"] += 1
                return
            self.counters["binding_errors_sent"] += 1
        packet, mh_type = self._mobility_packet(action, message)
        self._send(packet)
        self._mobility_message_sent(mh_type, message)

    # ------------------------------------------------------------------------------------
    # Timers
    # ------------------------------------------------------------------------------------
    def next_deadline(self) -> float | None:
        return None if self.core is None else self.core.next_deadline()

    def on_timer(self, now: float) -> None:
        assert self.core is not None
        if self.fast_path is not None:
            # the tc programs count rewrites for all bindings together: any growth marks
            # every binding in force as in use (exact with one binding; §9.5.5 is a MAY)
            rewritten = self.fast_path.counters().get("out_rewritten", 0)
            if rewritten > self._fast_path_rewritten:
                self._in_use.update(self.bindings)
            self._fast_path_rewritten = rewritten
        if self._in_use:
            used = tuple(IPv6Address(home) for home in self._in_use)
            self._in_use.clear()
            self._feed(BindingsInUse(used), now)
        self._perform(self.core.handle_timer(now), now)

    # ------------------------------------------------------------------------------------
    # Control socket
    # ------------------------------------------------------------------------------------
    def route_optimization(self) -> bool:
        assert self.core is not None
        return self.core.route_optimization

    def set_route_optimization(self, enabled: bool, now: float) -> bool:
        """The run-time switch (``nfq-mip6 ro on|off``); returns the new state."""
        assert self.core is not None
        if enabled != self.core.route_optimization:
            log.info("route optimization switched %s", "on" if enabled else "off")
        self._feed(RouteOptimizationSwitched(enabled), now)
        return self.core.route_optimization

    def reload(self, config: AgentConfig) -> list[str]:
        """``route_optimization`` (legacy ``accept_return_routability``)."""
        assert self.ctx is not None
        if config.route_optimization == self.route_optimization():
            return []
        self.set_route_optimization(config.route_optimization, self.ctx.clock())
        return [f"route_optimization: {'on' if config.route_optimization else 'off'}"]

    def ro_datapath_stats(self) -> dict[str, Any]:
        if self.fast_path is None:
            return {"datapath": "nfqueue", "reason": self.ro_datapath_reason}
        return {"datapath": "bpf", "reason": self.ro_datapath_reason, **self.fast_path.snapshot()}

    def mobility_stats(self) -> MobilityStats:
        assert self.core is not None
        return self.core.stats

    def cache_rows(self, now: float) -> list[dict[str, Any]]:
        assert self.core is not None
        return [row.control_json() for row in self.core.binding_cache_rows(now)]

    def role_stats(self, now: float) -> dict[str, Any]:
        return {
            "correspondent": {
                "address": str(self.address),
                "kernel_mip6": self.kernel_mip6,
                "datapath": "nfqueue" if self.fast_path is None else "bpf",
                "binding_rules": len(self.binding_rules.installed) if self.binding_rules else 0,
                "counters": dict(self.counters),
            },
        }
