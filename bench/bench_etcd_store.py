"""Benchmark: the cluster binding store (nfq_mip6/store/etcd*.py) against a real etcd.

Starts one etcd member (Debian ``etcd-server``) on 127.0.0.1 with a temporary data directory,
then measures, in the same run:

* the baseline: blocking CAS commits one at a time (binding + Mesg-ID key each), with latency
  percentiles;
* the group commit path: N commits submitted at once, results drained from the completion
  queue as the agent loop would;
* a standby's bootstrap: a paginated read of everything committed (EtcdReplica).

Prints JSON. Needs the extra ``nfq-mip6[cluster]``; no root.

    .venv/bin/python bench/bench_etcd_store.py --commits 20000
"""

from __future__ import annotations

import argparse
import json
import select
import sys
import tempfile
import time
from ipaddress import IPv6Address
from pathlib import Path

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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commits", type=int, default=20_000)
    parser.add_argument("--single", type=int, default=500, help="baseline blocking commits")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        server = EtcdServer(Path(tmp) / "etcd")
        server.start()
        try:
            settings = EtcdSettings(
                (server.url,), "bench", commit_timeout=30.0
            )  # throughput, not the deadline
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
