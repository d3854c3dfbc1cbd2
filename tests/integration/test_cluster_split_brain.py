"""VRRP split brain on the three-host virtual HA (``nfq-mip6 testbed up --cluster 3``: real
etcd, keepalived and agents, the real MN agent; docs/cluster.md).

Every host's kernel drops the VRRP advertisements it receives, so every keepalived believes
the others dead: three MASTERs, three ``nfq-mip6 cluster active`` agents, each answering
what the home link delivers to it. The switch decides that:

1. pinned to ha2, then to ha3 (a static entry for the virtual MAC; learning off on the HA
   hosts' ports): the MN moves between visitnet and visitnet2 and each move's BU reaches
   one host. ha3 holds the state it took over with (actives do not follow the store), so
   its commit conflicts (or its expiry of the stale binding did before) and it decides again
   on what etcd holds;
2. flooded (no entry for the virtual MAC): the MN's next BU reaches all three at once.
   Exactly one commit wins; the others conflict, decide again on the winner's state and
   refuse (144: the Mesg-ID is now a replay, or 135) — one status 0 for the sequence number.

Then the advertisements flow again: ha1 (priority 150) stays MASTER, ha2 and ha3 step down
to standby, the switch delivers the virtual MAC to ha1 again (its periodic unsolicited NAs);
the MN's next BU is answered 0 by ha1 and every host's binding cache equals etcd.
Throughout, etcd's history of the binding's key (a watch from revision 1) is one line: no
deletion, the sequence number only grows (RFC 6275 §9.5.1, modulo 2**16), and every status 0
the MN received is one record of that history.

The second test does the same with 20 scripted MNs (tests/support/bu_load.py: other home
addresses, unauthenticated BUs, so the bed's agents run with ``require_authentication =
false``) refreshing at 40 BU/s while every BU is flooded to the three active hosts: one
status 0 per BU, the other answers refusals, one linear history per home address, and after
the heal every member's cache equals etcd.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path

import pytest
from cluster_bed import (
    BINDING_PREFIX,
    SCRIPTED_HOA_BASE,
    MobilitySniffer,
    agent_log,
    agent_pid,
    cache_rows,
    cached,
    cluster_status,
    cluster_testbed,
    drop_vrrp,
    etcd_bindings,
    home_link_delivers_vmac,
    home_link_learns,
    key_history,
    last_bu_sequence,
    mn_events,
    role,
    scripted_load,
    start_mn,
    vmac_ports,
)
from helpers import terminate, wait_until

from nfq_mip6.testbed import Testbed, care_of_address
from nfq_mip6.testbed import cluster_processes as cluster
from nfq_mip6.testbed.cluster import cluster_hosts
from nfq_mip6.testbed.topology import MN_HOME_ADDRESS, MnLink
from nfq_mip6.wire import BAStatus
from tests.support.bu_load import analyse

pytestmark = pytest.mark.netns
pytest.importorskip("etcd3gw", reason="optional extra nfq-mip6[cluster] not installed")

HOSTS = [h.name for h in cluster_hosts(3)]
REFUSED = {BAStatus.SEQUENCE_NUMBER_OUT_OF_WINDOW, BAStatus.MIPV6_ID_MISMATCH}


@pytest.fixture(scope="module")
def bed() -> Iterator[Testbed]:
    # The scripted MNs send unauthenticated BUs (the real MN still authenticates its own).
    with cluster_testbed(3, {"NFQ_MIP6_HA__REQUIRE_AUTHENTICATION": "false"}) as testbed:
        yield testbed


def newer(a: int, b: int) -> bool:
    """RFC 6275 §9.5.1: ``b`` is newer than ``a`` (16-bit sequence numbers)."""
    return 0 < (b - a) % 65536 < 32768


def holders(bed: Testbed) -> list[str]:
    """The hosts whose ``vrrp.51`` holds the HA address (keepalived MASTER)."""
    return [h for h in HOSTS if cluster.holds_ha_address(bed.node(h))]


def conflicts(bed: Testbed, host: str) -> int:
    return int(cluster_status(bed, host)["counters"]["conflicts"])


def redecided(bed: Testbed, host: str) -> int:
    return int(cluster_status(bed, host)["counters"]["redecided"])


def test_split_brain_one_history(bed: Testbed, tmp_path: Path) -> None:
    sniffer = MobilitySniffer(bed, tmp_path / "mh.jsonl")
    mn_socket = bed.run_dir / "mn.sock"
    log = (tmp_path / "mn.log").open("w")
    mn = None
    writers = {f"/{agent_pid(bed, h)}": h for h in HOSTS}
    try:
        assert wait_until(sniffer.ready, 10.0)
        assert cluster.active_host(bed) == "ha1"
        mn = start_mn(bed, log)
        bed.move("visitnet")
        for host in HOSTS:
            assert wait_until(
                lambda h=host: cached(bed, h) == [(MN_HOME_ADDRESS, care_of_address("visitnet"))],
                20.0,
            ), (host, cached(bed, host))

        def record() -> dict[str, object]:
            return etcd_bindings(bed, "ha2")[MN_HOME_ADDRESS]

        def writer() -> str:
            w = str(record()["w"])
            return writers.get(w[w.index("/") :], w)

        def move_and_register(link: MnLink) -> int:
            """The MN moves; its BU (a new sequence number) is answered 0."""
            sequence = last_bu_sequence(mn_events(mn_socket))
            bed.move(link)
            assert wait_until(lambda: last_bu_sequence(mn_events(mn_socket)) != sequence, 15.0)
            sent = last_bu_sequence(mn_events(mn_socket))

            def answered() -> int | None:
                for event in mn_events(mn_socket):
                    if event.startswith("ba seq=") and event.endswith(" status=0"):
                        seq = last_bu_sequence(["bu " + event.split()[1]])
                        if seq == sent or newer(sent, seq):
                            return seq
                return None

            assert wait_until(lambda: answered() is not None, 20.0), "\n".join(
                [*mn_events(mn_socket), *(agent_log(bed, h) for h in HOSTS)]
            )
            accepted = answered()
            assert accepted is not None
            assert wait_until(lambda: record()["seq"] == accepted, 5.0), record()
            assert record()["coa"] == care_of_address(link), record()
            return accepted

        # 1. Split brain: no host hears another's advertisements; all three become active.
        before = {h: conflicts(bed, h) for h in HOSTS}
        for host in HOSTS:
            drop_vrrp(bed, host, True)
        assert wait_until(lambda: holders(bed) == HOSTS, 10.0), holders(bed)
        for host in HOSTS:
            assert wait_until(lambda h=host: role(bed, h) == "active", 15.0), agent_log(bed, host)

        # 2. The switch sends the virtual MAC's frames to ha2, then to ha3.
        home_link_delivers_vmac(bed, "ha2")
        move_and_register("visitnet2")
        assert writer() == "ha2", record()
        home_link_delivers_vmac(bed, "ha3")
        move_and_register("visitnet")
        assert writer() == "ha3", record()
        # ha3 took over before ha2's commit: its BU (or its expiry of the old binding)
        # conflicted and was decided again on etcd's state.
        assert conflicts(bed, "ha3") > before["ha3"], cluster_status(bed, "ha3")

        # 3. Flooded: the next BU reaches all three active hosts at once.
        home_link_delivers_vmac(bed, None)
        during = {h: conflicts(bed, h) for h in HOSTS}
        redecided_during = {h: redecided(bed, h) for h in HOSTS}
        seen = len(sniffer.frames())
        flooded = move_and_register("visitnet2")

        def answers() -> list[int]:
            return [
                int(f.status)
                for f in sniffer.frames()[seen:]
                if not f.out
                and f.kind == "BindingAck"
                and f.seq == flooded
                and f.status is not None
            ]

        # Each host answers once (a loser that exhausted its decisions would answer nothing).
        wait_until(lambda: len(answers()) >= len(HOSTS), 5.0)
        assert answers().count(BAStatus.ACCEPTED) == 1, answers()
        assert set(answers()) - {BAStatus.ACCEPTED} <= REFUSED, answers()
        winner = writer()
        losers = [h for h in HOSTS if h != winner]
        for host in losers:  # each loser's commit conflicted; it decided again (and refused)
            assert conflicts(bed, host) > during[host], (host, cluster_status(bed, host))
            assert redecided(bed, host) > redecided_during[host], cluster_status(bed, host)

        # 4. The advertisements flow again: ha1 (highest priority) stays MASTER, the others
        # step down to standby and follow the store.
        for host in HOSTS:
            drop_vrrp(bed, host, False)
        home_link_learns(bed)
        assert wait_until(lambda: holders(bed) == ["ha1"], 10.0), holders(bed)
        assert wait_until(lambda: [role(bed, h) for h in HOSTS] == ["active", "standby",
                                                                    "standby"], 15.0)  # fmt: skip
        # The switch delivers the virtual MAC to ha1 again: the hosts leaving MASTER sent MLD
        # reports from vrrp.51 (the switch learnt the virtual MAC at their ports), ha1's
        # periodic unsolicited NAs (keepalived garp_master_refresh) take it back.
        assert wait_until(lambda: vmac_ports(bed) == ["ha1-eth0"], 10.0), vmac_ports(bed)
        seen_heal = len(sniffer.frames())
        healed = move_and_register("visitnet")
        after_heal = [
            f"{'BU' if f.out else 'BA'} {f.seq}" + ("" if f.out else f" status {f.status}")
            for f in sniffer.frames()[seen_heal:]
        ]
        assert writer() == "ha1", record()

        # Every member's binding cache equals etcd.
        def members_equal_store() -> bool:
            now = record()
            want = [(MN_HOME_ADDRESS, str(now["coa"]), int(str(now["seq"])))]
            for host in HOSTS:
                rows = [
                    (r["home_address"], r["care_of_address"], r["sequence"])
                    for r in cache_rows(bed, host)
                ]
                if rows != want:
                    return False
            return True

        assert wait_until(members_equal_store, 10.0), [(h, cache_rows(bed, h)) for h in HOSTS]

        # One linear history of the binding in etcd.
        history = key_history(bed, "ha2", BINDING_PREFIX + MN_HOME_ADDRESS)
        assert history and all(e.record is not None for e in history), history
        sequences = [int(str(e.record["seq"])) for e in history if e.record is not None]
        assert all(newer(a, b) for a, b in pairwise(sequences)), sequences
        accepted = Counter(
            f.seq
            for f in sniffer.frames()
            if not f.out and f.kind == "BindingAck" and f.status == 0
        )
        assert all(n == 1 for n in accepted.values()), accepted
        assert set(accepted) <= set(sequences), (accepted, sequences)
        authors = Counter(
            writers.get(str(e.record["w"])[str(e.record["w"]).index("/") :], "?")
            for e in history
            if e.record is not None
        )
        print(
            f"\nsplit brain: {len(history)} revisions of the binding, sequence "
            f"{sequences[0]}..{sequences[-1]} strictly growing, written by {dict(authors)}; "
            f"flooded BU seq {flooded}: BAs {answers()} (winner {winner}); conflicts "
            f"{ {h: conflicts(bed, h) for h in HOSTS} }; healed: ha1 active, BU seq {healed} "
            f"answered 0 ({after_heal}), every cache equal to etcd"
        )
    finally:
        for host in HOSTS:
            drop_vrrp(bed, host, False, check=False)
        home_link_learns(bed)
        if mn is not None:
            terminate(mn)
        sniffer.close()
        log.close()


SCRIPTED = 20


def test_split_brain_scripted_mns(bed: Testbed) -> None:
    """20 scripted MNs (other home addresses, their own care-of addresses on the CN's link)
    register through ha1; then, with the brain split and every BU flooded to the three active
    hosts, they refresh at 40 BU/s for 3 s (RFC 6275 §11.8 retransmissions included); then
    the advertisements flow again."""
    assert wait_until(lambda: holders(bed) == ["ha1"], 10.0), holders(bed)
    registered = scripted_load(bed, SCRIPTED, rate=40, seconds=0.5, register=True)
    assert not analyse(registered).last_unanswered, analyse(registered).summary()
    homes = [str(SCRIPTED_HOA_BASE + i) for i in range(SCRIPTED)]
    before = {h: conflicts(bed, h) for h in HOSTS}
    try:
        for host in HOSTS:
            drop_vrrp(bed, host, True)
        assert wait_until(lambda: holders(bed) == HOSTS, 10.0), holders(bed)
        for host in HOSTS:
            assert wait_until(lambda h=host: role(bed, h) == "active", 15.0), agent_log(bed, host)
        home_link_delivers_vmac(bed, None)
        record = scripted_load(
            bed,
            SCRIPTED,
            rate=40,
            seconds=3.0,
            register=False,
            first_sequence=max(registered.last_sequence) + 1,
        )
    finally:
        for host in HOSTS:
            drop_vrrp(bed, host, False, check=False)
        home_link_learns(bed)
    assert wait_until(lambda: holders(bed) == ["ha1"], 10.0), holders(bed)
    assert wait_until(
        lambda: [role(bed, h) for h in HOSTS] == ["active", "standby", "standby"], 15.0
    )
    seen = analyse(record)
    # Every BU answered 0 at most once; the others' answers are refusals.
    accepted = Counter((i, seq) for i, seq, status, _t in record.received if status == 0)
    assert all(n == 1 for n in accepted.values()), [k for k, n in accepted.items() if n > 1]
    assert set(seen.statuses) <= {0, *REFUSED}, seen.statuses
    assert not seen.last_unanswered, seen.summary()
    assert not seen.unmatched, seen.unmatched
    # The losers' commits conflicted.
    grew = [h for h in HOSTS if conflicts(bed, h) > before[h]]
    assert len(grew) >= 2, {h: cluster_status(bed, h)["counters"] for h in HOSTS}
    # One linear history per home address; every status 0 is a revision of it.
    history = key_history(bed, "ha2", BINDING_PREFIX, prefix=True)
    per_home: dict[str, list[int]] = {}
    for event in history:
        home = event.key.removeprefix(BINDING_PREFIX)
        if home in homes:
            assert event.record is not None, event  # no expiry, no deletion
            per_home.setdefault(home, []).append(int(str(event.record["seq"])))
    for home, sequences in per_home.items():
        assert all(newer(a, b) for a, b in pairwise(sequences)), (home, sequences)
    for index, sequence in accepted:
        assert sequence in per_home[homes[index]], (homes[index], sequence)

    # After the heal, every member's cache equals etcd.
    def members_equal_store() -> bool:
        stored = etcd_bindings(bed, "ha2")
        want = sorted((h, str(r["coa"]), int(str(r["seq"]))) for h, r in stored.items())
        return all(
            sorted(
                (str(r["home_address"]), str(r["care_of_address"]), int(str(r["sequence"])))
                for r in cache_rows(bed, h)
            )
            == want
            for h in HOSTS
        )

    assert wait_until(members_equal_store, 10.0), [(h, len(cache_rows(bed, h))) for h in HOSTS]
    hosts_by_pid = {str(agent_pid(bed, h)): h for h in HOSTS}
    writers = Counter(
        hosts_by_pid.get(str(e.record["w"]).split("/")[-1], "?")
        for e in history
        if e.record and e.key.removeprefix(BINDING_PREFIX) in homes
    )
    print(
        f"\nsplit brain, {SCRIPTED} scripted MNs flooded to 3 active hosts: "
        f"{seen.summary()}; {len(accepted)} BUs accepted, "
        f"{sum(len(v) for v in per_home.values())} revisions of their bindings, strictly "
        f"growing per home address, written by {dict(writers)}; conflicts "
        f"{ {h: conflicts(bed, h) - before[h] for h in HOSTS} }"
    )
