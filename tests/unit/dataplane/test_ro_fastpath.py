"""The route-optimization fast-path Protocol's fake and the reconcile plan (no kernel)."""

from __future__ import annotations

from ipaddress import IPv6Address

import pytest

from nfq_mip6.dataplane import DataplaneError, ReconcileReport
from nfq_mip6.dataplane.ro_fastpath import (
    COUNTER_NAMES,
    FakeRouteOptimizationFastPath,
    reconcile_plan,
)
from tests.support.vectors import HOA

HOA2 = IPv6Address("2001:db8:a::200")
CN = IPv6Address("2001:db8:c::2")
COA = IPv6Address("2001:db8:f::2")
COA2 = IPv6Address("2001:db8:e::2")


def test_reconcile_plan_deletes_stale_and_writes_only_what_differs() -> None:
    have = {(HOA, CN): COA, (HOA2, CN): COA}
    wanted = {(HOA, CN): COA2, (IPv6Address("2001:db8:a::300"), CN): COA}
    stale, write, report = reconcile_plan(have, wanted)
    assert stale == [(HOA2, CN)]
    assert write == wanted
    assert report == ReconcileReport(kept=0, added=1, replaced=1, removed=1)
    assert reconcile_plan(wanted, wanted)[2] == ReconcileReport(kept=2)


def test_fake_records_installs_removals_and_reconciles() -> None:
    fast_path = FakeRouteOptimizationFastPath("cn")
    assert fast_path.start() == "loaded"
    fast_path.install(HOA, CN, COA)
    fast_path.install(HOA, CN, COA2)  # a CoA change replaces the entry
    assert fast_path.bindings() == {(HOA, CN): COA2}
    report = fast_path.reconcile({(HOA2, CN): COA})
    assert report.removed == 1 and report.added == 1
    assert fast_path.bindings() == {(HOA2, CN): COA}
    assert set(fast_path.snapshot()["counters"]) == set(COUNTER_NAMES)
    fast_path.stop(flush=True)
    assert fast_path.bindings() == {}
    assert fast_path.log[-1] == ("stop", "flush")


def test_fake_start_failure_carries_the_reason() -> None:
    fast_path = FakeRouteOptimizationFastPath("mn", fail_start="no CAP_BPF")
    with pytest.raises(DataplaneError, match="no CAP_BPF"):
        fast_path.start()
