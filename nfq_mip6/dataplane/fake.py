"""In-memory :class:`~nfq_mip6.dataplane.Dataplane` for unit tests (faucet's FakeOFTable idea)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from ipaddress import IPv6Address

from nfq_mip6.dataplane import DataplaneCounters, ReconcileReport

__all__ = ["FakeDataplane"]


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

    def setup(self) -> None:
        self.is_setup = True
        self.log.append(("setup",))

    def install_tunnel(self, home_address: IPv6Address, care_of_address: IPv6Address) -> None:
        from nfq_mip6.dataplane import DataplaneError

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

    def add_proxy(self, address: IPv6Address) -> None:
        self.proxied.add(address)
        self.log.append(("proxy", str(address)))

    def remove_proxy(self, address: IPv6Address) -> None:
        self.proxied.discard(address)
        self.log.append(("unproxy", str(address)))

    def proxies(self) -> set[IPv6Address]:
        return set(self.proxied)

    def shutdown(self, *, flush: bool) -> None:
        if flush:
            self.routes.clear()
            self.proxied.clear()
        self.log.append(("shutdown", "flush" if flush else "keep"))
