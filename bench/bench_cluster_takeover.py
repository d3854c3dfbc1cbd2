"""Benchmark: a warm standby taking over N preloaded bindings, against a cold start of the same
bindings in the same run.

One private namespace ``h`` holds a home link (veth pair ``hh0``/``hh1``, the HA address on
``hh0``), one etcd 3.4 member on 127.0.0.1 (data on disk in a temporary directory) and the
agent. ``--bindings`` records are committed to the store first (group commit). Then:

* ``standby``: ``nfq-mip6 run`` with ``[cluster] role = "standby"``; measured: from the start
  of the process until its binding cache and its kernel (tunnel table 6275) hold every
  binding (bootstrap of the replica + batched routes), then ``nfq-mip6 cluster active``:
  the takeover time the agent reports (catch-up read, proxy ND entries in batches, direct
  delivery rules) and the proxy entries in the kernel;
* baseline ``cold_active``: the agent stopped, its kernel state flushed, started again as
  active: from the start of the process until cache, routes and proxy entries are complete
  (snapshot read, reconcile, proxies) — what a host without a warm standby would pay.

Prints JSON. Needs root.

    .venv/bin/python bench/bench_cluster_takeover.py --bindings 10000
"""

from __future__ import annotations

import argparse
import os
import select
import subprocess
import sys
import tempfile
import time
from ipaddress import IPv6Address
from pathlib import Path
from typing import Any

from harness import print_result, start_etcd, stop_process

from nfq_mip6.control import ControlError, request
from nfq_mip6.store import BindingCommit, StoredBinding

NS = f"nfqct-h-{os.getpid()}"
HA = "2001:db8:a::1"
PREFIX = "2001:db8:a::/64"
HOA_BASE = int(IPv6Address("2001:db8:a::1:0"))
COA_BASE = int(IPv6Address("2001:db8:b::1:0"))
ETCD_CLIENT, ETCD_PEER = 23791, 23801
REPO = Path(__file__).resolve().parents[1]


def sh(*argv: str) -> str:
    return subprocess.run(list(argv), check=True, capture_output=True, text=True).stdout


def count_lines(*argv: str) -> int:
    return len([line for line in sh(*argv).splitlines() if line.strip()])


def preload(count: int) -> float:
    from nfq_mip6.store.etcd import EtcdBindingStore
    from nfq_mip6.store.etcd_gateway import EtcdSettings

    store = EtcdBindingStore(
        EtcdSettings((f"http://127.0.0.1:{ETCD_CLIENT}",), "bench", commit_timeout=120.0)
    )
    started = time.perf_counter()
    expiry = time.time() + 3600
    try:
        for i in range(count):
            row = StoredBinding(
                "ha",
                IPv6Address(HOA_BASE + i),
                IPv6Address(COA_BASE + i % 1000),
                1,
                0xC000,
                3600,
                expiry,
            )
            store.submit(BindingCommit((row,)), i)
        done = 0
        while done < count:
            select.select([store.completions()], [], [], 1.0)
            results = store.completions().drain()
            failed = [error for _token, error in results if error is not None]
            if failed:
                raise RuntimeError(f"preload failed: {failed[0]}")
            done += len(results)
    finally:
        store.close()
    return time.perf_counter() - started


def start_agent(tmp: Path, role: str) -> subprocess.Popen[bytes]:
    tmp.mkdir(parents=True, exist_ok=True)
    config = tmp / "ha.toml"
    config.write_text(
        f'role = "ha"\ninterface = "hh0"\nlog_level = "warning"\nqueue_num = 5\n'
        f'control_socket = "{tmp / "ha.sock"}"\nmetrics_listen = ""\nstate_dir = "{tmp}"\n'
        f'[ha]\naddress = "{HA}"\nhome_prefix = "{PREFIX}"\nmax_binding_lifetime = 3600\n'
        "require_authentication = false\n"
        f'[cluster]\nendpoints = ["http://127.0.0.1:{ETCD_CLIENT}"]\nname = "bench"\n'
        f'commit_timeout_ms = 2000\nrole = "{role}"\n'
    )
    return subprocess.Popen(  # ip netns exec: the namespace's /sys for the agent
        ["ip", "netns", "exec", NS, sys.executable, "-m", "nfq_mip6", "run", "--config",
         str(config)],
        cwd=REPO,
    )  # fmt: skip


def control(sock: Path, command: dict[str, Any]) -> dict[str, Any]:
    try:
        return request(sock, command, timeout=30.0)
    except ControlError:
        return {}


def wait_complete(
    agent: subprocess.Popen[bytes], sock: Path, count: int, *, proxies: bool, timeout: float = 120
) -> float:
    """The time when the agent's cache, the tunnel table (and the proxies) hold ``count``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if agent.poll() is not None:
            raise RuntimeError("the agent exited")
        status = control(sock, {"cmd": "cluster"})
        if status.get("bindings") == count:
            routes = count_lines("ip", "-6", "route", "show", "table", "6275")
            proxied = count_lines("ip", "-6", "neigh", "show", "proxy") if proxies else count
            if routes >= count and proxied >= count:
                return time.monotonic()
        time.sleep(0.05)
    raise RuntimeError("the agent did not get every binding in time")


def flush_kernel() -> None:
    for table in ("6275", "6276"):
        subprocess.run(["ip", "-6", "route", "flush", "table", table], check=False)
    subprocess.run(["ip", "-6", "neigh", "flush", "proxy"], check=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bindings", type=int, default=10000)
    args = parser.parse_args()
    count = args.bindings
    sh("ip", "netns", "add", NS)
    etcd: subprocess.Popen[bytes] | None = None
    agent: subprocess.Popen[bytes] | None = None
    result: dict[str, Any] = {"benchmark": "cluster_takeover", "bindings": count}
    try:
        from pyroute2 import netns

        netns.setns(NS)  # this process, etcd and the agents all live in the namespace
        sh("ip", "link", "set", "lo", "up")
        sh("ip", "link", "add", "hh0", "type", "veth", "peer", "name", "hh1")
        sh("ip", "link", "set", "hh0", "up")
        sh("ip", "link", "set", "hh1", "up")
        sh("ip", "-6", "addr", "add", f"{HA}/64", "dev", "hh0", "nodad")
        sh("sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
        with tempfile.TemporaryDirectory() as tmpdir:
            tmp = Path(tmpdir)
            etcd = start_etcd(tmp / "etcd", ETCD_CLIENT, ETCD_PEER)
            result["preload_s"] = round(preload(count), 3)
            # warm standby, then the takeover
            started = time.monotonic()
            agent = start_agent(tmp / "standby", "standby")
            sock = tmp / "standby" / "ha.sock"
            complete = wait_complete(agent, sock, count, proxies=False)
            result["standby_complete_s"] = round(complete - started, 3)
            result["standby_proxies"] = count_lines("ip", "-6", "neigh", "show", "proxy")
            answer = control(sock, {"cmd": "cluster", "action": "active"})
            result["takeover_ms"] = answer.get("last_takeover_ms")
            result["takeover_caught_up"] = answer.get("caught_up")
            result["takeover_steps_ms"] = answer.get("last_takeover_steps_ms")
            result["proxies_after_takeover"] = count_lines("ip", "-6", "neigh", "show", "proxy")
            stop_process(agent, timeout=20)
            agent = None
            # baseline: a cold start as active from the store
            flush_kernel()
            started = time.monotonic()
            agent = start_agent(tmp / "cold", "active")
            complete = wait_complete(agent, tmp / "cold" / "ha.sock", count, proxies=True)
            result["baseline_cold_active_start_s"] = round(complete - started, 3)
            stop_process(agent, timeout=20)
            agent = None
    finally:
        stop_process(agent, timeout=20)
        stop_process(etcd, timeout=20)
        subprocess.run(["ip", "netns", "del", NS], check=False)
    return print_result(result)


if __name__ == "__main__":
    raise SystemExit(main())
