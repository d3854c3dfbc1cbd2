"""In-memory data planes for unit tests: :class:`FakeDataplane` (the Home Agent's
:class:`~nfq_mip6.dataplane.Dataplane`) and :class:`FakeMobileNodeKernel` (the Mobile Node's
:class:`~nfq_mip6.dataplane.MobileNodeKernel`). Both keep the state the kernel would hold in
plain containers and list every operation in ``log``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from ipaddress import IPv6Address, IPv6Interface, IPv6Network
from typing import Any

from nfq_mip6.dataplane import (
    Dataplane,
    DataplaneCounters,
    InterfaceAddress,
    MobileNodeKernel,
    ReconcileReport,
)
from nfq_mip6.errors import DataplaneError

__all__ = ["FakeDataplane", "FakeMobileNodeKernel"]


class FakeDataplane:
    """Records tunnels and proxies in dicts; ``log`` lists every operation in order."""

    backend = "fake"

    def __init__(self) -> None:
        self.counters = DataplaneCounters()
        self.routes: dict[IPv6Address, IPv6Address] = {}
        self.proxied: set[IPv6Address] = set()
        self.log: list[tuple[str, ...]] = []
        self.is_setup = False
        self.fail_next: int = 0  # make the next N installs raise (error-path tests)
        self.prefixes: dict[IPv6Network, IPv6Address] = {}  # RFC 3963 prefix -> CoA
        self.fail_prefixes = False  # make prefix installs raise (status 143 tests)

    def setup(self) -> None:
        self.is_setup = True
        self.log.append(("setup",))

    def install_tunnel(self, home_address: IPv6Address, care_of_address: IPv6Address) -> None:
        if self.fail_next > 0:
            self.fail_next -= 1
            self.counters.errors += 1
            raise DataplaneError(f"fake failure installing {home_address}")
        if home_address in self.routes:
            self.counters.tunnel_replacements += 1
        else:
            self.counters.tunnel_installs += 1
        self.routes[home_address] = care_of_address
        self.log.append(("install", str(home_address), str(care_of_address)))

    def remove_tunnel(self, home_address: IPv6Address) -> None:
        if self.routes.pop(home_address, None) is not None:
            self.counters.tunnel_removals += 1
        self.log.append(("remove", str(home_address)))

    def install_tunnels(self, bindings: Mapping[IPv6Address, IPv6Address]) -> int:
        for hoa, coa in bindings.items():
            self.install_tunnel(hoa, coa)
        return 0

    def remove_tunnels(self, home_addresses: Iterable[IPv6Address]) -> int:
        for hoa in home_addresses:
            self.remove_tunnel(hoa)
        return 0

    def tunnels(self) -> dict[IPv6Address, IPv6Address]:
        return dict(self.routes)

    def reconcile(self, wanted: Mapping[IPv6Address, IPv6Address]) -> ReconcileReport:
        stale = [hoa for hoa in self.routes if hoa not in wanted]
        kept = sum(1 for hoa, coa in wanted.items() if self.routes.get(hoa) == coa)
        added = sum(1 for hoa in wanted if hoa not in self.routes)
        replaced = len(wanted) - kept - added
        self.remove_tunnels(stale)
        self.install_tunnels({h: c for h, c in wanted.items() if self.routes.get(h) != c})
        return ReconcileReport(kept=kept, added=added, replaced=replaced, removed=len(stale))

    def install_prefix_routes(
        self,
        care_of_address: IPv6Address,
        prefixes: Sequence[IPv6Network],
        withdrawn: Sequence[IPv6Network] = (),
    ) -> None:
        if self.fail_prefixes:
            self.counters.errors += 1
            raise DataplaneError(f"fake failure routing {', '.join(map(str, prefixes))}")
        for prefix in prefixes:
            self.prefixes[prefix] = care_of_address
        for prefix in withdrawn:
            self.prefixes.pop(prefix, None)
        self.log.append(("prefixes", str(care_of_address), *map(str, prefixes)))

    def remove_prefix_routes(self, prefixes: Sequence[IPv6Network]) -> None:
        for prefix in prefixes:
            self.prefixes.pop(prefix, None)
        self.log.append(("remove-prefixes", *map(str, prefixes)))

    def prefix_routes(self) -> dict[IPv6Network, IPv6Address]:
        return dict(self.prefixes)

    def reconcile_prefixes(self, wanted: Mapping[IPv6Network, IPv6Address]) -> ReconcileReport:
        stale = [prefix for prefix in self.prefixes if prefix not in wanted]
        kept = sum(1 for prefix, coa in wanted.items() if self.prefixes.get(prefix) == coa)
        added = sum(1 for prefix in wanted if prefix not in self.prefixes)
        for prefix in stale:
            del self.prefixes[prefix]
        self.prefixes.update(wanted)
        return ReconcileReport(
            kept=kept, added=added, replaced=len(wanted) - kept - added, removed=len(stale)
        )

    def add_proxy(self, address: IPv6Address) -> None:
        self.proxied.add(address)
        self.log.append(("proxy", str(address)))

    def remove_proxy(self, address: IPv6Address) -> None:
        self.proxied.discard(address)
        self.log.append(("unproxy", str(address)))

    def add_proxies(self, addresses: Iterable[IPv6Address]) -> int:
        for address in addresses:
            self.add_proxy(address)
        return 0

    def remove_proxies(self, addresses: Iterable[IPv6Address]) -> int:
        for address in addresses:
            self.remove_proxy(address)
        return 0

    def proxies(self) -> set[IPv6Address]:
        return set(self.proxied)

    def shutdown(self, *, flush: bool) -> None:
        if flush:
            self.routes.clear()
            self.proxied.clear()
        self.log.append(("shutdown", "flush" if flush else "keep"))


class FakeMobileNodeKernel:
    """The Mobile Node's kernel in memory: where the HoA is, the tunnel, the decap CoAs.

    ``addresses`` are what :meth:`interface_addresses` reports (tests put entries there);
    ``fail_next`` makes the next N tunnel or home-address operations raise
    :class:`~nfq_mip6.errors.DataplaneError`; ``leftovers`` is what :meth:`adopt_leftovers`
    finds.
    """

    def __init__(self, home_address: IPv6Interface) -> None:
        self.home_address = home_address
        self.care_of_address: IPv6Address | None = None
        self.home_agent: IPv6Address | None = None
        self.home_address_away = False
        self.local_rule_moved = False
        self.decap: set[IPv6Address] = set()  # CoAs with a decap rule and route
        self.tunnel_source: IPv6Address | None = None
        self.carrier: tuple[bool, int | None] = (True, 1)
        self.addresses: list[InterfaceAddress] = []
        self.leftovers = False
        self.closed = False
        self.fail_next = 0
        self.log: list[tuple[str, ...]] = []

    def _maybe_fail(self, what: str) -> None:
        if self.fail_next > 0:
            self.fail_next -= 1
            raise DataplaneError(f"fake failure: {what}")

    def adopt_leftovers(self) -> bool:
        if self.leftovers:
            self.home_address_away = True
            self.local_rule_moved = True
        self.log.append(("adopt", str(self.leftovers)))
        return self.leftovers

    def carrier_state(self) -> tuple[bool, int | None]:
        return self.carrier

    def interface_addresses(self) -> list[InterfaceAddress]:
        return list(self.addresses)

    def recheck_link_local(self) -> list[IPv6Address]:
        self.log.append(("recheck_link_local",))
        return []

    def prepare_care_of_address(self, care_of_address: IPv6Address) -> None:
        self._maybe_fail(f"prepare {care_of_address}")
        self.local_rule_moved = True
        self.decap.add(care_of_address)
        self.tunnel_source = care_of_address
        self.log.append(("prepare", str(care_of_address)))

    def install_reverse_tunnel(self, care_of_address: IPv6Address, home_agent: IPv6Address) -> None:
        self._maybe_fail(f"tunnel {care_of_address} -> {home_agent}")
        self.prepare_care_of_address(care_of_address)
        self.decap = {care_of_address}  # make-before-break: the old CoAs go after
        self.care_of_address = care_of_address
        self.home_agent = home_agent
        self.log.append(("tunnel", str(care_of_address), str(home_agent)))

    def remove_reverse_tunnel(self) -> None:
        self.decap.clear()
        self.tunnel_source = None
        self.local_rule_moved = False
        self.care_of_address = None
        self.home_agent = None
        self.log.append(("untunnel",))

    def move_home_address_away(self) -> None:
        self._maybe_fail("home address away")
        self.home_address_away = True
        self.log.append(("hoa away",))

    def move_home_address_home(self) -> None:
        self._maybe_fail("home address home")
        self.home_address_away = False
        self.log.append(("hoa home",))

    def purge_visited_link_state(
        self, keep_prefixes: tuple[IPv6Network, ...], keep_router: IPv6Address | None
    ) -> list[IPv6Interface]:
        removed = [
            entry.interface
            for entry in self.addresses
            if entry.address != self.home_address.ip
            and not any(entry.address in prefix for prefix in keep_prefixes)
        ]
        self.addresses = [entry for entry in self.addresses if entry.interface not in removed]
        self.log.append(("purge", *(str(i) for i in removed)))
        return removed

    def snapshot(self) -> dict[str, Any]:
        return {
            "backend": "fake",
            "care_of_address": str(self.care_of_address) if self.care_of_address else None,
            "home_agent": str(self.home_agent) if self.home_agent else None,
            "home_address_away": self.home_address_away,
            "operations": len(self.log),
        }

    def cleanup(self) -> None:
        try:
            self.remove_reverse_tunnel()
        finally:
            if self.home_address_away:
                self.move_home_address_home()

    def close(self) -> None:
        self.closed = True
        self.log.append(("close",))


def _fakes_follow_the_protocols(
    home_agent: FakeDataplane, mobile_node: FakeMobileNodeKernel
) -> tuple[Dataplane, MobileNodeKernel]:
    """Never called: mypy checks here that the fakes implement the Protocols."""
    return home_agent, mobile_node
