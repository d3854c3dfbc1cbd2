"""Kernel fast path of the Home Agent, behind a small Protocol (RFC 6275 §10.4).

* :mod:`nfq_mip6.dataplane.netlink`: the real kernel (pyroute2 + ``ip -batch``), with a
  seg6 ``encap.red`` backend (the default here: no ip6tnl in this kernel) and an ip6tnl one.
* :mod:`nfq_mip6.dataplane.fake`: an in-memory fake for unit tests.
* :mod:`nfq_mip6.dataplane.mobile_node`: the Mobile Node's data plane (separate owner).

Kernel state owned by the Home Agent is recognisable after a restart: routes carry the
routing protocol number :data:`RT_PROTO_NFQ_MIP6` and live in :data:`TUNNEL_TABLE` /
:data:`DECAP_TABLE`; policy rules use priorities :data:`RULE_PRIORITY_ND`,
:data:`RULE_PRIORITY_DECAP` and :data:`RULE_PRIORITY_TUNNEL`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from ipaddress import IPv6Address
from typing import Final, Protocol

__all__ = [
    "DECAP_TABLE",
    "LOCAL_RULE_PRIORITY",
    "ND_FWMARK",
    "RT_PROTO_NFQ_MIP6",
    "RULE_PRIORITY_DECAP",
    "RULE_PRIORITY_ND",
    "RULE_PRIORITY_ND_LOCAL",
    "RULE_PRIORITY_TUNNEL",
    "TUNNEL_TABLE",
    "Dataplane",
    "DataplaneCounters",
    "DataplaneError",
    "ReconcileReport",
]

TUNNEL_TABLE: Final = 6275  # HoA/128 -> encap to the CoA (the RFC number, easy to spot)
DECAP_TABLE: Final = 6276  # HA/128 from CoA/128 -> End.DX6 (reverse tunnel, §10.4.5)
RT_PROTO_NFQ_MIP6: Final = 173  # `proto 173` on every route the HA installs
# Neighbor Solicitations to the home prefix, marked ND_FWMARK by ha.rules (mangle PREROUTING),
# look up `main` before the tunnel table: a proxied HoA's seg6 route would otherwise carry
# the home router's unicast NUD probes to the CoA at route input, before ip6_forward's
# proxy-NDP check could answer them (RFC 6275 §10.4.1: the HA defends the HoA).
# The marked NS consult `local` first (NS to the HA's own addresses; `local` moved behind
# the tunnel rule, see LOCAL_RULE_PRIORITY), then `main`.
ND_FWMARK: Final = 0x6275
RULE_PRIORITY_ND_LOCAL: Final = 938  # fwmark ND_FWMARK lookup local
RULE_PRIORITY_ND: Final = 939  # fwmark ND_FWMARK lookup main
RULE_PRIORITY_DECAP: Final = 940  # to HA ipproto 41 lookup DECAP_TABLE (before `local`)
RULE_PRIORITY_TUNNEL: Final = 941  # to <home prefix> lookup TUNNEL_TABLE
LOCAL_RULE_PRIORITY: Final = 1000  # where the `lookup local` rule moves (was 0)


class DataplaneError(RuntimeError):
    """A kernel operation failed; the message says which and why."""


@dataclass(frozen=True, slots=True)
class ReconcileReport:
    """What :meth:`Dataplane.reconcile` changed to make the kernel match the binding cache."""

    kept: int = 0
    added: int = 0
    replaced: int = 0
    removed: int = 0
    failed: int = 0


@dataclass(slots=True)
class DataplaneCounters:
    """Cumulative counters of the data plane (read for the ``stats`` snapshot)."""

    tunnel_installs: int = 0
    tunnel_replacements: int = 0
    tunnel_removals: int = 0
    enomem_retries: int = 0
    errors: int = 0
    extra: dict[str, int] = field(default_factory=dict)


class Dataplane(Protocol):
    """The Home Agent's kernel fast path (one instance per agent, inside its netns)."""

    backend: str
    counters: DataplaneCounters

    def setup(self) -> None:
        """Prepare the node: tunnel source, policy rules, sysctls. Idempotent."""

    def install_tunnel(self, home_address: IPv6Address, care_of_address: IPv6Address) -> None:
        """Tunnel ``home_address`` to ``care_of_address`` and accept reverse-tunnelled
        packets from that CoA (§10.4.2, §10.4.5). Replaces an existing CoA atomically."""

    def remove_tunnel(self, home_address: IPv6Address) -> None:
        """Remove the tunnel of ``home_address`` (no error if there is none)."""

    def install_tunnels(self, bindings: Mapping[IPv6Address, IPv6Address]) -> int:
        """Batched install/replace of many HoA -> CoA tunnels; returns how many failed."""

    def remove_tunnels(self, home_addresses: Iterable[IPv6Address]) -> int:
        """Batched removal; returns how many failed."""

    def tunnels(self) -> dict[IPv6Address, IPv6Address]:
        """The tunnels the kernel holds now (HoA -> CoA), read back from the kernel."""

    def reconcile(self, wanted: Mapping[IPv6Address, IPv6Address]) -> ReconcileReport:
        """Make the kernel's tunnels equal ``wanted``: no duplicates, nothing stale."""

    def add_proxy(self, address: IPv6Address) -> None:
        """Proxy-answer Neighbor Solicitations for ``address`` on the home link (§10.4.1)."""

    def remove_proxy(self, address: IPv6Address) -> None:
        """Stop proxying ``address``."""

    def proxies(self) -> set[IPv6Address]:
        """The proxied addresses on the home link."""

    def shutdown(self, *, flush: bool) -> None:
        """Stop. ``flush=False`` keeps tunnels, rules and proxies (restart keeps flows)."""
