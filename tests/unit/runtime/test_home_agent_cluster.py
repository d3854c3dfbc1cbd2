"""The HA runtime as a cluster member (docs/cluster.md) on the fake data plane, with stand-ins
for the etcd store and replica: a BA only once its commit is confirmed, no BA on a timeout,
a conflict decided again on the fresh state, a standby that follows and answers nothing, the
switch to active."""

from __future__ import annotations

import time
from collections.abc import Iterator
from ipaddress import IPv6Address
from pathlib import Path
from typing import Any

import pytest

from nfq_mip6.config import AgentConfig, ClusterConfig, HomeAgentConfig, Role
from nfq_mip6.dataplane.fake import FakeDataplane
from nfq_mip6.errors import StoreError
from nfq_mip6.io.host import HomeLinkAddressing
from nfq_mip6.io.nfqueue import QueuedPacket
from nfq_mip6.runtime.home_agent import HomeAgentRuntime
from nfq_mip6.runtime.home_agent_cluster import PROXY_CHUNK
from nfq_mip6.store.binding_store import (
    BindingCommit,
    BindingSnapshot,
    CommitConflict,
    CommitTimeout,
)
from nfq_mip6.store.database import StoredBinding
from nfq_mip6.store.etcd_replica import ReplicaChanges
from nfq_mip6.wire import (
    BAStatus,
    BindingUpdate,
    BUFlags,
    build_ipv6_packet,
    build_mh,
    home_agents_anycast,
)
from nfq_mip6.wire.mh import IPPROTO_MH
from tests.support import howto
from tests.support.factories import runtime_context
from tests.unit.runtime.test_home_agent import COA, COA2, FakeND, answer, bu

HOA = howto.HOA


class FakeStore:
    """What the runtime uses of EtcdBindingStore; the test completes the commits."""

    def __init__(self, snapshot: BindingSnapshot | None = None) -> None:
        self.submitted: list[tuple[BindingCommit, object]] = []
        self.done: list[tuple[object, StoreError | None]] = []
        self._snapshot = snapshot or BindingSnapshot((), {}, 5)
        self.revision = self._snapshot.revision
        self.reachable: bool | None = True
        self.checked_at = time.monotonic()
        self.counters: dict[str, int] = {}
        self.seeded: dict[str, int] = {}
        self.closed = False

    def completions(self) -> FakeStore:
        return self

    def fileno(self) -> int:
        return -1

    def drain(self) -> list[tuple[object, StoreError | None]]:
        out, self.done = self.done, []
        return out

    def submit(self, change: BindingCommit, token: object) -> None:
        self.submitted.append((change, token))

    def finish(self, error: StoreError | None = None) -> BindingCommit:
        change, token = self.submitted.pop(0)
        self.done.append((token, error))
        return change

    def snapshot(self) -> BindingSnapshot:
        return self._snapshot

    def current_revision(self, timeout: float | None = None) -> int:
        return self.revision

    def seed_revisions(self, revisions: dict[str, int]) -> None:
        self.seeded.update(revisions)

    def replace_all(self, rows: object) -> None: ...

    def close(self) -> None:
        self.closed = True


class FakeReplica:
    def __init__(self, rows: dict[IPv6Address, StoredBinding | None], revision: int) -> None:
        self.pending = ReplicaChanges(revision, dict(rows), {}, full=True)
        self.revision = revision
        self.stopped = False

    def fileno(self) -> int:
        return -1

    def bootstrap(self) -> int:
        return self.revision

    def start_following(self) -> None: ...

    def start_in_background(self) -> None: ...

    def take_changes(self) -> ReplicaChanges:
        out, self.pending = self.pending, ReplicaChanges(self.revision, {}, {})
        return out

    def push(self, hoa: IPv6Address, row: StoredBinding | None, revision: int) -> None:
        self.revision = revision
        received = (*self.pending.received, (revision, time.monotonic()))
        self.pending = ReplicaChanges(
            revision, {**self.pending.bindings, hoa: row}, {}, received=received
        )

    def wait_for(self, revision: int, timeout: float) -> bool:
        return self.revision >= revision

    def key_revisions(self) -> dict[str, int]:
        return {f"/nfq-mip6/v1/vha1/b/{HOA}": self.revision}

    def stop(self) -> None:
        self.stopped = True

    def close(self) -> None: ...


def register(rt: HomeAgentRuntime, sequence: int, coa: IPv6Address = COA) -> None:
    """A first registration: the BU, then the proxy DAD (FakeND) done on the next timer."""
    rt.on_queued_packet(QueuedPacket(bu(sequence, coa=coa)), 100.0)
    rt.on_timer(101.0)


def row(seq: int, coa: IPv6Address = COA) -> StoredBinding:
    return StoredBinding("ha", HOA, coa, seq, 0xC000, 400, time.time() + 300)


def start(
    tmp_path: Path,
    store: FakeStore,
    *,
    role: str = "active",
    replica: FakeReplica | None = None,
    max_tunnel_nr: int = 64,
) -> tuple[HomeAgentRuntime, FakeDataplane, list[bytes]]:
    fake = FakeDataplane()
    sent: list[bytes] = []
    runtime = HomeAgentRuntime(
        dataplane_factory=lambda link, backend: fake,
        nd_factory=lambda link: FakeND(),
        load_rules=False,
        home_link=HomeLinkAddressing("eth0", howto.HA, howto.PREFIX, 1500),
        cluster_store=store,
        cluster_replica=(lambda settings: replica) if replica is not None else None,
    )
    config = AgentConfig(
        role=Role.HA,
        source=tmp_path / "ha.toml",
        state_dir=tmp_path,
        ha=HomeAgentConfig(max_binding_lifetime=400, max_tunnel_nr=max_tunnel_nr),
        cluster=ClusterConfig(endpoints=("http://127.0.0.1:2379",), name="vha1", role=role),
    )
    runtime.start(runtime_context(config, sent.append, lambda: 100.0))
    return runtime, fake, sent


@pytest.fixture
def active(
    tmp_path: Path,
) -> Iterator[tuple[HomeAgentRuntime, FakeDataplane, list[bytes], FakeStore]]:
    store = FakeStore()
    rt, fake, sent = start(tmp_path, store)
    yield rt, fake, sent, store
    rt.stop()


def test_ba_only_after_the_commit(active: Any) -> None:
    rt, fake, sent, store = active
    register(rt, 1)
    assert sent == [] and fake.tunnels() == {}  # nothing until etcd confirms
    ((change, _token),) = store.submitted
    assert [(r.home_address, r.care_of_address, r.sequence) for r in change.upserts] == [
        (HOA, COA, 1)
    ]
    store.finish()
    rt.cluster.on_commits()
    ba, dst, _rh2 = answer(sent)
    assert (ba.status, ba.sequence, dst) == (BAStatus.ACCEPTED, 1, COA)
    assert fake.tunnels() == {HOA: COA} and HOA in fake.proxies()
    assert rt.cluster.counters["commits"] == 1


def test_timeout_sends_no_ba_and_undoes_the_decision(active: Any) -> None:
    rt, fake, sent, store = active
    register(rt, 1)
    store.finish(CommitTimeout("etcd: no answer"))
    rt.cluster.on_commits()
    assert sent == [] and fake.tunnels() == {} and HOA not in rt.core.cache
    assert rt.cluster.counters["timeouts"] == 1
    assert rt.handle_control({"cmd": "cluster"})["counters"]["timeouts"] == 1
    # the MN's retransmission (sequence + 1) is a first registration again
    register(rt, 2)
    store.finish()
    rt.cluster.on_commits()
    assert answer(sent)[0].status == BAStatus.ACCEPTED


def test_conflict_redecides_on_the_fresh_state(active: Any) -> None:
    """Another instance committed sequence 9: the BU with 5 is answered 135 with 9."""
    rt, fake, sent, store = active
    register(rt, 1)
    store.finish()
    rt.cluster.on_commits()
    sent.clear()
    rt.on_queued_packet(QueuedPacket(bu(5)), 102.0)  # a refresh, decided on sequence 1
    fresh = BindingSnapshot((row(9, COA2),), {}, 20)
    store.finish(CommitConflict("changed", fresh))
    rt.cluster.on_commits()
    ba, _dst, _rh2 = answer(sent)
    assert (ba.status, ba.sequence) == (BAStatus.SEQUENCE_NUMBER_OUT_OF_WINDOW, 9)
    assert fake.tunnels() == {HOA: COA2}  # the fast path follows the fresh binding
    assert store.submitted == []  # a 135 changes nothing: nothing to commit
    assert rt.cluster.counters["conflicts"] == 1 and rt.cluster.counters["redecided"] == 1


def test_second_bu_waits_for_the_first_commit(active: Any) -> None:
    rt, _fake, sent, store = active
    register(rt, 1)
    rt.on_queued_packet(QueuedPacket(bu(2, coa=COA2)), 101.1)
    assert len(store.submitted) == 1 and rt.cluster.counters["held"] == 1
    store.finish()
    rt.cluster.on_commits()
    assert answer(sent)[0].sequence == 1
    ((change, _token),) = store.submitted  # decided once the first was committed
    assert change.upserts[0].sequence == 2
    store.finish()
    rt.cluster.on_commits()
    assert answer(sent)[0].sequence == 2


def test_of_several_waiting_bus_only_the_latest_is_decided(active: Any) -> None:
    """Two more BUs arrive while the first one's commit is in flight: once it is committed,
    only the most recent one is decided and committed (the MN takes only a BA for its most
    recent BU); the one in between is counted superseded and gets no BA."""
    rt, _fake, sent, store = active
    register(rt, 1)
    rt.on_queued_packet(QueuedPacket(bu(2, coa=COA2)), 101.1)
    rt.on_queued_packet(QueuedPacket(bu(3, coa=COA2)), 101.2)
    assert rt.cluster.counters["held"] == 2
    store.finish()
    rt.cluster.on_commits()
    assert answer(sent)[0].sequence == 1
    ((change, _token),) = store.submitted
    assert change.upserts[0].sequence == 3 and rt.cluster.counters["superseded"] == 1
    sent.clear()
    store.finish()
    rt.cluster.on_commits()
    assert len(sent) == 1 and answer(sent)[0].sequence == 3


def test_active_restores_from_the_snapshot(tmp_path: Path) -> None:
    store = FakeStore(BindingSnapshot((row(7),), {}, 30))
    rt, fake, _sent = start(tmp_path, store)
    try:
        assert fake.tunnels() == {HOA: COA} and HOA in fake.proxies()
        entry = rt.core.cache.get(HOA)
        assert entry is not None and entry.sequence == 7
    finally:
        rt.stop()
    assert store.closed


def test_standby_follows_answers_nothing_then_takes_over(tmp_path: Path) -> None:
    store = FakeStore(BindingSnapshot((), {}, 40))
    replica = FakeReplica({HOA: row(7)}, 40)
    rt, fake, sent = start(tmp_path, store, role="standby", replica=replica)
    try:
        # bootstrapped: binding and tunnel route, no proxy ND (not even DHAAD's anycast)
        assert fake.tunnels() == {HOA: COA} and fake.proxies() == set()
        assert rt.handle_control({"cmd": "cache"})["cluster"]["role"] == "standby"
        # a change committed by the active arrives through the replica
        replica.push(HOA, row(8, COA2), 41)
        rt.cluster.on_replica()
        assert fake.tunnels() == {HOA: COA2} and rt.core.cache.get(HOA).sequence == 8
        # no BA, no expiry
        rt.on_queued_packet(QueuedPacket(bu(9, coa=COA2)), 100.0)
        assert sent == [] and store.submitted == []
        assert rt.cluster.counters["standby_dropped"] == 1
        assert rt.next_deadline() is None
        # takeover: caught up, answering, proxies added on the loop's next turn
        answer_ = rt.handle_control({"cmd": "cluster", "action": "active"})
        assert answer_["ok"] and answer_["role"] == "active" and answer_["caught_up"]
        assert replica.stopped and store.seeded
        assert answer_["proxy_pending"] == 2 and rt.next_deadline() == 0.0
        rt.on_timer(100.0)
        assert fake.proxies() == {HOA, home_agents_anycast(howto.PREFIX)}
        assert rt.handle_control({"cmd": "cluster"})["proxy_pending"] == 0
        rt.on_queued_packet(QueuedPacket(bu(9, coa=COA2)), 101.0)
        store.finish()
        rt.cluster.on_commits()
        assert answer(sent)[0].status == BAStatus.ACCEPTED  # sequence + 1: status 0
        # and back to standby: proxies go, routes stay
        assert rt.handle_control({"cmd": "cluster", "action": "standby"})["role"] == "standby"
        assert fake.proxies() == set() and fake.tunnels() == {HOA: COA2}
    finally:
        rt.stop()


def bu_for(hoa: IPv6Address, sequence: int, lifetime: int = 0xFFFF) -> bytes:
    mh = build_mh(BindingUpdate(sequence, BUFlags.A | BUFlags.H, lifetime), hoa, howto.HA)
    return build_ipv6_packet(COA, howto.HA, IPPROTO_MH, mh, home_address=hoa)


def test_takeover_answers_bus_while_its_proxy_entries_are_added(tmp_path: Path) -> None:
    """The takeover's proxy ND entries go in chunks, one per loop turn: a BU is answered
    while some are still pending, a de-registration during them is not undone by a later
    chunk, and a home address registered meanwhile gets its entry at once."""
    others = [howto.PREFIX[0x1000 + i] for i in range(2 * PROXY_CHUNK + 100)]
    rows: dict[IPv6Address, StoredBinding | None] = {
        hoa: StoredBinding("ha", hoa, COA, 1, 0xC000, 400, time.time() + 300) for hoa in others
    }
    rows[HOA] = row(7)  # the MN's, proxied last
    store = FakeStore(BindingSnapshot((), {}, 40))
    replica = FakeReplica(rows, 40)
    rt, fake, sent = start(tmp_path, store, role="standby", replica=replica, max_tunnel_nr=1000)
    try:
        answer_ = rt.handle_control({"cmd": "cluster", "action": "active"})
        assert answer_["role"] == "active" and answer_["proxy_pending"] == len(rows) + 1
        assert fake.proxies() == set() and "proxy_nd" not in answer_["last_takeover_steps_ms"]
        rt.on_timer(100.0)  # the loop's first turn: one chunk
        assert len(fake.proxies()) == PROXY_CHUNK
        # the MN's refresh (sequence + 1) is answered 0 with entries still pending
        rt.on_queued_packet(QueuedPacket(bu(8)), 100.0)
        store.finish()
        rt.cluster.on_commits()
        assert answer(sent)[0].status == BAStatus.ACCEPTED
        assert rt.cluster.proxy_pending > 0
        # a de-registration of a home address whose entry is still pending
        gone = others[-1]
        assert gone not in fake.proxies()
        rt.on_queued_packet(QueuedPacket(bu_for(gone, 2, lifetime=0)), 100.0)
        store.finish()
        rt.cluster.on_commits()
        assert answer(sent)[0].status == BAStatus.ACCEPTED and gone not in rt.core.cache
        # a new home address registered meanwhile: its entry at once (after its proxy DAD)
        new = howto.PREFIX[0x9999]
        rt.on_queued_packet(QueuedPacket(bu_for(new, 1)), 100.0)
        rt.on_timer(101.0)  # the DAD ends (and one more chunk goes in)
        store.finish()
        rt.cluster.on_commits()
        assert answer(sent)[0].status == BAStatus.ACCEPTED
        assert new in fake.proxies() and rt.cluster.proxy_pending > 0
        while rt.next_deadline() == 0.0:
            rt.on_timer(102.0)
        expected = {home_agents_anycast(howto.PREFIX), HOA, new, *others} - {gone}
        assert fake.proxies() == expected
        # no chunk added an address after the loop removed it
        ops = [entry[0] for entry in fake.log if entry[1:] == (str(gone),)]
        assert [op for op in ops if op in ("proxy", "unproxy")] == ["unproxy"], ops
        status = rt.handle_control({"cmd": "cluster"})
        assert status["proxy_pending"] == 0 and status["last_takeover_steps_ms"]["proxy_nd"] > 0
        assert status["last_takeover_ms"] >= status["last_takeover_steps_ms"]["serving"]
    finally:
        rt.stop()


def test_bindings_from_the_store_are_kept_beyond_max_tunnel_nr(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A member with a smaller ``max_tunnel_nr`` than the one that accepted the bindings keeps
    every one of them (its MN keeps its binding at a takeover), says so, and refuses new
    registrations with 130 while refreshes of the loaded ones are accepted."""
    others = [howto.PREFIX[0x1000 + i] for i in range(2)]
    rows: dict[IPv6Address, StoredBinding | None] = {
        hoa: StoredBinding("ha", hoa, COA, 1, 0xC000, 400, time.time() + 300) for hoa in others
    }
    rows[HOA] = row(7)
    store = FakeStore(BindingSnapshot((), {}, 40))
    replica = FakeReplica(rows, 40)
    rt, _fake, sent = start(tmp_path, store, role="standby", replica=replica, max_tunnel_nr=2)
    try:
        assert len(rt.core.cache) == 3
        assert "more than [ha] max_tunnel_nr 2" in caplog.text
        status = rt.handle_control({"cmd": "cluster", "action": "active"})
        assert status["over_capacity"] is True and status["max_bindings"] == 2
        rt.on_queued_packet(QueuedPacket(bu(8)), 100.0)  # a refresh: accepted
        store.finish()
        rt.cluster.on_commits()
        assert answer(sent)[0].status == BAStatus.ACCEPTED
        rt.on_queued_packet(QueuedPacket(bu_for(howto.PREFIX[0x9999], 1)), 100.0)
        assert answer(sent)[0].status == BAStatus.INSUFFICIENT_RESOURCES  # a new one: 130
        assert len(rt.core.cache) == 3
    finally:
        rt.stop()


def test_standby_refresh_costs_no_route_and_is_timed(tmp_path: Path) -> None:
    """A refresh with the same CoA changes the cache, not the kernel; each applied revision
    is in the timeline (received, then applied) that the replication benchmark reads."""
    store = FakeStore(BindingSnapshot((), {}, 40))
    replica = FakeReplica({HOA: row(7)}, 40)
    rt, fake, _sent = start(tmp_path, store, role="standby", replica=replica)
    try:
        replica.push(HOA, row(8, COA2), 41)
        rt.cluster.on_replica()
        installs = [entry for entry in fake.log if entry[0] == "install"]
        replica.push(HOA, row(9, COA2), 42)
        replica.push(HOA, row(10, COA2), 43)
        rt.cluster.on_replica()
        assert rt.core.cache.get(HOA).sequence == 10 and fake.tunnels() == {HOA: COA2}
        assert [entry for entry in fake.log if entry[0] == "install"] == installs
        applied = rt.handle_control({"cmd": "cluster", "action": "timeline"})["applied"]
        assert [revision for revision, _got, _done in applied] == [41, 42, 43]
        assert all(got <= done for _revision, got, done in applied)
        # direct delivery for the takeover: at the latest with it
        assert rt.handle_control({"cmd": "cluster", "action": "active"})["ok"]
        assert rt.egress is not None and rt.egress.bindings == {HOA.packed: COA2.packed}
    finally:
        rt.stop()


def test_single_node_has_no_cluster_command(tmp_path: Path) -> None:
    from tests.support.factories import home_agent_runtime

    rt = home_agent_runtime(tmp_path, FakeDataplane(), lambda _p: None, nd=FakeND())
    try:
        answer_ = rt.handle_control({"cmd": "cluster", "action": "status"})
        assert not answer_["ok"] and "[cluster]" in answer_["error"]
        assert "cluster" not in rt.handle_control({"cmd": "cache"})
    finally:
        rt.stop()


def test_unknown_action_is_refused(active: Any) -> None:
    rt = active[0]
    assert not rt.handle_control({"cmd": "cluster", "action": "sideways"})["ok"]


def test_first_registration_conflict_redecides_the_bu(active: Any) -> None:
    """The commit of a first registration (made when its proxy DAD ends) conflicts: another
    member holds sequence 9; the BU that started the DAD is decided again: 135 with 9."""
    rt, fake, sent, store = active
    register(rt, 5)
    store.finish(CommitConflict("changed", BindingSnapshot((row(9, COA2),), {}, 20)))
    rt.cluster.on_commits()
    ba, _dst, _rh2 = answer(sent)
    assert (ba.status, ba.sequence) == (BAStatus.SEQUENCE_NUMBER_OUT_OF_WINDOW, 9)
    assert fake.tunnels() == {HOA: COA2} and rt.cluster.counters["redecided"] == 1
