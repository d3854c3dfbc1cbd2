"""Benchmark: a warm standby taking over N preloaded bindings, against a cold start of the same
bindings in the same run.

One private namespace ``h`` holds a home link (veth pair ``hh0``/``hh1``, the HA address on
``hh0``), one etcd 3.4 member on 127.0.0.1 (data on disk in a temporary directory) and the
agent. Then:

* ``following``: a standby agent started on the empty store; ``--bindings`` records are
  committed (group commit); measured: from etcd's answer to the last transaction until the
  standby has that revision in its cache and tunnel table (its ``cluster timeline``);
* ``standby``: the kernel flushed, ``nfq-mip6 run`` with ``[cluster] role = "standby"`` on
  the stored bindings; measured: from the start of the process until its binding cache and
  its kernel (tunnel table 6275) hold every binding (bootstrap of the replica + batched
  routes), then ``nfq-mip6 cluster active``:
  the takeover time the agent reports (catch-up read, direct delivery rules, proxy ND entries
  in chunks, one per loop turn, after it answers again), when a second request sent 5 ms
  after ``cluster active`` is answered (the loop that reads BUs serves again), the longest
  round trip of requests while proxy entries are pending, and the proxy entries in the kernel;
* baseline ``cold_active``: the agent stopped, its kernel state flushed, started again as
  active: from the start of the process until cache, routes and proxy entries are complete
  (snapshot read, reconcile, proxies) — what a host without a warm standby would pay.

Prints JSON. Needs root.

    .venv/bin/python bench/bench_cluster_takeover.py --bindings 10000 [--profile /tmp/standby]
"""

from __future__ import annotations

import argparse
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from ipaddress import IPv6Address
from pathlib import Path
from typing import Any

from harness import print_result, start_etcd, stop_process, wait_for_socket

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


def preload(count: int) -> tuple[float, int, float]:
    """``count`` bindings through the group commit: (seconds, the last revision, the
    ``time.monotonic()`` of etcd's answer to it)."""
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
        last_revision, last_commit = max(store.commit_log)
    finally:
        store.close()
    return time.perf_counter() - started, last_revision, last_commit


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


def wait_applied(sock: Path, revision: int, timeout: float = 120) -> float | None:
    """When the standby had ``revision`` in its cache and kernel (its own timeline)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if control(sock, {"cmd": "cluster"}).get("applied_revision", 0) >= revision:
            timeline = control(sock, {"cmd": "cluster", "action": "timeline"})
            done = [at for rev, _got, at in timeline.get("applied", []) if rev >= revision]
            return min(done) if done else None
        time.sleep(0.05)
    return None


def take_over(sock: Path) -> dict[str, Any]:
    """``cluster active``, and from a second connection 5 ms later a status request: when the
    agent loop (which reads the BUs too) answers again. Then status requests every 10 ms
    until no proxy entry is pending; their longest round trip is the longest a BU waited."""
    answers: list[dict[str, Any]] = []
    started = time.monotonic()
    switch = threading.Thread(
        target=lambda: answers.append(control(sock, {"cmd": "cluster", "action": "active"}))
    )
    switch.start()
    time.sleep(0.005)
    first = control(sock, {"cmd": "cluster"})
    first_answer = time.monotonic() - started
    longest = 0.0
    polls = 0
    while first.get("proxy_pending") and time.monotonic() - started < 60:
        time.sleep(0.01)
        sent = time.monotonic()
        first = control(sock, {"cmd": "cluster"})
        longest = max(longest, time.monotonic() - sent)
        polls += 1
    complete = time.monotonic() - started
    switch.join()
    final = control(sock, {"cmd": "cluster"})
    answer = answers[0] if answers else {}
    return {
        "takeover_first_answer_after_active_s": round(first_answer, 3),
        "takeover_active_answered_pending_proxies": answer.get("proxy_pending"),
        "takeover_complete_s": round(complete, 3),
        "takeover_polls_while_pending": polls,
        "takeover_longest_poll_while_pending_ms": round(longest * 1000, 1),
        "takeover_caught_up": answer.get("caught_up"),
        "takeover_ms": final.get("last_takeover_ms"),
        "takeover_steps_ms": final.get("last_takeover_steps_ms"),
    }


def profile(agent: subprocess.Popen[bytes], prefix: str | None, name: str) -> Any:
    """py-spy on ``agent`` into ``<prefix>-<name>.txt`` (collapsed stacks) if asked."""
    if not prefix:
        return None
    return subprocess.Popen(
        [str(Path(sys.executable).parent / "py-spy"), "record", "--format", "raw", "--threads",
         "--rate", "250", "-o", f"{prefix}-{name}.txt", "--pid", str(agent.pid)],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip


def stop_profile(profiler: Any) -> None:
    if profiler is not None:
        profiler.send_signal(signal.SIGINT)
        profiler.wait(timeout=60)


def flush_kernel() -> None:
    for table in ("6275", "6276"):
        subprocess.run(["ip", "-6", "route", "flush", "table", table], check=False)
    subprocess.run(["ip", "-6", "neigh", "flush", "proxy"], check=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bindings", type=int, default=10000)
    parser.add_argument("--profile", default=None, help="py-spy the standbys (file prefix)")
    args = parser.parse_args()
    count = args.bindings
    sh("ip", "netns", "add", NS)
    etcd: subprocess.Popen[bytes] | None = None
    agent: subprocess.Popen[bytes] | None = None
    result: dict[str, Any] = {
        "benchmark": "cluster_takeover",
        "bindings": count,
        "load_average_before": [round(x, 2) for x in os.getloadavg()],
    }
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
            # a standby following while the bindings are committed
            agent = start_agent(tmp / "following", "standby")
            wait_for_socket(agent, tmp / "following" / "ha.sock")
            profiler = profile(agent, args.profile, "following")
            took, last_revision, last_commit = preload(count)
            result["preload_s"] = round(took, 3)
            applied = wait_applied(tmp / "following" / "ha.sock", last_revision)
            result["following_standby_complete_after_last_commit_s"] = (
                None if applied is None else round(applied - last_commit, 3)
            )
            result["following_standby_holds"] = {
                "bindings": control(tmp / "following" / "ha.sock", {"cmd": "cluster"}).get(
                    "bindings"
                ),
                "routes": count_lines("ip", "-6", "route", "show", "table", "6275"),
            }
            stop_profile(profiler)
            stop_process(agent, timeout=20)
            agent = None
            flush_kernel()
            # a standby started on the stored bindings, then the takeover
            started = time.monotonic()
            agent = start_agent(tmp / "standby", "standby")
            profiler = profile(agent, args.profile, "started")
            sock = tmp / "standby" / "ha.sock"
            complete = wait_complete(agent, sock, count, proxies=False)
            stop_profile(profiler)
            result["standby_complete_s"] = round(complete - started, 3)
            result["standby_proxies"] = count_lines("ip", "-6", "neigh", "show", "proxy")
            result.update(take_over(sock))
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
    result["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    return print_result(result)


if __name__ == "__main__":
    raise SystemExit(main())
