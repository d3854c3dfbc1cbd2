"""The active cluster member while its store cannot commit (an etcd quorum loss), with RFC 4285
authenticated BUs as the test bed's MN sends them (docs/cluster.md, "A store outage longer than
a binding"): a binding whose lifetime ends is torn down at once and stays gone; the MN's BUs
meanwhile get no BA and leave no pending registration behind; once the store answers again,
the next BU is registered (status 0) although every key's revision is unknown (conflicts)."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv6Network
from pathlib import Path

import pytest

from nfq_mip6.config import AgentConfig, ClusterConfig, HomeAgentConfig, Role
from nfq_mip6.dataplane.fake import FakeDataplane
from nfq_mip6.io.host import HomeLinkAddressing
from nfq_mip6.io.nfqueue import QueuedPacket
from nfq_mip6.runtime.home_agent import HomeAgentRuntime
from nfq_mip6.security.auth_codec import SecurityAssociation
from nfq_mip6.security.keys import KeySource, MobileNodeCredentials
from nfq_mip6.security.mobile_node_auth import MobileNodeAuthenticator
from nfq_mip6.store.binding_store import BindingSnapshot, CommitConflict, CommitTimeout
from nfq_mip6.store.database import StoredBinding
from nfq_mip6.wire import BAStatus, BindingUpdate, BUFlags, build_ipv6_packet, build_mh
from nfq_mip6.wire.mh import IPPROTO_MH
from nfq_mip6.wire.options import AlternateCareofAddress
from tests.support import howto
from tests.support.factories import runtime_context
from tests.unit.runtime.test_home_agent import COA, FakeND, answer
from tests.unit.runtime.test_home_agent_cluster import FakeStore

HOA = howto.HOA
SPI = 777
KEY = bytes(range(40, 60))
KEY_ENV = "NFQ_MIP6_TEST_OUTAGE_KEY"
WALL0 = 1_800_000_000.0  # the wall clock at now = 0


@dataclass
class Member:
    rt: HomeAgentRuntime
    fake: FakeDataplane
    sent: list[bytes]
    store: FakeStore
    clock: list[float]
    mn: MobileNodeAuthenticator

    def at(self, now: float) -> float:
        self.clock[0] = now
        return now

    def bu(self, sequence: int, now: float, lifetime_units: int = 3) -> None:
        """The MN's BU (RFC 4285: Mesg-ID + MN-HA authentication), 4 s units: 3 = 12 s."""
        message = BindingUpdate(
            sequence, BUFlags.A | BUFlags.H, lifetime_units, (AlternateCareofAddress(COA),)
        )
        signed = self.mn.sign_binding_update(message, COA, HOA)
        packet = build_ipv6_packet(COA, howto.HA, IPPROTO_MH, build_mh(signed, HOA, howto.HA),
                                   home_address=HOA)  # fmt: skip
        self.rt.on_queued_packet(QueuedPacket(packet), self.at(now))

    def finish(self, error: Exception | None = None) -> None:
        self.store.finish(error)  # type: ignore[arg-type]
        self.rt.cluster.on_commits()

    def timer(self, now: float) -> None:
        self.rt.on_timer(self.at(now))

    def statuses(self) -> list[tuple[int, int]]:
        out = []
        while self.sent:
            ba, _dst, _rh2 = answer(self.sent)
            out.insert(0, (ba.sequence, ba.status))
            self.sent.pop()
        return out


def row(sequence: int, expires_at: float) -> StoredBinding:
    """A record as the store holds it (``expires_at`` on the test's clock)."""
    return StoredBinding("ha", HOA, COA, sequence, 0xC000, 12, WALL0 + expires_at)


@pytest.fixture
def member(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Member]:
    monkeypatch.setenv(KEY_ENV, KEY.hex())
    fake = FakeDataplane()
    sent: list[bytes] = []
    store = FakeStore()
    clock = [100.0]
    runtime = HomeAgentRuntime(
        dataplane_factory=lambda link, backend: fake,
        nd_factory=lambda link: FakeND(),
        load_rules=False,
        home_link=HomeLinkAddressing("eth0", howto.HA, howto.PREFIX, 1500),
        cluster_store=store,
    )
    credentials = MobileNodeCredentials(SPI, KeySource(env=KEY_ENV), (IPv6Network(f"{HOA}/128"),))
    config = AgentConfig(
        role=Role.HA,
        source=tmp_path / "ha.toml",
        state_dir=tmp_path,
        ha=HomeAgentConfig(max_binding_lifetime=400, mobile_nodes=(credentials,)),
        cluster=ClusterConfig(endpoints=("http://127.0.0.1:2379",), name="vha1"),
    )
    assert os.environ[KEY_ENV]
    runtime.start(runtime_context(config, sent.append, lambda: clock[0]))
    assert runtime.cluster is not None
    runtime.cluster._wall = lambda: WALL0 + clock[0]
    mn = MobileNodeAuthenticator(SecurityAssociation(SPI, KEY, (IPv6Network(f"{HOA}/128"),)))
    yield Member(runtime, fake, sent, store, clock, mn)
    runtime.stop()


def register(m: Member, sequence: int, now: float) -> None:
    """A first registration on a store that answers: the Mesg-ID is committed, the proxy DAD
    runs (FakeND: done on the next timer), the binding is committed, then the BA."""
    m.bu(sequence, now)
    assert [c.mesg_ids for c, _t in m.store.submitted] == [{SPI: m.mn._last_sent}]
    m.finish()
    m.timer(now + 0.2)  # the DAD ends
    ((change, _token),) = m.store.submitted
    assert [r.sequence for r in change.upserts] == [sequence]
    m.finish()


def test_expiry_during_an_outage_is_carried_out_at_once_and_not_undone(member: Member) -> None:
    m = member
    register(m, 1, 100.0)
    assert m.statuses() == [(1, BAStatus.ACCEPTED)]
    assert m.fake.tunnels() == {HOA: COA} and HOA in m.fake.proxies()
    # the store stops answering: the refresh gets no BA, the binding keeps its lifetime
    m.bu(2, 110.0)
    m.finish(CommitTimeout("etcd: no answer"))
    assert m.statuses() == [] and m.fake.tunnels() == {HOA: COA}
    # its lifetime ends (12 s from the DAD's end): torn down before the deletion is committed
    deadline = m.rt.next_deadline()
    assert deadline is not None and 112.0 < deadline < 113.0
    m.timer(113.0)
    assert m.fake.tunnels() == {} and HOA not in m.fake.proxies() and HOA not in m.rt.core.cache
    ((change, _token),) = m.store.submitted
    assert change.deletions == (HOA,)
    m.finish(CommitTimeout("etcd: no answer"))
    # not undone: no binding past its lifetime, no expiry again, nothing more to commit
    assert m.fake.tunnels() == {} and HOA not in m.fake.proxies() and HOA not in m.rt.core.cache
    m.timer(114.0)
    assert m.store.submitted == [] and m.rt.cluster.counters["timeouts"] == 2


def test_bus_during_the_outage_leave_no_pending_registration(member: Member) -> None:
    """A BU after the expiry starts a first registration: its Mesg-ID commit fails, so the
    proxy DAD never starts; the pending entry goes with it (it would answer every later BU
    with "DAD in progress" until it timed out), and the next BU is decided again."""
    m = member
    register(m, 1, 100.0)
    m.statuses()
    m.timer(113.0)
    m.finish(CommitTimeout("etcd: no answer"))
    for sequence, now in ((3, 114.0), (4, 115.0), (5, 117.0)):
        m.bu(sequence, now)
        ((change, _token),) = m.store.submitted
        assert change.upserts == () and SPI in change.mesg_ids
        m.finish(CommitTimeout("etcd: no answer"))
        assert HOA not in m.rt.core.cache, sequence
        assert m.statuses() == [] and m.fake.tunnels() == {}
    assert m.rt.cluster.counters["timeouts"] == 4


def test_the_next_bu_after_the_outage_is_registered(member: Member) -> None:
    """The store answers again but every key's revision is unknown (the timed-out commits may
    have been applied): the Mesg-ID commit conflicts, then the binding's; the store holds the
    expired record. The BU is decided again each time and answered 0, not 144 for its own
    Mesg-ID committed before its proxy DAD, not "DAD in progress"."""
    m = member
    register(m, 1, 100.0)
    m.statuses()
    m.timer(113.0)
    m.finish(CommitTimeout("etcd: no answer"))
    m.bu(3, 114.0)
    stale_ts = m.mn._last_sent
    m.finish(CommitTimeout("etcd: no answer"))
    # quorum again
    m.bu(6, 130.0)
    m.finish(CommitConflict("changed", BindingSnapshot((), {SPI: stale_ts}, 90)))
    ((change, _token),) = m.store.submitted  # decided again: the Mesg-ID, then the DAD
    assert change.mesg_ids == {SPI: m.mn._last_sent}
    m.finish()
    m.timer(130.2)
    ((change, _token),) = m.store.submitted
    assert [r.sequence for r in change.upserts] == [6]
    m.finish(CommitConflict("changed", BindingSnapshot((row(2, 112.5),), {}, 91)))
    # the expired record is no binding: a first registration again, its Mesg-ID is its own
    assert m.store.submitted == []  # the Mesg-ID is committed already: the DAD starts
    m.timer(130.4)
    ((change, _token),) = m.store.submitted
    assert [r.sequence for r in change.upserts] == [6]
    m.finish()
    assert m.statuses() == [(6, BAStatus.ACCEPTED)]
    assert m.fake.tunnels() == {HOA: COA} and HOA in m.fake.proxies()
    assert m.rt.cluster.counters["redecided"] == 2


def test_undoing_a_refresh_after_the_lifetime_ended_removes_the_binding(
    member: Member, caplog: pytest.LogCaptureFixture
) -> None:
    """The refresh's commit times out after the binding's lifetime ended: the last committed
    state is an expired binding, i.e. none."""
    m = member
    register(m, 1, 100.0)
    m.statuses()
    m.bu(2, 112.0)
    m.at(112.9)  # the commit is answered after the lifetime (112.2)
    with caplog.at_level(logging.INFO, logger="nfq_mip6.ha.cluster"):
        m.finish(CommitTimeout("etcd: no answer"))
    assert HOA not in m.rt.core.cache and m.fake.tunnels() == {}
    assert m.statuses() == []
    assert f"binding for {HOA} expired" in caplog.text
