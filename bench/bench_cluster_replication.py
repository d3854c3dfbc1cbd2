"""Benchmark: replication lag from the active Home Agent to a warm standby agent under a BU
load, against etcd's own watch delivery to the standby's namespace in the same run.

**Lag** of one revision = the moment the standby agent has its change in its binding cache
and its kernel tunnel table, minus the moment etcd's answer to the transaction that made the
revision reached the active agent's store thread ("the commit is confirmed": from then on the
active may send the BA). Both moments are ``time.monotonic()`` of one host, shared by every
process: the active's store keeps ``(revision, committed)`` and the standby's cluster side
``(revision, received, applied)``; ``nfq-mip6``'s ``cluster timeline`` control request reads
them, and they are joined on the revision.

Topology: the namespaces, scripted Mobile Nodes and BU load of ``bench_bu_latency.py``
(``m`` with the MNs, ``h`` with the active agent of ``bench_cluster_bu_latency.py`` and one
etcd 3.4 member, data on disk), plus ``s``: the standby agent on its own home link
(veth ``hh0``/``hh1``, the HA address from its configuration) reaching etcd over a management
veth (IPv4) from ``h``. The MNs register first (proxy DAD) and then refresh their bindings
round robin at ``--rate`` BU/s for ``--seconds``; every accepted BU is one commit.
``--preload N``: N more bindings committed before the agents start (both hold them).

Baseline (same run): a bare watch on the same prefix in ``s`` (an ``EtcdReplica``'s watch
stream, parsed, nothing applied): etcd's watch delivery plus the client's parse, the floor
any standby pays.

Prints JSON with the load average. Needs root.

    .venv/bin/python bench/bench_cluster_replication.py --rate 500 --seconds 5
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from ipaddress import IPv6Address
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_bu_latency as base
import bench_cluster_bu_latency as cluster_bench
from harness import print_result, start_etcd, stop_process, wait_for_socket

from nfq_mip6.control import request

NS_S = f"nfqbr-s-{base.TAG}"
MGMT_ACTIVE, MGMT_STANDBY = "10.231.0.1", "10.231.0.2"
STANDBY_ENDPOINT = f"http://{MGMT_ACTIVE}:{cluster_bench.ETCD_CLIENT}"


def sh(*argv: str) -> None:
    subprocess.run(list(argv), check=True)


def build_standby_namespace() -> None:
    sh("ip", "netns", "add", NS_S)
    sh("ip", "-n", NS_S, "link", "add", "hh0", "type", "veth", "peer", "name", "hh1")
    sh("ip", "-n", base.NS_H, "link", "add", "mg0", "type", "veth", "peer", "name", "mg1",
       "netns", NS_S)  # fmt: skip
    for ns, devs in ((NS_S, ("lo", "hh0", "hh1", "mg1")), (base.NS_H, ("mg0",))):
        for dev in devs:
            sh("ip", "-n", ns, "link", "set", dev, "up")
    sh("ip", "-n", base.NS_H, "addr", "add", f"{MGMT_ACTIVE}/24", "dev", "mg0")
    sh("ip", "-n", NS_S, "addr", "add", f"{MGMT_STANDBY}/24", "dev", "mg1")
    sh("ip", "netns", "exec", NS_S, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")


def start_standby(tmp: Path, max_bindings: int) -> subprocess.Popen[bytes]:
    tmp.mkdir(parents=True, exist_ok=True)
    config = tmp / "ha.toml"
    config.write_text(
        f'role = "ha"\ninterface = "hh0"\nlog_level = "warning"\nqueue_num = 7\n'
        f'control_socket = "{tmp / "ha.sock"}"\nmetrics_listen = ""\nstate_dir = "{tmp}"\n'
        f'[ha]\naddress = "{base.HA}"\nhome_prefix = "2001:db8:a::/64"\n'
        f"max_binding_lifetime = 1000\nmax_tunnel_nr = {max_bindings}\n"
        "require_authentication = false\n"
        f'[cluster]\nendpoints = ["{STANDBY_ENDPOINT}"]\nname = "bench"\n'
        'commit_timeout_ms = 2000\nrole = "standby"\n'
    )
    proc = subprocess.Popen(
        ["ip", "netns", "exec", NS_S, sys.executable, "-m", "nfq_mip6", "run",
         "--config", str(config)],
        cwd=base.REPO,
    )  # fmt: skip
    wait_for_socket(proc, tmp / "ha.sock")
    return proc


def bare_watch(ready: int, stop: int, out: int) -> None:
    """Child process in the standby's namespace: etcd's watch stream on the prefix, parsed
    and timestamped per revision (the baseline); nothing is applied."""
    from nfq_mip6.store.etcd_gateway import EtcdSettings
    from nfq_mip6.store.etcd_replica import EtcdReplica

    replica = EtcdReplica(EtcdSettings((STANDBY_ENDPOINT,), "bench"))
    start = replica.bootstrap() + 1
    received: list[tuple[int, float]] = []

    def follow() -> None:
        for _revision, batch in replica.watch(start):
            got = time.monotonic()
            received.extend((mod, got) for mod in sorted({mod for _k, _v, mod in batch}))

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    os.write(ready, b"r")
    os.read(stop, 1)
    replica.stop()
    os.write(out, json.dumps(received).encode())


def preload(count: int) -> dict[str, Any]:
    """In the standby's namespace: ``count`` more bindings (HoAs 2001:db8:a::2:0 + i) through
    the group commit, before the agents start: the standby's cache and tunnel table hold them
    while it follows the load."""
    import select

    from nfq_mip6.store import BindingCommit, StoredBinding
    from nfq_mip6.store.etcd import EtcdBindingStore
    from nfq_mip6.store.etcd_gateway import EtcdSettings

    store = EtcdBindingStore(EtcdSettings((STANDBY_ENDPOINT,), "bench", commit_timeout=120.0))
    started = time.perf_counter()
    expiry = time.time() + 3600
    base_hoa, base_coa = int(IPv6Address("2001:db8:a::2:0")), int(IPv6Address("2001:db8:c::"))
    try:
        for i in range(count):
            row = StoredBinding(
                "ha", IPv6Address(base_hoa + i), IPv6Address(base_coa + i), 1, 0xC000, 3600, expiry
            )
            store.submit(BindingCommit((row,)), i)
        done = 0
        while done < count:
            select.select([store.completions()], [], [], 1.0)
            results = store.completions().drain()
            done += len(results)
    finally:
        store.close()
    return {"bindings": count, "seconds": round(time.perf_counter() - started, 3)}


def load(mns: list[Any], rate: float, rounds: int) -> dict[str, Any]:
    """In the MNs' namespace: first registrations, then refreshes at ``rate``."""
    wire = base.Wire()
    first = wire.run(
        [base.bu_probe(hoa, 0, coa) for hoa, coa, _alt in mns], rate, base.ba_key, grace=5.0
    )
    refresh_started = time.monotonic()
    refresh = wire.run(
        [base.bu_probe(h, r, c) for r in range(1, rounds + 1) for h, c, _a in mns],
        rate,
        base.ba_key,
    )
    return {
        "first_registrations": base.percentiles(first),
        "bu_ba_refresh": base.percentiles(refresh),
        "refresh_started": refresh_started,
    }


def in_child(ns: str, work: Any) -> Any:
    """``work()`` in a child process inside ``ns``; its JSON result."""
    read, write = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(read)
        from pyroute2 import netns

        netns.setns(ns)
        os.write(write, json.dumps(work()).encode())
        os._exit(0)
    os.close(write)
    data = b""
    while chunk := os.read(read, 65536):
        data += chunk
    os.close(read)
    os.waitpid(child, 0)
    return json.loads(data)


def lags(
    committed: dict[int, float], arrived: dict[int, float], since: float = 0.0
) -> dict[str, Any]:
    """Per committed revision (committed at or after ``since``): arrival minus commit."""
    values = [arrived[rev] - at for rev, at in committed.items() if at >= since and rev in arrived]
    missing = sum(1 for rev, at in committed.items() if at >= since and rev not in arrived)
    return {**base.percentiles(values), "missing": missing}


def main() -> int:
    parser = base.load_arguments(__doc__)
    parser.set_defaults(rate=500.0, seconds=5.0)
    parser.add_argument(
        "--preload", type=int, default=0, help="bindings in the store before the agents start"
    )
    parser.add_argument("--raw", default=None, help="write the joined timelines here (JSON)")
    parser.add_argument(
        "--profile", default=None, help="py-spy the standby agent into this file (collapsed)"
    )
    args = parser.parse_args()
    mns = base.mobile_nodes(args.mobile_nodes)
    rounds = max(1, int(args.rate * args.seconds) // len(mns))
    result: dict[str, Any] = {
        "benchmark": "cluster_replication",
        "rate_per_s": args.rate,
        "sent_refreshes": rounds * len(mns),
        "mobile_nodes": len(mns),
        "load_average_before": [round(x, 2) for x in os.getloadavg()],
    }
    active = standby = etcd = None
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        try:
            base.build_topology(mns)
            build_standby_namespace()
            etcd = start_etcd(
                tmp / "etcd", cluster_bench.ETCD_CLIENT, cluster_bench.ETCD_PEER, base.NS_H,
                also_listen=(MGMT_ACTIVE,),
            )  # fmt: skip
            if args.preload:
                result["preload"] = in_child(NS_S, lambda: preload(args.preload))
            size = len(mns) + args.preload
            active = cluster_bench.start_agent(tmp / "active", size, True)
            standby = start_standby(tmp / "standby", size)
            deadline = time.monotonic() + 120
            while (
                request(tmp / "standby" / "ha.sock", {"cmd": "cluster"}).get("bindings", 0)
                < args.preload
                and time.monotonic() < deadline
            ):
                time.sleep(0.1)
            ready_r, ready_w = os.pipe()
            stop_r, stop_w = os.pipe()
            out_r, out_w = os.pipe()
            watcher = os.fork()
            if watcher == 0:
                from pyroute2 import netns

                netns.setns(NS_S)
                bare_watch(ready_w, stop_r, out_w)
                os._exit(0)
            os.read(ready_r, 1)
            profiler = None
            if args.profile:
                profiler = subprocess.Popen(
                    [str(Path(sys.executable).parent / "py-spy"), "record", "--format", "raw",
                     "--threads", "--rate", "250", "-o", args.profile,
                     "--pid", str(standby.pid)],
                    stdout=subprocess.DEVNULL,
                )  # fmt: skip
            load_result = in_child(base.NS_M, lambda: load(mns, args.rate, rounds))
            result["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
            result["mn_side"] = {k: v for k, v in load_result.items() if k != "refresh_started"}
            # until the standby applied the last committed revision (or 10 s)
            timeline_a = request(
                tmp / "active" / "ha.sock", {"cmd": "cluster", "action": "timeline"}
            )
            last = max((rev for rev, _at in timeline_a["committed"]), default=0)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                status = request(tmp / "standby" / "ha.sock", {"cmd": "cluster"})
                if status.get("applied_revision", 0) >= last:
                    break
                time.sleep(0.05)
            timeline_s = request(
                tmp / "standby" / "ha.sock", {"cmd": "cluster", "action": "timeline"}
            )
            if profiler is not None:
                profiler.send_signal(2)
                profiler.wait(timeout=30)
            os.write(stop_w, b"s")
            os.close(out_w)
            data = b""
            while chunk := os.read(out_r, 65536):
                data += chunk
            os.waitpid(watcher, 0)
            watched = {rev: at for rev, at in json.loads(data or b"[]")}
            standby_stats = request(tmp / "standby" / "ha.sock", {"cmd": "cluster"})
            agent_stats = request(tmp / "standby" / "ha.sock", {"cmd": "stats"})
            routes = subprocess.run(
                ["ip", "-n", NS_S, "-6", "route", "show", "table", "6275"],
                capture_output=True, text=True, check=False,
            ).stdout  # fmt: skip
            result["standby_holds"] = {
                "bindings": standby_stats.get("bindings"),
                "tunnel_routes": len(routes.splitlines()),
                "dataplane": agent_stats.get("dataplane"),
            }
            active_stats = request(tmp / "active" / "ha.sock", {"cmd": "cluster"})
        finally:
            stop_process(standby)
            stop_process(active)
            stop_process(etcd)
            for ns in (base.NS_M, base.NS_H, NS_S):
                subprocess.run(["ip", "netns", "del", ns], check=False)
    committed = {rev: at for rev, at in timeline_a["committed"]}
    applied = {rev: done for rev, _got, done in timeline_s["applied"]}
    received = {rev: got for rev, got, _done in timeline_s["applied"]}
    since = float(load_result["refresh_started"])
    apply_path = [done - got for _rev, got, done in timeline_s["applied"]]
    last_rev = max(committed, default=0)
    if args.raw:
        Path(args.raw).write_text(
            json.dumps(
                {"committed": timeline_a["committed"], "applied": timeline_s["applied"],
                 "watched": sorted(watched.items()), "refresh_started": since}
            )
        )  # fmt: skip
    result.update(
        {
            "revisions_committed": len(committed),
            "standby_lag_refresh": lags(committed, applied, since),
            "standby_lag_all": lags(committed, applied),
            "standby_receive_to_applied": base.percentiles(apply_path),
            "standby_received_lag_refresh": lags(committed, received, since),
            "baseline_bare_watch_lag_refresh": lags(committed, watched, since),
            "baseline_bare_watch_lag_all": lags(committed, watched),
            "standby_complete_after_last_commit_ms": (
                round((applied[last_rev] - committed[last_rev]) * 1000, 3)
                if last_rev in applied
                else None
            ),
            "standby_counters": {k: v for k, v in standby_stats.get("counters", {}).items() if v},
            "active_counters": {k: v for k, v in active_stats.get("counters", {}).items() if v},
            "target_lag_p99_ms": 20.0,
        }
    )
    return print_result(result)


if __name__ == "__main__":
    raise SystemExit(main())
