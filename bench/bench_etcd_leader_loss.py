"""Benchmark: the commit stall when the etcd leader dies under a steady BU load.

The bed of ``tests/integration/test_cluster_etcd_leader.py`` (:mod:`tests.support.etcd_load_bed`):
an active HA agent and a warm standby with the etcd store, a 3-member etcd cluster, both
agents talking to the **leader** first; ``--mobile-nodes`` scripted MNs
(:mod:`tests.support.bu_load`: one BU outstanding per MN, a retransmission with the next
sequence number after 1 s, doubling) register, then refresh round robin at ``--rate`` BU/s
for ``--seconds``. Per round, on a fresh bed:

* ``baseline``: the same load, nothing killed (the same-run baseline);
* ``leader_killed``: the same load again, the leader's etcd process SIGKILLed ``--kill-at``
  seconds into it; the remaining two members keep quorum and elect a new leader (polled
  every 50 ms from here through ``/v3/maintenance/status``). ``--agents-on follower``: the
  agents talk to a follower first (nothing fails on their side when the leader dies).

Reported per run: the longest time in which the MNs received no BA at all (the commit stall
as a user sees it: no BA leaves before its commit is confirmed), where it started relative
to the kill, BU -> BA latency percentiles, BAs later than the MNs' 1 s retransmission timer,
retransmissions (BUs that never got a BA), BAs per 100 ms around the kill, the time to a new
leader, the agents' commit counters; and whether etcd, the active agent and the standby
hold the same bindings afterwards. With enough MNs (rate x stall < MNs) every MN that is
not waiting sends fresh BUs throughout, so the gap is the store's, not the MNs' back-off.

    .venv/bin/python bench/bench_etcd_leader_loss.py --rate 100 --mobile-nodes 400
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import print_result  # also puts the repository on sys.path

from nfq_mip6.testbed import unique_prefix
from tests.support.bu_load import LoadRecord, analyse
from tests.support.etcd import EtcdServer
from tests.support.etcd_load_bed import EtcdLoadBed


def timeline(record: LoadRecord, start: float, end: float, step: float = 0.1) -> list[int]:
    """BAs received per ``step`` seconds from ``start`` to ``end`` (relative to the kill)."""
    assert record.kill_at is not None
    bins = [0] * round((end - start) / step)
    for _i, _s, _status, at in record.received:
        slot = int((at - record.kill_at - start) // step)
        if 0 <= slot < len(bins):
            bins[slot] += 1
    return bins


def counters(bed: EtcdLoadBed) -> dict[str, int]:
    out: dict[str, int] = bed.agents["active"].control("cluster")["counters"]
    return out


def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    keys = ("commits", "conflicts", "timeouts", "store_errors", "redecided", "held")
    return {k: after.get(k, 0) - before.get(k, 0) for k in keys}


class LeaderWatch(threading.Thread):
    """Polls the members' status every 50 ms: (wall time, leader name or None)."""

    def __init__(self, bed: EtcdLoadBed) -> None:
        super().__init__(daemon=True)
        self.bed = bed
        self.samples: list[tuple[float, str | None]] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            leader = self.bed.etcd.leader()
            self.samples.append((time.time(), leader.name if leader else None))
            time.sleep(0.05)

    def new_leader_after(self, killed: EtcdServer, kill_wall: float) -> float | None:
        for at, name in self.samples:
            if at > kill_wall and name is not None and name != killed.name:
                return round(at - kill_wall, 3)
        return None


def run_summary(record: LoadRecord) -> dict[str, Any]:
    seen = analyse(record)
    out = seen.summary()
    if record.kill_at is not None:
        out["longest_gap_start_after_kill_s"] = round(seen.longest_gap_start - record.kill_at, 3)
        after = [(sent, lat) for sent, lat in seen.latencies if sent >= record.kill_at]
        out["first_bu_after_kill_answered_after_s"] = (
            round(min(sent + lat for sent, lat in after) - record.kill_at, 3) if after else None
        )
        out["bas_per_100ms_from_kill_minus_0.5s"] = timeline(record, -0.5, 4.0)
    return out


def one_round(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    etcd_args: tuple[str, ...] = ()
    if args.election_timeout_ms:
        heartbeat = max(10, args.election_timeout_ms // 10)
        etcd_args = ("--election-timeout", str(args.election_timeout_ms),
                     "--heartbeat-interval", str(heartbeat))  # fmt: skip
    bed = EtcdLoadBed(
        unique_prefix("eb"), tmp, args.mobile_nodes, log_level="warning",
        commit_timeout_ms=args.commit_timeout_ms, etcd_args=etcd_args,
    )  # fmt: skip
    result: dict[str, Any] = {}
    try:
        bed.build()
        leader = bed.etcd.wait_leader()
        first = leader
        if args.agents_on == "follower":
            first = next(m for m in bed.etcd.members if m is not leader)
        bed.start_agents(first=first)
        result["killed_member"] = leader.name
        result["agents_talk_to"] = first.name
        before = counters(bed)
        baseline = bed.run_load(rate=args.rate, seconds=args.seconds)
        mid = counters(bed)
        result["baseline"] = run_summary(baseline)
        result["baseline"]["agent"] = delta(before, mid)
        watch = LeaderWatch(bed)
        watch.start()
        killed = bed.run_load(
            rate=args.rate,
            seconds=args.seconds,
            first_sequence=max(baseline.last_sequence) + 1,
            register=False,
            kill=leader,
            kill_at=args.kill_at,
        )
        watch.done.set()
        watch.join()
        result["leader_killed"] = run_summary(killed)
        result["leader_killed"]["agent"] = delta(mid, counters(bed))
        assert killed.kill_wall is not None
        result["leader_killed"]["new_leader_after_s"] = watch.new_leader_after(
            leader, killed.kill_wall
        )
        expected = bed.expected(killed)
        deadline = time.monotonic() + 10
        while bed.agents["standby"].cache() != expected and time.monotonic() < deadline:
            time.sleep(0.1)
        result["store_equals_mns"] = bed.stored() == expected
        result["active_equals_store"] = bed.agents["active"].cache() == expected
        result["standby_equals_store"] = bed.agents["standby"].cache() == expected
    finally:
        bed.down()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--rate", type=float, default=100.0, help="BU/s (all MNs together)")
    parser.add_argument("--seconds", type=float, default=6.0, help="load per run")
    parser.add_argument("--mobile-nodes", type=int, default=400)
    parser.add_argument("--kill-at", type=float, default=2.0, help="s into the killed run")
    parser.add_argument("--rounds", type=int, default=1, help="fresh beds, one after another")
    parser.add_argument("--commit-timeout-ms", type=int, default=1000, help="the agents' deadline")
    parser.add_argument(
        "--agents-on", choices=("leader", "follower"), default="leader",
        help="the member the agents talk to first: the one killed, or a follower",
    )  # fmt: skip
    parser.add_argument(
        "--election-timeout-ms", type=int, default=0,
        help="etcd --election-timeout (heartbeat a tenth of it); 0 = etcd's default, 1000 ms",
    )  # fmt: skip
    args = parser.parse_args()
    load_before = os.getloadavg()
    rounds = []
    for _ in range(args.rounds):
        with tempfile.TemporaryDirectory() as tmp:
            rounds.append(one_round(args, Path(tmp)))
    return print_result(
        {
            "benchmark": "etcd_leader_loss",
            "rate_per_s": args.rate,
            "seconds": args.seconds,
            "mobile_nodes": args.mobile_nodes,
            "kill_at_s": args.kill_at,
            "commit_timeout_ms": args.commit_timeout_ms,
            "agents_on": args.agents_on,
            "etcd_election_timeout_ms": args.election_timeout_ms or 1000,
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
            "target_stall_s": 2.0,
            "summary": {
                "stall_ms": [r["leader_killed"]["longest_gap_without_ba_ms"] for r in rounds],
                "baseline_longest_gap_ms": [
                    r["baseline"]["longest_gap_without_ba_ms"] for r in rounds
                ],
                "new_leader_after_s": [r["leader_killed"]["new_leader_after_s"] for r in rounds],
                "late_bas": [r["leader_killed"]["late_bas"] for r in rounds],
                "baseline_late_bas": [r["baseline"]["late_bas"] for r in rounds],
                "within_target": sum(
                    r["leader_killed"]["longest_gap_without_ba_ms"] <= 2000 for r in rounds
                ),
                "all_consistent": all(
                    r["store_equals_mns"]
                    and r["active_equals_store"]
                    and r["standby_equals_store"]
                    and r["leader_killed"]["bas_answered_twice"] == 0
                    and r["leader_killed"]["mns_last_bu_unanswered"] == 0
                    for r in rounds
                ),
            },
            "rounds": rounds,
        }
    )


if __name__ == "__main__":
    raise SystemExit(main())
