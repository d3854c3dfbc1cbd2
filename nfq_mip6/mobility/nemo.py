"""NEMO Basic Support at the Home Agent (RFC 3963 §6): which Mobile Network Prefixes a mobile
router may register. Pure decisions, no I/O; the :class:`~nfq_mip6.mobility.home_agent.HomeAgent`
calls them while it processes a Binding Update with the R flag (docs/nemo.md).

* **Policy** (RFC 3963 §6.1.2, the HA's prefix table, configured per mobile node): a
  :class:`MobileRouterPolicy` names the home addresses it covers (the same ranges an RFC 4285
  key covers, so the policy follows the key that authenticated the BU) and the prefixes that
  router may claim. A home address no policy covers may not act as a mobile router (140).
* **Implicit mode** (RFC 3963 §6.2): a BU with R and no Mobile Network Prefix option
  registers every prefix the policy lists.
* **Explicit mode** (RFC 3963 §6.2): the BU lists prefixes; each must be a valid prefix (141)
  covered by the policy (142) and not held by another mobile router's binding (142).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from ipaddress import IPv6Address, IPv6Network

from nfq_mip6.wire.mh import BAStatus
from nfq_mip6.wire.options import MobileNetworkPrefix, MobilityOption


@dataclass(frozen=True, slots=True)
class MobileRouterPolicy:
    """One mobile router's entry in the HA's prefix table (RFC 3963 §6.1.2).

    Attributes:
        home_addresses: the home addresses (or ranges) this entry covers.
        prefixes: the Mobile Network Prefixes the router may register; in implicit mode all of
            them are registered.
    """

    home_addresses: tuple[IPv6Network, ...]
    prefixes: tuple[IPv6Network, ...]

    def covers(self, home_address: IPv6Address) -> bool:
        return any(home_address in network for network in self.home_addresses)

    def authorizes(self, prefix: IPv6Network) -> bool:
        """A registered prefix must be one of the router's prefixes or lie inside one."""
        return any(prefix.subnet_of(allowed) for allowed in self.prefixes)


@dataclass(frozen=True, slots=True)
class PrefixDecision:
    """``status`` None: accepted with ``prefixes``; else the BA status (140/141/142)."""

    status: int | None
    prefixes: tuple[IPv6Network, ...] = ()
    reason: str = ""


def policy_for(
    policies: Iterable[MobileRouterPolicy], home_address: IPv6Address
) -> MobileRouterPolicy | None:
    for policy in policies:
        if policy.covers(home_address):
            return policy
    return None


def requested_prefixes(options: Sequence[MobilityOption]) -> tuple[MobileNetworkPrefix, ...]:
    """The BU's Mobile Network Prefix options, in order (RFC 3963 §4.3)."""
    return tuple(option for option in options if isinstance(option, MobileNetworkPrefix))


def invalid_prefix_reason(option: MobileNetworkPrefix) -> str | None:
    """RFC 3963 §6.2 status 141: why a Mobile Network Prefix option is not a usable prefix.

    A prefix needs a length of 1–128, no bits set beyond that length, and must be a global
    unicast prefix: not unspecified, loopback, link-local, multicast or IPv4-mapped space.
    """
    network = option.network
    if network is None or option.prefix_length == 0:
        return f"prefix length {option.prefix_length}"
    if network.network_address != option.prefix:
        return f"{option.prefix}/{option.prefix_length} has bits set beyond the prefix length"
    address = network.network_address
    if (
        network.is_multicast
        or network.is_link_local
        or address.is_loopback
        or address.is_unspecified
        or address.ipv4_mapped is not None
        or network.subnet_of(IPv6Network("fe80::/10"))
    ):
        return f"{network} is not a global unicast prefix"
    return None


def decide_prefixes(
    policy: MobileRouterPolicy | None,
    options: Sequence[MobilityOption],
    home_prefixes: Sequence[IPv6Network],
    held_by_others: Iterable[IPv6Network],
) -> PrefixDecision:
    """RFC 3963 §6.2: the prefixes a BU with R = 1 registers, or the status that refuses it.

    Checks, in order: the home address may act as a mobile router (else 140); explicit mode:
    each option is a valid prefix (else 141), not overlapping a home link prefix (141),
    authorized by the policy (else 142) and not registered by another router (142);
    implicit mode (no option): the policy's prefixes.
    """
    if policy is None:
        return PrefixDecision(
            BAStatus.MOBILE_ROUTER_OPERATION_NOT_PERMITTED, reason="not a mobile router"
        )
    requested = requested_prefixes(options)
    if not requested:
        prefixes = policy.prefixes
    else:
        chosen: list[IPv6Network] = []
        for option in requested:
            reason = invalid_prefix_reason(option)
            if reason is not None:
                return PrefixDecision(BAStatus.INVALID_PREFIX, reason=reason)
            network = option.network
            assert network is not None
            if any(network.overlaps(home) for home in home_prefixes):
                return PrefixDecision(
                    BAStatus.INVALID_PREFIX, reason=f"{network} overlaps the home link"
                )
            if not policy.authorizes(network):
                return PrefixDecision(
                    BAStatus.NOT_AUTHORIZED_FOR_PREFIX, reason=f"{network} not authorized"
                )
            if network not in chosen:
                chosen.append(network)
        prefixes = tuple(chosen)
    held = tuple(held_by_others)
    for network in prefixes:
        if any(network.overlaps(other) for other in held):
            return PrefixDecision(
                BAStatus.NOT_AUTHORIZED_FOR_PREFIX,
                reason=f"{network} is registered by another mobile router",
            )
    return PrefixDecision(None, prefixes)
