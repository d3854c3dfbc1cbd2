"""The reverse tunnel's inner-source check for mobile routers (RFC 3963 §6.5), in the kernel.

A packet a mobile router reverse-tunnels to the HA is decapsulated by the ``End.DX6`` route of
its care-of address and forwarded (docs/kernel-notes.md §5); the kernel does not look at the
inner source. RFC 3963 §6.5 wants it to be the router's home address or inside one of its
registered Mobile Network Prefixes. Two agent-owned chains of ``rules/ha.rules`` do it, with
rules this class adds and removes per mobile router binding:

* raw ``NFQMIP6-HA-MR`` marks the *outer* packet from the router's care-of address to the HA
  with the router's mark (``MARK_BASE | n``); ``End.DX6`` keeps the mark on the inner packet;
* filter ``NFQMIP6-HA-MRSRC`` (first in FORWARD) returns a packet with that mark whose source
  is the home address or one of the prefixes; the chain's last, static rule drops every other
  marked packet, and its counter is the number of refused packets.

With ``mss`` (the HA's clamp toward the home prefix, docs/kernel-notes.md §7) each prefix
also gets the TCP MSS clamp that the tunnel needs in both directions: the encapsulation
happens at route input on both ends, so a full-size segment would grow 40 octets past the
link MTU and its Packet Too Big go to the encapsulating node itself (TCP to a mobile network
node moved nothing without it). SYNs toward the prefix are clamped in mangle
``NFQMIP6-HA-MSS`` (PREROUTING, before the HA encapsulates: what the mobile network node may
send), SYNs from the prefix in ``NFQMIP6-HA-MRSRC`` (FORWARD, after ``End.DX6``: what the
correspondent may send), so the router and its nodes need nothing.

Plain mobile nodes get no rules: their reverse tunnel is unchanged. ``run`` executes one
ip6tables command (tests replace it); a refused rule is logged and counted, never raised.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from ipaddress import IPv6Address, IPv6Network
from typing import Final

from nfq_mip6.io.iptables import chain_counters, run_ip6tables

log = logging.getLogger(__name__)

MARK_CHAIN: Final = "NFQMIP6-HA-MR"
SOURCE_CHAIN: Final = "NFQMIP6-HA-MRSRC"
MSS_CHAIN: Final = "NFQMIP6-HA-MSS"  # mangle PREROUTING (rules/ha.rules)
MARK_BASE: Final = 0x62770000
MARK_MASK: Final = 0xFFFF0000


@dataclass(frozen=True, slots=True)
class _Router:
    mark: int
    care_of_address: IPv6Address
    sources: tuple[str, ...]  # the home address /128 and the prefixes


class MobileNetworkSourceCheck:
    """Per mobile router binding: mark its reverse-tunnelled packets, accept its sources."""

    def __init__(
        self,
        ha_address: IPv6Address,
        *,
        rules: bool = True,
        run: Callable[[list[str]], int] | None = None,
        mss: int | None = None,
    ) -> None:
        self._ha = ha_address
        self._mss = mss
        self._enabled = rules
        self._run = run or run_ip6tables
        self._routers: dict[IPv6Address, _Router] = {}
        self._free = 1
        self.counters: dict[str, int] = {"rule_errors": 0}

    @property
    def routers(self) -> dict[IPv6Address, tuple[IPv6Address, tuple[str, ...]]]:
        return {hoa: (r.care_of_address, r.sources) for hoa, r in self._routers.items()}

    def _mark_rule(self, router: _Router) -> list[str]:
        return [
            "-s", f"{router.care_of_address}/128", "-d", f"{self._ha}/128", "-p", "41",
            "-j", "MARK", "--set-xmark", f"{router.mark:#x}/0xffffffff",
        ]  # fmt: skip

    def _source_rule(self, router: _Router, source: str) -> list[str]:
        return ["-m", "mark", "--mark", f"{router.mark:#x}", "-s", source, "-j", "RETURN"]

    def _syn_clamp(self) -> list[str]:
        assert self._mss is not None
        return [
            "-p", "tcp", "--tcp-flags", "SYN,RST", "SYN", "-m", "tcpmss", "--mss",
            f"{self._mss + 1}:65535", "-j", "TCPMSS", "--set-mss", str(self._mss),
        ]  # fmt: skip

    def _clamp_rules(self, router: _Router) -> list[list[str]]:
        """(table, chain, rule) triples as argument lists without the operation: the clamps
        toward and from each prefix (none without ``mss``)."""
        if self._mss is None:
            return []
        rules: list[list[str]] = []
        for prefix in router.sources[1:]:
            rules.append(["mangle", MSS_CHAIN, "-d", prefix, *self._syn_clamp()])
            rules.append(
                ["filter", SOURCE_CHAIN, "-m", "mark", "--mark", f"{router.mark:#x}",
                 "-s", prefix, *self._syn_clamp()]
            )  # fmt: skip
        return rules

    def _apply(self, args: list[str]) -> bool:
        if not self._enabled:
            return True
        if self._run(args) != 0:
            self.counters["rule_errors"] += 1
            return False
        return True

    def install(
        self,
        home_address: IPv6Address,
        care_of_address: IPv6Address,
        prefixes: Sequence[IPv6Network],
    ) -> bool:
        """The router ``home_address`` reverse-tunnels from ``care_of_address`` with sources
        in its home address and ``prefixes``; replaces what was there for it. New rules go in
        before the old ones come out, so no packet of the router is refused in between."""
        old = self._routers.get(home_address)
        sources = (f"{home_address}/128", *(str(prefix) for prefix in prefixes))
        if old is not None and (old.care_of_address, old.sources) == (care_of_address, sources):
            return True
        mark = MARK_BASE | self._free
        self._free = self._free % 0xFFFF + 1
        router = _Router(mark, care_of_address, sources)
        ok = all(
            [  # every rule is tried, a refusal does not stop the others
                self._apply(
                    ["-t", "filter", "-I", SOURCE_CHAIN, "1", *self._source_rule(router, s)]
                )
                for s in sources
            ]
        )
        for table, chain, *rule in self._clamp_rules(router):  # above the RETURNs
            ok = self._apply(["-t", table, "-I", chain, "1", *rule]) and ok
        ok = self._apply(["-t", "raw", "-I", MARK_CHAIN, "1", *self._mark_rule(router)]) and ok
        self._routers[home_address] = router
        if old is not None:
            ok = self._delete(old) and ok
        return ok

    def remove(self, home_address: IPv6Address) -> bool:
        router = self._routers.pop(home_address, None)
        return router is None or self._delete(router)

    def _delete(self, router: _Router) -> bool:
        ok = self._apply(["-t", "raw", "-D", MARK_CHAIN, *self._mark_rule(router)])
        for source in router.sources:
            ok = (
                self._apply(
                    ["-t", "filter", "-D", SOURCE_CHAIN, *self._source_rule(router, source)]
                )
                and ok
            )
        for table, chain, *rule in self._clamp_rules(router):
            ok = self._apply(["-t", table, "-D", chain, *rule]) and ok
        return ok

    def forget(self) -> None:
        """Forget the rules without touching the kernel (they went with the chains)."""
        self._routers.clear()


def rejected_packets() -> int:
    """Packets refused so far (the packet counter of ``NFQMIP6-HA-MRSRC``'s last, static
    drop rule); 0 when the chain is not loaded."""
    rows = chain_counters("filter", SOURCE_CHAIN)
    return rows[-1][0] if rows else 0
