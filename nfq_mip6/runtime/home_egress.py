"""The Home Agent's own packets to a registered home address (RFC 6275 §9.3.2, §10.3.1).

A home agent with a Binding Cache entry for a home address is a node with a binding like any
correspondent: the packets *it originates* for that address (an Echo Reply, an ICMPv6 error,
a TCP segment of a local service) go directly to the care-of address with a type 2 routing
header carrying the home address (§6.4). Packets it *forwards* for the home address keep the
IPv6-in-IPv6 tunnel (§10.4.2), which the kernel fast path carries.

The core decides (:meth:`nfq_mip6.mobility.home_agent.HomeAgent` emits
``InstallRouteOptimization`` / ``RemoveRouteOptimization`` with each home registration, and
``route_optimizations()`` after a restore); this adapter only carries the decision out:

* one rule per binding in the mangle OUTPUT chain :data:`OUTPUT_CHAIN` of ``rules/ha.rules``,
  ``-d <HoA>/128 -j NFQUEUE --queue-bypass``, so only locally originated packets to a bound
  HoA reach the agent (mangle OUTPUT runs after conntrack, which stays keyed on the HoA);
* :meth:`HomeAgentEgress.rewrite` inserts the RH2 and sets the destination to the CoA (the
  same byte rewrite as the correspondent node's, :func:`~nfq_mip6.runtime.ro_datapath.
  cn_outbound`); on reinjection at LOCAL_OUT the kernel routes the packet again (nf_reroute),
  now toward the CoA, so it no longer takes the home address's tunnel route.

Mobility Headers are never rewritten: the runtime builds its BAs whole, with their RH2
already (destination = the CoA, so they do not match the per-binding rules), and a BA to a
home address (the MN at home) must leave without one (§9.5.4).

``--queue-bypass`` keeps this fail-open: with no agent listening the packets take the tunnel
as before. Another implementation of :class:`EgressRewriter` (e.g. a BPF program on the
egress path keyed by a map of bindings) can replace this one without touching the core.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from ipaddress import IPv6Address
from typing import Final, Protocol

from nfq_mip6.constants import IPPROTO_ICMPV6
from nfq_mip6.io.iptables import DestinationRules
from nfq_mip6.wire.icmp import ICMPv6Type
from nfq_mip6.wire.ro_rewrite import cn_outbound

__all__ = ["OUTPUT_CHAIN", "EgressRewriter", "HomeAgentEgress", "is_redirect"]

log = logging.getLogger("nfq_mip6.ha")

OUTPUT_CHAIN: Final = "NFQMIP6-HA-OUT"
"""mangle OUTPUT chain of ``rules/ha.rules`` holding the per-binding NFQUEUE rules."""


def is_redirect(payload: bytes) -> bool:
    """An ICMPv6 Redirect (RFC 4861 §4.5) as the kernel sends it (no extension headers).

    The kernel redirects the source of a packet it forwards back out of the interface it
    came in on; for a decapsulated reverse-tunnelled packet (§10.4.5) that source is a bound
    home address, which is not on the link (§8.2: the redirected node must be a neighbour),
    so the HA drops these."""
    return len(payload) > 40 and payload[6] == IPPROTO_ICMPV6 and payload[40] == ICMPv6Type.REDIRECT


class EgressRewriter(Protocol):
    """Direct delivery of the HA's own packets to bound home addresses."""

    bindings: dict[bytes, bytes]
    """HoA octets → CoA octets of every binding whose HoA gets direct delivery."""

    def install(self, home_address: IPv6Address, care_of_address: IPv6Address) -> bool: ...

    def install_many(self, pairs: Iterable[tuple[IPv6Address, IPv6Address]]) -> bool: ...

    def remove(self, home_address: IPv6Address) -> bool: ...

    def forget(self) -> None:
        """Drop the table without touching the kernel (the rules went with the chain)."""

    def rewrite(self, payload: bytes) -> bytes | None:
        """The rewritten packet, or ``None``: leave it unchanged (an MH, no binding)."""


class HomeAgentEgress:
    """:class:`EgressRewriter` with per-binding NFQUEUE rules (``run`` = ip6tables, for tests;
    ``restore`` = ``ip6tables-restore --noflush`` with the given input)."""

    def __init__(
        self,
        queue_num: int,
        *,
        rules: bool = True,
        run: Callable[[list[str]], int] | None = None,
        restore: Callable[[str], int] | None = None,
    ) -> None:
        self._rules = (
            DestinationRules(OUTPUT_CHAIN, queue_num, bypass=True, run=run, restore=restore)
            if rules
            else None
        )
        self.bindings: dict[bytes, bytes] = {}
        self.counters: dict[str, int] = {"rh2_inserted": 0, "rule_errors": 0}

    def install(self, home_address: IPv6Address, care_of_address: IPv6Address) -> bool:
        """Packets this host originates for ``home_address`` leave for ``care_of_address``."""
        self.bindings[home_address.packed] = care_of_address.packed
        return self._rules is None or self._count(self._rules.add(home_address))

    def install_many(self, pairs: Iterable[tuple[IPv6Address, IPv6Address]]) -> bool:
        """Many bindings at once (a restart with a restored cache): one ip6tables-restore."""
        pairs = list(pairs)
        self.bindings.update((hoa.packed, coa.packed) for hoa, coa in pairs)
        return self._rules is None or self._count(self._rules.add_many(hoa for hoa, _ in pairs))

    def remove(self, home_address: IPv6Address) -> bool:
        """Back to the tunnel (or to the home link) for ``home_address``."""
        self.bindings.pop(home_address.packed, None)
        return self._rules is None or self._count(self._rules.remove(home_address))

    def forget(self) -> None:
        self.bindings.clear()
        if self._rules is not None:
            self._rules.forget()

    def rewrite(self, payload: bytes) -> bytes | None:
        out = cn_outbound(payload, self.bindings)
        if out is not None:
            self.counters["rh2_inserted"] += 1
        return out

    def _count(self, ok: bool) -> bool:
        if not ok:
            self.counters["rule_errors"] += 1
        return ok
