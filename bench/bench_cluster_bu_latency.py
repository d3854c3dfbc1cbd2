"""Benchmark: BU -> BA latency of the Home Agent in cluster mode (etcd) against the single-node
SQLite agent, same topology, same load, same run.

The topology, the scripted Mobile Nodes and the measurement are those of
``bench_bu_latency.py`` (namespaces ``m`` and ``h``, ``--mobile-nodes`` MNs registering
first, then home-registration refreshes round robin at ``--rate`` BU/s, each BA timestamped
on the MN side). Two agents run one after the other in ``h``:

* ``single_node``: no ``[cluster]`` (bindings in SQLite, the same-run baseline);
* ``cluster``: ``[cluster]`` with one etcd 3.4 member (Debian ``etcd-server``) started here
  in ``h`` on 127.0.0.1, data on disk in the temporary directory (``--etcd-dir`` elsewhere,
  e.g. /dev/shm): every accepted BU is committed (compare-and-swap, group commit) before
  its BA leaves.

Prints JSON: p50/p90/p99/max per phase and agent, the cluster agent's commit counters, the
CPU time each agent and etcd used per BU (the 2 CPUs are shared: where the cost is), etcd's
own WAL fsync and backend commit times, the load average around the run, and the
replication lag a standby would see: an ``EtcdReplica`` in the HA's namespace follows
the store during the cluster run; per binding change, the time from the active's decision
(the record's expiry minus its lifetime) to the replica holding it.

    .venv/bin/python bench/bench_cluster_bu_latency.py --rate 1000 --seconds 3
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_bu_latency as base
from harness import print_result, start_etcd, stop_process, wait_for_socket

from nfq_mip6.control import request

ETCD_CLIENT, ETCD_PEER = 23790, 23800
METRICS_PORT = 23810


def commit_latency() -> dict[str, Any]:
    """The cluster agent's own submit -> result histogram (Prometheus), as bucket counts."""
    done = subprocess.run(
        ["ip", "netns", "exec", base.NS_H, "curl", "-s", "-m", "2",
         f"http://127.0.0.1:{METRICS_PORT}/metrics"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    buckets: dict[str, float] = {}
    for line in done.stdout.splitlines():
        if line.startswith("nfq_mip6_cluster_commit_seconds_bucket") and "committed" in line:
            le = line.split('le="', 1)[1].split('"', 1)[0]
            buckets[le] = float(line.rsplit(" ", 1)[1])
    total = buckets.get("+Inf", 0.0)
    out: dict[str, Any] = {"count": int(total)}
    for q in (0.5, 0.99):
        for le, cumulative in buckets.items():
            if total and cumulative >= q * total:
                out[f"p{int(q * 100)}_at_most_ms"] = (
                    None if le == "+Inf" else round(float(le) * 1000, 1)
                )
                break
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def etcd_disk_times() -> dict[str, Any]:
    """etcd's own histograms (its /metrics): WAL fsync and backend commit, p50/p99 as bucket
    upper bounds in ms, with their counts."""
    done = subprocess.run(
        ["ip", "netns", "exec", base.NS_H, "curl", "-s", "-m", "2",
         f"http://127.0.0.1:{ETCD_CLIENT}/metrics"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    out: dict[str, Any] = {}
    for name in (
        "etcd_disk_wal_fsync_duration_seconds",
        "etcd_disk_backend_commit_duration_seconds",
    ):
        buckets = [
            (line.split('le="', 1)[1].split('"', 1)[0], float(line.rsplit(" ", 1)[1]))
            for line in done.stdout.splitlines()
            if line.startswith(name + "_bucket")
        ]
        total = buckets[-1][1] if buckets else 0.0
        entry: dict[str, Any] = {"count": int(total)}
        for q in (0.5, 0.99):
            for le, cumulative in buckets:
                if total and cumulative >= q * total:
                    entry[f"p{int(q * 100)}_at_most_ms"] = (
                        None if le == "+Inf" else round(float(le) * 1000, 1)
                    )
                    break
        out[name.removeprefix("etcd_disk_").removesuffix("_duration_seconds")] = entry
    return out


def start_agent(
    tmp: Path, max_bindings: int, cluster: bool, max_in_flight: int | None = None
) -> subprocess.Popen[bytes]:
    tmp.mkdir(parents=True, exist_ok=True)
    config = tmp / "ha.toml"
    text = (
        f'role = "ha"\ninterface = "hh0"\nlog_level = "warning"\nqueue_num = 3\n'
        f'control_socket = "{tmp / "ha.sock"}"\nmetrics_listen = "127.0.0.1:{METRICS_PORT}"\n'
        f'state_dir = "{tmp}"\n'
        f"[ha]\nmax_binding_lifetime = 1000\nmax_tunnel_nr = {max_bindings}\n"
        "require_authentication = false\n"
    )
    if cluster:
        text += (
            f'[cluster]\nendpoints = ["http://127.0.0.1:{ETCD_CLIENT}"]\nname = "bench"\n'
            "commit_timeout_ms = 2000\n"
        )
        if max_in_flight is not None:
            text += f"max_in_flight = {max_in_flight}\n"
    config.write_text(text)
    proc = subprocess.Popen(
        ["ip", "netns", "exec", base.NS_H, sys.executable, "-m", "nfq_mip6", "run",
         "--config", str(config)],
        cwd=base.REPO,
    )  # fmt: skip
    wait_for_socket(proc, tmp / "ha.sock")
    return proc


def follow_replica(ready: int, stop: int, out: int) -> None:
    """Child process in the HA's namespace: an EtcdReplica (what a standby member runs)
    follows the store; for each binding change, the lag from the active's decision (the
    record's expiry minus its lifetime, same host clock) to the replica holding it."""
    import select

    from nfq_mip6.store.etcd_gateway import EtcdSettings
    from nfq_mip6.store.etcd_replica import EtcdReplica

    replica = EtcdReplica(EtcdSettings((f"http://127.0.0.1:{ETCD_CLIENT}",), "bench"))
    replica.start()
    os.write(ready, b"r")
    lags: list[float] = []
    while True:
        readable = select.select([replica.fileno(), stop], [], [], 1.0)[0]
        if replica.fileno() in readable:
            changes = replica.take_changes()
            wall = time.time()
            if not changes.full:
                for row in changes.bindings.values():
                    if row is not None:
                        lags.append(wall - (row.expires_wall - row.lifetime))
        if stop in readable:
            break
    replica.stop()
    os.write(out, json.dumps(base.percentiles(lags)).encode())


def measure(
    wire: base.Wire,
    mns: list[Any],
    rate: float,
    rounds: int,
    first_sequence: int,
) -> dict[str, Any]:
    first = wire.run(
        [base.bu_probe(hoa, first_sequence, coa) for hoa, coa, _alt in mns], rate, base.ba_key,
        grace=5.0,
    )  # fmt: skip
    refresh = wire.run(
        [base.bu_probe(h, first_sequence + r, c) for r in range(1, rounds + 1) for h, c, _a in mns],
        rate,
        base.ba_key,
    )
    return {
        "first_registrations": base.percentiles(first),
        "bu_ba_refresh": base.percentiles(refresh),
    }


def main() -> int:
    parser = base.load_arguments(__doc__)
    parser.add_argument("--etcd-dir", default=None, help="parent of etcd's data directory")
    parser.add_argument(
        "--max-in-flight", type=int, default=None, help="[cluster] max_in_flight (default: its)"
    )
    parser.add_argument(
        "--no-replica",
        action="store_true",
        help="no standby replica during the cluster run (it shares the CPUs with the agent)",
    )
    args = parser.parse_args()
    count = int(args.rate * args.seconds)
    mns = base.mobile_nodes(args.mobile_nodes)
    rounds = max(1, count // len(mns))
    results: dict[str, Any] = {}
    cluster_stats: dict[str, Any] = {}
    load_before = os.getloadavg()
    agent: subprocess.Popen[bytes] | None = None
    etcd: subprocess.Popen[bytes] | None = None
    with (
        tempfile.TemporaryDirectory() as tmpdir,
        tempfile.TemporaryDirectory(dir=args.etcd_dir) as etcd_parent,
    ):
        tmp = Path(tmpdir)
        try:
            base.build_topology(mns)
            etcd = start_etcd(Path(etcd_parent) / "data", ETCD_CLIENT, ETCD_PEER, base.NS_H)
            from pyroute2 import netns

            # one agent after the other; the sender, a child, lives in the MN namespace
            for name, cluster in (("single_node", False), ("cluster", True)):
                agent = start_agent(tmp / name, len(mns), cluster, args.max_in_flight)
                agent_cpu = cpu_seconds(agent.pid)
                etcd_cpu = cpu_seconds(etcd.pid)
                follower = None
                if cluster and not args.no_replica:  # a standby's replica (etcd's loopback)
                    ready_r, ready_w = os.pipe()
                    stop_r, stop_w = os.pipe()
                    lag_r, lag_w = os.pipe()
                    follower = os.fork()
                    if follower == 0:
                        netns.setns(base.NS_H)
                        follow_replica(ready_w, stop_r, lag_w)
                        os._exit(0)
                    os.read(ready_r, 1)
                read, write = os.pipe()
                child = os.fork()
                if child == 0:
                    os.close(read)
                    netns.setns(base.NS_M)
                    wire = base.Wire()
                    # sequence numbers continue from one agent to the next: the cluster agent
                    # starts empty, a first registration takes any sequence number
                    out = measure(wire, mns, args.rate, rounds, 0 if not cluster else 1000)
                    os.write(write, json.dumps(out).encode())
                    os._exit(0)
                os.close(write)
                chunks = []
                while chunk := os.read(read, 65536):
                    chunks.append(chunk)
                os.close(read)
                os.waitpid(child, 0)
                results[name] = json.loads(b"".join(chunks))
                if follower is not None:
                    os.write(stop_w, b"s")
                    os.close(lag_w)
                    lag = b""
                    while chunk := os.read(lag_r, 65536):
                        lag += chunk
                    os.waitpid(follower, 0)
                    results[name]["replica_lag"] = json.loads(lag or b"{}")
                stats = request(tmp / name / "ha.sock", {"cmd": "stats"})
                bus = len(mns) * (rounds + 1)  # first registrations and refreshes
                results[name]["cpu_ms_per_bu"] = {
                    "agent": round((cpu_seconds(agent.pid) - agent_cpu) / bus * 1000, 3),
                    "etcd": round((cpu_seconds(etcd.pid) - etcd_cpu) / bus * 1000, 3),
                }
                if cluster:
                    cluster_stats = stats.get("cluster", {})
                    results[name]["agent_commit_latency"] = commit_latency()
                    results[name]["etcd_disk"] = etcd_disk_times()
                stop_process(agent)
                agent = None
        finally:
            stop_process(agent)
            stop_process(etcd)
            for ns in (base.NS_M, base.NS_H):
                subprocess.run(["ip", "netns", "del", ns], check=False)
    single = results.get("single_node", {}).get("bu_ba_refresh", {})
    clustered = results.get("cluster", {}).get("bu_ba_refresh", {})
    result: dict[str, Any] = {
        "benchmark": "cluster_bu_latency",
        "rate_per_s": args.rate,
        "sent_per_phase": rounds * len(mns),
        "mobile_nodes": len(mns),
        "etcd_data": "tmpfs" if args.etcd_dir and args.etcd_dir.startswith("/dev/shm") else "disk",
        "load_average": {"before": load_before, "after": os.getloadavg()},
        "max_in_flight": args.max_in_flight,
        "single_node_sqlite": results.get("single_node"),
        "cluster_etcd": results.get("cluster"),
        "cluster_counters": cluster_stats.get("counters"),
        "targets": {"cluster_p50_ms": 5.0, "cluster_p99_ms": 25.0},
        "ratio_p50": (
            round(clustered["p50_ms"] / single["p50_ms"], 2)
            if "p50_ms" in clustered and "p50_ms" in single
            else None
        ),
    }
    return print_result(result)


if __name__ == "__main__":
    raise SystemExit(main())
