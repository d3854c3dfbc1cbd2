"""Benchmark: Home Agent binding installs per second, batched vs one request per route.

Builds a private network namespace (a veth pair, the HA address on one end), then installs
N bindings (HoA/128 encap.red -> CoA plus the CoA's End.DX6 decap route: two routes per
binding) with :meth:`NetlinkDataplane.install_tunnels` (``ip -6 -batch``), and, as the
baseline measured in the same run, a smaller number with :meth:`install_tunnel` (one
pyroute2 request per route); also the agent's per-BU path (hand-packed rtnetlink, all
requests of one binding in one sendmsg). Prints JSON. Needs root.

    .venv/bin/python bench/bench_binding_install.py --bindings 100000
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import time
from ipaddress import IPv6Address, IPv6Network

from harness import print_result

from nfq_mip6.dataplane.netlink import NetlinkDataplane

HA = IPv6Address("2001:db8:a::1")
PREFIX = IPv6Network("2001:db8:a::/64")
HOA_BASE = int(IPv6Address("2001:db8:a::1:0"))
COA_BASE = int(IPv6Address("2001:db8:c::"))


def rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def bindings(start: int, count: int) -> dict[IPv6Address, IPv6Address]:
    return {
        IPv6Address(HOA_BASE + start + i): IPv6Address(COA_BASE + start + i) for i in range(count)
    }


def run(bindings_n: int, baseline_n: int) -> dict[str, object]:
    from pyroute2 import netns

    netns.setns(NS)  # this process (and the `ip` it runs) now lives in the bench netns
    subprocess.run(
        ["ip", "link", "add", "bha0", "type", "veth", "peer", "name", "bha1"], check=True
    )
    for dev in ("lo", "bha0", "bha1"):
        subprocess.run(["ip", "link", "set", dev, "up"], check=True)
    subprocess.run(["ip", "-6", "addr", "add", f"{HA}/64", "dev", "bha0", "nodad"], check=True)
    dataplane = NetlinkDataplane("bha0", HA, PREFIX)
    dataplane.setup()

    rss_before = rss_mib()
    wanted = bindings(0, bindings_n)
    t0 = time.perf_counter()
    failed = dataplane.install_tunnels(wanted)
    batched_s = time.perf_counter() - t0
    rss_after = rss_mib()
    t0 = time.perf_counter()
    report = dataplane.reconcile(wanted)  # restart path: read back and diff 2N routes
    reconcile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    dataplane.remove_tunnels(list(wanted))
    remove_s = time.perf_counter() - t0

    single = bindings(bindings_n, baseline_n)
    dataplane.per_request_pyroute2 = True  # the baseline: one pyroute2 request per route
    t0 = time.perf_counter()
    for hoa, coa in single.items():
        dataplane.install_tunnel(hoa, coa)
    single_s = time.perf_counter() - t0
    dataplane.per_request_pyroute2 = False  # the agent's per-BU path: hand-packed rtnetlink
    hot = bindings(bindings_n + baseline_n, baseline_n)
    t0 = time.perf_counter()
    for hoa, coa in hot.items():
        dataplane.install_tunnel(hoa, coa)
    hot_s = time.perf_counter() - t0
    dataplane.shutdown(flush=True)

    batched_rate = bindings_n / batched_s
    single_rate = baseline_n / single_s
    return {
        "benchmark": "binding_install",
        "bindings": bindings_n,
        "routes_per_binding": 2,
        "batched": {
            "seconds": round(batched_s, 3),
            "bindings_per_s": round(batched_rate),
            "routes_per_s": round(2 * batched_rate),
            "failed": failed,
            "enomem_retries": dataplane.counters.enomem_retries,
        },
        "baseline_one_request_per_route": {
            "bindings": baseline_n,
            "seconds": round(single_s, 3),
            "bindings_per_s": round(single_rate),
            "routes_per_s": round(2 * single_rate),
        },
        "per_binding_rtnetlink": {
            "bindings": baseline_n,
            "bindings_per_s": round(baseline_n / hot_s),
            "ms_per_binding": round(1000 * hot_s / baseline_n, 3),
        },
        "speedup": round(batched_rate / single_rate, 1),
        "reconcile_seconds": round(reconcile_s, 3),
        "reconcile_kept": report.kept,
        "remove_bindings_per_s": round(bindings_n / remove_s),
        "rss_mib": {"before": round(rss_before, 1), "after_install": round(rss_after, 1)},
        "max_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "target_bindings_per_s": 20000,
        "meets_target": batched_rate >= 20000,
    }


NS = f"nfqbench-inst-{os.getpid()}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bindings", type=int, default=100_000)
    parser.add_argument("--baseline", type=int, default=2_000)
    args = parser.parse_args()
    subprocess.run(["ip", "netns", "add", NS], check=True)
    try:
        result = run(args.bindings, args.baseline)
    finally:
        subprocess.run(["ip", "netns", "del", NS], check=False)
    return print_result(result)


if __name__ == "__main__":
    raise SystemExit(main())
