"""The etcd leader dies under a BU load (issue 14, docs/cluster.md).

Bed (:mod:`tests.support.etcd_load_bed`): an active HA agent and a warm standby, both with
the etcd store and every member of a 3-member etcd cluster in ``[cluster] endpoints``, the
**leader first** (the member they talk to is the one that dies); 60 scripted MNs
(:mod:`tests.support.bu_load`) registered, then refreshing at 150 BU/s for 4 s, each MN with
one BU outstanding and a retransmission (sequence + 1) when no BA came within 1 s
(RFC 6275 §11.8). 1.5 s into the load the leader's etcd process gets SIGKILL.

What a user sees: no BU answered twice, no BA for a BU nobody sent, every BA status 0
(accepted), every MN's last BU answered (at worst after its retransmissions); afterwards
the bindings in etcd, in the active agent's cache and in the standby's cache are the same,
each the MN's last registration; the two remaining members elected a new leader. How long
the commits stalled is the benchmark's (bench/bench_etcd_leader_loss.py), not asserted here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from nfq_mip6.testbed import unique_prefix
from tests.support.bu_load import analyse
from tests.support.etcd_load_bed import EtcdLoadBed

pytestmark = pytest.mark.netns
pytest.importorskip("etcd3gw", reason="optional extra nfq-mip6[cluster] not installed")

MOBILE_NODES = 60


@pytest.fixture
def bed(tmp_path: Path) -> Iterator[EtcdLoadBed]:
    testbed = EtcdLoadBed(unique_prefix("el"), tmp_path, MOBILE_NODES)
    try:
        testbed.build()
        yield testbed
    finally:
        testbed.down()


def test_etcd_leader_killed_under_bu_load(bed: EtcdLoadBed) -> None:
    leader = bed.etcd.wait_leader()
    bed.start_agents(first=leader)
    active, standby = bed.agents["active"], bed.agents["standby"]
    assert active.control("cluster")["role"] == "active"
    assert standby.control("cluster")["role"] == "standby"

    record = bed.run_load(rate=150, seconds=4.0, kill=leader, kill_at=1.5)

    # the leader died during the load; the MNs went on (new BUs, retransmissions) after it
    assert record.kill_at is not None and leader.process is not None
    assert leader.process.poll() is not None
    seen = analyse(record)
    assert seen.answered_twice == [], seen.answered_twice
    assert seen.unmatched == [], seen.unmatched
    assert set(seen.statuses) == {0}, seen.statuses
    assert seen.last_unanswered == [], seen.last_unanswered
    assert any(sent > record.kill_at + 1.0 for sent, _latency in seen.latencies)

    # a new leader among the two members left
    new_leader = bed.etcd.wait_leader(not_=leader)
    assert new_leader is not leader and new_leader in bed.etcd.alive()

    # etcd = the MNs' last registrations = the active's cache = the standby's cache
    expected = bed.expected(record)
    assert bed.stored() == expected
    assert active.cache() == expected
    assert _wait_until(lambda: standby.cache() == expected, 10.0), _diff(standby.cache(), expected)
    assert active.control("cluster")["role"] == "active"


def _wait_until(predicate: Callable[[], bool], timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.1)
    return bool(predicate())


def _diff(got: dict[str, tuple[str, int]], want: dict[str, tuple[str, int]]) -> str:
    wrong = {k: (got.get(k), v) for k, v in want.items() if got.get(k) != v}
    extra = sorted(set(got) - set(want))
    return f"{len(wrong)} differ (got, want): {dict(list(wrong.items())[:5])}; extra {extra[:5]}"
