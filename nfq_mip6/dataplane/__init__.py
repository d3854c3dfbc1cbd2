"""Kernel fast paths of the Home Agent (RFC 6275 §10.4) and the Mobile Node (§11.3.1),
each behind a small Protocol with an in-memory fake.

* :class:`Dataplane`: the Home Agent's; :mod:`nfq_mip6.dataplane.netlink` on the real kernel
  (pyroute2, hand-packed rtnetlink and ``ip -batch``), with a seg6 ``encap.red`` backend (the
  default here: no ip6tnl in this kernel) and an ip6tnl one.
* :class:`MobileNodeKernel`: the Mobile Node's; :mod:`nfq_mip6.dataplane.mobile_node` on the
  real kernel.
* :mod:`nfq_mip6.dataplane.fake`: the in-memory fakes of both, for unit tests.
* :mod:`nfq_mip6.dataplane.kernel`: the toolkit both real ones share (constants, the pyroute2
  seg6 patch, the ENOMEM retry, rule and tunnel-source helpers); every failure is the one
  :class:`~nfq_mip6.errors.DataplaneError`.

Kernel state owned by the Home Agent is recognisable after a restart: routes carry the
routing protocol number :data:`RT_PROTO_NFQ_MIP6` and live in :data:`TUNNEL_TABLE` /
:data:`DECAP_TABLE`; policy rules use priorities :data:`RULE_PRIORITY_ND`,
:data:`RULE_PRIORITY_DECAP` and :data:`RULE_PRIORITY_TUNNEL`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv6Address, IPv6Interface, IPv6Network
from typing import Any, Protocol

from nfq_mip6.dataplane.kernel import (
    DECAP_TABLE,
    IFA_F_DADFAILED,
    IFA_F_OPTIMISTIC,
    IFA_F_TENTATIVE,
    LOCAL_RULE_PRIORITY,
    ND_FWMARK,
    RT_PROTO_NFQ_MIP6,
    RULE_PRIORITY_DECAP,
    RULE_PRIORITY_ND,
    RULE_PRIORITY_ND_LOCAL,
    RULE_PRIORITY_TUNNEL,
    TUNNEL_TABLE,
)
from nfq_mip6.errors import DataplaneError

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
    "InterfaceAddress",
    "MobileNodeKernel",
    "ReconcileReport",
]


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

    def install_prefix_routes(
        self,
        care_of_address: IPv6Address,
        prefixes: Sequence[IPv6Network],
        withdrawn: Sequence[IPv6Network] = (),
    ) -> None:
        """RFC 3963 §6.4, §6.5: route each Mobile Network Prefix of a mobile router into the
        tunnel to its ``care_of_address`` (the same seg6 encap.red tunnel as its home address;
        each route replaced in place, no gap) and remove the routes of ``withdrawn``."""

    def remove_prefix_routes(self, prefixes: Sequence[IPv6Network]) -> None:
        """Remove the tunnel routes of ``prefixes`` (de-registration, expiry)."""

    def prefix_routes(self) -> dict[IPv6Network, IPv6Address]:
        """The Mobile Network Prefix routes the kernel holds now (prefix -> CoA)."""

    def reconcile_prefixes(self, wanted: Mapping[IPv6Network, IPv6Address]) -> ReconcileReport:
        """Make the kernel's prefix routes equal ``wanted`` (restart)."""

    def add_proxy(self, address: IPv6Address) -> None:
        """Proxy-answer Neighbor Solicitations for ``address`` on the home link (§10.4.1)."""

    def remove_proxy(self, address: IPv6Address) -> None:
        """Stop proxying ``address``."""

    def add_proxies(self, addresses: Iterable[IPv6Address]) -> int:
        """Many :meth:`add_proxy` at once (a cluster takeover); returns how many failed."""

    def remove_proxies(self, addresses: Iterable[IPv6Address]) -> int:
        """Many :meth:`remove_proxy` at once (absent ones are fine); returns how many failed."""

    def proxies(self) -> set[IPv6Address]:
        """The proxied addresses on the home link."""

    def shutdown(self, *, flush: bool) -> None:
        """Stop. ``flush=False`` keeps tunnels, rules and proxies (restart keeps flows)."""


@dataclass(frozen=True, slots=True)
class InterfaceAddress:
    """An IPv6 address on the MN's interface, as the kernel reports it."""

    interface: IPv6Interface
    flags: int  # IFA_F_* of linux/if_addr.h
    valid_lifetime: float | None  # None = forever
    preferred_lifetime: float | None

    @property
    def address(self) -> IPv6Address:
        return self.interface.ip

    @property
    def usable(self) -> bool:
        """Usable as a source: not tentative (unless optimistic) and DAD did not fail."""
        if self.flags & IFA_F_DADFAILED:
            return False
        return not (self.flags & IFA_F_TENTATIVE) or bool(self.flags & IFA_F_OPTIMISTIC)


class MobileNodeKernel(Protocol):
    """The Mobile Node's kernel data plane (RFC 6275 §11.3.1, §11.5): the home address
    away from home, the reverse tunnel to the Home Agent, decapsulation at the CoA, and what
    the visited link left behind. One instance per agent, inside its netns."""

    care_of_address: IPv6Address | None  # the CoA of the installed tunnel
    home_agent: IPv6Address | None
    home_address_away: bool  # the HoA is off the interface (on ``lo``)
    local_rule_moved: bool  # the ``local`` rule is behind the decap rule

    def adopt_leftovers(self) -> bool:
        """At start: recognise state of a previous run that ended away (flags set so the
        return home or :meth:`cleanup` removes it). Whether anything was found."""

    def carrier_state(self) -> tuple[bool, int | None]:
        """(carrier, carrier change count) of the interface now."""

    def interface_addresses(self) -> list[InterfaceAddress]:
        """Global (non-link-local) IPv6 addresses on the interface."""

    def recheck_link_local(self) -> list[IPv6Address]:
        """After a move: DAD again for the link-local addresses (RFC 4862 §5.4,
        RFC 6275 §11.5.4), optimistic where allowed; the addresses re-added."""

    def prepare_care_of_address(self, care_of_address: IPv6Address) -> None:
        """Decapsulation for ``care_of_address`` and the tunnel source, ahead of the BA."""

    def install_reverse_tunnel(self, care_of_address: IPv6Address, home_agent: IPv6Address) -> None:
        """Create or re-point the MN–HA tunnel for a (new) CoA, make-before-break."""

    def remove_reverse_tunnel(self) -> None:
        """Remove the tunnel, its rules and routes (back home, or on stop)."""

    def move_home_address_away(self) -> None:
        """The HoA leaves the interface and lives on ``lo`` as a /128 (§11.5.1)."""

    def move_home_address_home(self) -> None:
        """The HoA goes back on the home interface (§11.5.5)."""

    def purge_visited_link_state(
        self, keep_prefixes: tuple[IPv6Network, ...], keep_router: IPv6Address | None
    ) -> list[IPv6Interface]:
        """Remove addresses and RA-learned routes of links left; the addresses removed."""

    def snapshot(self) -> dict[str, Any]:
        """State for the ``stats`` snapshot."""

    def cleanup(self) -> None:
        """Remove every agent-owned kernel object and put the HoA back on the interface."""

    def close(self) -> None:
        """Release the netlink sockets (the kernel state stays)."""
