"""The route-optimization data path on NFQUEUE (RFC 6275 §9.3, §11.3): the adapter.

The byte rewrites themselves are pure and live in :mod:`nfq_mip6.wire.ro_rewrite` (re-exported
here for the runtimes). This module keeps the Mobile Node's per-binding ip6tables rules and
its per-packet decisions (:class:`MobileNodeRouteOptimization`): which queued packet is
rewritten, which one becomes an event for the core.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from ipaddress import IPv6Address
from typing import Any, Final

from nfq_mip6.constants import IPPROTO_ICMPV6, IPPROTO_MH
from nfq_mip6.dataplane import DataplaneError
from nfq_mip6.dataplane.ro_fastpath import RouteOptimizationFastPath
from nfq_mip6.dataplane.ro_routes import BindingRoutes
from nfq_mip6.io.iptables import run_ip6tables
from nfq_mip6.mobility.events import DataPacketFromCorrespondent, IcmpErrorReceived
from nfq_mip6.runtime.base import Verdict
from nfq_mip6.wire.errors import MalformedPacket
from nfq_mip6.wire.icmp import ICMPv6Type
from nfq_mip6.wire.ipv6 import parse_ipv6
from nfq_mip6.wire.ro_rewrite import (
    HAO_HEADER_LENGTH,
    RH2_HEADER_LENGTH,
    cn_inbound,
    cn_outbound,
    has_home_address_option,
    has_type2_routing_header,
    mn_inbound,
    mn_outbound,
    upper_layer_is_mh,
)

_log = logging.getLogger("nfq_mip6.ro_datapath")

__all__ = [
    "HAO_HEADER_LENGTH",
    "MN_OUTPUT_CHAIN",
    "RH2_HEADER_LENGTH",
    "MobileNodeRouteOptimization",
    "RouteOptimizationEvent",
    "cn_inbound",
    "cn_outbound",
    "has_home_address_option",
    "has_type2_routing_header",
    "mn_inbound",
    "mn_outbound",
]


# ---------------------------------------------------------------------------------------------
# Mobile node: bindings, per-binding rules and per-packet decisions (used by the MN runtime)
# ---------------------------------------------------------------------------------------------

MN_OUTPUT_CHAIN: Final = "NFQMIP6-MN-RO"
"""mangle OUTPUT chain of ``rules/mn.rules``: one ``-s HoA -d CN -j NFQUEUE`` rule per binding."""

RouteOptimizationEvent = DataPacketFromCorrespondent | IcmpErrorReceived
"""Input events for the MN core that :meth:`MobileNodeRouteOptimization.handle_packet` finds."""


class MobileNodeRouteOptimization:
    """The MN half of route optimization on a kernel without MIPv6 (RFC 6275 §11.3, §11.6).

    * :meth:`install` / :meth:`remove` follow the core's ``InstallRouteOptimization`` /
      ``RemoveRouteOptimization``: the binding table (correspondent → CoA) and one rule
      ``-s HoA/128 -d CN/128 -j NFQUEUE`` in the mangle OUTPUT chain ``NFQMIP6-MN-RO``. The
      rewrite there changes the source to the CoA, so the kernel's re-route on reinjection
      (LOCAL_OUT) no longer matches the ``from HoA`` policy rule of the reverse tunnel and the
      packet leaves directly; without a binding the same packet takes the tunnel.
    * :meth:`handle_packet` runs first for every queued packet and returns a verdict when it
      decides alone (a rewrite, our own outbound MH, an ICMPv6 Parameter Problem), plus input
      events for the core: :class:`DataPacketFromCorrespondent` for traffic to the HoA from a
      node that is not the HA (sampled by a hashlimit rule, §11.7.2: starts return
      routability) and :class:`IcmpErrorReceived` (§11.3.5: a CN without MIPv6 support).
    """

    def __init__(
        self,
        home_address: IPv6Address,
        home_agent: IPv6Address | None,
        queue_num: int,
        bypass: bool,
        *,
        run: Callable[[list[str]], int] | None = None,
        fast_path: RouteOptimizationFastPath | None = None,
        routes: BindingRoutes | None = None,
    ) -> None:
        self.home_address = home_address
        self.fast_path = fast_path
        """The tc BPF data path; with it a binding gets a map entry instead of a rule."""
        self.routes = routes
        """NFQUEUE data path: the per-binding rule and route (``src`` HoA, MTU less 24)."""
        self._ruled: set[bytes] = set()  # correspondents with a NFQMIP6-MN-RO rule
        self.home_agent = home_agent
        self._home = home_address.packed
        self._homes = frozenset({self._home})
        self._ha = home_agent.packed if home_agent is not None else b""
        self._target = ["-j", "NFQUEUE", "--queue-num", str(queue_num)]
        if bypass:
            self._target.append("--queue-bypass")
        self._run = run or functools.partial(run_ip6tables, quiet=True)
        self.bindings: dict[bytes, bytes] = {}
        """Correspondent octets → CoA octets of every RO binding in force."""
        self.counters: dict[str, int] = {
            "hao_inserted": 0,
            "rh2_stripped": 0,
            "correspondent_data_seen": 0,
            "parameter_problems_seen": 0,
            "rule_errors": 0,
        }

    def _spec(self, correspondent: IPv6Address) -> list[str]:
        return ["-s", f"{self.home_address}/128", "-d", f"{correspondent}/128", *self._target]

    def install(
        self,
        correspondent: IPv6Address,
        care_of_address: IPv6Address,
        *,
        home_agent: bool = False,
    ) -> bool:
        """Packets HoA → ``correspondent`` leave from ``care_of_address`` with an HAO.
        ``home_agent``: the correspondent is our home agent; only packets from the HoA are
        taken, never the reverse tunnel's (CoA → HA, next header 41) or the BUs."""
        self.bindings[correspondent.packed] = care_of_address.packed
        # the tc programs rewrite the binding's packets: nothing to queue
        if self.fast_path is not None and self._install_into(
            self.fast_path, correspondent, care_of_address, home_agent, "RO data path (NFQUEUE)"
        ):
            return self._remove_rule(correspondent)
        ok = self._add_rule(correspondent)
        if ok and self.routes is not None:
            # after the rule: no packet takes the direct route without its HAO
            self._install_into(self.routes, correspondent, care_of_address, home_agent, "RO route")
        return ok

    def _install_into(
        self,
        target: RouteOptimizationFastPath | BindingRoutes,
        correspondent: IPv6Address,
        care_of_address: IPv6Address,
        home_agent: bool,
        what: str,
    ) -> bool:
        """Install the binding into ``target``; a failure is logged and counted (False)."""
        try:
            target.install(
                self.home_address,
                correspondent,
                care_of_address,
                from_home_address_only=home_agent,
            )
        except DataplaneError as exc:
            _log.warning("%s for %s: %s", what, correspondent, exc)
            self.counters["rule_errors"] += 1
            return False
        return True

    def remove(self, correspondent: IPv6Address) -> bool:
        """Back to the reverse tunnel for ``correspondent``."""
        if self.bindings.pop(correspondent.packed, None) is None:
            return True
        if self.fast_path is not None:
            try:
                self.fast_path.remove(self.home_address, correspondent)
            except DataplaneError as exc:
                _log.warning("RO data path: %s", exc)
                self.counters["rule_errors"] += 1
        if self.routes is not None:  # back to the tunnel before the rule goes
            self.routes.remove(self.home_address, correspondent)
        return self._remove_rule(correspondent)

    def _add_rule(self, correspondent: IPv6Address) -> bool:
        if correspondent.packed in self._ruled:
            return True
        ok = self._run(["-t", "mangle", "-A", MN_OUTPUT_CHAIN, *self._spec(correspondent)]) == 0
        if ok:
            self._ruled.add(correspondent.packed)
        else:
            self.counters["rule_errors"] += 1
        return ok

    def _remove_rule(self, correspondent: IPv6Address) -> bool:
        if correspondent.packed not in self._ruled:
            return True
        self._ruled.discard(correspondent.packed)
        ok = self._run(["-t", "mangle", "-D", MN_OUTPUT_CHAIN, *self._spec(correspondent)]) == 0
        if not ok:
            self.counters["rule_errors"] += 1
        return ok

    def clear(self) -> None:
        for key in list(self.bindings):
            self.remove(IPv6Address(key))

    def handle_packet(
        self, payload: bytes, *, away: bool
    ) -> tuple[Verdict | None, list[RouteOptimizationEvent]]:
        """``(verdict or None, input events for the core)`` for one queued packet.

        ``None``: the MN runtime carries on with its own processing (Mobility Headers,
        Binding Acknowledgements, Mobile Prefix Advertisements, plain accept).
        """
        bindings = self.bindings
        if bindings:
            out = mn_outbound(payload, self._home, bindings)
            if out is not None:
                self.counters["hao_inserted"] += 1
                return Verdict.rewrite(out), []
        out = mn_inbound(payload, self._homes)
        if out is not None:
            self.counters["rh2_stripped"] += 1
            return Verdict.rewrite(out), []
        if len(payload) < 40:
            return None, []
        source, destination = payload[8:24], payload[24:40]
        if source == self._home:
            # Ours, leaving through NFQMIP6-MN-RO (an MH, or a shape the rewrite refused).
            return Verdict.accept(), []
        if (
            payload[6] == IPPROTO_ICMPV6
            and len(payload) > 40
            and payload[40] == ICMPv6Type.PARAMETER_PROBLEM
        ):
            return Verdict.accept(), self._parameter_problem(payload)
        if (
            away
            and destination == self._home
            and source != self._ha
            and payload[6] != IPPROTO_MH
            and not upper_layer_is_mh(payload)
        ):
            self.counters["correspondent_data_seen"] += 1
            return None, [DataPacketFromCorrespondent(IPv6Address(source))]
        return None, []

    def _parameter_problem(self, payload: bytes) -> list[RouteOptimizationEvent]:
        """§11.3.5: Parameter Problem about a packet we sent (code 1: the peer does not know
        the MH; code 2: it does not know the HAO)."""
        self.counters["parameter_problems_seen"] += 1
        invoking = payload[48:]
        destination: IPv6Address | None = None
        mh_type: int | None = None
        if len(invoking) >= 40:
            destination = IPv6Address(invoking[24:40])
            try:
                parsed = parse_ipv6(invoking)
                offset = parsed.upper_offset if parsed.upper_layer == IPPROTO_MH else -1
            except MalformedPacket:  # the invoking packet may be truncated
                offset = 40 if invoking[6] == IPPROTO_MH else -1
            if offset >= 0 and offset + 2 < len(invoking):
                mh_type = invoking[offset + 2]
        return [
            IcmpErrorReceived(
                source=IPv6Address(payload[8:24]),
                icmp_type=ICMPv6Type.PARAMETER_PROBLEM,
                code=payload[41],
                invoking_destination=destination,
                invoking_mh_type=mh_type,
            )
        ]

    def snapshot(self) -> dict[str, Any]:
        return {
            "datapath": "nfqueue" if self.fast_path is None else "bpf",
            "bindings": {
                str(IPv6Address(cn)): str(IPv6Address(coa)) for cn, coa in self.bindings.items()
            },
            "counters": dict(self.counters),
        }
