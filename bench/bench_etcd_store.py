"""Benchmark: the cluster binding store (nfq_mip6/store/etcd*.py) against a real etcd.

Starts one etcd member (Debian ``etcd-server``) on 127.0.0.1 with a temporary data directory,
then measures, in the same run:

* the baseline: blocking CAS commits one at a time (binding + Mesg-ID key each), with latency
  percentiles;
* the group commit path: N commits submitted at once, results drained from the completion
  queue as the agent loop would;
* a standby's bootstrap: a paginated read of everything committed (EtcdReplica);
* with ``--rate R``: commits submitted at a steady R per second for ``--seconds`` (200 home
  addresses round robin, as the BU benchmark's MNs), each one's submit -> result latency
  as the agent's loop sees it (completion pipe), the transactions it took and the CPU time of
  this process (the store's client side) and of etcd.

Prints JSON. Needs the extra ``nfq-mip6[cluster]``; no root.

    .venv/bin/python bench/bench_etcd_store.py --commits 20000
"""

from __future__ import annotations

import argparse
import json
import os
import select
import sys
import tempfile
import time
from ipaddress import IPv6Address
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.support

from nfq_mip6.store import BindingCommit, StoredBinding
from nfq_mip6.store.etcd import EtcdBindingStore
from nfq_mip6.store.etcd_gateway import EtcdSettings
from nfq_mip6.store.etcd_replica import EtcdReplica
from tests.support.etcd import EtcdServer

COA = IPv6Address("2001:db8:c::1")


def row(n: int) -> StoredBinding:
    hoa = IPv6Address(int(IPv6Address("2001:db8:a::1:0")) + n)
    return StoredBinding("ha", hoa, COA, 1, 0xC000, 400, time.time() + 400)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)


def cpu_seconds(pid: int | str = "self") -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def paced(
    settings: EtcdSettings, rate: float, seconds: float, server: EtcdServer
) -> dict[str, Any]:
    """Commits at a steady ``rate``, results drained in a selector loop as the agent's."""
    store = EtcdBindingStore(settings, writer="bench")
    completions = store.completions()
    count = int(rate * seconds)
    submitted: dict[int, float] = {}
    latencies: list[float] = []
    failed = 0
    assert server.process is not None
    cpu0, etcd0 = cpu_seconds(), cpu_seconds(server.process.pid)
    start = time.perf_counter()
    n = 0
    while len(latencies) + failed < count:
        now = time.perf_counter()
        while n < count and start + n / rate <= now:
            submitted[n] = time.perf_counter()
            store.submit(BindingCommit((row(n % 200),), (), {n % 200: n}), n)
            n += 1
        wait = start + n / rate - time.perf_counter() if n < count else 5.0
        if select.select([completions], [], [], max(0.0, wait))[0]:
            done = time.perf_counter()
            for token, error in completions.drain():
                assert isinstance(token, int)
                if error is None:
                    latencies.append((done - submitted.pop(token)) * 1000)
                else:
                    failed += 1
    elapsed = time.perf_counter() - start
    cpu, etcd_cpu = cpu_seconds() - cpu0, cpu_seconds(server.process.pid) - etcd0
    transactions = store.counters["transactions"]
    store.close()
    return {
        "benchmark": "etcd_store_paced",
        "rate_per_s": rate,
        "commits": count,
        "failed": failed,
        "max_in_flight": settings.max_in_flight,
        "batch_window_ms": settings.batch_window * 1e3,
        "commit_ms": {
            "p50": percentile(latencies, 0.5),
            "p90": percentile(latencies, 0.9),
            "p99": percentile(latencies, 0.99),
            "max": round(max(latencies), 2),
        },
        "transactions": transactions,
        "commits_per_transaction": round(count / max(1, transactions), 2),
        "client_cpu_ms_per_commit": round(cpu / count * 1000, 3),
        "etcd_cpu_ms_per_commit": round(etcd_cpu / count * 1000, 3),
        "elapsed_s": round(elapsed, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commits", type=int, default=20_000)
    parser.add_argument("--single", type=int, default=500, help="baseline blocking commits")
    parser.add_argument("--rate", type=float, default=0.0, help="paced commits per second")
    parser.add_argument("--seconds", type=float, default=5.0)
    defaults = EtcdSettings(("http://127.0.0.1:2379",), "bench")
    parser.add_argument("--max-in-flight", type=int, default=defaults.max_in_flight)
    parser.add_argument("--batch-window-ms", type=float, default=defaults.batch_window * 1e3)
    parser.add_argument("--etcd-dir", default="/var/tmp", help="parent of etcd's data directory")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.etcd_dir) as tmp:
        server = EtcdServer(Path(tmp) / "etcd")
        server.start()
        try:
            settings = EtcdSettings(
                (server.url,),
                "bench",
                commit_timeout=30.0,  # throughput, not the deadline
                max_in_flight=args.max_in_flight,
                batch_window=args.batch_window_ms / 1e3,
            )
            if args.rate:
                paced_result = paced(settings, args.rate, args.seconds, server)
                paced_result.update(
                    etcd_data="tmpfs" if args.etcd_dir.startswith("/dev/shm") else "disk",
                    load_average=os.getloadavg(),
                )
                print(json.dumps(paced_result))
                return 0
            store = EtcdBindingStore(settings, writer="bench")
            latencies: list[float] = []
            start = time.perf_counter()
            for n in range(args.single):
                t = time.perf_counter()
                store.commit(BindingCommit((row(n),), (), {n: 1}))
                latencies.append((time.perf_counter() - t) * 1000)
            single_rate = args.single / (time.perf_counter() - start)
            completions = store.completions()
            start = time.perf_counter()
            for n in range(args.commits):
                m = args.single + n
                store.submit(BindingCommit((row(m),), (), {m: 1}), n)
            failed = done = 0
            while done < args.commits:
                select.select([completions], [], [], 10.0)
                for _token, error in completions.drain():
                    done += 1
                    failed += error is not None
            group_rate = args.commits / (time.perf_counter() - start)
            transactions = store.counters["transactions"] - args.single
            store.close()
            replica = EtcdReplica(settings)
            start = time.perf_counter()
            replica.bootstrap()
            bootstrap = time.perf_counter() - start
            keys = len(replica.bindings) + len(replica.mesg_ids)
        finally:
            server.stop()
    print(
        json.dumps(
            {
                "benchmark": "etcd_store",
                "single_commits_per_s": round(single_rate),
                "single_commit_ms": {
                    "p50": percentile(latencies, 0.5),
                    "p99": percentile(latencies, 0.99),
                    "max": round(max(latencies), 2),
                },
                "group_commits": args.commits,
                "group_commits_per_s": round(group_rate),
                "group_failed": failed,
                "group_transactions": transactions,
                "speedup": round(group_rate / single_rate, 1),
                "bootstrap_keys": keys,
                "bootstrap_keys_per_s": round(keys / bootstrap),
            }
        )
    )
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
