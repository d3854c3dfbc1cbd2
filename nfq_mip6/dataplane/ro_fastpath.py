"""Route-optimization fast path (RFC 6275 §9.3, §11.3): the Protocol and an in-memory fake.

The agent (CN or MN role) keeps one entry per route-optimized binding, key (home address,
peer), value care-of address, where ``peer`` is the CN address the binding was made with;
the kernel side rewrites the data packets of those bindings without queueing them to user
space. :mod:`nfq_mip6.dataplane.ro_bpf` is the real one (tc BPF programs and a BPF hash
map); :class:`FakeRouteOptimizationFastPath` records the same operations for unit tests.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from ipaddress import IPv6Address
from typing import Any, Final, Protocol

from nfq_mip6.dataplane import DataplaneError, ReconcileReport

__all__ = [
    "COUNTER_NAMES",
    "BindingKey",
    "FakeRouteOptimizationFastPath",
    "FastPathFactory",
    "RouteOptimizationFastPath",
    "reconcile_plan",
]

BindingKey = tuple[IPv6Address, IPv6Address]
"""(home address, peer): the peer is the CN address (on the CN: its own address)."""

COUNTER_NAMES: Final = (
    "out_rewritten",
    "out_not_bound",
    "out_skipped",
    "out_errors",
    "in_rewritten",
    "in_not_ours",
    "in_punted",
    "in_errors",
)
"""The per-CPU counter slots of the programs, in the order of ``ro.bpf.c``."""


class RouteOptimizationFastPath(Protocol):
    """Kernel rewrites for the route-optimized bindings of one role (``"cn"`` or ``"mn"``)."""

    kind: str
    role: str

    def start(self) -> str:
        """Load (or adopt what a previous agent left) and attach; returns ``"loaded"`` or
        ``"adopted"``. Raises :class:`~nfq_mip6.dataplane.DataplaneError` with the reason
        when the fast path cannot run here."""

    def install(
        self,
        home_address: IPv6Address,
        peer: IPv6Address,
        care_of_address: IPv6Address,
        *,
        from_home_address_only: bool = False,
    ) -> None:
        """Rewrite the binding's packets from now on; replaces a CoA atomically.
        ``from_home_address_only`` (MN, the peer is its home agent): only packets from the
        home address leave by the binding's route, never the tunnel's or the BUs (§11.3.1)."""

    def remove(self, home_address: IPv6Address, peer: IPv6Address) -> None:
        """Stop rewriting the binding's packets (no error if there is none)."""

    def bindings(self) -> dict[BindingKey, IPv6Address]:
        """The entries the kernel holds now."""

    def reconcile(self, wanted: Mapping[BindingKey, IPv6Address]) -> ReconcileReport:
        """Make the kernel's entries equal ``wanted``: no duplicates, nothing stale."""

    def counters(self) -> dict[str, int]:
        """The programs' counters (:data:`COUNTER_NAMES`), summed over the CPUs."""

    def snapshot(self) -> dict[str, Any]:
        """For ``stats``: kind, interfaces, entries, counters."""

    def stop(self, *, flush: bool) -> None:
        """``flush=True`` detaches the programs and removes entries and routes (clean stop);
        ``flush=False`` leaves everything in the kernel so traffic keeps flowing."""


FastPathFactory = Callable[
    [str, str, tuple[str, ...]], tuple[RouteOptimizationFastPath | None, str]
]
"""(role, ``[agent] ro_datapath``, interfaces) -> (started fast path or None, why)."""


def reconcile_plan(
    have: Mapping[BindingKey, IPv6Address], wanted: Mapping[BindingKey, IPv6Address]
) -> tuple[list[BindingKey], dict[BindingKey, IPv6Address], ReconcileReport]:
    """What to delete and what to (re)write so that ``have`` becomes ``wanted``."""
    stale = [key for key in have if key not in wanted]
    write = {key: coa for key, coa in wanted.items() if have.get(key) != coa}
    kept = len(wanted) - len(write)
    added = sum(1 for key in write if key not in have)
    report = ReconcileReport(
        kept=kept, added=added, replaced=len(write) - added, removed=len(stale)
    )
    return stale, write, report


class FakeRouteOptimizationFastPath:
    """In-memory fast path: ``entries`` is the map, ``log`` every operation in order."""

    kind = "fake"

    def __init__(self, role: str, *, fail_start: str | None = None) -> None:
        self.role = role
        self.entries: dict[BindingKey, IPv6Address] = {}
        self.log: list[tuple[str, ...]] = []
        self.started = False
        self.fail_start = fail_start  # a reason: start() raises DataplaneError with it
        self.rewritten = 0
        self.from_home_address_only: set[BindingKey] = set()
        """Entries installed for the home agent (their rule selects the HoA as source)."""

    def start(self) -> str:
        if self.fail_start is not None:
            raise DataplaneError(self.fail_start)
        self.started = True
        self.log.append(("start",))
        return "loaded"

    def install(
        self,
        home_address: IPv6Address,
        peer: IPv6Address,
        care_of_address: IPv6Address,
        *,
        from_home_address_only: bool = False,
    ) -> None:
        self.entries[(home_address, peer)] = care_of_address
        if from_home_address_only:
            self.from_home_address_only.add((home_address, peer))
        else:
            self.from_home_address_only.discard((home_address, peer))
        self.log.append(("install", str(home_address), str(peer), str(care_of_address)))

    def remove(self, home_address: IPv6Address, peer: IPv6Address) -> None:
        self.entries.pop((home_address, peer), None)
        self.log.append(("remove", str(home_address), str(peer)))

    def bindings(self) -> dict[BindingKey, IPv6Address]:
        return dict(self.entries)

    def reconcile(self, wanted: Mapping[BindingKey, IPv6Address]) -> ReconcileReport:
        stale, write, report = reconcile_plan(self.entries, wanted)
        for key in stale:
            self.remove(*key)
        for (home_address, peer), coa in write.items():
            self.install(home_address, peer, coa)
        return report

    def counters(self) -> dict[str, int]:
        values = dict.fromkeys(COUNTER_NAMES, 0)
        values["out_rewritten"] = self.rewritten
        return values

    def snapshot(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "entries": len(self.entries),
            "counters": self.counters(),
        }

    def stop(self, *, flush: bool) -> None:
        if flush:
            self.entries.clear()
        self.started = False
        self.log.append(("stop", "flush" if flush else "keep"))
