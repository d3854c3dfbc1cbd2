"""Route optimization in tc BPF against plain CN <-> CoA traffic, in the same run.

Three namespaces (``nfq_mip6.testbed.ro_lab``: CN ── router ── MN, no home network); the
BPF adapter installs the binding HoA -> CoA at both ends. Two modes:

* ``base``: the CN talks to the MN's care-of address (no MIPv6 at all);
* ``bpf``: the CN talks to the MN's home address, RH2 / HAO inserted and removed in tc.

Each round runs every test in both modes back to back, the mode that goes first
alternating from round to round (on a shared machine the load drifts over seconds, so a
mode measured as a block, or always first, picks up that drift): iperf3 TCP CN -> MN and
MN -> CN (``-R``), UDP 64-octet packets received per second, ping RTT (200 x 5 ms). Per
mode the medians; ``ratio_bpf_over_base`` compares the medians, ``paired_ratio_median`` is
the median of the per-round ratios. For TCP also the retransmissions and the CPU time of
iperf3's two processes per GB (their user + system time as iperf3 reports it; softirq time
spent in their context is not in it). Also bpf(2) map updates / deletes per second from
Python (pre-packed keys) and the programs' counters. Prints one JSON object. Needs root,
iperf3, the built ``ro.bpf.o``.

    .venv/bin/python bench/bench_ro_bpf.py [--rounds 5] [--seconds 3] [--pin]   # as root

``--pin``: the iperf3 client on CPU 0, the servers on CPU 1 (fewer migrations, so less of
the reordering TCP sees when a veth sender moves between CPUs).

``--agents``: the same flows on the HOWTO test bed with the real HA, MN and CN agents, once
with ``ro_datapath = "bpf"`` and once with ``"nfqueue"`` (agents restarted in between), each
against plain CN <-> CoA traffic of the same run, plus the packets queued to user space at
the CN and the MN during one TCP run (the kernel's NFQUEUE packet IDs). ``--datapaths
nfqueue`` (or ``bpf``) runs only that data path.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from nfq_mip6.testbed.ro_lab import COA, HOA, RoLab  # noqa: E402

MAP_BENCH = """
import json, os, time
from nfq_mip6.dataplane.ro_bpf import BpfRouteOptimization
n = int(os.environ["N"])
fast_path = BpfRouteOptimization("cn")
fast_path.start()
m = fast_path.bind_map
keys = [i.to_bytes(16, "big") + bytes(16) for i in range(n)]
value = bytes(16)
t = time.perf_counter()
for k in keys:
    m.update(k, value)
updates = n / (time.perf_counter() - t)
t = time.perf_counter()
for k in keys:
    m.delete(k)
deletes = n / (time.perf_counter() - t)
print(json.dumps({"updates_per_s": round(updates), "deletes_per_s": round(deletes)}))
fast_path.stop(flush=False)
"""


CnRun = Callable[[list[str]], "subprocess.CompletedProcess[str]"]


def iperf(cn: CnRun, target: str, port: int, seconds: int, *extra: str) -> dict[str, Any]:
    done = cn(["iperf3", "-c", target, "-p", str(port), "-t", str(seconds), "-J", *extra])
    result: dict[str, Any] = json.loads(done.stdout or "{}")
    if "error" in result or "end" not in result:
        raise RuntimeError(f"iperf3 {target} {extra}: {result.get('error', done.stderr)}")
    return result


TESTS = ("tcp_cn_to_mn_gbps", "tcp_mn_to_cn_gbps", "udp64_rx_kpps", "ping_avg_ms")


def run_test(cn: CnRun, test: str, target: str, port: int, seconds: int) -> dict[str, float]:
    """One test against ``target``: its value under the test's name (TCP: also the
    retransmissions and CPU seconds of both iperf3 processes per GB)."""
    if test.startswith("tcp_"):
        extra = ["-R"] if test == "tcp_mn_to_cn_gbps" else []
        end = iperf(cn, target, port, seconds, *extra)["end"]
        received = end["sum_received"]
        cpu = end["cpu_utilization_percent"]
        cpu_s = (cpu["host_total"] + cpu["remote_total"]) / 100 * received["seconds"]
        return {
            test: received["bits_per_second"] / 1e9,
            f"{test[:-5]}_retransmits": float(end["sum_sent"].get("retransmits", 0)),
            f"{test[:-5]}_cpu_s_per_gb": cpu_s / (received["bytes"] / 1e9),
        }
    if test == "udp64_rx_kpps":
        udp = iperf(cn, target, port, seconds, "-u", "-l", "64", "-b", "0")["end"]["sum"]
        return {test: (udp["packets"] - udp["lost_packets"]) / udp["seconds"] / 1e3}
    ping = cn(["ping", "-c", "200", "-i", "0.005", "-q", target]).stdout
    rtt_line = next(line for line in ping.splitlines() if "min/avg" in line)
    return {test: float(rtt_line.split("=")[1].split("/")[1])}


def interleaved(
    cn: CnRun, modes: dict[str, tuple[str, int]], rounds: int, seconds: int
) -> dict[str, list[dict[str, float]]]:
    """Every test in every mode per round, back to back; who goes first alternates."""
    runs: dict[str, list[dict[str, float]]] = {mode: [] for mode in modes}
    for number in range(rounds):
        order = list(modes) if number % 2 == 0 else list(reversed(modes))
        this_round: dict[str, dict[str, float]] = {mode: {} for mode in modes}
        for test in TESTS:
            for mode in order:
                this_round[mode].update(run_test(cn, test, *modes[mode], seconds))
        for mode in modes:
            runs[mode].append(this_round[mode])
    return runs


def summary(runs: dict[str, list[dict[str, float]]], base: str, other: str) -> dict[str, Any]:
    """Medians per mode, the ratio of the medians and the median of the per-round ratios."""
    medians = {
        mode: {key: statistics.median(r[key] for r in values) for key in values[0]}
        for mode, values in runs.items()
    }
    return {
        "median": medians,
        f"ratio_{other}_over_base": {
            key: round(medians[other][key] / medians[base][key], 3) for key in TESTS
        },
        "paired_ratio_median": {
            key: round(
                statistics.median(
                    o[key] / b[key] for b, o in zip(runs[base], runs[other], strict=True)
                ),
                3,
            )
            for key in TESTS
        },
    }


def queued_ids(node: Any) -> int:
    """Sum of the NFQUEUE queues' last packet IDs in a namespace (+1 per queued packet)."""
    text = node.run(["cat", "/proc/net/netfilter/nfnetlink_queue"]).stdout
    return sum(int(line.split()[7]) for line in text.splitlines() if line.strip())


def nfqueue_rule_counts(node: Any) -> dict[str, int]:
    """Packets each NFQUEUE rule of the namespace matched so far (ip6tables -v)."""
    counts: dict[str, int] = {}
    for table in ("raw", "mangle"):
        listing = node.run(["ip6tables", "-w", "-t", table, "-L", "-v", "-n", "-x"]).stdout
        chain = ""
        for line in listing.splitlines():
            if line.startswith("Chain "):
                chain = line.split()[1]
            elif "NFQUEUE" in line:
                fields = line.split()
                counts[f"{table}/{chain}/{' '.join(fields[2:])}"[:120]] = int(fields[0])
    return counts


@contextlib.contextmanager
def iperf_servers(node: Any, bindings: dict[str, int]) -> Iterator[None]:
    servers = [
        node.popen(["iperf3", "-s", "-B", address, "-p", str(port)])
        for address, port in bindings.items()
    ]
    try:
        for port in bindings.values():
            for _ in range(250):
                if node.run(["ss", "-Htln", f"sport = :{port}"]).stdout.strip():
                    break
                time.sleep(0.02)
        yield
    finally:
        for server in servers:
            server.kill()
            server.wait()


def both_ends_bound(helpers: Any, agents: dict[str, Any], coa: str, home: str) -> bool:
    """The CN holds the binding and the MN's BUL entry for the CN is bound."""
    from nfq_mip6.testbed.topology import CN_ADDRESS

    mn_bound = any(
        e["recipient"] == CN_ADDRESS and e["state"] == 1 for e in helpers.bul(agents["mn"])
    )
    return mn_bound and helpers.cn_cache(agents["cn"]) == [(home, coa)]


def with_agents(
    rounds: int, seconds: int, datapaths: tuple[str, ...] = ("bpf", "nfqueue")
) -> dict[str, Any]:
    """Both data paths with the real agents on the HOWTO test bed, each vs plain CoA."""
    sys.path.insert(0, str(REPO / "tests" / "integration"))
    helpers: Any = importlib.import_module("test_route_optimization")
    from nfq_mip6.control import request
    from nfq_mip6.testbed.topology import MN_HOME_ADDRESS

    coa = helpers.VISIT_COA
    results: dict[str, Any] = {}
    for datapath in datapaths:
        os.environ["NFQ_MIP6_AGENT__RO_DATAPATH"] = datapath
        with contextlib.redirect_stdout(sys.stderr), helpers.agents_on_the_testbed() as agents:
            bed = agents["bed"]
            cn_node, mn_node = bed.node("cn"), bed.node("mn")

            cn = functools.partial(cn_node.run, check=False)
            cn(["ping", "-6", "-c", "5", "-i", "0.2", MN_HOME_ADDRESS])
            helpers.wait_until(lambda: both_ends_bound(helpers, agents, coa, MN_HOME_ADDRESS), 20.0)
            cn(["ping", "-6", "-c", "20", "-i", "0.05", MN_HOME_ADDRESS])  # steady state
            used = request(agents["cn"], {"cmd": "stats"})["ro_datapath"]["datapath"]
            with iperf_servers(mn_node, {coa: 5201, MN_HOME_ADDRESS: 5202}):
                before = {n: queued_ids(bed.node(n)) for n in ("cn", "mn")}
                started = time.monotonic()
                iperf(cn, MN_HOME_ADDRESS, 5202, seconds)
                elapsed = time.monotonic() - started
                queued = {n: queued_ids(bed.node(n)) - v for n, v in before.items()}
                by_rule = {n: nfqueue_rule_counts(bed.node(n)) for n in ("cn", "mn")}
                modes = {"base": (coa, 5201), "ro": (MN_HOME_ADDRESS, 5202)}
                runs = interleaved(cn, modes, rounds, seconds)
            results[datapath] = {
                "datapath_in_use": used,
                **summary(runs, "base", "ro"),
                "queued_during_one_tcp_run": queued,
                "queued_per_4s": {n: round(v * 4 / elapsed, 1) for n, v in queued.items()},
                "nfqueue_rule_packets_so_far": by_rule,
                "ro_datapath": {
                    n: request(agents[n], {"cmd": "stats"})["ro_datapath"] for n in ("cn", "mn")
                },
                "rounds": runs,
            }
    os.environ.pop("NFQ_MIP6_AGENT__RO_DATAPATH", None)
    return {"agents": results, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=3)
    parser.add_argument("--map-entries", type=int, default=50000)
    parser.add_argument("--pin", action="store_true", help="iperf3 client CPU 0, servers CPU 1")
    parser.add_argument("--agents", action="store_true", help="real agents, bpf vs nfqueue")
    parser.add_argument(
        "--datapaths",
        default="bpf,nfqueue",
        help="with --agents: the ro_datapath values to run, comma-separated",
    )
    args = parser.parse_args()

    if args.agents:
        datapaths = tuple(d for d in args.datapaths.split(",") if d)
        print(json.dumps(with_agents(args.rounds, args.seconds, datapaths), indent=2))
        return
    lab = RoLab()
    client_cpu, server_cpu = (
        (["taskset", "-c", "0"], ["taskset", "-c", "1"]) if args.pin else ([], [])
    )

    def cn(argv: list[str]) -> subprocess.CompletedProcess[str]:
        return lab.sh(lab.cn, *client_cpu, *argv, check=False)

    servers: list[subprocess.Popen[bytes]] = []
    try:
        lab.up()
        lab.bind()
        # One server per address: each answers from the address it is bound to (the MN's
        # per-CN route has `src HoA`, which a server bound to :: would use for CoA traffic).
        for address, port in ((COA, 5201), (HOA, 5202)):
            argv = ["iperf3", "-s", "-B", address, "-p", str(port)]
            servers.append(
                subprocess.Popen(
                    ["ip", "netns", "exec", lab.mn, *server_cpu, *argv],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        time.sleep(0.5)
        rounds = interleaved(
            cn, {"base": (COA, 5201), "bpf": (HOA, 5202)}, args.rounds, args.seconds
        )
        result = summary(rounds, "base", "bpf")
        ratios = result["ratio_bpf_over_base"]
        done = lab.sh(
            lab.cn, "env", f"N={args.map_entries}", sys.executable, "-c", MAP_BENCH, check=False
        )
        maps = json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else {}
        counters = {role: lab.adapter(role, "keep")["counters"] for role in ("cn", "mn")}
        targets = {
            "tcp_cn_to_mn>=0.90": ratios["tcp_cn_to_mn_gbps"] >= 0.90,
            "tcp_mn_to_cn>=0.90": ratios["tcp_mn_to_cn_gbps"] >= 0.90,
            "udp64>=0.85": ratios["udp64_rx_kpps"] >= 0.85,
            "rtt<=1.2": ratios["ping_avg_ms"] <= 1.2,
            "map_updates>=50k/s": maps.get("updates_per_s", 0) >= 50000,
        }
        print(
            json.dumps(
                {
                    "rounds": rounds,
                    **result,
                    "map": maps,
                    "bpf_counters": counters,
                    "targets_met": targets,
                    "seconds": args.seconds,
                    "pinned": args.pin,
                },
                indent=2,
            )
        )
    finally:
        for server in servers:
            server.kill()
        lab.down()


if __name__ == "__main__":
    main()
