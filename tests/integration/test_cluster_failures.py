"""Failures of the virtual HA on three hosts (``nfq-mip6 testbed up --cluster 3``, the bed of
test_cluster_vrrp.py: real etcd, keepalived and agents, the real MN agent on visitnet).

One bed for the module, the scenarios in order (docs/cluster.md):

1. **Replay to the new active host.** The MN registers through ha1; a sniffer on the MN's link
   keeps the BU frame that ha1 accepted. ha1 dies (every process killed, its links down,
   its etcd member with it); once another host is active, the same frame is sent again
   from the MN's link, byte for byte: the new active host refuses it with 144 (RFC 4285
   §6, Mesg-ID replayed) or 135 (RFC 6275 §9.5.1, sequence number not newer) — the sequence
   number and Mesg-ID ha1 committed to etcd are in force there — and the binding stays.
2. **Quorum loss.** With ha1's member dead, the standby host's member is stopped (SIGSTOP):
   one member of three is left, etcd takes no write. The CN's pings to the home address go
   on through the active host's tunnel; the MN's next BU gets no BA and the active host's
   ``cluster status`` counts commit timeouts; once the member runs again, the MN's
   retransmitted BU is answered with status 0.
3. **Quorum loss longer than the binding.** The same, until the active host's binding has
   reached its lifetime: its tunnel route goes (RFC 6275 §10.3.2), BUs get no BA; once etcd
   answers again, the MN's next BU is registered with status 0, no BU discarded as "DAD in
   progress" and no proxy DAD timing out.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from subprocess import Popen

import pytest
from cluster_bed import (
    MobilitySniffer,
    agent_log,
    cached,
    cluster_status,
    cluster_testbed,
    etcd_pid,
    last_bu_sequence,
    mn_events,
    mn_timed_events,
    pause,
    role,
    start_mn,
    tunnel_route,
)
from helpers import terminate, wait_until

from nfq_mip6.testbed import Testbed, care_of_address
from nfq_mip6.testbed import cluster_processes as cluster
from nfq_mip6.testbed.cluster import cluster_hosts
from nfq_mip6.testbed.topology import MN_HOME_ADDRESS
from nfq_mip6.wire import BAStatus

pytestmark = pytest.mark.netns
pytest.importorskip("etcd3gw", reason="optional extra nfq-mip6[cluster] not installed")

HOSTS = [h.name for h in cluster_hosts(3)]


@dataclass
class Registered:
    bed: Testbed
    mn: Popen[str]
    mn_socket: Path
    sniffer: MobilitySniffer
    coa: str


@pytest.fixture(scope="module")
def registered(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registered]:
    """The bed with the MN registered from visitnet through ha1 (every host holds the
    binding and its tunnel route), its link sniffed."""
    directory = tmp_path_factory.mktemp("cluster-failures")
    with cluster_testbed(3) as bed, (directory / "mn.log").open("w") as log:
        sniffer = MobilitySniffer(bed, directory / "mh.jsonl")
        mn = None
        try:
            assert wait_until(sniffer.ready, 10.0)
            assert cluster.active_host(bed) == "ha1"
            mn = start_mn(bed, log)
            coa = care_of_address("visitnet")
            bed.move("visitnet")
            for host in HOSTS:
                assert wait_until(
                    lambda h=host: cached(bed, h) == [(MN_HOME_ADDRESS, coa)], 20.0
                ), (host, cached(bed, host))
                assert wait_until(lambda h=host: tunnel_route(bed, h), 10.0), host
            yield Registered(bed, mn, bed.run_dir / "mn.sock", sniffer, coa)
        finally:
            if mn is not None:
                terminate(mn)
            sniffer.close()


def test_replayed_bu_refused_by_new_active(registered: Registered) -> None:
    bed, mn_socket, sniffer = registered.bed, registered.mn_socket, registered.sniffer
    sequence = last_bu_sequence(mn_events(mn_socket))
    assert wait_until(lambda: f"ba seq={sequence} status=0" in mn_events(mn_socket), 20.0)
    accepted = [f for f in sniffer.frames() if f.out and f.kind == "BindingUpdate"]
    accepted = [f for f in accepted if f.seq == sequence]
    assert accepted, sniffer.frames()

    cluster.kill_host(bed, "ha1")
    assert wait_until(lambda: cluster.active_host(bed) is not None, 10.0)
    new_active = cluster.active_host(bed)
    assert new_active in HOSTS[1:], new_active
    assert wait_until(lambda: role(bed, new_active) == "active", 15.0)

    seen = len(sniffer.frames())
    sniffer.replay(accepted[-1])

    def answers() -> list[int]:
        return [
            f.status
            for f in sniffer.frames()[seen:]
            if not f.out and f.kind == "BindingAck" and f.seq == sequence and f.status is not None
        ]

    assert wait_until(lambda: bool(answers()), 10.0), "\n".join(
        [str(sniffer.frames()[seen:]), agent_log(bed, new_active)]
    )
    refused = {BAStatus.SEQUENCE_NUMBER_OUT_OF_WINDOW, BAStatus.MIPV6_ID_MISMATCH}
    assert set(answers()) <= refused, answers()
    assert cached(bed, new_active) == [(MN_HOME_ADDRESS, registered.coa)]
    print(f"\nBU seq {sequence} accepted by ha1, replayed to {new_active}: BA {answers()}")


def test_quorum_loss(registered: Registered) -> None:
    bed, mn_socket = registered.bed, registered.mn_socket
    active = cluster.active_host(bed)
    assert active in HOSTS[1:], active
    standby = next(h for h in HOSTS[1:] if h != active)
    member = etcd_pid(bed, standby)

    def timeouts() -> int:
        return int(cluster_status(bed, active)["counters"]["timeouts"])

    def answered(since: int) -> list[str]:
        return [
            e
            for e in mn_events(mn_socket)
            if e.startswith("ba seq=")
            and e.endswith(" status=0")
            and last_bu_sequence(["bu " + e.split()[1]]) >= since
        ]

    with bed.ping_stream("cn", MN_HOME_ADDRESS, rate_pps=20) as stream:
        assert wait_until(lambda: stream.replies_so_far >= 20, 10.0)
        timeouts_before = timeouts()
        # Right after a BA, so that the binding has most of its 12 s left.
        sequence = last_bu_sequence(mn_events(mn_socket))
        assert wait_until(lambda: bool(answered(sequence + 1)), 20.0), mn_events(mn_socket)
        sequence = last_bu_sequence(mn_events(mn_socket))
        pause(member, True)
        try:
            # The fast path forwards without etcd.
            replies = stream.replies_so_far
            assert wait_until(lambda: stream.replies_so_far >= replies + 40, 10.0)
            # The MN's next BU (its refresh) gets no BA: the commit times out.
            assert wait_until(lambda: last_bu_sequence(mn_events(mn_socket)) > sequence, 30.0)
            pending = last_bu_sequence(mn_events(mn_socket))
            assert wait_until(lambda: timeouts() > timeouts_before, 10.0), agent_log(bed, active)
            events = mn_events(mn_socket)
            assert not any(e.startswith(f"ba seq={pending} ") for e in events), events
            assert role(bed, active) == "active"
        finally:
            pause(member, False)
        # Quorum again: the MN's retransmission (RFC 6275 §11.8, a new sequence number) is
        # answered with status 0.
        assert wait_until(lambda: bool(answered(pending)), 40.0), "\n".join(
            [*mn_events(mn_socket), agent_log(bed, active)]
        )
        # And the CN's pings still get replies.
        replies = stream.replies_so_far
        assert wait_until(lambda: stream.replies_so_far >= replies + 20, 10.0), "\n".join(
            [*mn_events(mn_socket), agent_log(bed, active), str(cached(bed, active))]
        )
        result = stream.stop()
    sent = [e for e in mn_events(mn_socket) if e.startswith("bu seq=")]
    print(
        f"\nquorum lost on {active}: {timeouts() - timeouts_before} commit timeout(s), "
        f"BU seq {pending} unanswered, {answered(pending)[0]} after the member came back "
        f"({len(sent)} BUs in all); CN->HoA {result.summary()}"
    )
    assert result.received > 0, result.summary()


def test_quorum_loss_longer_than_the_binding(registered: Registered) -> None:
    """The quorum loss outlasts the binding (12 s on this bed): the active host tears it down
    at its lifetime (RFC 6275 §10.3.2; the CN's pings stop getting replies), the MN's BUs get
    no BA meanwhile; once etcd answers again, the MN's next BU is registered (status 0) with
    no BU discarded as "DAD in progress" and no proxy DAD timing out (docs/cluster.md)."""
    bed, mn_socket = registered.bed, registered.mn_socket
    active = cluster.active_host(bed)
    assert active in HOSTS[1:], active
    standby = next(h for h in HOSTS[1:] if h != active)
    member = etcd_pid(bed, standby)
    log_path = cluster.host_dir(bed, active) / "agent.log"

    def log_since(offset: int) -> str:
        return log_path.read_text(errors="replace")[offset:]

    def answered(sequence: int) -> bool:
        return f"ba seq={sequence} status=0" in mn_events(mn_socket)

    with bed.ping_stream("cn", MN_HOME_ADDRESS, rate_pps=20) as stream:
        sequence = last_bu_sequence(mn_events(mn_socket))
        assert wait_until(lambda: answered(last_bu_sequence(mn_events(mn_socket))), 20.0)
        assert wait_until(lambda: last_bu_sequence(mn_events(mn_socket)) > sequence, 20.0)
        assert wait_until(lambda: answered(last_bu_sequence(mn_events(mn_socket))), 20.0)
        start = len(log_path.read_text(errors="replace"))
        pause(member, True)
        try:
            # the binding's lifetime ends on the active host: its tunnel route goes
            assert wait_until(lambda: not tunnel_route(bed, active), 30.0), log_since(start)
            expired_at = last_bu_sequence(mn_events(mn_socket))
            # a BU after the expiry: no BA (its commit times out)
            assert wait_until(lambda: last_bu_sequence(mn_events(mn_socket)) > expired_at, 30.0)
            assert role(bed, active) == "active"
        finally:
            pause(member, False)
        resumed_at = time.monotonic()
        assert wait_until(lambda: bool(cluster_status(bed, active)["store_reachable"]), 20.0)
        resumed = len(log_path.read_text(errors="replace"))
        before = last_bu_sequence(mn_events(mn_socket))
        # the first BU the MN sends once the store answers again is registered
        assert wait_until(lambda: last_bu_sequence(mn_events(mn_socket)) > before, 60.0)
        first = min(
            int(e.split()[1].removeprefix("seq="))
            for e in mn_events(mn_socket)
            if e.startswith("bu seq=") and int(e.split()[1].removeprefix("seq=")) > before
        )
        assert wait_until(lambda: answered(first), 20.0), "\n".join(
            [*mn_events(mn_socket), log_since(start)]
        )
        after = log_since(resumed)
        assert "dad-in-progress" not in after and "proxy-dad-timeout" not in after, after
        assert cached(bed, active) == [(MN_HOME_ADDRESS, registered.coa)]
        replies = stream.replies_so_far
        assert wait_until(lambda: stream.replies_so_far >= replies + 20, 10.0)
        result = stream.stop()
    events = mn_events(mn_socket)
    unanswered = [
        e for e in events if e.startswith("bu seq=") and sequence < int(e.split()[1][4:]) < first
    ]
    timed = mn_timed_events(mn_socket)
    sent_at = {w.split()[1]: at for at, w in timed if w.startswith("bu seq=")}
    registered = next((at, w) for at, w in timed if at > resumed_at and w.endswith("status=0"))
    seq = registered[1].split()[1]
    print(
        f"\nquorum lost longer than the binding on {active}: {len(unanswered)} BU(s) sent "
        f"during the loss or before etcd answered again; first BA after SIGCONT: "
        f"{registered[1]} {registered[0] - resumed_at:.1f} s after it, "
        f"{1000 * (registered[0] - sent_at[seq]):.0f} ms after its BU; "
        f"CN->HoA {result.summary()}"
    )
